"""Small, fast synthetic (template, science) pairs for TransiNet tests and smoke runs.

This is *not* the survey simulator (`lsst.meas.realbogus.simulation`); it renders
Gaussian-PSF stars and transients with numpy only, plus a few artefacts (cosmic
rays, hot pixels) and an optional NaN region, and returns an object with the same
attributes as a ``SimulatedVisit`` (``science``/``template`` plane sets with
``image``, ``variance``, ``mask``; ``science_psf_sigma``, ``template_psf_sigma``,
``wcs``, ``truth``) so that TransiNet code can be exercised without it.
"""

from __future__ import annotations

__all__ = ["SyntheticPlanes", "SyntheticPair", "make_synthetic_pair"]

import dataclasses

import numpy as np
from astropy.table import Table

from ..mask_planes import BAD, CR, NO_DATA


@dataclasses.dataclass
class SyntheticPlanes:
    """Image, variance and mask planes of one synthetic exposure."""

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray


@dataclasses.dataclass
class SyntheticPair:
    """A synthetic (template, science) pair with its truth catalogue."""

    science: SyntheticPlanes
    template: SyntheticPlanes
    science_psf_sigma: float
    template_psf_sigma: float
    truth: Table
    wcs: object | None = None


def _add_gaussian(image: np.ndarray, x: float, y: float, flux: float, sigma: float) -> None:
    rad = int(np.ceil(5 * sigma))
    x0, y0 = int(round(x)), int(round(y))
    ylo, yhi = max(y0 - rad, 0), min(y0 + rad + 1, image.shape[0])
    xlo, xhi = max(x0 - rad, 0), min(x0 + rad + 1, image.shape[1])
    if ylo >= yhi or xlo >= xhi:
        return
    yy, xx = np.mgrid[ylo:yhi, xlo:xhi]
    image[ylo:yhi, xlo:xhi] += flux / (2 * np.pi * sigma**2) * np.exp(
        -0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / sigma**2
    )


def make_synthetic_pair(
    shape: tuple[int, int] = (128, 128),
    *,
    seed: int = 0,
    n_stars: int = 20,
    n_transients: int = 5,
    n_cosmic_rays: int = 3,
    n_hot_pixels: int = 2,
    science_psf_sigma: float = 1.7,
    template_psf_sigma: float = 1.3,
    sky_sigma: float = 10.0,
    template_sky_sigma: float = 5.0,
    snr_range: tuple[float, float] = (5.0, 40.0),
    nan_box: tuple[int, int, int, int] | None = None,
    edge_margin: int = 5,
) -> SyntheticPair:
    """Render a synthetic (template, science) pair.

    Parameters
    ----------
    shape : `tuple` [`int`, `int`]
        Image shape ``(H, W)``.
    seed : `int`
        Random seed (the output is a deterministic function of all arguments).
    n_stars, n_transients, n_cosmic_rays, n_hot_pixels : `int`
        Numbers of static stars (in both images), transients (science only, truth
        category ``"transient"``), cosmic rays and hot pixels (science only,
        category ``"artifact"``).
    science_psf_sigma, template_psf_sigma : `float`
        Gaussian PSF sigmas in pixels.
    sky_sigma, template_sky_sigma : `float`
        Per-pixel noise sigmas (nJy).
    snr_range : `tuple` [`float`, `float`]
        Range of PSF-optimal transient SNRs in the science image (log-uniform).
    nan_box : `tuple` [`int`, `int`, `int`, `int`], optional
        ``(y0, y1, x0, x1)`` region set to NaN with ``NO_DATA`` in both images.
    edge_margin : `int`
        Transients are placed at least this far from the image edge.

    Returns
    -------
    pair : `SyntheticPair`
        The rendered pair.
    """
    height, width = shape
    if height < 2 * edge_margin + 2 or width < 2 * edge_margin + 2:
        raise ValueError(f"shape {shape} too small for edge_margin={edge_margin}.")
    rng = np.random.default_rng(seed)
    sci = np.zeros(shape)
    tmpl = np.zeros(shape)
    for _ in range(n_stars):
        x, y = rng.uniform(0, width - 1), rng.uniform(0, height - 1)
        flux = sky_sigma * 10 ** rng.uniform(1.5, 3.5)
        _add_gaussian(sci, x, y, flux, science_psf_sigma)
        _add_gaussian(tmpl, x, y, flux, template_psf_sigma)
    rows: list[tuple] = []
    # PSF-optimal SNR of a Gaussian PSF on white noise: flux / (sky_sigma * sqrt(4 pi) * sigma).
    noise_equiv = sky_sigma * np.sqrt(4 * np.pi) * science_psf_sigma
    for _ in range(n_transients):
        x = rng.uniform(edge_margin, width - 1 - edge_margin)
        y = rng.uniform(edge_margin, height - 1 - edge_margin)
        snr = float(np.exp(rng.uniform(np.log(snr_range[0]), np.log(snr_range[1]))))
        flux = snr * noise_equiv
        _add_gaussian(sci, x, y, flux, science_psf_sigma)
        rows.append((x, y, "transient", "hostless", flux, snr, x, y))
    sci_mask = np.zeros(shape, dtype=np.int32)
    for _ in range(n_cosmic_rays):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = min(x + int(rng.integers(0, 3)), width - 1)
        sci[y, x:x1 + 1] += sky_sigma * rng.uniform(20, 60)
        rows.append((float(x), float(y), "artifact", "cosmic_ray", 0.0, 0.0, float(x1), float(y)))
    for _ in range(n_hot_pixels):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        sci[y, x] += sky_sigma * rng.uniform(10, 40)
        sci_mask[y, x] |= BAD
        rows.append((float(x), float(y), "artifact", "hot_pixel", 0.0, 0.0, float(x), float(y)))
    sci += rng.normal(0, sky_sigma, shape)
    tmpl += rng.normal(0, template_sky_sigma, shape)
    sci_var = np.full(shape, sky_sigma**2)
    tmpl_var = np.full(shape, template_sky_sigma**2)
    tmpl_mask = np.zeros(shape, dtype=np.int32)
    if nan_box is not None:
        y0, y1, x0, x1 = nan_box
        for img, msk in ((sci, sci_mask), (tmpl, tmpl_mask)):
            img[y0:y1, x0:x1] = np.nan
            msk[y0:y1, x0:x1] |= NO_DATA
    for row in rows:
        if row[3] == "cosmic_ray":
            sci_mask[int(row[1]), int(row[0]):int(row[6]) + 1] |= CR if rng.uniform() < 0.5 else 0
    names = ("x", "y", "category", "type", "flux", "snr", "x1", "y1")
    if rows:
        truth = Table(rows=rows, names=names)
    else:
        truth = Table(names=names, dtype=(float, float, str, str, float, float, float, float))
    truth["id"] = np.arange(len(truth), dtype=np.int64)
    return SyntheticPair(
        science=SyntheticPlanes(sci, sci_var, sci_mask),
        template=SyntheticPlanes(tmpl, tmpl_var, tmpl_mask),
        science_psf_sigma=science_psf_sigma,
        template_psf_sigma=template_psf_sigma,
        truth=truth,
    )
