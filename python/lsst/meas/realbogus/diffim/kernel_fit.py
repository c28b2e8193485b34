"""Linear least-squares fit of a spatially varying Alard–Lupton matching kernel."""

from __future__ import annotations

__all__ = ["KernelSolution", "fit_kernel"]

import logging
from dataclasses import dataclass, field

import numpy as np
import scipy.fft

from .basis import poly_terms, poly_values

_LOG = logging.getLogger(__name__)


@dataclass
class KernelSolution:
    """A matching kernel ``K(x, y) = sum_s p_s(x, y) K_s`` plus a polynomial background.

    Attributes
    ----------
    spatial_kernels : `numpy.ndarray`, shape ``(n_spatial, size, size)``
        Kernel images multiplying each spatial monomial (`poly_terms` order); the first one carries
        the whole kernel sum, the others have zero sum.
    spatial_order : `int`
        Order of the spatial polynomial.
    background_coeffs : `numpy.ndarray`
        Coefficients of the background monomials (empty if no background was fitted).
    background_order : `int`
        Order of the background polynomial (``-1``: none).
    shape : `tuple` of `int`
        Detector shape the polynomials are normalised to.
    stamp_chi2 : `numpy.ndarray`
        Reduced chi² of every stamp after the final fit.
    stamp_used : `numpy.ndarray` of `bool`
        Stamps kept by the clipping.
    """

    spatial_kernels: np.ndarray
    spatial_order: int
    background_coeffs: np.ndarray
    background_order: int
    shape: tuple[int, int]
    stamp_chi2: np.ndarray = field(default_factory=lambda: np.zeros(0))
    stamp_used: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    def kernel_at(self, x: float, y: float) -> np.ndarray:
        """Return the kernel image at pixel position ``(x, y)``."""
        p = poly_values(x, y, self.spatial_order, self.shape)
        return np.tensordot(p, self.spatial_kernels, axes=(0, 0))

    @property
    def kernel_sum(self) -> float:
        """Spatially constant sum of the kernel (photometric scaling)."""
        return float(self.spatial_kernels[0].sum())

    def spatial_images(self) -> list[np.ndarray]:
        """Monomial images ``p_s(x, y)`` over the detector (broadcastable to ``shape``)."""
        ny, nx = self.shape
        p_x = poly_values(np.arange(nx), np.zeros(nx), 1, self.shape)[1]
        p_y = poly_values(np.zeros(ny), np.arange(ny), 1, self.shape)[2]
        return [p_x[np.newaxis, :] ** i * p_y[:, np.newaxis] ** j for i, j in poly_terms(self.spatial_order)]

    def background(self) -> np.ndarray | float:
        """Background model over the detector (``0.0`` if none was fitted)."""
        if self.background_order < 0 or self.background_coeffs.size == 0:
            return 0.0
        ny, nx = self.shape
        p_x = poly_values(np.arange(nx), np.zeros(nx), 1, self.shape)[1]
        p_y = poly_values(np.zeros(ny), np.arange(ny), 1, self.shape)[2]
        out = np.zeros(self.shape)
        for (i, j), c in zip(poly_terms(self.background_order), self.background_coeffs):
            out += np.outer(c * p_y**j, p_x**i)
        return out


