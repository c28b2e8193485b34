#!/usr/bin/env python
"""Score models on simulated surveys that differ from the training survey, one shift at a time.

A model that only works on its own simulator's settings shows it here.  Each *variant* changes a
few `~lsst.meas.realbogus.simulation.SurveyConfig` fields of the default survey (pixel scale,
seeing, PSF family, template depth and noise correlation, misregistration, star density), is
simulated with its own seed on sky fields (detectors) that no training run uses, differenced,
detected and labelled exactly like the training data
(`lsst.meas.realbogus.cli.train_default.simulate_to_store`), and every model is scored on the
same candidates.  Per variant and model it prints:

- ``AUC``: ROC AUC;
- ``c6@thr`` and ``pur@thr``: completeness of SNR >= 6 transients and purity at the model's own
  recommended threshold (on a new survey one cannot choose a threshold on labelled data first);
- ``c6@p99``: completeness of SNR >= 6 transients at the threshold that gives purity 0.99 on the
  variant itself (the best the ranking allows);
- ``ECE``: expected calibration error.

Usage::

    python bench/bench_robustness.py                                  # the packaged default model
    python bench/bench_robustness.py --model a.safetensors b.safetensors --json robustness.json
    python bench/bench_robustness.py --variants wide sharp --visits 2 --detectors 2   # quick look

The stores are cached in ``--work-dir`` (default: a temporary directory) and reused when it is
given again.  None of the variants is a member of the default model's training mix with the same
settings; ``wide`` (1.0" pixels, 1.5-3.0" seeing) neighbours the mix's ``undersampled`` member
(0.9" pixels, 1.2-2.8" seeing) and tests that it generalises to other undersampled data.
"""

from __future__ import annotations

__all__ = ["VARIANTS", "evaluate_variant", "main", "simulate_variant"]

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS: dict[str, dict[str, Any]] = {
    "reference": {},
    "gaussian_psf": {"psf_kinds": ("gaussian",), "template_psf_kinds": ("gaussian",)},
    "sharp": {"seeing_range": (0.4, 0.65)},
    "bad_seeing": {"seeing_range": (1.5, 2.5), "template_seeing_range": (0.7, 0.9)},
    "correlated_template_noise": {"template_noise_correlation": 0.45},
    "equal_depth_template": {"template_depth_range": (1.0, 2.0)},
    "misregistered": {"misregistration_range": (0.3, 0.6)},
    "decam_like": {
        "pixel_scale": 0.263,
        "seeing_range": (0.8, 1.6),
        "template_seeing_range": (0.8, 1.2),
        "template_depth_range": (1.5, 4.0),
    },
    "crowded": {"star_density": 60.0},
    "wide": {"pixel_scale": 1.0, "seeing_range": (1.5, 3.0), "template_seeing_range": (1.3, 1.8)},
}
"""Survey variants: `SurveyConfig` fields that replace the default survey's (1024² detectors)."""

SEED = 20261207
"""Simulation seed of every variant (no training run uses it)."""
FIRST_DETECTOR = 100
"""Detectors (sky fields) start here: far from those of the training and held-out sets."""
FIRST_VISIT = 800000
"""Visit ids start here (variant k uses ``FIRST_VISIT + 1000 k`` onwards)."""


def simulate_variant(
    name: str, directory: Path, *, visits: int, detectors: int, size: int, processes: int
) -> Any:
    """Simulate, difference, detect and label one variant into a stamp store (cached).

    Parameters
    ----------
    name : `str`
        Key of `VARIANTS`.
    directory : `pathlib.Path`
        Work directory; the store is ``directory / name / "store"`` and is reused if present.
    visits, detectors, size : `int`
        Visits, detectors per visit and detector side (pixels).
    processes : `int`
        Simulation worker processes.

    Returns
    -------
    store : `lsst.meas.realbogus.stamp_dataset.StampStore`
        The labelled candidates.
    """
    from lsst.meas.realbogus.cli.train_default import DEFAULT_CUTOUT_SIZE, simulate_to_store
    from lsst.meas.realbogus.simulation import SurveyConfig
    from lsst.meas.realbogus.stamp_dataset import StampStore

    if name not in VARIANTS:
        raise ValueError(f"Unknown variant {name!r}; known: {sorted(VARIANTS)}.")
    store_dir = directory / name / "store"
    if (store_dir / "store.json").exists():
        return StampStore.open(store_dir)
    k = list(VARIANTS).index(name)
    survey = dataclasses.replace(SurveyConfig(), width=size, height=size, **VARIANTS[name])
    first_visit = FIRST_VISIT + 1000 * k
    first_detector = FIRST_DETECTOR + detectors * k
    return simulate_to_store(
        survey,
        list(range(first_visit, first_visit + visits)),
        list(range(first_detector, first_detector + detectors)),
        SEED,
        directory / name,
        cutout_size=DEFAULT_CUTOUT_SIZE,
        processes=processes,
    )


