"""One-to-one nearest matching of candidates to truth, and training labels.

Labelling rule (see DESIGN.md): a candidate is **positive if and only if** it
is matched, one-to-one and nearest first, to a truth row with
``category == "transient"`` within the match radius.  Artefact rows are not
used for matching, so a candidate near both an artefact and a transient can
still be positive, and a candidate near only an artefact is negative.
"""

from __future__ import annotations

__all__ = ["MatchResult", "match_candidates", "label_candidates"]

from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from scipy.spatial import cKDTree


@dataclass
class MatchResult:
    """Result of `match_candidates`.

    Attributes
    ----------
    truth_index : `numpy.ndarray`
        ``(N,)`` int64 index of the matched truth row per candidate, −1 where
        unmatched.
    distance : `numpy.ndarray`
        ``(N,)`` float64 distance to the matched truth row, NaN where
        unmatched.
    """

    truth_index: np.ndarray
    distance: np.ndarray

    @property
    def matched(self) -> np.ndarray:
        """Boolean array, True for matched candidates."""
        return self.truth_index >= 0


def _as_coords(x: np.ndarray, y: np.ndarray, what: str) -> np.ndarray:
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"{what} x and y must be 1-D arrays of one length; got {x.shape} and {y.shape}")
    return np.column_stack([x, y]) if x.size else np.empty((0, 2))


def match_candidates(
    cand_x: np.ndarray,
    cand_y: np.ndarray,
    truth_x: np.ndarray,
    truth_y: np.ndarray,
    radius: float,
) -> MatchResult:
    """Match candidates to truth positions one-to-one, nearest pairs first.

    All candidate–truth pairs closer than ``radius`` are sorted by distance
    (ties broken by candidate then truth index) and accepted greedily when
    neither member is already matched.  Coordinates may be in any consistent
    unit; non-finite positions never match.

    Parameters
    ----------
    cand_x, cand_y : `numpy.ndarray`
        ``(N,)`` candidate positions.
    truth_x, truth_y : `numpy.ndarray`
        ``(M,)`` truth positions.
    radius : `float`
        Maximum match distance (inclusive), same unit.

    Returns
    -------
    result : `MatchResult`
        Truth index and distance per candidate.

    Raises
    ------
    ValueError
        Raised for mismatched array shapes or a negative or non-finite radius.
    """
    if not np.isfinite(radius) or radius < 0:
        raise ValueError(f"Match radius must be a finite non-negative number, got {radius!r}")
    cand = _as_coords(cand_x, cand_y, "candidate")
    truth = _as_coords(truth_x, truth_y, "truth")
    n = cand.shape[0]
    truth_index = np.full(n, -1, dtype=np.int64)
    distance = np.full(n, np.nan)
    cgood = np.flatnonzero(np.isfinite(cand).all(axis=1))
    tgood = np.flatnonzero(np.isfinite(truth).all(axis=1))
    if cgood.size == 0 or tgood.size == 0:
        return MatchResult(truth_index, distance)
    ctree = cKDTree(cand[cgood])
    ttree = cKDTree(truth[tgood])
    pairs = ctree.sparse_distance_matrix(ttree, float(radius), output_type="ndarray")
    if pairs.size == 0:
        return MatchResult(truth_index, distance)
    ci = cgood[pairs["i"]]
    ti = tgood[pairs["j"]]
    dist = pairs["v"].astype(np.float64)
    order = np.lexsort((ti, ci, dist))
    truth_used = np.zeros(truth.shape[0], dtype=bool)
    # Greedy acceptance is inherently sequential, but only over pairs within the radius.
    for k in order:
        c, t = ci[k], ti[k]
        if truth_index[c] < 0 and not truth_used[t]:
            truth_index[c] = t
            distance[c] = dist[k]
            truth_used[t] = True
    return MatchResult(truth_index, distance)


def label_candidates(
    cand_x: np.ndarray,
    cand_y: np.ndarray,
    truth: Table,
    radius_pix: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Label candidates as real (True) or bogus (False) from a truth table.

    Parameters
    ----------
    cand_x, cand_y : `numpy.ndarray`
        ``(N,)`` candidate pixel positions.
    truth : `astropy.table.Table`
        Truth catalogue with at least ``x``, ``y`` and ``category`` columns.
    radius_pix : `float`
        Match radius in pixels.

    Returns
    -------
    labels : `numpy.ndarray`
        ``(N,)`` bool, True iff the candidate matched a transient.
    truth_index : `numpy.ndarray`
        ``(N,)`` int64 row index into ``truth`` of the matched transient, −1
        if none.

    Raises
    ------
    ValueError
        Raised if a required column is missing.
    """
    missing = [c for c in ("x", "y", "category") if c not in truth.colnames]
    if missing:
        raise ValueError(f"Truth table lacks columns {missing}; it has {truth.colnames}")
    category = np.asarray(truth["category"]).astype(str)
    rows = np.flatnonzero(category == "transient")
    result = match_candidates(
        cand_x,
        cand_y,
        np.asarray(truth["x"], dtype=np.float64)[rows],
        np.asarray(truth["y"], dtype=np.float64)[rows],
        radius_pix,
    )
    matched = result.truth_index >= 0
    truth_index = np.full(matched.shape, -1, dtype=np.int64)
    truth_index[matched] = rows[result.truth_index[matched]]
    return matched, truth_index
