"""PSF-matched image subtraction (Alard–Lupton) on plain numpy arrays."""

from __future__ import annotations

__all__ = ["SubtractionResult", "subtract_images"]

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from .. import mask_planes
from .basis import alard_lupton_basis
from .config import SubtractionConfig
from .convolution import convolve_same
from .kernel_fit import KernelSolution, fit_kernel
from .psf import check_psf, gaussian_kernel, psf_moment_sigma, psf_sigma
from .stamps import select_stamp_stars

_LOG = logging.getLogger(__name__)

_DEFAULT_BAD_BITS = (
    mask_planes.BAD | mask_planes.SAT | mask_planes.NO_DATA | mask_planes.CR | mask_planes.SUSPECT
)
_NOT_GROWN = mask_planes.DETECTED | mask_planes.DETECTED_NEGATIVE | mask_planes.EDGE


@dataclass
class SubtractionResult:
    """Output of `subtract_images`.

    Attributes
    ----------
    image : `numpy.ndarray` of `numpy.float32`
        Difference image in nJy, science minus template (``science − K⊗template − background``,
        or ``K⊗science + background − template`` when the science image was convolved).  NaN where
        the mask has ``NO_DATA``.
    variance : `numpy.ndarray` of `numpy.float32`
        Variance of the difference (``var_sci + K²⊗var_tmpl`` or ``K²⊗var_sci + var_tmpl``),
        ignoring the pixel-to-pixel covariance introduced by the convolution; ``K`` is the kernel at
        the detector centre unless ``config.exact_variance``.
    mask : `numpy.ndarray` of `numpy.int32`
        OR of both masks; the convolved image's planes are grown by the kernel footprint, NaN /
        ``NO_DATA`` pixels of the convolved image are grown into ``NO_DATA``, and a border of one
        kernel half width (where the convolution saw zero padding) gets ``EDGE``.
    psf : `numpy.ndarray`
        Unit-sum PSF kernel image of the difference: the science PSF when the template was
        convolved, the template PSF when the science image was convolved.
    psf_sigma : `float`
        Gaussian-equivalent sigma of ``psf`` in pixels.
    kernel : `numpy.ndarray`
        Matching kernel image at the detector centre.
    n_stamps_used : `int`
        Number of stamps in the final kernel fit (0 for the fallback kernel).
    metrics : `dict`
        Diagnostics: ``convolved`` (``"template"`` or ``"science"``), ``fallback``, ``kernel_sum``,
        ``kernel_half_width``, ``basis_sigmas``, ``spatial_order``, ``n_stamps_found``,
        ``stamp_chi2_median``, ``background_coeffs``, ``science_psf_sigma``, ``template_psf_sigma``,
        ``ill_posed``.
    """

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    psf: np.ndarray
    psf_sigma: float
    kernel: np.ndarray
    n_stamps_used: int
    metrics: dict[str, Any] = field(default_factory=dict)


def _check_inputs(**arrays: np.ndarray) -> tuple[int, int]:
    shapes = {name: np.shape(a) for name, a in arrays.items()}
    if any(len(s) != 2 for s in shapes.values()):
        raise ValueError(f"all image planes must be 2-D, got shapes {shapes}")
    if len(set(shapes.values())) != 1:
        raise ValueError(f"image planes must all have the same shape, got {shapes}")
    shape = next(iter(shapes.values()))
    if min(shape) < 8:
        raise ValueError(f"images are too small to subtract: shape {shape}")
    return shape  # type: ignore[return-value]


def _grow(mask: np.ndarray, bits: int, half: int) -> np.ndarray:
    """Grow each of ``bits`` present in ``mask`` by a square of half size ``half``."""
    out = np.zeros_like(mask)
    for name, bit in mask_planes.MASK_PLANES.items():
        if not bits & bit:
            continue
        plane = (mask & bit) != 0
        if plane.any():
            grown = ndimage.maximum_filter(plane.view(np.uint8), size=2 * half + 1, mode="constant") > 0
            out[grown] |= bit
    return out


