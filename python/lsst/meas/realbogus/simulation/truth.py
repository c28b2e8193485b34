"""Helpers on the simulation truth catalogue."""

from __future__ import annotations

__all__ = ["AREA_ARTIFACT_TYPES", "classify_negatives"]

import numpy as np
from astropy.table import Table

AREA_ARTIFACT_TYPES = ("nan_region", "edge")
"""Artefact types whose (x, y)-(x1, y1) are the inclusive corners of a rectangle."""


def _segment_distance(
    px: np.ndarray, py: np.ndarray, ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray
) -> np.ndarray:
    """Distances (n_points, n_segments) from points to segments (degenerate segments are points)."""
    dx, dy = bx - ax, by - ay
    len2 = dx * dx + dy * dy
    t = (px[:, None] - ax[None, :]) * dx[None, :] + (py[:, None] - ay[None, :]) * dy[None, :]
    t = np.clip(np.divide(t, len2[None, :], out=np.zeros_like(t), where=len2[None, :] > 0), 0.0, 1.0)
    cx = ax[None, :] + t * dx[None, :]
    cy = ay[None, :] + t * dy[None, :]
    return np.hypot(px[:, None] - cx, py[:, None] - cy)


def _box_distance(
    px: np.ndarray, py: np.ndarray, ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray
) -> np.ndarray:
    """Distances (n_points, n_boxes) from points to filled pixel rectangles (0 inside)."""
    x0, x1 = np.minimum(ax, bx) - 0.5, np.maximum(ax, bx) + 0.5
    y0, y1 = np.minimum(ay, by) - 0.5, np.maximum(ay, by) + 0.5
    ddx = np.maximum(np.maximum(x0[None, :] - px[:, None], px[:, None] - x1[None, :]), 0.0)
    ddy = np.maximum(np.maximum(y0[None, :] - py[:, None], py[:, None] - y1[None, :]), 0.0)
    return np.hypot(ddx, ddy)


def classify_negatives(truth: Table, x: np.ndarray, y: np.ndarray, radius_pix: float) -> np.ndarray:
    """Name the artefact each (unmatched) candidate falls on.

    Parameters
    ----------
    truth : `astropy.table.Table`
        Truth catalogue with ``category``, ``type``, ``x``, ``y``, ``x1``, ``y1`` columns.
    x, y : `numpy.ndarray`
        Candidate pixel positions (candidates not matched to a transient).
    radius_pix : `float`
        Maximum distance (pixels) to an artefact point, segment (trails, columns, cosmic-ray tracks)
        or rectangle (NaN regions, edges).

    Returns
    -------
    types : `numpy.ndarray`
        String array: the type of the nearest artefact within ``radius_pix``, else ``"other"``.

    Raises
    ------
    ValueError
        Raised if columns are missing, the positions have different shapes or are not finite,
        or the radius is negative.
    """
    missing = [c for c in ("category", "type", "x", "y", "x1", "y1") if c not in truth.colnames]
    if missing:
        raise ValueError(f"Truth table lacks columns {missing}.")
    px = np.atleast_1d(np.asarray(x, dtype=np.float64))
    py = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if px.shape != py.shape or px.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays of equal length, got shapes {px.shape} and {py.shape}.")
    if not (np.all(np.isfinite(px)) and np.all(np.isfinite(py))):
        raise ValueError("Candidate positions must be finite.")
    if not np.isfinite(radius_pix) or radius_pix < 0:
        raise ValueError(f"radius_pix must be a non-negative number, got {radius_pix}.")
    out = np.full(len(px), "other", dtype="U20")
    art = truth[np.asarray(truth["category"]) == "artifact"]
    if len(art) == 0 or len(px) == 0:
        return out
    types = np.asarray(art["type"]).astype(str)
    cols = [np.asarray(art[c], dtype=np.float64) for c in ("x", "y", "x1", "y1")]
    is_area = np.isin(types, AREA_ARTIFACT_TYPES)
    dist = np.full((len(px), len(art)), np.inf)
    if (~is_area).any():
        dist[:, ~is_area] = _segment_distance(px, py, *(c[~is_area] for c in cols))
    if is_area.any():
        dist[:, is_area] = _box_distance(px, py, *(c[is_area] for c in cols))
    best = np.argmin(dist, axis=1)
    ok = dist[np.arange(len(px)), best] <= radius_pix
    out[ok] = types[best[ok]]
    return out
