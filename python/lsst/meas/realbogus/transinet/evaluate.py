"""Evaluate TransiNet detections against a truth catalogue (pixel-space matching)."""

from __future__ import annotations

__all__ = ["match_detections", "evaluate_detections", "DEFAULT_SNR_BINS"]

from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree

DEFAULT_SNR_BINS = (0.0, 3.0, 5.0, 7.0, 10.0, 20.0, 50.0, np.inf)
"""Bin edges in ``abs(truth snr)`` for completeness."""


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