def evaluate_variant(model: Any, store: Any, *, min_snr: float = 6.0) -> dict[str, Any]:
    """Score a store with a loaded model and summarise (see the module docstring).

    Parameters
    ----------
    model : `lsst.meas.realbogus.scoring.RealBogusModel`
        Loaded model.
    store : `lsst.meas.realbogus.stamp_dataset.StampStore`
        Labelled candidates.
    min_snr : `float`, optional
        Truth SNR limit of the completeness figures.

    Returns
    -------
    result : `dict`
        ``n``, ``n_real``, ``auc``, ``completeness_at_threshold``, ``purity_at_threshold``,
        ``threshold``, ``completeness_at_purity_0.99``, ``threshold_for_purity_0.99``, ``ece``.
    """
    from lsst.meas.realbogus import metrics

    n = len(store)
    scores = np.empty(n, dtype=np.float64)
    for start in range(0, n, 4096):
        rows = np.arange(start, min(n, start + 4096))
        scores[rows] = model.score_stamps(store.read(rows), channels=store.channels)
    labels = np.asarray(store.labels).astype(np.int64)
    snr = np.abs(np.asarray(store.snr, dtype=np.float64))
    ok = np.isfinite(scores)
    scores, labels, snr = scores[ok], labels[ok], snr[ok]
    bright = (labels == 1) & (snr >= min_snr)
    threshold = float(model.metadata.threshold)
    selected = scores >= threshold
    both = 0 < labels.sum() < labels.size
    choice = metrics.threshold_for_purity(scores, labels, 0.99) if both else None

    def completeness(thr: float | None) -> float:
        return float((scores[bright] >= thr).mean()) if bright.any() and thr is not None else float("nan")

    return {
        "n": int(labels.size),
        "n_real": int(labels.sum()),
        "auc": float(metrics.roc_auc(scores, labels)) if both else float("nan"),
        "threshold": threshold,
        "completeness_at_threshold": completeness(threshold),
        "purity_at_threshold": float(labels[selected].mean()) if selected.any() else float("nan"),
        "threshold_for_purity_0.99": choice.threshold if choice else float("nan"),
        "completeness_at_purity_0.99": completeness(choice.threshold if choice else None),
        "ece": float(metrics.expected_calibration_error(scores, labels)) if both else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints a table and optionally writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", nargs="+", type=Path, default=None,
                        help="model packages (default: the packaged default model)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--visits", type=int, default=4, help="visits per variant")
    parser.add_argument("--detectors", type=int, default=3, help="detectors (sky fields) per variant")
    parser.add_argument("--size", type=int, default=1024, help="detector side in pixels")
    parser.add_argument("--processes", type=int, default=2, help="simulation worker processes")
    parser.add_argument("--work-dir", type=Path, default=None, help="cache of the simulated stores")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this file")
    args = parser.parse_args(argv)
    for name in ("visits", "detectors", "processes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    if args.size < 128:
        parser.error("--size must be at least 128")

    from lsst.meas.realbogus.scoring import load_model

    models = {str(p): load_model(p) for p in args.model} if args.model else {"default": load_model()}
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="rb_robustness_") as tmp:
        work = args.work_dir or Path(tmp)
        header = (f"{'variant':26s} {'model':22s} {'cands':>6s} {'real':>5s} {'AUC':>7s} "
                  f"{'c6@thr':>7s} {'pur@thr':>7s} {'c6@p99':>7s} {'ECE':>6s}")
        print(header)
        print("-" * len(header))
        for name in args.variants:
            t0 = time.monotonic()
            store = simulate_variant(name, work, visits=args.visits, detectors=args.detectors,
                                     size=args.size, processes=args.processes)
            results[name] = {"simulation_seconds": time.monotonic() - t0, "models": {}}
            for label, model in models.items():
                r = evaluate_variant(model, store)
                results[name]["models"][label] = r
                short = f"{model.metadata.version} ({Path(label).name[:12]})" if label != "default" else (
                    model.metadata.version)
                print(f"{name:26s} {short:22s} {r['n']:6d} {r['n_real']:5d} {r['auc']:7.4f} "
                      f"{r['completeness_at_threshold']:7.3f} {r['purity_at_threshold']:7.3f} "
                      f"{r['completeness_at_purity_0.99']:7.3f} {r['ece']:6.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"seed": SEED, "settings": {
            "visits": args.visits, "detectors": args.detectors, "size": args.size},
            "variants": {k: dict(v) for k, v in VARIANTS.items() if k in args.variants},
            "results": results}, indent=1, default=list))
    return 0


if __name__ == "__main__":
    sys.exit(main())
