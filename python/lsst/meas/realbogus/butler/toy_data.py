"""Tiny analytic stand-ins for simulated visits, for Butler and task tests.

`make_toy_visit` returns an object with the attributes of
`lsst.meas.realbogus.simulation.SimulatedVisit` that the Butler layer uses (science and
template plane sets, PSF sigmas and kernels, WCS, truth table, metadata), built from Gaussian
stars in a fraction of a second, without galsim.
"""

from __future__ import annotations

__all__ = ["ToyPlanes", "ToyVisit", "make_toy_visit", "make_toy_wcs"]

import dataclasses
from typing import Any

import astropy.wcs
import numpy as np
from astropy.table import Table

from .. import mask_planes


@dataclasses.dataclass
class ToyPlanes:
    """Image (nJy), variance (nJy²) and int32 mask of one toy exposure."""

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray


@dataclasses.dataclass
class ToyVisit:
    """A toy (visit, detector) with the attributes of ``SimulatedVisit`` used by the Butler layer."""

    science: ToyPlanes
    template: ToyPlanes
    science_psf: np.ndarray
    template_psf: np.ndarray
    science_psf_sigma: float
    template_psf_sigma: float
    wcs: astropy.wcs.WCS
    truth: Table
    metadata: dict[str, Any]


def make_toy_wcs(size: int, detector: int = 0, pixel_scale: float = 0.2) -> astropy.wcs.WCS:
    """Return a TAN WCS centred on the detector, detectors offset in RA.

    Parameters
    ----------
    size : `int`
        Detector size in pixels.
    detector : `int`, optional
        Detector id (sets the RA offset).
    pixel_scale : `float`, optional
        Pixel scale in arcsec.

    Returns
    -------
    wcs : `astropy.wcs.WCS`
        Celestial WCS for 0-based pixel coordinates.
    """
    wcs = astropy.wcs.WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0 + detector * size * pixel_scale / 3600.0 * 1.05, 2.0]
    wcs.wcs.crpix = [0.5 * (size - 1) + 1.0, 0.5 * (size - 1) + 1.0]
    wcs.wcs.cdelt = [-pixel_scale / 3600.0, pixel_scale / 3600.0]
    return wcs


def _gaussian_kernel(sigma: float) -> np.ndarray:
    half = int(np.ceil(5 * sigma))
    r = np.arange(-half, half + 1)
    profile = np.exp(-0.5 * (r / sigma) ** 2)
    kernel = np.multiply.outer(profile, profile)
    return kernel / kernel.sum()


def _add_stars(image: np.ndarray, x: np.ndarray, y: np.ndarray, flux: np.ndarray, sigma: float) -> None:
    half = int(np.ceil(5 * sigma))
    for xi, yi, fi in zip(x, y, flux):
        x0, y0 = int(round(xi)), int(round(yi))
        ys = slice(max(y0 - half, 0), min(y0 + half + 1, image.shape[0]))
        xs = slice(max(x0 - half, 0), min(x0 + half + 1, image.shape[1]))
        yy, xx = np.mgrid[ys, xs]
        image[ys, xs] += (
            fi * np.exp(-0.5 * ((xx - xi) ** 2 + (yy - yi) ** 2) / sigma**2) / (2 * np.pi * sigma**2)
        )


def make_toy_visit(
    visit: int,
    detector: int,
    size: int = 128,
    seed: int = 0,
    *,
    transient_flux: float = 20000.0,
    physical_filter: str = "r_sim",
) -> ToyVisit:
    """Make a toy science/template pair with stars, one transient and one cosmic ray.

    Parameters
    ----------
    visit, detector : `int`
        Data ID values (seed the noise and the ids).
    size : `int`, optional
        Square image size in pixels.
    seed : `int`, optional
        Random seed.
    transient_flux : `float`, optional
        Flux of the transient in nJy.
    physical_filter : `str`, optional
        Physical filter of the metadata.

    Returns
    -------
    toy : `ToyVisit`
        Science (PSF sigma 2.0 px) and template (1.5 px) with identical stars, a transient
        near the centre only in the science image, a cosmic-ray hit flagged ``CR``, a bad
        column flagged ``BAD``; truth rows for the transient and the cosmic ray.
    """
    rng = np.random.default_rng([seed, visit, detector])
    sky_sigma = 50.0
    n_stars = 12
    margin = 12
    sx = rng.uniform(margin, size - margin, n_stars)
    sy = rng.uniform(margin, size - margin, n_stars)
    sflux = rng.uniform(2e5, 1e6, n_stars)
    planes = {}
    psf_sigmas = {"science": 2.0, "template": 1.5}
    tx, ty = 0.5 * size + 0.3, 0.5 * size - 0.2
    for name, sigma in psf_sigmas.items():
        noise = sky_sigma if name == "science" else sky_sigma / 2
        image = rng.normal(0.0, noise, (size, size))
        _add_stars(image, sx, sy, sflux, sigma)
        if name == "science":
            _add_stars(image, np.array([tx]), np.array([ty]), np.array([transient_flux]), sigma)
        planes[name] = ToyPlanes(
            image.astype(np.float32),
            np.full((size, size), noise**2, np.float32),
            np.zeros((size, size), np.int32),
        )
    # A cosmic ray and a bad column in the science image.
    cx, cy = int(0.25 * size), int(0.75 * size)
    planes["science"].image[cy, cx] += 5000.0
    planes["science"].mask[cy, cx] |= mask_planes.CR
    planes["science"].mask[:, int(0.8 * size)] |= mask_planes.BAD
    wcs = make_toy_wcs(size, detector)
    ra, dec = wcs.pixel_to_world_values(np.array([tx, cx]), np.array([ty, cy]))
    snr = transient_flux / (sky_sigma * np.sqrt(4 * np.pi) * psf_sigmas["science"])
    truth = Table(
        {
            "id": np.array([visit * 1000 + detector * 10 + 1, visit * 1000 + detector * 10 + 2], np.int64),
            "x": np.array([tx, cx], np.float64),
            "y": np.array([ty, cy], np.float64),
            "ra": np.asarray(ra, np.float64),
            "dec": np.asarray(dec, np.float64),
            "category": np.array(["transient", "artifact"]),
            "type": np.array(["hostless", "cosmic_ray"]),
            "flux": np.array([transient_flux, 0.0]),
            "snr": np.array([snr, 0.0]),
            "mag": np.array([-2.5 * np.log10(transient_flux) + 31.4, np.nan]),
            "host_id": np.array([-1, -1], np.int64),
            "x1": np.array([tx, cx], np.float64),
            "y1": np.array([ty, cy], np.float64),
        }
    )
    metadata = {
        "band": physical_filter.split("_")[0],
        "physical_filter": physical_filter,
        "mjd": 60200.1 + 0.01 * visit,
        "exposure_time": 30.0,
        "seeing_arcsec": 2.355 * psf_sigmas["science"] * 0.2,
    }
    return ToyVisit(
        science=planes["science"],
        template=planes["template"],
        science_psf=_gaussian_kernel(psf_sigmas["science"]),
        template_psf=_gaussian_kernel(psf_sigmas["template"]),
        science_psf_sigma=psf_sigmas["science"],
        template_psf_sigma=psf_sigmas["template"],
        wcs=wcs,
        truth=truth,
        metadata=metadata,
    )
