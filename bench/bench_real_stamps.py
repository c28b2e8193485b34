#!/usr/bin/env python
"""Score the real alert stamps in shared/realdata and compare with the surveys' own scores.

EVALUATION ONLY: the real stamps are never used to train, tune or pick thresholds.  Their scores come
from other surveys' models (ZTF ``rb``/``drb``, Rubin ``reliability``, DECAT ``rb``), so agreement is
reported as ROC AUC against score-based pseudo-labels and as rank correlation, not as accuracy.

Per survey it prints: N scored, NaN count, the score distribution (quantiles and a 10-bin
histogram), ROC AUC of our score against pseudo-labels from ``drb`` and from ``rb`` (> 0.9 real,
< 0.1 bogus, the rest left out), and the Spearman rank correlation with ``rb`` (Rubin's
``reliability`` for the LSSTCam and HSC files).  Because some references have no values below 0.1
(ZTF ``rb``), the AUC with a looser cut (> 0.65 real, < 0.35 bogus) is also given.

Usage::

    python bench/bench_real_stamps.py                      # the packaged default model
    python bench/bench_real_stamps.py --model m.safetensors
    python bench/bench_real_stamps.py --train-quick /tmp/quick.safetensors --visits 24

``--train-quick`` first trains a small model on simulated candidates only (a stand-in while the
default model is not installed) and then evaluates it.
"""

from __future__ import annotations

__all__ = ["evaluate_file", "main", "pseudo_label_auc", "train_quick_model"]

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
if not DEFAULT_DATA.is_dir():
    DEFAULT_DATA = Path("/work/shared/realdata")

REAL_CUT = 0.9
BOGUS_CUT = 0.1


def pseudo_label_auc(
    scores: np.ndarray, reference: np.ndarray, real_cut: float = REAL_CUT, bogus_cut: float = BOGUS_CUT
) -> dict[str, Any]:
    """ROC AUC of ``scores`` against pseudo-labels ``reference > real_cut`` / ``< bogus_cut``.

    Parameters
    ----------
    scores : `numpy.ndarray`
        Our scores (NaN rows are left out).
    reference : `numpy.ndarray`
        The survey's score (NaN rows are left out).
    real_cut, bogus_cut : `float`, optional
        Pseudo-label cuts (default 0.9 and 0.1).

    Returns
    -------
    result : `dict`
        ``auc`` (NaN if a class is empty), ``n_real``, ``n_bogus``.
    """
    from lsst.meas.realbogus.metrics import roc_auc

    ok = np.isfinite(scores) & np.isfinite(reference)
    real = ok & (reference > real_cut)
    bogus = ok & (reference < bogus_cut)
    n_real, n_bogus = int(real.sum()), int(bogus.sum())
    auc = float("nan")
    if n_real and n_bogus:
        keep = real | bogus
        auc = float(roc_auc(scores[keep].astype(np.float64), real[keep].astype(np.int64)))
    return {"auc": auc, "n_real": n_real, "n_bogus": n_bogus}


def evaluate_file(model: Any, path: Path) -> dict[str, Any]:
    """Score one stamp file and summarise the scores (see the module docstring)."""
    from lsst.meas.realbogus.real_stamps import read_alert_stamps
    from scipy.stats import spearmanr

    data = read_alert_stamps(path)
    t0 = time.perf_counter()
    scores = data.score(model)
    seconds = time.perf_counter() - t0
    finite = np.isfinite(scores)
    report: dict[str, Any] = {
        "survey": data.survey,
        "file": path.name,
        "stamp_shape": list(data.stamps.shape[2:]),
        "pixel_scale_arcsec": data.pixel_scale,
        "n": len(data),
        "n_scored": int(finite.sum()),
        "n_nan": int((~finite).sum()),
        "n_nan_with_finite_difference": int((~finite & data.has_finite_difference).sum()),
        "seconds": round(seconds, 3),
    }
    if finite.any():
        s = scores[finite]
        report["quantiles"] = dict(
            zip(
                ("min", "p10", "p25", "median", "p75", "p90", "max"),
                np.round(np.quantile(s, [0, 0.1, 0.25, 0.5, 0.75, 0.9, 1]), 4).tolist(),
            )
        )
        report["histogram"] = np.histogram(s, bins=10, range=(0, 1))[0].tolist()
        report["largest_tie_fraction"] = round(float(np.unique(s, return_counts=True)[1].max() / s.size), 4)
        for sign, name in ((1, "positive"), (-1, "negative")):
            sel = finite & (data.polarity == sign)
            if sel.any():
                report[f"median_{name}_subtraction"] = round(float(np.median(scores[sel])), 4)
    for key in ("drb", "rb"):
        ref = getattr(data, key)
        if np.isfinite(ref).any():
            report[f"auc_vs_{key}"] = pseudo_label_auc(scores, ref)
            # ZTF's rb has no values below 0.1: also the looser cut around its documented 0.65.
            report[f"auc_vs_{key}_loose"] = pseudo_label_auc(scores, ref, 0.65, 0.35)
            ok = finite & np.isfinite(ref)
            if ok.sum() > 2:
                rho = spearmanr(scores[ok], ref[ok])
                report[f"spearman_vs_{key}"] = {
                    "rho": round(float(rho.statistic), 4),
                    "p": float(rho.pvalue),
                    "n": int(ok.sum()),
                }
    return report


