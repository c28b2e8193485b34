"""Evaluate TransiNet detections against a truth catalogue (pixel-space matching)."""

from __future__ import annotations

__all__ = ["match_detections", "evaluate_detections", "threshold_scan", "matched_operating_point",
           "DEFAULT_SNR_BINS", "REFERENCE_AREA"]

from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

DEFAULT_SNR_BINS = (0.0, 3.0, 5.0, 7.0, 10.0, 20.0, 50.0, np.inf)
"""Bin edges in ``abs(truth snr)`` for completeness."""

REFERENCE_AREA = 1024 * 1024
"""Detector area (pixels) that `threshold_scan` expresses false positives per detector in."""


def match_detections(det_x: np.ndarray, det_y: np.ndarray, true_x: np.ndarray, true_y: np.ndarray,
                     radius: float) -> np.ndarray:
    """Match detections to true positions one-to-one, nearest pairs first.

    Returns
    -------
    match : `numpy.ndarray`
        For each true position, the index of its detection or -1.
    """
    det = np.column_stack([np.asarray(det_x, float), np.asarray(det_y, float)]).reshape(-1, 2)
    tru = np.column_stack([np.asarray(true_x, float), np.asarray(true_y, float)]).reshape(-1, 2)
    match = np.full(len(tru), -1, dtype=np.int64)
    if len(det) == 0 or len(tru) == 0:
        return match
    pairs = cKDTree(tru).sparse_distance_matrix(cKDTree(det), radius, output_type="ndarray")
    used = np.zeros(len(det), dtype=bool)
    for row in pairs[np.argsort(pairs["v"], kind="stable")]:
        i, j = int(row["i"]), int(row["j"])
        if match[i] < 0 and not used[j]:
            match[i] = j
            used[j] = True
    return match


def evaluate_detections(
    detections: Sequence[Table],
    truths: Sequence[Table],
    *,
    match_radius: float = 2.0,
    snr_bins: Sequence[float] = DEFAULT_SNR_BINS,
) -> dict[str, Any]:
    """Completeness versus truth SNR and false positives per detector.

    Parameters
    ----------
    detections : `~collections.abc.Sequence` [`astropy.table.Table`]
        Per-detector detection tables with ``x``, ``y``.
    truths : `~collections.abc.Sequence` [`astropy.table.Table`]
        Matching truth catalogues (``x``, ``y``, ``category``, ``snr``, ``type``).
    match_radius : `float`
        Matching radius in pixels.
    snr_bins : `~collections.abc.Sequence` [`float`]
        Bin edges in ``abs(snr)``.

    Returns
    -------
    summary : `dict`
        ``completeness`` (list of per-bin dicts ``lo``, ``hi``, ``n_true``,
        ``n_found``, ``completeness``), ``n_detections``, ``n_true_positives``,
        ``false_positives_per_detector``, ``false_positives_at_artifacts_per_detector``
        and ``n_detectors``.
    """
    if len(detections) != len(truths):
        raise ValueError(f"Got {len(detections)} detection tables but {len(truths)} truth tables.")
    if len(truths) == 0:
        raise ValueError("Nothing to evaluate.")
    edges = np.asarray(snr_bins, dtype=float)
    all_snr, all_found = [], []
    n_det = n_tp = n_fp = n_fp_art = 0
    for det, truth in zip(detections, truths):
        cat = np.asarray(truth["category"]).astype(str)
        tr = truth[cat == "transient"]
        art = truth[cat == "artifact"]
        match = match_detections(det["x"], det["y"], tr["x"], tr["y"], match_radius)
        all_snr.append(np.abs(np.asarray(tr["snr"], float)))
        all_found.append(match >= 0)
        n_det += len(det)
        n_tp += int(np.sum(match >= 0))
        unmatched = np.ones(len(det), dtype=bool)
        unmatched[match[match >= 0]] = False
        n_fp += int(unmatched.sum())
        if len(art) and unmatched.any():
            dist, _ = cKDTree(np.column_stack([art["x"], art["y"]])).query(
                np.column_stack([np.asarray(det["x"])[unmatched], np.asarray(det["y"])[unmatched]]))
            n_fp_art += int(np.sum(dist <= 3 * match_radius))
    snr = np.concatenate(all_snr) if all_snr else np.zeros(0)
    found = np.concatenate(all_found) if all_found else np.zeros(0, bool)
    bins = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (snr >= lo) & (snr < hi)
        n = int(sel.sum())
        bins.append({"lo": float(lo), "hi": float(hi), "n_true": n, "n_found": int(found[sel].sum()),
                     "completeness": float(found[sel].mean()) if n else float("nan")})
    n_detectors = len(truths)
    return {
        "completeness": bins,
        "n_detections": n_det,
        "n_true_positives": n_tp,
        "n_true": int(snr.size),
        "false_positives_per_detector": n_fp / n_detectors,
        "false_positives_at_artifacts_per_detector": n_fp_art / n_detectors,
        "n_detectors": n_detectors,
    }