def _stamp_system(
    ref: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    y0: int,
    x0: int,
    stamp_half: int,
    basis_ft: np.ndarray,
    fft_size: int,
    half: int,
    spatial_order: int,
    background_order: int,
    shape: tuple[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Build the weighted normal equations and design matrix of one stamp."""
    r = stamp_half + half
    region = ref[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
    full = scipy.fft.irfft2(scipy.fft.rfft2(region, s=(fft_size, fft_size))[np.newaxis] * basis_ft,
                            s=(fft_size, fft_size))
    # Valid part of the convolution of the region with each basis kernel.
    n_side = 2 * stamp_half + 1
    conv = full[:, 2 * half : 2 * half + n_side, 2 * half : 2 * half + n_side].reshape(len(basis_ft), -1).T
    b = target[y0 - stamp_half : y0 + stamp_half + 1, x0 - stamp_half : x0 + stamp_half + 1].ravel()
    w = weight[y0 - stamp_half : y0 + stamp_half + 1, x0 - stamp_half : x0 + stamp_half + 1].ravel()
    p = poly_values(x0, y0, spatial_order, shape)
    spatial_columns = conv[:, 1:, np.newaxis] * p[np.newaxis, np.newaxis, :]
    columns = [conv[:, :1], spatial_columns.reshape(conv.shape[0], -1)]
    if background_order >= 0:
        yy, xx = np.mgrid[y0 - stamp_half : y0 + stamp_half + 1, x0 - stamp_half : x0 + stamp_half + 1]
        columns.append(poly_values(xx.ravel(), yy.ravel(), background_order, shape).T)
    a = np.hstack(columns)
    aw = a * w[:, np.newaxis]
    return aw.T @ a, aw.T @ b, a, b, w


def fit_kernel(
    ref: np.ndarray,
    target: np.ndarray,
    weight: np.ndarray,
    star_y: np.ndarray,
    star_x: np.ndarray,
    basis: np.ndarray,
    *,
    stamp_half: int,
    spatial_order: int = 1,
    background_order: int = 1,
    clip_sigma: float = 4.0,
    clip_iterations: int = 3,
    ridge: float = 1e-9,
) -> KernelSolution:
    """Fit ``target ≈ K(x, y) ⊗ ref + background`` on stamps around stars.

    Parameters
    ----------
    ref : `numpy.ndarray`
        Image to be convolved, with unusable pixels replaced by finite values.
    target : `numpy.ndarray`
        Image to be matched, with unusable pixels replaced by finite values.
    weight : `numpy.ndarray`
        Inverse variance of each target pixel's residual; ``0`` excludes a pixel (it must already be
        ``0`` where the kernel footprint touches an unusable ``ref`` pixel).
    star_y, star_x : `numpy.ndarray` of `int`
        Stamp centres, at least ``stamp_half + kernel half width`` from the border.
    basis : `numpy.ndarray`, shape ``(n_basis, size, size)``
        Kernel basis from `alard_lupton_basis` (``basis[0]`` unit sum, others zero sum).
    stamp_half : `int`
        Half size of the fitted stamps.
    spatial_order : `int`, optional
        Spatial polynomial order of the zero-sum basis coefficients.
    background_order : `int`, optional
        Background polynomial order (``-1``: none).
    clip_sigma : `float`, optional
        Stamp rejection threshold in robust standard deviations of the stamps' reduced chi².
    clip_iterations : `int`, optional
        Maximum number of fit-and-clip iterations.
    ridge : `float`, optional
        Relative diagonal regularisation of the normal equations.

    Returns
    -------
    solution : `KernelSolution`
        The fitted kernel and background.

    Raises
    ------
    ValueError
        Raised if no stamp has usable pixels.
    """
    shape = ref.shape
    n_basis, size, _ = basis.shape
    half = size // 2
    fft_size = scipy.fft.next_fast_len(2 * (stamp_half + half) + 1 + 2 * half, real=True)
    basis_ft = scipy.fft.rfft2(basis, s=(fft_size, fft_size))
    n_sp = len(poly_terms(spatial_order))
    systems = []
    for y0, x0 in zip(star_y, star_x):
        systems.append(
            _stamp_system(ref, target, weight, int(y0), int(x0), stamp_half, basis_ft, fft_size, half,
                          spatial_order, background_order, shape)
        )
    n_good = np.array([np.count_nonzero(s[4]) for s in systems])
    used = n_good > 0
    if not np.any(used):
        raise ValueError("no stamp has usable pixels")
    chi2 = np.full(len(systems), np.inf)
    theta = None
    for _ in range(clip_iterations):
        ata = sum(s[0] for s, u in zip(systems, used) if u)
        atb = sum(s[1] for s, u in zip(systems, used) if u)
        diag = np.diag(ata).copy()
        ata = ata + np.diag(ridge * np.where(diag > 0, diag, 1.0))
        theta = np.linalg.lstsq(ata, atb, rcond=None)[0]
        for k, (_, _, a, b, w) in enumerate(systems):
            if n_good[k] > 0:
                resid = b - a @ theta
                chi2[k] = float((w * resid**2).sum() / n_good[k])
        med = np.median(chi2[used])
        mad = 1.4826 * np.median(np.abs(chi2[used] - med))
        limit = med + clip_sigma * max(mad, 0.05 * med)
        new_used = used & (chi2 <= limit)
        if np.array_equal(new_used, used) or np.count_nonzero(new_used) < max(3, n_sp):
            break
        used = new_used
    assert theta is not None
    coeff_first = theta[0]
    coeff_rest = theta[1 : 1 + (n_basis - 1) * n_sp].reshape(n_basis - 1, n_sp)
    spatial = np.tensordot(coeff_rest.T, basis[1:], axes=(1, 0))  # (n_sp, size, size)
    spatial[0] += coeff_first * basis[0]
    bg = theta[1 + (n_basis - 1) * n_sp :]
    return KernelSolution(
        spatial_kernels=spatial,
        spatial_order=spatial_order,
        background_coeffs=np.asarray(bg),
        background_order=background_order,
        shape=shape,
        stamp_chi2=chi2,
        stamp_used=used,
    )
