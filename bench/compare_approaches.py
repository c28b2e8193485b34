#!/usr/bin/env python
r"""Compare three ways of finding transients on held-out simulated visits.

Approaches
----------
``classic_rb1``
    PSF-matched image differencing, 5σ detection (both polarities), then a
    difference-only real/bogus classifier (``--classifier1``).
``classic_rb3``
    The same candidates scored by the 3-channel (science, template, difference)
    classifier (``--classifier3``).
``transinet``
    End-to-end TransiNet: score peaks found directly on (template, science), no
    differencing (``--transinet``; default: the model shipped in the package).
``transinet_snr5``
    The TransiNet peaks whose flux estimate (science minus Gaussian-matched template,
    measured at the peak) has ``|flux / flux_err| >= 5`` (or could not be measured), i.e.
    ``TransiNetDetectTask`` with ``minFluxSnr: 5``.

Metrics (truth match within ``--match-radius`` pixels, one-to-one, nearest first):
completeness per truth |SNR| bin and for ``galaxy_nuclear`` transients separately, and
false positives (detections above threshold that match no transient) per detector.
Operating points: each method's recommended threshold, a few fixed thresholds, and
thresholds chosen so that each method's false positives per detector match those of
the 3-channel classifier at its recommended threshold.  At the matched point the number
of transients TransiNet finds that the classic 3-channel path misses (and vice versa) is
reported.

Commands
--------
Train quick classic classifiers (simulation seed 0, i.e. the training survey)::

    python bench/compare_approaches.py train-classic --out-dir /tmp/rb_quick

Evaluate on held-out visits (simulation seed 7, never used for training)::

    python bench/compare_approaches.py evaluate \
        --classifier3 /tmp/rb_quick/classifier3.safetensors \
        --classifier1 /tmp/rb_quick/classifier1.safetensors \
        --n-visits 8 --size 1024 --output-dir doc/_static --prefix transinet_compare

This writes ``<prefix>.json`` (all numbers), ``<prefix>.md`` and ``<prefix>.csv`` (the table) and
``<prefix>.png`` (completeness versus SNR at matched false positives, and
false positives per detector versus completeness).  Everything runs on one CPU
thread by default (``--threads``).

TransiNet models against the 3-channel path on the shifted surveys of ``bench_robustness.py``
(other PSF model, seeing, noise, depth, misregistration, pixel scale, star density)::

    python bench/compare_approaches.py shifted \
        --classifier3 python/lsst/meas/realbogus/data/default_model.safetensors \
        --transinet python/lsst/meas/realbogus/data/transinet_default.safetensors old.safetensors

Speed of TransiNet on one 4k x 4k detector (wall and process CPU time for 1 and 2 threads,
on ONNX Runtime; add ``--backend onnx torch`` to compare with eager PyTorch)::

    python bench/compare_approaches.py speed --size 4096 --threads 1 2
"""

from __future__ import annotations

__all__ = ["build_parser", "main", "train_classic", "evaluate", "shifted", "speed"]

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

_LOG = logging.getLogger("lsst.meas.realbogus.bench.compare")

SNR_BINS = (3.0, 5.0, 6.0, 8.0, 10.0, 20.0, 50.0, np.inf)
"""Edges of the truth |SNR| bins."""

METHODS = ("classic_rb1", "classic_rb3", "transinet", "transinet_snr5")
"""Method names, in table order."""

HELD_OUT_SEED = 7
"""Simulation seed of the held-out survey (training uses seed 0)."""


def _survey(size: int) -> Any:
    from lsst.meas.realbogus.simulation import SurveyConfig

    return dataclasses.replace(SurveyConfig(), width=size, height=size)


# -- quick classic classifiers -------------------------------------------------------------------

