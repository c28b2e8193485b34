"""Small helpers for PSF kernel images: validation, moments, Gaussian kernels."""

from __future__ import annotations

__all__ = ["check_psf", "gaussian_kernel", "psf_moment_sigma", "psf_sigma", "sampled_gaussian_kernel"]

import numpy as np


def check_psf(psf: np.ndarray, name: str = "psf") -> np.ndarray:
    """Validate a PSF kernel image and return it normalised to unit sum.

    Parameters
    ----------
    psf : `numpy.ndarray`
        2-D kernel image with odd side lengths, centred on its middle pixel.
    name : `str`, optional
        Name used in error messages.

    Returns
    -------
    psf : `numpy.ndarray` of `float`
        A float64 copy with unit sum.

    Raises
    ------
    ValueError
        Raised if the kernel is not 2-D, has an even side, non-finite values or a non-positive sum.
    """
    arr = np.asarray(psf, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D kernel image, got shape {arr.shape}")
    if arr.shape[0] % 2 == 0 or arr.shape[1] % 2 == 0:
        raise ValueError(f"{name} must have odd side lengths (centred kernel), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    total = arr.sum()
    if not total > 0:
        raise ValueError(f"{name} must have a positive sum, got {total}")
    return arr / total


def psf_sigma(psf: np.ndarray) -> float:
    """Gaussian-equivalent sigma of a kernel image from its noise-equivalent area.

    ``Neff = 1 / sum(P**2) = 4 pi sigma**2`` for a unit-sum kernel ``P``.  Unlike second moments,
    this is insensitive to extended (e.g. Moffat) wings, and it is the quantity that sets the noise
    of PSF photometry; it matches the simulator's definition.

    Parameters
    ----------
    psf : `numpy.ndarray`
        Centred 2-D kernel image (need not be normalised).

    Returns
    -------
    sigma : `float`
        ``sqrt(1 / (4 pi sum(P**2)))`` in pixels.
    """
    arr = check_psf(psf)
    return float(np.sqrt(1.0 / (4.0 * np.pi * np.sum(arr * arr))))


def psf_moment_sigma(psf: np.ndarray) -> float:
    """Gaussian-equivalent sigma of a kernel image from its second moments.

    Sensitive to extended wings (for a Gaussian it equals `psf_sigma`; for Moffat or
    halo profiles it is larger), which makes the ratio of the two a wing indicator.

    Parameters
    ----------
    psf : `numpy.ndarray`
        Centred 2-D kernel image.

    Returns
    -------
    sigma : `float`
        ``sqrt((Ixx + Iyy) / 2)`` in pixels about the kernel centroid.
    """
    arr = check_psf(psf)
    ny, nx = arr.shape
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float64)
    xc = float((arr * x).sum())
    yc = float((arr * y).sum())
    second = float((arr * ((x - xc) ** 2 + (y - yc) ** 2)).sum())
    return float(np.sqrt(max(0.5 * second, 0.0)))


def gaussian_kernel(sigma: float, half_width: int) -> np.ndarray:
    """Pixel-integrated, unit-sum, circular Gaussian kernel.

    Parameters
    ----------
    sigma : `float`
        Gaussian sigma in pixels; ``0`` gives a delta function.
    half_width : `int`
        The kernel is ``(2 * half_width + 1)`` pixels on a side.

    Returns
    -------
    kernel : `numpy.ndarray` of `float`
        Unit-sum kernel image.

    Raises
    ------
    ValueError
        Raised if ``sigma`` is negative or ``half_width`` is negative.
    """
    if sigma < 0 or not np.isfinite(sigma):
        raise ValueError(f"sigma must be finite and >= 0, got {sigma}")
    if half_width < 0:
        raise ValueError(f"half_width must be >= 0, got {half_width}")
    size = 2 * half_width + 1
    if sigma < 1e-3:
        kernel = np.zeros((size, size))
        kernel[half_width, half_width] = 1.0
        return kernel
    from scipy.special import erf

    edges = np.arange(-half_width - 0.5, half_width + 1.0) / (np.sqrt(2.0) * sigma)
    prof = np.diff(erf(edges))
    kernel = np.outer(prof, prof)
    return kernel / kernel.sum()


def sampled_gaussian_kernel(sigma: float, half_width: int) -> np.ndarray:
    """Unit-sum circular Gaussian kernel sampled at the pixel centres.

    This is the kernel image of a Gaussian PSF as `lsst.images` renders it
    (``GaussianPointSpreadFunction``), so numerical code that mimics the Butler layer uses the
    same PSF as the pipeline.  For well-sampled PSFs it is close to `gaussian_kernel`; for
    undersampled ones it is more peaked (by 10 % at ``sigma = 0.9``).

    Parameters
    ----------
    sigma : `float`
        Gaussian sigma in pixels (positive).
    half_width : `int`
        The kernel is ``(2 * half_width + 1)`` pixels on a side.

    Returns
    -------
    kernel : `numpy.ndarray` of `float`
        Unit-sum kernel image.

    Raises
    ------
    ValueError
        Raised if ``sigma`` is not positive and finite or ``half_width`` is negative.
    """
    if not (sigma > 0 and np.isfinite(sigma)):
        raise ValueError(f"sigma must be finite and > 0, got {sigma}")
    if half_width < 0:
        raise ValueError(f"half_width must be >= 0, got {half_width}")
    r = np.arange(-half_width, half_width + 1, dtype=np.float64)
    prof = np.exp(-0.5 * (r / sigma) ** 2)
    kernel = np.outer(prof, prof)
    return kernel / kernel.sum()