def train_quick_model(
    out: Path, visits: int = 24, size: int = 768, cutout_size: int = 31, epochs: int = 10, seed: int = 0
) -> Path:
    """Train a small model on simulated candidates only and save it (a stand-in default model).

    Parameters
    ----------
    out : `pathlib.Path`
        Output package file.
    visits : `int`, optional
        Number of simulated visits (one detector each).
    size : `int`, optional
        Detector side in pixels.
    cutout_size : `int`, optional
        Model stamp size.
    epochs : `int`, optional
        Maximum training epochs.
    seed : `int`, optional
        Simulation and training seed.

    Returns
    -------
    out : `pathlib.Path`
        The written package.
    """
    from lsst.meas.realbogus.candidates import CandidateSet
    from lsst.meas.realbogus.model_package import save_model_package
    from lsst.meas.realbogus.simulation import small_test_config
    from lsst.meas.realbogus.training import TrainingConfig, split_by_group, train_classifier
    from lsst.meas.realbogus.training_set import simulate_candidate_sets

    t0 = time.perf_counter()
    sets = list(
        simulate_candidate_sets(
            small_test_config(size), list(range(1, visits + 1)), [0], seed, cutout_size=cutout_size
        )
    )
    cands = CandidateSet.concatenate(sets)
    print(
        f"simulated {len(cands)} candidates ({int(cands.labels.sum())} real) from {visits} visits "
        f"in {time.perf_counter() - t0:.0f} s",
        file=sys.stderr,
    )
    train_idx, val_idx = split_by_group(cands.visit, (0.75, 0.25), seed=seed)
    channels = ("science", "template", "difference")
    config = TrainingConfig(
        channels=channels,
        cutout_size=cutout_size,
        epochs=epochs,
        patience=3,
        batch_size=64,
        seed=seed,
        target_purity=0.9,
        version="quick",
    )
    result = train_classifier(
        (cands.stamps[train_idx], cands.labels[train_idx].astype(np.int64)),
        (cands.stamps[val_idx], cands.labels[val_idx].astype(np.int64)),
        config,
    )
    print(
        f"trained in {time.perf_counter() - t0:.0f} s; validation AUC {result.metadata.metrics.get('auc')}",
        file=sys.stderr,
    )
    return save_model_package(out, result.module, result.metadata)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; prints one JSON report per survey and a text table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="model package (default: packaged model)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory of *_triplets_*.npz")
    parser.add_argument(
        "--train-quick",
        type=Path,
        default=None,
        metavar="OUT",
        help="first train a small model on simulated candidates, save it to OUT and use it",
    )
    parser.add_argument("--visits", type=int, default=24, help="simulated visits for --train-quick")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", type=Path, default=None, help="also write the reports to this JSON file")
    args = parser.parse_args(argv)

    from lsst.meas.realbogus.real_stamps import list_alert_stamp_files
    from lsst.meas.realbogus.scoring import load_model

    model_path = args.model
    if args.train_quick is not None:
        model_path = train_quick_model(args.train_quick, visits=args.visits)
    model = load_model(model_path, threads=args.threads)
    print(
        f"model {model.version!r} ({model_path or 'packaged default'}), channels {model.channels}, "
        f"cutout {model.cutout_size}"
    )
    reports = [evaluate_file(model, path) for path in list_alert_stamp_files(args.data)]
    for report in reports:
        print(json.dumps(report))
    print()
    print(
        f"{'survey':14s} {'N':>5s} {'NaN':>4s} {'median':>7s} {'AUC drb':>8s} {'AUC rb':>8s} "
        f"{'AUC rb*':>8s} {'rho rb':>7s}"
    )
    for r in reports:

        def auc(key: str) -> str:
            return f"{r[key]['auc']:.3f}" if key in r and np.isfinite(r[key]["auc"]) else "-"

        rho = f"{r['spearman_vs_rb']['rho']:.3f}" if "spearman_vs_rb" in r else "-"
        median = r.get("quantiles", {}).get("median", float("nan"))
        print(
            f"{r['survey']:14s} {r['n']:5d} {r['n_nan']:4d} {median:7.3f} {auc('auc_vs_drb'):>8s} "
            f"{auc('auc_vs_rb'):>8s} {auc('auc_vs_rb_loose'):>8s} {rho:>7s}"
        )
    print("AUC rb*: pseudo-labels rb > 0.65 real, rb < 0.35 bogus")
    if args.json is not None:
        args.json.write_text(json.dumps(reports, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
