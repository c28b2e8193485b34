"""PSF-matched image subtraction (Alard–Lupton) on plain numpy arrays."""

from __future__ import annotations

__all__ = ["SubtractionConfig", "SubtractionResult", "subtract_images", "check_psf", "gaussian_kernel",
           "psf_moment_sigma", "psf_sigma", "sampled_gaussian_kernel"]

from .config import SubtractionConfig
from .psf import check_psf, gaussian_kernel, psf_moment_sigma, psf_sigma, sampled_gaussian_kernel
from .subtract import SubtractionResult, subtract_images