def train_classic(out_dir: str | Path, *, size: int = 1024, n_visits: int = 20, n_val: int = 4,
                  sim_seed: int = 0, epochs: int = 12, threads: int = 1) -> dict[str, Path]:
    """Train quick 3-channel and difference-only classifiers on simulated candidates.

    Parameters
    ----------
    out_dir : path-like
        Output directory (``classifier3.safetensors``, ``classifier1.safetensors``).
    size : `int`
        Simulated detector side in pixels.
    n_visits, n_val : `int`
        Training and validation visits (validation visits are 1000, 1001, ...).
    sim_seed : `int`
        Survey seed (must differ from the evaluation seed).
    epochs : `int`
        Maximum epochs.
    threads : `int`
        torch threads.

    Returns
    -------
    paths : `dict` [`str`, `pathlib.Path`]
        ``{"classifier3": ..., "classifier1": ...}``.
    """
    import torch
    from lsst.meas.realbogus.model_package import save_model_package
    from lsst.meas.realbogus.training import TrainingConfig, train_classifier
    from lsst.meas.realbogus.training_set import simulate_candidate_sets

    torch.set_num_threads(threads)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    survey = _survey(size)

    def gather(visits: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        sets = list(simulate_candidate_sets(survey, visits, [0], seed=sim_seed))
        stamps = np.concatenate([s.stamps for s in sets]).astype(np.float32)
        labels = np.concatenate([s.labels for s in sets]).astype(bool)
        return stamps, labels

    t0 = time.perf_counter()
    train = gather(range(n_visits))
    val = gather(range(1000, 1000 + n_val))
    _LOG.info("Candidates: %d train (%d real), %d val (%d real) in %.0f s", len(train[1]), train[1].sum(),
              len(val[1]), val[1].sum(), time.perf_counter() - t0)
    paths = {}
    for name, arch, channels, idx in (
        ("classifier3", "rb3_cnn", ("science", "template", "difference"), [0, 1, 2]),
        ("classifier1", "rb1_cnn", ("difference",), [2]),
    ):
        config = TrainingConfig(architecture=arch, channels=channels, epochs=epochs, patience=3,
                                batch_size=64, num_threads=threads, version=f"q{name[-1]}")
        result = train_classifier((train[0][:, idx], train[1]), (val[0][:, idx], val[1]), config)
        path = out / f"{name}.safetensors"
        save_model_package(path, result.module, result.metadata)
        paths[name] = path
        _LOG.info("Wrote %s (threshold %.3f)", path, float(result.metadata.threshold))
    return paths


# -- evaluation ----------------------------------------------------------------------------------

@dataclasses.dataclass
class _VisitResult:
    truth_x: np.ndarray
    truth_y: np.ndarray
    truth_snr: np.ndarray
    truth_type: np.ndarray
    detected_5sigma: np.ndarray  # per truth transient: matched by any 5σ diaSource
    candidates: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # method -> x, y, score


def _process_visit(sim: Any, classifiers: dict[str, Any], transinet: Any, match_radius: float,
                   timings: dict[str, float]) -> _VisitResult:
    from lsst.meas.realbogus.detection import detect_dia_sources
    from lsst.meas.realbogus.diffim import subtract_images
    from lsst.meas.realbogus.transinet.evaluate import match_detections

    sci, tmpl = sim.science, sim.template
    t0 = time.perf_counter()
    sub = subtract_images(sci.image, sci.variance, sci.mask, tmpl.image, tmpl.variance, tmpl.mask,
                          sim.science_psf, sim.template_psf)
    det = detect_dia_sources(sub.image, sub.variance, sub.mask, sub.psf, visit=sim.visit,
                             detector=sim.detector, wcs=sim.wcs).catalog
    t1 = time.perf_counter()
    timings["classic_diffim_detect"] += t1 - t0
    x = np.asarray(det["x"], float)
    y = np.asarray(det["y"], float)
    cands: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, model in classifiers.items():
        t = time.perf_counter()
        res = model.score(sci.image, tmpl.image, sub.image, x, y, variance=sub.variance, mask=sub.mask)
        scores = np.nan_to_num(np.asarray(res.scores, float), nan=0.0)
        cands[name] = (x, y, scores)
        timings[f"{name}_score"] += time.perf_counter() - t
    t = time.perf_counter()
    mask = sci.mask | tmpl.mask
    score_image = transinet.score_image(tmpl.image, sci.image, tmpl.variance, sci.variance, mask,
                                        science_psf_sigma=sim.science_psf_sigma,
                                        template_psf_sigma=sim.template_psf_sigma)
    peaks = transinet.detect(tmpl.image, sci.image, tmpl.variance, sci.variance, mask, threshold=0.05,
                             score=score_image, science_psf_sigma=sim.science_psf_sigma,
                             template_psf_sigma=sim.template_psf_sigma)
    timings["transinet"] += time.perf_counter() - t
    px, py = np.asarray(peaks["x"], float), np.asarray(peaks["y"], float)
    pscore = np.asarray(peaks["peak_score"], float)
    cands["transinet"] = (px, py, pscore)
    # TransiNet peaks whose flux estimate is significant (|flux / flux_err| >= 5), as the
    # classic path requires a 5 sigma detection: no differencing is needed for this cut
    # (TransiNetDetectTask's minFluxSnr).
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.abs(np.asarray(peaks["flux"], float) / np.asarray(peaks["flux_err"], float))
    sig = ~(snr < 5.0)  # peaks without a flux estimate (NaN) are kept, as minFluxSnr=5 does
    cands["transinet_snr5"] = (px[sig], py[sig], pscore[sig])
    truth = sim.truth[np.asarray(sim.truth["category"]).astype(str) == "transient"]
    tx, ty = np.asarray(truth["x"], float), np.asarray(truth["y"], float)
    detected = match_detections(x, y, tx, ty, match_radius) >= 0
    return _VisitResult(tx, ty, np.abs(np.asarray(truth["snr"], float)),
                        np.asarray(truth["type"]).astype(str),
                        detected, cands)


def _found(results: Sequence[_VisitResult], method: str, threshold: float, match_radius: float
           ) -> tuple[np.ndarray, int]:
    """Per truth transient (concatenated over visits): found at ``threshold``; and total false positives."""
    from lsst.meas.realbogus.transinet.evaluate import match_detections

    found, n_fp = [], 0
    for r in results:
        x, y, s = r.candidates[method]
        keep = s >= threshold
        match = match_detections(x[keep], y[keep], r.truth_x, r.truth_y, match_radius)
        found.append(match >= 0)
        n_fp += int(keep.sum() - (match >= 0).sum())
    return np.concatenate(found), n_fp


def _summary(results: Sequence[_VisitResult], method: str, threshold: float, match_radius: float
             ) -> dict[str, Any]:
    snr = np.concatenate([r.truth_snr for r in results])
    types = np.concatenate([r.truth_type for r in results])
    found, n_fp = _found(results, method, threshold, match_radius)
    bins = []
    for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:]):
        sel = (snr >= lo) & (snr < hi)
        bins.append({"lo": lo, "hi": hi, "n_true": int(sel.sum()), "n_found": int(found[sel].sum())})
    high = snr >= 6.0
    nuc = (types == "galaxy_nuclear") & (snr >= 6.0)
    return {
        "method": method,
        "threshold": float(threshold),
        "fp_per_detector": n_fp / len(results),
        "completeness_snr_ge_6": float(found[high].mean()) if high.any() else float("nan"),
        "n_snr_ge_6": int(high.sum()),
        "completeness_nuclear_snr_ge_6": float(found[nuc].mean()) if nuc.any() else float("nan"),
        "n_nuclear_snr_ge_6": int(nuc.sum()),
        "bins": bins,
    }


