"""Selection of bright, isolated stars for kernel fitting."""

from __future__ import annotations

__all__ = ["select_stamp_stars"]

import numpy as np
from scipy import ndimage


def select_stamp_stars(
    image: np.ndarray,
    variance: np.ndarray,
    bad: np.ndarray,
    sigma: float,
    half_window: int,
    *,
    n_stamps: int = 100,
    grid: int = 4,
    snr_min: float = 30.0,
    core_half_width: int = 2,
    isolation_half_width: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Find bright, isolated, unmasked peaks to centre kernel-fitting stamps on.

    Peaks are local maxima of the image smoothed by a Gaussian of width ``sigma`` that are the
    brightest point within ``isolation_half_width`` pixels, lie at least ``half_window`` from the border,
    have no bad pixel in their core and a smoothed signal-to-noise above ``snr_min``.  The
    brightest peaks of each cell of a ``grid × grid`` division of the detector are taken first,
    so that the stamps cover the detector; remaining slots go to the brightest others.

    Parameters
    ----------
    image, variance : `numpy.ndarray`
        Image (normally the deeper template) and its variance.
    bad : `numpy.ndarray` of `bool`
        Pixels unusable in either image (masked, NaN).
    sigma : `float`
        Gaussian-equivalent PSF sigma of ``image`` in pixels.
    half_window : `int`
        Half size of the region the fit needs around each star (stamp plus kernel).
    n_stamps : `int`, optional
        Maximum number of stars returned.
    grid : `int`, optional
        Detector cells per side used to spread the stars.
    snr_min : `float`, optional
        Minimum smoothed peak signal-to-noise.
    core_half_width : `int`, optional
        Half size of the core box that must be free of bad pixels.
    isolation_half_width : `int`, optional
        Half size of the box in which the star must be the brightest peak; defaults to
        ``half_window``.

    Returns
    -------
    y, x : `numpy.ndarray` of `int`
        Star positions (pixel indices), brightest first within the selection order.
    """
    ny, nx = image.shape
    good = ~bad & np.isfinite(image) & np.isfinite(variance) & (variance > 0)
    if not np.any(good):
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    clean = np.where(good, image, 0.0)
    smooth = ndimage.gaussian_filter(clean, max(sigma, 0.5), mode="constant")
    pixel_sigma = float(np.sqrt(np.median(variance[good])))
    smooth_noise = pixel_sigma / (2.0 * np.sqrt(np.pi) * max(sigma, 0.5))
    iso = half_window if isolation_half_width is None else isolation_half_width
    size = 2 * iso + 1
    local_max = smooth == ndimage.maximum_filter(smooth, size=size, mode="constant", cval=-np.inf)
    core_bad = ndimage.maximum_filter((~good).astype(np.uint8), size=2 * core_half_width + 1) > 0
    candidate = local_max & ~core_bad & (smooth > snr_min * smooth_noise)
    candidate[:half_window, :] = False
    candidate[ny - half_window :, :] = False
    candidate[:, :half_window] = False
    candidate[:, nx - half_window :] = False
    ys, xs = np.nonzero(candidate)
    if ys.size == 0:
        return ys, xs
    order = np.argsort(-smooth[ys, xs], kind="stable")
    ys, xs = ys[order], xs[order]
    cell = (ys * grid // ny) * grid + (xs * grid // nx)
    per_cell = max(1, int(np.ceil(n_stamps / grid**2)))
    rank_in_cell = np.zeros(ys.size, dtype=int)
    counts: dict[int, int] = {}
    for k, c in enumerate(cell):
        rank_in_cell[k] = counts.get(int(c), 0)
        counts[int(c)] = rank_in_cell[k] + 1
    first = np.nonzero(rank_in_cell < per_cell)[0]
    rest = np.nonzero(rank_in_cell >= per_cell)[0]
    chosen = np.concatenate([first, rest])[:n_stamps]
    return ys[chosen], xs[chosen]