def _fallback_solution(sigma_match: float, half: int, shape: tuple[int, int]) -> KernelSolution:
    kernel = gaussian_kernel(sigma_match, half)
    return KernelSolution(
        spatial_kernels=kernel[np.newaxis], spatial_order=0, background_coeffs=np.zeros(0),
        background_order=-1, shape=shape,
    )


def subtract_images(
    science_image: np.ndarray,
    science_variance: np.ndarray,
    science_mask: np.ndarray,
    template_image: np.ndarray,
    template_variance: np.ndarray,
    template_mask: np.ndarray,
    science_psf: np.ndarray,
    template_psf: np.ndarray,
    *,
    config: SubtractionConfig | None = None,
) -> SubtractionResult:
    """PSF-match a template to a science image and subtract it.

    The matching kernel is a sum of Gaussian × polynomial basis functions (widths from the two
    PSF sigmas) whose zero-sum part may vary as a low-order polynomial over the detector, plus a
    differential background polynomial; all are fitted by linear least squares on stamps around
    bright, isolated stars of the template, excluding masked / NaN pixels and iteratively
    rejecting badly fitting stamps.  Normally the (sharper) template is convolved; if the science
    PSF is the sharper one (``config.convolve == "auto"``) the science image is convolved instead
    and the difference has the template's PSF.  With too few usable stars an analytic Gaussian
    kernel of width ``sqrt(|sigma_sci² − sigma_tmpl²|)`` is used (``metrics["fallback"]``).

    Parameters
    ----------
    science_image, science_variance, science_mask : `numpy.ndarray`
        Science image (nJy), variance (nJy²) and integer mask (`mask_planes` bits).
    template_image, template_variance, template_mask : `numpy.ndarray`
        Template on the same pixel grid.
    science_psf, template_psf : `numpy.ndarray`
        Centred, odd-sized PSF kernel images.
    config : `SubtractionConfig`, optional
        Parameters; defaults if `None`.

    Returns
    -------
    result : `SubtractionResult`
        Difference image, variance, mask, PSF, kernel and diagnostics.

    Raises
    ------
    ValueError
        Raised if the planes differ in shape (the message lists them), are not 2-D, or a PSF or
        the configuration is invalid.
    """
    config = config if config is not None else SubtractionConfig()
    config.validate()
    shape = _check_inputs(
        science_image=science_image, science_variance=science_variance, science_mask=science_mask,
        template_image=template_image, template_variance=template_variance, template_mask=template_mask,
    )
    psf_sci = check_psf(science_psf, "science_psf")
    psf_tmpl = check_psf(template_psf, "template_psf")
    sigma_sci = psf_sigma(psf_sci)
    sigma_tmpl = psf_sigma(psf_tmpl)
    science_sharper = sigma_sci < (1.0 - config.sharper_tolerance) * sigma_tmpl
    mode = config.convolve
    if mode == "auto":
        mode = "science" if science_sharper else "template"
        if science_sharper:
            _LOG.warning(
                "Science PSF (sigma=%.3f px) is sharper than the template PSF (sigma=%.3f px): convolving "
                "the science image instead; the difference image has the template PSF.",
                sigma_sci, sigma_tmpl,
            )
    ill_posed = (mode == "template" and science_sharper) or (
        mode == "science" and sigma_tmpl < (1.0 - config.sharper_tolerance) * sigma_sci
    )
    if ill_posed:
        _LOG.warning(
            "Convolving the %s image although its PSF is the sharper one (sigma_sci=%.3f, sigma_tmpl=%.3f "
            "px): the matching kernel would have to deconvolve, the fit is ill-posed and only best effort.",
            mode, sigma_sci, sigma_tmpl,
        )

    sci_img = np.asarray(science_image, dtype=np.float64)
    sci_var = np.asarray(science_variance, dtype=np.float64)
    sci_mask = np.asarray(science_mask).astype(np.int32)
    tmp_img = np.asarray(template_image, dtype=np.float64)
    tmp_var = np.asarray(template_variance, dtype=np.float64)
    tmp_mask = np.asarray(template_mask).astype(np.int32)
    if mode == "template":
        ref_img, ref_var, ref_mask, sigma_ref = tmp_img, tmp_var, tmp_mask, sigma_tmpl
        tgt_img, tgt_var, tgt_mask, sigma_tgt = sci_img, sci_var, sci_mask, sigma_sci
        out_psf = psf_sci
    else:
        ref_img, ref_var, ref_mask, sigma_ref = sci_img, sci_var, sci_mask, sigma_sci
        tgt_img, tgt_var, tgt_mask, sigma_tgt = tmp_img, tmp_var, tmp_mask, sigma_tmpl
        out_psf = psf_tmpl

    # Kernel basis.
    sigma_match = math.sqrt(abs(sigma_tgt**2 - sigma_ref**2))
    basis_sigmas = [max(f * sigma_match, config.min_basis_sigma) for f in config.basis_sigma_factors]
    basis_degrees = list(config.basis_degrees)
    if config.kernel_half_width is not None:
        half = config.kernel_half_width
    else:
        half = int(np.clip(math.ceil(config.kernel_size_factor * max(basis_sigmas)), 3, 30))
    use_halo = config.halo_basis
    if use_halo is None:
        tgt_psf = psf_sci if mode == "template" else psf_tmpl
        use_halo = psf_moment_sigma(tgt_psf) > config.halo_wing_ratio * psf_sigma(tgt_psf)
    if use_halo:
        halo_sigma = max(config.halo_sigma_factor * sigma_match, config.min_basis_sigma)
        basis_sigmas.append(halo_sigma)
        basis_degrees.append(config.halo_degree)
        if config.kernel_half_width is None:
            half = int(np.clip(max(half, math.ceil(2.5 * halo_sigma)), 3, 30))
    basis = alard_lupton_basis(basis_sigmas, basis_degrees, half)
    stamp_half = config.stamp_half_width or half + max(3, math.ceil(3.0 * max(sigma_tgt, sigma_ref)))

    # Unusable pixels.
    bad_bits = _DEFAULT_BAD_BITS if config.bad_mask_bits is None else config.bad_mask_bits
    ref_nodata = ~np.isfinite(ref_img) | ~np.isfinite(ref_var) | ((ref_mask & mask_planes.NO_DATA) != 0)
    tgt_nodata = ~np.isfinite(tgt_img) | ~np.isfinite(tgt_var) | ((tgt_mask & mask_planes.NO_DATA) != 0)
    ref_clean = np.where(ref_nodata, 0.0, ref_img)
    ref_var_clean = np.where(ref_nodata, 0.0, ref_var)
    tgt_clean = np.where(tgt_nodata, 0.0, tgt_img)
    ref_bad = ref_nodata | ((ref_mask & bad_bits) != 0)
    tgt_bad = tgt_nodata | ((tgt_mask & bad_bits) != 0)
    size = 2 * half + 1
    ref_bad_grown = ndimage.maximum_filter(ref_bad.view(np.uint8), size=size, mode="constant") > 0
    fit_bad = tgt_bad | ref_bad_grown
    total_var = np.where(fit_bad, np.inf, tgt_var + ref_var_clean)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(np.isfinite(total_var) & (total_var > 0), 1.0 / total_var, 0.0)

    # Stars from the template (the deeper image), whichever image is convolved.
    star_y, star_x = select_stamp_stars(
        tmp_img, tmp_var, fit_bad, sigma_tmpl, stamp_half + half,
        n_stamps=config.n_stamps, grid=config.stamp_grid, snr_min=config.star_snr_min,
        isolation_half_width=max(3, math.ceil(config.isolation_factor * max(sigma_tgt, sigma_ref))),
    )
    n_found = int(star_y.size)
    spatial_order = config.spatial_order
    n_sp = (spatial_order + 1) * (spatial_order + 2) // 2
    while spatial_order > 0 and n_found < 3 * n_sp:
        spatial_order -= 1
        n_sp = (spatial_order + 1) * (spatial_order + 2) // 2
    if spatial_order != config.spatial_order:
        _LOG.warning("Only %d stamp stars: reducing the kernel spatial order from %d to %d.",
                     n_found, config.spatial_order, spatial_order)

    fallback = n_found < config.min_stamps
    solution: KernelSolution | None = None
    if not fallback:
        solution = fit_kernel(
            ref_clean, tgt_clean, weight, star_y, star_x, basis, stamp_half=stamp_half,
            spatial_order=spatial_order, background_order=config.background_order,
            clip_sigma=config.clip_sigma, clip_iterations=config.clip_iterations, ridge=config.ridge,
        )
        n_used = int(np.count_nonzero(solution.stamp_used))
        if n_used < config.min_stamps:
            fallback = True
    if fallback or solution is None:
        _LOG.warning(
            "Only %d usable stamp stars (< %d): using an analytic Gaussian matching kernel of sigma %.3f px.",
            n_found, config.min_stamps, sigma_match,
        )
        solution = _fallback_solution(sigma_match, half, shape)
        n_used = 0

    # Apply the kernel: K(x,y)⊗R = sum_s p_s(x,y) (K_s⊗R).
    p_images = solution.spatial_images()
    conv = convolve_same(ref_clean, list(solution.spatial_kernels), dtype=np.float32)
    matched = np.zeros(shape)
    for p, c in zip(p_images, conv):
        matched += p * c
    matched += solution.background()
    ks = solution.spatial_kernels
    if config.exact_variance and len(ks) > 1:
        pairs = [(s, t) for s in range(len(ks)) for t in range(s, len(ks))]
        var_conv = convolve_same(ref_var_clean, [ks[s] * ks[t] for s, t in pairs], dtype=np.float32)
        matched_var = np.zeros(shape)
        for (s, t), c in zip(pairs, var_conv):
            matched_var += (1.0 if s == t else 2.0) * (p_images[s] * p_images[t]) * c
    else:
        kc = solution.kernel_at(0.5 * (shape[1] - 1), 0.5 * (shape[0] - 1))
        matched_var = convolve_same(ref_var_clean, [kc * kc], dtype=np.float32)[0]
    if mode == "template":
        diff = tgt_clean - matched
    else:
        diff = matched - tgt_clean
    variance = tgt_var + np.maximum(matched_var, 0.0)

    # Masks.
    grow_bits = (sum(mask_planes.MASK_PLANES.values()) & ~_NOT_GROWN if config.grow_mask_bits is None
                 else config.grow_mask_bits)
    out_mask = (tgt_mask | (ref_mask & ~grow_bits) | _grow(ref_mask, grow_bits, half)).astype(np.int32)
    ref_nodata_grown = ndimage.maximum_filter(ref_nodata.view(np.uint8), size=size, mode="constant") > 0
    nodata = tgt_nodata | ref_nodata_grown
    out_mask[nodata] |= mask_planes.NO_DATA
    border = np.zeros(shape, dtype=bool)
    border[:half, :] = border[-half:, :] = True
    border[:, :half] = border[:, -half:] = True
    out_mask[border] |= mask_planes.EDGE
    diff[nodata] = np.nan
    variance[nodata] = np.nan

    kernel_centre = solution.kernel_at(0.5 * (shape[1] - 1), 0.5 * (shape[0] - 1))
    used_chi2 = solution.stamp_chi2[solution.stamp_used] if solution.stamp_used.size else np.zeros(0)
    metrics: dict[str, Any] = {
        "convolved": mode,
        "fallback": bool(fallback),
        "ill_posed": bool(ill_posed),
        "kernel_sum": solution.kernel_sum,
        "kernel_half_width": half,
        "basis_sigmas": basis_sigmas,
        "halo_basis": bool(use_halo),
        "spatial_order": solution.spatial_order,
        "n_stamps_found": n_found,
        "stamp_chi2_median": float(np.median(used_chi2)) if used_chi2.size else float("nan"),
        "background_coeffs": [float(c) for c in solution.background_coeffs],
        "science_psf_sigma": sigma_sci,
        "template_psf_sigma": sigma_tmpl,
    }
    return SubtractionResult(
        image=diff.astype(np.float32),
        variance=variance.astype(np.float32),
        mask=out_mask,
        psf=out_psf,
        psf_sigma=psf_sigma(out_psf),
        kernel=kernel_centre,
        n_stamps_used=n_used,
        metrics=metrics,
    )