def _matched_threshold(results: Sequence[_VisitResult], method: str, fp_target: float,
                       match_radius: float) -> float:
    """Lowest threshold whose false positives per detector do not exceed ``fp_target``."""
    scores = np.unique(np.concatenate([r.candidates[method][2] for r in results]))
    lo, hi = 0, len(scores)  # binary search over candidate score values: FP decreases with threshold
    best = float(np.nextafter(scores[-1], np.inf)) if len(scores) else 1.0
    while lo < hi:
        mid = (lo + hi) // 2
        _, n_fp = _found(results, method, float(scores[mid]), match_radius)
        if n_fp / len(results) <= fp_target:
            best, hi = float(scores[mid]), mid
        else:
            lo = mid + 1
    return best


def _fmt_row(s: dict[str, Any], label: str) -> str:
    cells = [f"{b['n_found'] / b['n_true']:.2f}" if b["n_true"] else "–" for b in s["bins"]]
    nuc = s["completeness_nuclear_snr_ge_6"]
    return (f"| {label} | {s['method']} | {s['threshold']:.3f} | {s['fp_per_detector']:.2f} | "
            f"{s['completeness_snr_ge_6']:.3f} | {'–' if np.isnan(nuc) else f'{nuc:.2f}'} | "
            + " | ".join(cells) + " |")


