"""Synthetic images for the differencing and detection tests.

This module holds no tests.
"""

from __future__ import annotations

__all__ = ["render_point_sources"]

from collections.abc import Sequence

import numpy as np
from scipy.special import erf


def render_point_sources(
    shape: tuple[int, int],
    xs: Sequence[float] | np.ndarray,
    ys: Sequence[float] | np.ndarray,
    fluxes: Sequence[float] | np.ndarray,
    sigmas: float | Sequence[float] | np.ndarray,
) -> np.ndarray:
    """Render pixel-integrated circular Gaussian point sources.

    Parameters
    ----------
    shape : `tuple` [`int`, `int`]
        Image shape ``(height, width)``.
    xs, ys : array-like
        Source centres, 0-based pixel coordinates (pixel centres at integers).
    fluxes : array-like
        Total flux of each source.
    sigmas : `float` or array-like
        Gaussian sigma in pixels, one for all sources or one per source.

    Returns
    -------
    image : `numpy.ndarray`
        ``shape`` float64 image; each source is integrated exactly over the pixels within
        ``ceil(6 sigma)`` of its centre.
    """
    img = np.zeros(shape)
    sigmas = np.broadcast_to(np.asarray(sigmas, dtype=float), np.shape(xs))
    for x, y, f, s in zip(xs, ys, fluxes, sigmas):
        half = int(np.ceil(6 * s))
        ix, iy = int(round(x)), int(round(y))
        x0, x1 = max(ix - half, 0), min(ix + half + 1, shape[1])
        y0, y1 = max(iy - half, 0), min(iy + half + 1, shape[0])
        px = np.diff(erf((np.arange(x0, x1 + 1) - 0.5 - x) / (np.sqrt(2) * s))) / 2
        py = np.diff(erf((np.arange(y0, y1 + 1) - 0.5 - y) / (np.sqrt(2) * s))) / 2
        img[y0:y1, x0:x1] += f * np.outer(py, px)
    return img
