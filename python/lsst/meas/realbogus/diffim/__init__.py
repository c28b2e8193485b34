"""PSF-matched image subtraction (Alard–Lupton) on plain numpy arrays."""

from __future__ import annotations

__all__ = ["SubtractionConfig", "SubtractionResult", "subtract_images", "check_psf", "gaussian_kernel",
           "psf_moment_sigma", "psf_sigma"]

from .config import SubtractionConfig
from .psf import check_psf, gaussian_kernel, psf_moment_sigma, psf_sigma
from .subtract import SubtractionResult, subtract_images