def threshold_scan(
    detections: Sequence[Table],
    truths: Sequence[Table],
    thresholds: Sequence[float],
    *,
    match_radius: float = 2.5,
    min_snr: float = 6.0,
    reference_area: int = REFERENCE_AREA,
) -> list[dict[str, float]]:
    """Completeness and false positives of thresholded detections, for many thresholds.

    Parameters
    ----------
    detections : `~collections.abc.Sequence` [`astropy.table.Table`]
        Per-detector detections with ``x``, ``y`` and ``peak_score``, found at a
        threshold at most ``min(thresholds)`` (e.g. `TransiNetModel.detect`
        with a low threshold); detections below each threshold are dropped.
    truths : `~collections.abc.Sequence` [`astropy.table.Table`]
        Matching truth catalogues; each must carry ``meta["area"]``, the
        detector area in pixels, or all are taken to be ``reference_area``.
    thresholds : `~collections.abc.Sequence` [`float`]
        Score thresholds.
    match_radius : `float`
        Matching radius in pixels (one-to-one, nearest first, at each threshold).
    min_snr : `float`
        Completeness is over the transients with ``abs(snr) >= min_snr``.
    reference_area : `int`
        False positives are counted per detector of this many pixels.

    Returns
    -------
    scan : `list` [`dict`]
        One entry per threshold: ``threshold``, ``completeness`` (of the bright
        transients), ``n_found``, ``n_true``, ``n_fp`` and ``fp_per_detector``
        (per ``reference_area`` pixels).

    Raises
    ------
    ValueError
        Raised for mismatched inputs or no detectors.
    """
    if len(detections) != len(truths):
        raise ValueError(f"Got {len(detections)} detection tables but {len(truths)} truth tables.")
    if len(truths) == 0:
        raise ValueError("Nothing to evaluate.")
    area = float(sum(float(t.meta.get("area", reference_area)) for t in truths))
    bright_sets = []
    for truth in truths:
        cat = np.asarray(truth["category"]).astype(str)
        tr = truth[cat == "transient"]
        bright_sets.append((tr, np.abs(np.asarray(tr["snr"], float)) >= min_snr))
    n_true = int(sum(int(b.sum()) for _, b in bright_sets))
    scan = []
    for thr in thresholds:
        n_found = n_fp = 0
        for det, (tr, bright) in zip(detections, bright_sets):
            keep = np.asarray(det["peak_score"], float) >= thr
            match = match_detections(np.asarray(det["x"])[keep], np.asarray(det["y"])[keep], tr["x"], tr["y"],
                                     match_radius)
            n_found += int(np.sum((match >= 0) & bright))
            n_fp += int(keep.sum() - np.sum(match >= 0))
        scan.append({"threshold": float(thr), "n_found": n_found, "n_true": n_true,
                     "completeness": n_found / n_true if n_true else float("nan"), "n_fp": n_fp,
                     "fp_per_detector": n_fp * reference_area / area})
    return scan


def matched_operating_point(scan: Sequence[dict[str, float]], fp_per_detector: float) -> dict[str, float]:
    """Return the `threshold_scan` entry of the lowest threshold within a false-positive budget.

    Parameters
    ----------
    scan : `~collections.abc.Sequence` [`dict`]
        Output of `threshold_scan`.
    fp_per_detector : `float`
        Largest allowed false positives per reference detector.

    Returns
    -------
    entry : `dict`
        The entry (the highest threshold of the scan if none is within the budget).

    Raises
    ------
    ValueError
        Raised for an empty scan.
    """
    if not scan:
        raise ValueError("Empty threshold scan.")
    ordered = sorted(scan, key=lambda e: e["threshold"])
    for entry in ordered:
        if entry["fp_per_detector"] <= fp_per_detector:
            return dict(entry)
    return dict(ordered[-1])