def evaluate(*, classifier3: str, classifier1: str | None = None, transinet: str | None = None,
             size: int = 1024,
             n_visits: int = 8, sim_seed: int = HELD_OUT_SEED, first_visit: int = 5000,
             match_radius: float = 2.5, fixed_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
             output_dir: str | Path = ".", prefix: str = "transinet_compare", threads: int = 1
             ) -> dict[str, Any]:
    """Evaluate the three approaches; write ``<prefix>.json``, ``.md`` and ``.png`` in ``output_dir``.

    Without ``classifier1`` the ``classic_rb1`` method is left out.

    Returns
    -------
    report : `dict`
        Everything written to the JSON file.
    """
    import torch
    from lsst.meas.realbogus.scoring import load_model
    from lsst.meas.realbogus.simulation import simulate_visit
    from lsst.meas.realbogus.transinet.model import TransiNetModel

    torch.set_num_threads(threads)
    classifiers = {"classic_rb3": load_model(classifier3)}
    if classifier1:
        classifiers["classic_rb1"] = load_model(classifier1)
    methods = tuple(m for m in METHODS if m != "classic_rb1" or classifier1)
    if transinet:
        from lsst.meas.realbogus.model_package import read_model_package

        tn = TransiNetModel.from_package(read_model_package(Path(transinet).read_bytes()))
    else:
        tn = TransiNetModel.default()
    recommended = {"transinet": tn.threshold, "transinet_snr5": tn.threshold}
    recommended.update({name: model.threshold for name, model in classifiers.items()})
    survey = _survey(size)
    timings = {k: 0.0 for k in ("simulate", "classic_diffim_detect", "classic_rb3_score",
                                "classic_rb1_score", "transinet")}
    results = []
    for i in range(n_visits):
        t = time.perf_counter()
        sim = simulate_visit(survey, first_visit + i, 20 + i % 4, seed=sim_seed)
        timings["simulate"] += time.perf_counter() - t
        results.append(_process_visit(sim, classifiers, tn, match_radius, timings))
        _LOG.info("Visit %d/%d done (%d transients)", i + 1, n_visits, len(results[-1].truth_x))

    rows: list[tuple[str, dict[str, Any]]] = []
    for m in methods:
        rows.append(("recommended", _summary(results, m, recommended[m], match_radius)))
    # Matched operating points: every method at the false positives per detector of the 3-channel
    # classifier at its recommended threshold (the headline), and at threshold 0.5 (looser).
    fp_target = _summary(results, "classic_rb3", recommended["classic_rb3"], match_radius)["fp_per_detector"]
    matched: dict[str, float] = {}
    snr = np.concatenate([r.truth_snr for r in results])
    types = np.concatenate([r.truth_type for r in results])
    for label, rb3_threshold in (("matched FP", recommended["classic_rb3"]), ("matched FP (rb3@0.5)", 0.5)):
        target = _summary(results, "classic_rb3", rb3_threshold, match_radius)["fp_per_detector"]
        for m in methods:
            thr = (rb3_threshold if m == "classic_rb3"
                   else _matched_threshold(results, m, target, match_radius))
            if label == "matched FP":
                matched[m] = thr
            rows.append((label, _summary(results, m, thr, match_radius)))
    for thr in fixed_thresholds:
        for m in methods:
            rows.append((f"fixed {thr:g}", _summary(results, m, thr, match_radius)))

    f_rb3, _ = _found(results, "classic_rb3", matched["classic_rb3"], match_radius)
    det5 = np.concatenate([r.detected_5sigma for r in results])
    high = snr >= 6.0
    extra: dict[str, Any] = {}
    for tn_method in ("transinet", "transinet_snr5"):
        f_tn, _ = _found(results, tn_method, matched[tn_method], match_radius)
        extra[tn_method] = {
            "transinet_only": int((f_tn & ~f_rb3).sum()),
            "transinet_only_snr_ge_6": int((f_tn & ~f_rb3 & high).sum()),
            "transinet_only_not_5sigma_detected": int((f_tn & ~det5).sum()),
            "classic_rb3_only": int((f_rb3 & ~f_tn).sum()),
            "classic_rb3_only_snr_ge_6": int((f_rb3 & ~f_tn & high).sum()),
            "transinet_only_by_type": {t: int((f_tn & ~f_rb3 & (types == t)).sum())
                                       for t in np.unique(types)},
            "classic_rb3_only_by_type": {t: int((f_rb3 & ~f_tn & (types == t)).sum())
                                         for t in np.unique(types)},
        }
    header = ("| operating point | method | threshold | FP/detector | completeness SNR≥6 | "
              "galaxy_nuclear SNR≥6 | " + " | ".join(
                  f"[{lo:g},{hi:g})" for lo, hi in zip(SNR_BINS[:-1], SNR_BINS[1:])) + " |")
    sep = "|" + "---|" * (6 + len(SNR_BINS) - 1)
    n_bins = rows[0][1]["bins"]
    table = "\n".join([header, sep] + [_fmt_row(s, label) for label, s in rows] + [
        "| (truth count) | | | | " + f"{rows[0][1]['n_snr_ge_6']} | {rows[0][1]['n_nuclear_snr_ge_6']} | "
        + " | ".join(str(b["n_true"]) for b in n_bins) + " |"])
    report = {
        "config": {"size": size, "n_visits": n_visits, "sim_seed": sim_seed, "first_visit": first_visit,
                   "match_radius_pix": match_radius, "classifier3": str(classifier3),
                   "classifier1": str(classifier1) if classifier1 else None,
                   "transinet": transinet or "package default",
                   "transinet_version": tn.version, "threads": threads},
        "fp_target_per_detector": fp_target,
        "matched_thresholds": matched,
        "rows": [dict(s, operating_point=label) for label, s in rows],
        "recovered": extra,
        "seconds": timings,
        "n_transients": int(len(snr)),
        "n_5sigma_detected": int(det5.sum()),
    }
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{prefix}.json").write_text(json.dumps(report, indent=1, default=float))
    (out / f"{prefix}.md").write_text(table + "\n")
    (out / f"{prefix}.csv").write_text(_csv(rows))
    _plot(results, rows, matched, match_radius, out / f"{prefix}.png", methods)
    _LOG.info("\n%s\nrecovered: %s", table, json.dumps(extra))
    return report


def _csv(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Return the table as CSV (for ``.. csv-table::`` in the documentation)."""
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    bins = rows[0][1]["bins"]
    writer.writerow(["operating point", "method", "threshold", "FP/detector", "completeness SNR>=6",
                     "galaxy_nuclear SNR>=6"] + [f"[{b['lo']:g},{b['hi']:g})" for b in bins])
    for label, s in rows:
        nuc = s["completeness_nuclear_snr_ge_6"]
        writer.writerow([label, s["method"], f"{s['threshold']:.3f}", f"{s['fp_per_detector']:.2f}",
                         f"{s['completeness_snr_ge_6']:.3f}", "-" if np.isnan(nuc) else f"{nuc:.2f}"]
                        + [f"{b['n_found'] / b['n_true']:.2f}" if b["n_true"] else "-" for b in s["bins"]])
    writer.writerow(["(number of transients)", "", "", "", rows[0][1]["n_snr_ge_6"],
                     rows[0][1]["n_nuclear_snr_ge_6"]] + [b["n_true"] for b in bins])
    return buf.getvalue()


def _plot(results: Sequence[_VisitResult], rows: Sequence[tuple[str, dict[str, Any]]],
          matched: dict[str, float], match_radius: float, path: Path,
          methods: Sequence[str] = METHODS) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    colours = {m: f"C{i}" for i, m in enumerate(METHODS)}
    for label, s in rows:
        if not label.startswith("matched FP"):
            continue
        lo = np.array([b["lo"] for b in s["bins"]])
        hi = np.array([b["hi"] for b in s["bins"]])
        centres = np.where(np.isfinite(hi), np.sqrt(lo * np.where(np.isfinite(hi), hi, lo)), lo * 1.5)
        comp = np.array([b["n_found"] / b["n_true"] if b["n_true"] else np.nan for b in s["bins"]])
        ax1.plot(centres, comp, marker="o", color=colours[s["method"]],
                 linestyle="-" if label == "matched FP" else "--",
                 label=f"{s['method']} (t={s['threshold']:.2f}, {s['fp_per_detector']:.1f} FP/det)")
    ax1.set_xscale("log")
    ax1.set_xticks([4, 6, 10, 20, 50, 100])
    ax1.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
    ax1.minorticks_off()
    ax1.set_xlabel("truth |SNR|")
    ax1.set_ylabel("completeness")
    ax1.set_ylim(0, 1.02)
    ax1.set_title("Matched FP: rb3 at its threshold (solid), at 0.5 (dashed)", fontsize=9)
    ax1.legend(fontsize=7)
    for m in methods:
        thresholds = np.linspace(0.05, 0.98, 25)
        comp, fp = [], []
        snr = np.concatenate([r.truth_snr for r in results])
        for t in thresholds:
            found, n_fp = _found(results, m, float(t), match_radius)
            comp.append(found[snr >= 6].mean() if (snr >= 6).any() else np.nan)
            fp.append(n_fp / len(results))
        ax2.plot(fp, comp, label=m)
    ax2.set_xscale("symlog", linthresh=1.0)
    ax2.set_xlabel("false positives per detector")
    ax2.set_ylabel("completeness (SNR ≥ 6)")
    ax2.set_title("Threshold scan 0.05–0.98")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# -- speed ---------------------------------------------------------------------------------------

def speed(*, size: int = 4096, threads: Sequence[int] | int = (1, 2), repeats: int = 2,
          transinet: str | None = None, tile_size: int = 1024,
          backends: Sequence[str] = ("auto",)) -> dict[str, Any]:
    """Time `TransiNetModel.score_image` on one ``size`` x ``size`` detector.

    The inputs are a noise pair with 2000 Gaussian stars (the network's cost does not depend
    on the content, a fitted difference kernel's does a little: it is fitted on stars) with
    PSF sigmas of 2.0 (science) and 1.3 pixels (template), used by models with a
    ``"difference"`` channel.  For every backend and thread count the model is loaded (and, for ONNX Runtime,
    exported; ``setup_seconds``), warmed up on a small image, then ``score_image`` is run
    ``repeats`` times: the best wall time and the process CPU time of that run are reported
    (CPU time counts all threads), with the 1-minute load average before and after (other
    processes on the machine slow the wall time).  ``detect_*`` time what
    ``TransiNetDetectTask`` does with the pair: the fitted difference once
    (`TransiNetModel.difference_image`), the score image reusing it, and `TransiNetModel.detect`
    at threshold 0.85 with fluxes on that difference (best of ``repeats``).

    Returns
    -------
    result : `dict`
        ``size``, ``tile_size``, ``cpu_count``, ``model_version`` and ``runs``: one entry per
        (backend, threads) with ``backend`` (requested), ``backend_name`` (used),
        ``threads``, ``wall_seconds``, ``cpu_seconds``, ``detect_wall_seconds``,
        ``detect_cpu_seconds``, ``n_detections``, ``setup_seconds``, ``load_before``, ``load_after``.
    """
    import os

    import torch
    from lsst.meas.realbogus.transinet.model import TransiNetModel

    thread_counts = [threads] if isinstance(threads, int) else list(threads)
    package = None
    if transinet:
        from lsst.meas.realbogus.model_package import read_model_package

        package = read_model_package(Path(transinet).read_bytes())
    from scipy import ndimage

    rng = np.random.default_rng(0)
    points = np.zeros((size, size), dtype=np.float32)
    points[rng.integers(0, size, 2000), rng.integers(0, size, 2000)] = rng.uniform(1e3, 1e5, 2000)
    template = (100.0 + ndimage.gaussian_filter(points, 1.3) + rng.normal(0.0, 10.0, (size, size)))
    science = (100.0 + ndimage.gaussian_filter(points, 2.0) + rng.normal(0.0, 30.0, (size, size)))
    template, science = template.astype(np.float32), science.astype(np.float32)
    variance = np.full((size, size), 900.0, dtype=np.float32)
    template_variance = variance / 9.0
    small = (slice(0, 256), slice(0, 256))
    # PSF sigmas (pixels) for models with a PSF-matched difference channel (the time includes it).
    psf_sigmas = {"science_psf_sigma": 2.0, "template_psf_sigma": 1.3}
    runs = []
    version = ""
    for backend in backends:
        for n in thread_counts:
            torch.set_num_threads(n)
            t0 = time.perf_counter()
            if package is not None:
                model = TransiNetModel.from_package(package, tile_size=tile_size, backend=backend)
            else:
                model = TransiNetModel.default(tile_size=tile_size, backend=backend)
            model.score_image(template[small], science[small], template_variance[small], variance[small],
                              **psf_sigmas)
            setup = time.perf_counter() - t0
            version = model.version
            load_before = os.getloadavg()[0]
            best = (np.inf, np.inf)
            for _ in range(repeats):
                w0, c0 = time.perf_counter(), time.process_time()
                model.score_image(template, science, template_variance, variance, **psf_sigmas)
                best = min(best, (time.perf_counter() - w0, time.process_time() - c0))
            best_detect = (np.inf, np.inf)
            for _ in range(repeats):
                w0, c0 = time.perf_counter(), time.process_time()
                # detect() without a score fits the difference once and shares it, as the task does.
                found = model.detect(template, science, template_variance, variance, threshold=0.85,
                                     **psf_sigmas)
                best_detect = min(best_detect, (time.perf_counter() - w0, time.process_time() - c0))
            run = {"backend": backend, "backend_name": model.backend_name, "threads": n,
                   "wall_seconds": best[0], "cpu_seconds": best[1],
                   "detect_wall_seconds": best_detect[0], "detect_cpu_seconds": best_detect[1],
                   "n_detections": len(found), "setup_seconds": setup,
                   "load_before": load_before, "load_after": os.getloadavg()[0]}
            runs.append(run)
            _LOG.info("score_image %dx%d, backend %s (%s), %d thread(s): best wall %.2f s, CPU %.2f s "
                      "(setup %.2f s; load %.1f -> %.1f)", size, size, backend, run["backend_name"], n,
                      run["wall_seconds"], run["cpu_seconds"], setup, load_before, run["load_after"])
    result = {"size": size, "tile_size": tile_size, "repeats": repeats, "cpu_count": os.cpu_count(),
              "model_version": version, "runs": runs}
    print(f"TransiNet score_image on one {size}x{size} detector (tiles of {tile_size}, "
          f"best of {repeats}, {os.cpu_count()} CPUs):")
    print(f"{'backend':>8} {'used':>6} {'threads':>7} {'wall [s]':>9} {'CPU [s]':>8} "
          f"{'detect wall':>12} {'detect CPU':>11} {'load 1 min':>12}")
    for run in runs:
        print(f"{run['backend']:>8} {run['backend_name']:>6} {run['threads']:>7d} "
              f"{run['wall_seconds']:>9.2f} {run['cpu_seconds']:>8.2f} "
              f"{run['detect_wall_seconds']:>12.2f} {run['detect_cpu_seconds']:>11.2f} "
              f"{run['load_before']:>5.1f} -> {run['load_after']:<4.1f}")
    return result


def shifted(*, classifier3: str, transinet: Sequence[str] = (), n_visits: int = 6, size: int = 1024,
            fp_budgets: Sequence[float] = (1.0,), match_radius: float = 2.5, threads: int = 1,
            json_path: str | Path | None = None) -> dict[str, Any]:
    """Compare TransiNet models with the 3-channel path on the shifted surveys of ``bench_robustness``.

    Every variant of ``bench_robustness.VARIANTS`` (other PSF model, seeing, noise, depth,
    misregistration, pixel scale, star density; its seed, visits and sky fields, never used for
    training) is simulated on ``n_visits`` detectors of ``size`` x ``size`` pixels; each method's
    completeness for ``|SNR| >= 6`` is measured at the 3-channel classifier's false positives
    per detector at its recommended threshold and at each of ``fp_budgets``.

    Parameters
    ----------
    classifier3 : `str`
        3-channel classifier package.
    transinet : sequence of `str`
        TransiNet packages (empty: the shipped model).
    n_visits, size : `int`
        Visits per variant and detector side.
    fp_budgets : sequence of `float`
        Further false positives per detector to compare at.
    match_radius : `float`
        Truth match radius in pixels.
    threads : `int`
        torch threads.
    json_path : path-like, optional
        Write the result here.

    Returns
    -------
    result : `dict`
        Per variant: ``n_snr_ge_6``, ``rb3_fp_per_detector`` and ``points``, one per operating
        point (``operating_point``, ``fp_per_detector``), with the completeness of
        ``classic_rb3`` and of ``transinet`` / ``transinet_snr5`` for every model.
    """
    import sys

    import torch
    from lsst.meas.realbogus.model_package import read_model_package
    from lsst.meas.realbogus.scoring import load_model
    from lsst.meas.realbogus.simulation import SurveyConfig, simulate_visit
    from lsst.meas.realbogus.transinet.model import TransiNetModel

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_robustness

    torch.set_num_threads(threads)
    rb3 = {"classic_rb3": load_model(classifier3)}
    models = {}
    for path in transinet or [None]:
        model = (TransiNetModel.default() if path is None
                 else TransiNetModel.from_package(read_model_package(Path(path).read_bytes())))
        models[model.version if model.version not in models else str(path)] = model
    out: dict[str, Any] = {"n_visits": n_visits, "size": size, "models": list(models), "variants": {}}
    timings = {k: 0.0 for k in ("classic_diffim_detect", "classic_rb3_score", "transinet")}
    for k, (name, overrides) in enumerate(bench_robustness.VARIANTS.items()):
        survey = dataclasses.replace(SurveyConfig(), width=size, height=size, **overrides)
        results: dict[str, list[_VisitResult]] = {v: [] for v in models}
        for i in range(n_visits):
            sim = simulate_visit(survey, bench_robustness.FIRST_VISIT + 1000 * k + i,
                                 bench_robustness.FIRST_DETECTOR + i, seed=bench_robustness.SEED)
            classic = None
            for version, model in models.items():
                r = _process_visit(sim, rb3 if classic is None else {}, model, match_radius, timings)
                if classic is None:  # the classic path is scored once, with the first model's visit
                    classic = r.candidates["classic_rb3"]
                r.candidates["classic_rb3"] = classic
                results[version].append(r)
        first = next(iter(results.values()))
        rec = _summary(first, "classic_rb3", rb3["classic_rb3"].threshold, match_radius)
        row: dict[str, Any] = {"n_snr_ge_6": rec["n_snr_ge_6"], "rb3_fp_per_detector": rec["fp_per_detector"],
                               "points": []}
        budgets = [("classic_rb3 threshold", rec["fp_per_detector"])] + [(f"{b:g} FP", b) for b in fp_budgets]
        for label, budget in budgets:
            rb3_thr = (rb3["classic_rb3"].threshold if label == "classic_rb3 threshold"
                       else _matched_threshold(first, "classic_rb3", budget, match_radius))
            rb3_summary = _summary(first, "classic_rb3", rb3_thr, match_radius)
            point = {"operating_point": label, "fp_per_detector": budget,
                     "classic_rb3": rb3_summary["completeness_snr_ge_6"]}
            for version in models:
                for method in ("transinet", "transinet_snr5"):
                    thr = _matched_threshold(results[version], method, budget, match_radius)
                    point[f"{version} {method}"] = _summary(results[version], method, thr,
                                                            match_radius)["completeness_snr_ge_6"]
            row["points"].append(point)
        out["variants"][name] = row
        _LOG.info("%s: %s", name, json.dumps(row))
    columns = ["classic_rb3"] + [f"{v} {m}" for v in models for m in ("transinet", "transinet_snr5")]
    print(f"Completeness |SNR| >= 6 at matched FP per detector ({n_visits} visits of {size}^2 per variant)")
    print(f"{'variant':<26} {'n':>4} {'FP/det':>7} " + " ".join(f"{c:>22}" for c in columns))
    for name, row in out["variants"].items():
        for point in row["points"]:
            print(f"{name:<26} {row['n_snr_ge_6']:>4} {point['fp_per_detector']:>7.3f} "
                  + " ".join(f"{point[c]:>22.3f}" for c in columns))
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=1))
    return out


# -- command line --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train-classic", help="Train quick 3-channel and difference-only classifiers.")
    t.add_argument("--out-dir", required=True)
    t.add_argument("--size", type=int, default=1024)
    t.add_argument("--n-visits", type=int, default=20)
    t.add_argument("--n-val", type=int, default=4)
    t.add_argument("--sim-seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=12)
    t.add_argument("--threads", type=int, default=1)
    e = sub.add_parser("evaluate", help="Evaluate the three approaches on held-out visits.")
    e.add_argument("--classifier3", required=True, help="3-channel classifier package.")
    e.add_argument("--classifier1", default=None,
                   help="Difference-only classifier package (optional: without it classic_rb1 is left out).")
    e.add_argument("--transinet", default=None, help="TransiNet package (default: shipped model).")
    e.add_argument("--size", type=int, default=1024)
    e.add_argument("--n-visits", type=int, default=8)
    e.add_argument("--sim-seed", type=int, default=HELD_OUT_SEED)
    e.add_argument("--first-visit", type=int, default=5000)
    e.add_argument("--match-radius", type=float, default=2.5, help="Truth match radius in pixels.")
    e.add_argument("--fixed-thresholds", type=float, nargs="*", default=[0.3, 0.5, 0.7])
    e.add_argument("--output-dir", default=".")
    e.add_argument("--prefix", default="transinet_compare")
    e.add_argument("--threads", type=int, default=1)
    sh = sub.add_parser("shifted", help="TransiNet models against the 3-channel path on shifted surveys.")
    sh.add_argument("--classifier3", required=True, help="3-channel classifier package.")
    sh.add_argument("--transinet", nargs="*", default=[], help="TransiNet packages (default: shipped model).")
    sh.add_argument("--n-visits", type=int, default=6)
    sh.add_argument("--size", type=int, default=1024)
    sh.add_argument("--fp-budgets", type=float, nargs="*", default=[1.0],
                    help="Further false positives per detector to compare at.")
    sh.add_argument("--threads", type=int, default=1)
    sh.add_argument("--json", default=None, help="Write the result here.")
    sp = sub.add_parser("speed", help="Time TransiNet score_image on one 4k x 4k detector.")
    sp.add_argument("--size", type=int, default=4096)
    sp.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                    help="Thread counts to time (default: 1 2).")
    sp.add_argument("--backend", nargs="+", default=["auto"], choices=["auto", "onnx", "torch"],
                    help="TransiNetModel backends to time (default: auto, i.e. ONNX Runtime if available).")
    sp.add_argument("--repeats", type=int, default=2)
    sp.add_argument("--tile-size", type=int, default=1024)
    sp.add_argument("--transinet", default=None, help="TransiNet package (default: shipped model).")
    sp.add_argument("--json", default=None, help="Write the result here.")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.command == "speed":
        result = speed(size=args.size, threads=args.threads, repeats=args.repeats, transinet=args.transinet,
                       tile_size=args.tile_size, backends=args.backend)
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1))
    elif args.command == "shifted":
        shifted(classifier3=args.classifier3, transinet=args.transinet, n_visits=args.n_visits,
                size=args.size, fp_budgets=args.fp_budgets, threads=args.threads, json_path=args.json)
    elif args.command == "train-classic":
        train_classic(args.out_dir, size=args.size, n_visits=args.n_visits, n_val=args.n_val,
                      sim_seed=args.sim_seed, epochs=args.epochs, threads=args.threads)
    else:
        if args.sim_seed == 0:
            _LOG.warning("Simulation seed 0 is the training survey: results are not held out.")
        evaluate(classifier3=args.classifier3, classifier1=args.classifier1, transinet=args.transinet,
                 size=args.size, n_visits=args.n_visits, sim_seed=args.sim_seed,
                 first_visit=args.first_visit, match_radius=args.match_radius,
                 fixed_thresholds=args.fixed_thresholds, output_dir=args.output_dir, prefix=args.prefix,
                 threads=args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
