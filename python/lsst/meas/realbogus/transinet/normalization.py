"""Input normalisation for TransiNet, shared by training and inference.

The network sees a stack of channels built from one (template, science) pair:

* ``"template"`` and ``"science"``: each image minus its own median, divided by one
  common noise sigma (estimated from the science image), then asinh-stretched;
* optional ``"difference"``: a PSF-matched difference, with a fixed Gaussian or a
  fitted kernel (see below);
* optional ``"variance_template"`` / ``"variance_science"``: ``sqrt(variance) / sigma``;
* ``"valid"``: 1 where every input is finite and not ``NO_DATA``, else 0.

Invalid pixels are set to 0 in every channel.  The statistics (medians, sigma) are
computed once per *image* (a whole detector, or a whole training visit) and the
normalised image is then cut into tiles or crops, so that tiled inference is
seamless and identical to full-image inference.  Because every image is divided
by the same sigma measured in its own units, the result does not depend on the
flux unit (nJy, counts, ...).

The ``"difference"`` channel gives the network a direct flux comparison between
the epochs, which the separately stretched, not PSF-matched template and science
channels make nearly impossible (e.g. for a variable star).  By default
(``difference_kernel="gaussian"``) it is a *fixed* operation, with no fitted
kernel and no detection, computed from the images and
the Gaussian-equivalent sigmas of their own PSF models: both images minus their
medians, invalid pixels set to 0 (the median), the sharper of the two convolved
with a Gaussian of sigma ``sqrt(|sigma_sci**2 - sigma_tmpl**2|)`` (zero padding
beyond the image, i.e. the median), science minus template, divided by the
robust (1.4826 x MAD) scatter of that difference on the valid pixels and
asinh-stretched like the other channels.  A model whose spec has this channel
needs both PSF sigmas (`NormalizationSpec.needs_psf_sigmas`).

With ``difference_kernel="fitted"`` the matching kernel is instead *fitted*
(`fitted_difference`): the Alard–Lupton machinery of `lsst.meas.realbogus.diffim`
with one spatially constant kernel (Gaussian basis functions whose widths follow
from the two PSF sigmas, a constant differential background, linear least squares
on at most 40 bright isolated template stars of the central 2048² pixels), applied
to the whole image.  Real PSFs are not Gaussian, and the fixed Gaussian kernel
leaves a residual on every bright star (median peak about 18σ for stars of
10⁴–10⁵ counts on the simulated survey, about 3σ with the fitted kernel), in which
variable stars hide.  It is still no detection and no per-source step: one kernel
per image.  Like the statistics, the difference is computed once on the whole
image, so tiled inference stays seamless.
"""

from __future__ import annotations

__all__ = ["NormalizationSpec", "NormalizationStats", "KNOWN_CHANNELS", "PSF_CHANNELS", "DIFFERENCE_KERNELS",
           "compute_stats", "fitted_difference", "fitted_pair_difference", "matched_difference",
           "normalize_pair", "valid_mask"]

import dataclasses
from typing import Any

import numpy as np
from scipy import ndimage

from ..mask_planes import NO_DATA

KNOWN_CHANNELS = ("template", "science", "difference", "variance_template", "variance_science", "valid")
"""Channel names understood by `normalize_pair`."""

PSF_CHANNELS = ("difference",)
"""Channels that need the science and template PSF sigmas."""

DIFFERENCE_KERNELS = ("gaussian", "fitted")
"""Matching kernels of the ``"difference"`` channel (`NormalizationSpec.difference_kernel`)."""

FITTED_DIFFERENCE_STAMPS = 40
"""Maximum number of template stars the ``"fitted"`` difference kernel is fitted on."""

FITTED_DIFFERENCE_FIT_SIZE = 2048
"""Side of the central region the ``"fitted"`` difference kernel is fitted on (pixels)."""

_MAX_STAT_PIXELS = 1_000_000


@dataclasses.dataclass(frozen=True)
class NormalizationSpec:
    """Declarative description of the TransiNet input normalisation.

    Parameters
    ----------
    channels : `tuple` [`str`, ...]
        Channel names, in network input order; a subset of `KNOWN_CHANNELS` that
        contains ``"template"`` and ``"science"``.
    asinh_softening : `float`
        Pixel values ``z`` in units of the noise sigma are mapped to
        ``asinh(z / asinh_softening)``: linear below ``asinh_softening`` sigma,
        logarithmic above.
    noise_source : `str`
        ``"variance"``: sigma is ``sqrt(median(science variance))`` when a variance
        plane is given (falling back to ``"mad"`` otherwise); ``"mad"``: sigma is
        the robust (1.4826 x MAD) scatter of the science image.
    difference_noise : `str`
        Scale of the ``"difference"`` channel: ``"mad"`` divides it by its own
        robust (1.4826 x MAD) scatter, one number per image; ``"variance"``
        divides every pixel by its own noise sigma, the square root of the
        science plus template variance after the same Gaussian matching (so a
        flux change on a bright star is scaled by the star's photon noise too);
        ``"variance"`` needs both variance planes.
    difference_kernel : `str`
        Matching kernel of the ``"difference"`` channel: ``"gaussian"`` (the
        fixed Gaussian of `matched_difference`) or ``"fitted"`` (a spatially
        constant kernel fitted on template stars, `fitted_difference`; needs
        both variance planes).
    """

    channels: tuple[str, ...] = ("template", "science", "valid")
    asinh_softening: float = 3.0
    noise_source: str = "variance"
    difference_noise: str = "mad"
    difference_kernel: str = "gaussian"

    def __post_init__(self) -> None:
        channels = tuple(self.channels)
        object.__setattr__(self, "channels", channels)
        unknown = [c for c in channels if c not in KNOWN_CHANNELS]
        if unknown:
            raise ValueError(f"Unknown TransiNet channel(s) {unknown}; known: {list(KNOWN_CHANNELS)}.")
        if "template" not in channels or "science" not in channels:
            raise ValueError(f"Channels must include 'template' and 'science'; got {list(channels)}.")
        if len(set(channels)) != len(channels):
            raise ValueError(f"Duplicate channel names in {list(channels)}.")
        if not (np.isfinite(self.asinh_softening) and self.asinh_softening > 0):
            raise ValueError(f"asinh_softening must be a positive finite number; got {self.asinh_softening}.")
        if self.noise_source not in ("variance", "mad"):
            raise ValueError(f"noise_source must be 'variance' or 'mad'; got {self.noise_source!r}.")
        if self.difference_noise not in ("mad", "variance"):
            raise ValueError(f"difference_noise must be 'mad' or 'variance'; got {self.difference_noise!r}.")
        if self.difference_kernel not in DIFFERENCE_KERNELS:
            raise ValueError(f"difference_kernel must be one of {list(DIFFERENCE_KERNELS)}; "
                             f"got {self.difference_kernel!r}.")

    @property
    def n_channels(self) -> int:
        """Number of network input channels."""
        return len(self.channels)

    @property
    def needs_psf_sigmas(self) -> bool:
        """Whether `normalize_pair` needs the science and template PSF sigmas (`bool`)."""
        return any(c in PSF_CHANNELS for c in self.channels)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description (stored in model packages)."""
        return {
            "name": "transinet_asinh",
            "channels": list(self.channels),
            "asinh_softening": float(self.asinh_softening),
            "noise_source": self.noise_source,
            "difference_noise": self.difference_noise,
            "difference_kernel": self.difference_kernel,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormalizationSpec:
        """Rebuild a spec from `to_dict` output.

        Raises
        ------
        ValueError
            Raised if the dictionary does not describe a TransiNet normalisation.
        """
        if data.get("name", "transinet_asinh") != "transinet_asinh":
            raise ValueError(f"Not a TransiNet normalisation spec: name={data.get('name')!r}.")
        return cls(
            channels=tuple(data.get("channels", cls.channels)),
            asinh_softening=float(data.get("asinh_softening", 3.0)),
            noise_source=str(data.get("noise_source", "variance")),
            difference_noise=str(data.get("difference_noise", "mad")),
            difference_kernel=str(data.get("difference_kernel", "gaussian")),
        )


@dataclasses.dataclass(frozen=True)
class NormalizationStats:
    """Per-image statistics used by `normalize_pair`.

    Attributes
    ----------
    template_median, science_median : `float`
        Medians of the valid pixels of each image.
    sigma : `float`
        Common noise sigma (image units) that both images are divided by.
    difference_sigma : `float` or `None`
        Robust scatter (image units) of the matched difference that the
        ``"difference"`` channel is divided by; `None`: measured by
        `normalize_pair` from the difference itself.
    """

    template_median: float
    science_median: float
    sigma: float
    difference_sigma: float | None = None


def _as_image(name: str, array: Any, shape: tuple[int, ...] | None) -> np.ndarray:
    arr = np.asarray(array)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D image; got shape {arr.shape}.")
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape} (same grid as the science image).")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}.")
    return arr


def _subsample_indices(valid: np.ndarray) -> np.ndarray:
    """Return the flat indices of the valid pixels, deterministically thinned.

    Every ``step``-th valid pixel is kept, ``step = max(1, n_valid //
    _MAX_STAT_PIXELS)``, so at most about ``_MAX_STAT_PIXELS`` remain.  Taking
    the values at these indices equals thinning the valid values, but only the
    kept pixels are copied (and converted to ``float64``).
    """
    indices = np.flatnonzero(valid)
    step = max(1, indices.size // _MAX_STAT_PIXELS)
    return indices[::step]


def _values(image: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Return ``image`` at flat ``indices`` as ``float64``."""
    return np.asarray(image).ravel()[indices].astype(np.float64)


def valid_mask(
    template: np.ndarray,
    science: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    template_variance: np.ndarray | None = None,
    science_variance: np.ndarray | None = None,
) -> np.ndarray:
    """Return the boolean map of pixels usable by the network.

    A pixel is valid when template, science (and any variance given) are finite and
    the mask (if given) does not carry ``NO_DATA``.
    """
    valid = np.isfinite(template) & np.isfinite(science)
    for var in (template_variance, science_variance):
        if var is not None:
            valid &= np.isfinite(var)
    if mask is not None:
        valid &= (np.asarray(mask).astype(np.int64) & NO_DATA) == 0
    return valid


def compute_stats(
    template: np.ndarray,
    science: np.ndarray,
    valid: np.ndarray,
    *,
    science_variance: np.ndarray | None = None,
    spec: NormalizationSpec | None = None,
) -> NormalizationStats:
    """Measure the medians and the common noise sigma of a (template, science) pair.

    Raises
    ------
    ValueError
        Raised if no pixel is valid or the noise sigma cannot be measured (e.g. a
        constant science image).
    """
    spec = spec or NormalizationSpec()
    if not valid.any():
        raise ValueError("No valid pixel in the (template, science) pair; cannot normalise.")
    indices = _subsample_indices(valid)
    tvals = _values(template, indices)
    svals = _values(science, indices)
    t_med = float(np.median(tvals))
    s_med = float(np.median(svals))
    sigma = np.nan
    if spec.noise_source == "variance" and science_variance is not None:
        vvals = _values(science_variance, indices)
        vvals = vvals[vvals > 0]
        if vvals.size:
            sigma = float(np.sqrt(np.median(vvals)))
    if not (np.isfinite(sigma) and sigma > 0):
        sigma = float(1.4826 * np.median(np.abs(svals - s_med)))
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError("Cannot estimate the science noise sigma (constant image or zero variance).")
    return NormalizationStats(template_median=t_med, science_median=s_med, sigma=sigma)


def _check_psf_sigma(name: str, value: Any) -> float:
    if value is None or isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}.")
    try:
        sigma = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}.") from None
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"{name} must be a positive finite PSF sigma in pixels; got {value!r}.")
    return sigma


def _centred(image: np.ndarray, valid: np.ndarray, median: float) -> np.ndarray:
    """Return ``float32`` ``image - median`` with invalid pixels set to 0 (the median)."""
    return np.where(valid, np.asarray(image, dtype=np.float32) - np.float32(median), np.float32(0))


def _filled_variance(variance: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Return ``float32`` ``variance`` with invalid and non-finite pixels set to its valid median."""
    var = np.asarray(variance, dtype=np.float32)
    good = valid & np.isfinite(var)
    fill = np.float32(np.median(var[good])) if good.any() else np.float32(1.0)
    return np.where(good, var, fill)


def matched_difference(
    template: np.ndarray,
    science: np.ndarray,
    valid: np.ndarray,
    science_psf_sigma: float,
    template_psf_sigma: float,
    *,
    template_median: float = 0.0,
    science_median: float = 0.0,
    template_variance: np.ndarray | None = None,
    science_variance: np.ndarray | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Return the Gaussian-PSF-matched difference ``science - template`` (image units).

    Both images are median-subtracted and their invalid pixels set to 0 (their
    median); the sharper one is convolved with a unit-sum Gaussian of sigma
    ``sqrt(|science_psf_sigma**2 - template_psf_sigma**2|)`` (zero padding
    beyond the image edges, truncated at 4 sigma), so that both have about the
    broader PSF.  No kernel is fitted: for non-Gaussian PSFs bright stars leave
    residuals, which the network learns to ignore.

    Parameters
    ----------
    template, science : `numpy.ndarray`
        Images on the same grid.
    valid : `numpy.ndarray`
        Boolean map of usable pixels (`valid_mask`).
    science_psf_sigma, template_psf_sigma : `float`
        Gaussian-equivalent PSF sigmas in pixels.
    template_median, science_median : `float`
        Values subtracted from each image (its background).
    template_variance, science_variance : `numpy.ndarray`, optional
        Variance planes; when both are given the variance of the difference is
        returned too: the sharper image's variance is convolved with the squared
        kernel (invalid pixels filled with the median variance first).

    Returns
    -------
    difference : `numpy.ndarray`
        ``float32`` ``(H, W)``; 0 on invalid pixels.
    variance : `numpy.ndarray`
        Only with both variance planes: ``float32`` variance of ``difference``
        (1 on invalid pixels).

    Raises
    ------
    ValueError
        Raised if a PSF sigma is not a positive finite number.
    """
    sigma_sci = _check_psf_sigma("science_psf_sigma", science_psf_sigma)
    sigma_tmpl = _check_psf_sigma("template_psf_sigma", template_psf_sigma)
    sci = _centred(science, valid, science_median)
    tmpl = _centred(template, valid, template_median)
    kernel_sigma = float(np.sqrt(abs(sigma_sci**2 - sigma_tmpl**2)))
    blur = kernel_sigma > 1e-3
    blur_science = blur and sigma_sci < sigma_tmpl
    if blur:
        if blur_science:
            sci = ndimage.gaussian_filter(sci, kernel_sigma, mode="constant", cval=0.0, truncate=4.0)
        else:
            tmpl = ndimage.gaussian_filter(tmpl, kernel_sigma, mode="constant", cval=0.0, truncate=4.0)
    diff = sci - tmpl
    diff[~valid] = 0.0
    if template_variance is None or science_variance is None:
        return diff
    variances = []
    for var, blurred in ((science_variance, blur_science), (template_variance, blur and not blur_science)):
        var = _filled_variance(var, valid)
        if blurred:
            # Squared Gaussian kernel = sum(K**2) x the unit-sum Gaussian of sigma / sqrt(2) (same radius).
            radius = int(4.0 * kernel_sigma + 0.5)
            k1 = np.exp(-0.5 * (np.arange(-radius, radius + 1) / kernel_sigma) ** 2)
            k1 /= k1.sum()
            var = ndimage.gaussian_filter(var, kernel_sigma / np.sqrt(2.0), mode="nearest",
                                          truncate=4.0 * np.sqrt(2.0)) * np.float32(np.sum(k1**2) ** 2)
        variances.append(var)
    variance = variances[0] + variances[1]
    variance[~valid] = 1.0
    return diff, variance


def fitted_difference(
    template: np.ndarray,
    science: np.ndarray,
    valid: np.ndarray,
    science_psf_sigma: float,
    template_psf_sigma: float,
    *,
    template_variance: np.ndarray,
    science_variance: np.ndarray,
    mask: np.ndarray | None = None,
    template_median: float = 0.0,
    science_median: float = 0.0,
    n_stamps: int = FITTED_DIFFERENCE_STAMPS,
    fit_size: int = FITTED_DIFFERENCE_FIT_SIZE,
    flux_variance: bool = False,
) -> tuple[np.ndarray, ...]:
    """Return ``science - template`` matched with a fitted, spatially constant kernel.

    Both images are median-subtracted and their invalid pixels set to 0 (their
    median), as in `matched_difference`.  The kernel that convolves the sharper
    image is fitted by `lsst.meas.realbogus.diffim.subtract_images` on the central
    ``fit_size`` x ``fit_size`` pixels (Gaussian basis functions whose widths follow
    from the two Gaussian-equivalent PSF sigmas, a constant differential background,
    linear least squares on at most ``n_stamps`` bright isolated template stars, no
    spatial variation; with too few stars its analytic Gaussian fallback), then
    applied to the whole image in one FFT convolution.  Only the PSF sigmas are
    needed: the PSFs enter the fit through the basis widths alone.  The constant
    background fitted with the kernel is not applied: fitted on star stamps, it
    absorbs the mismatch of the PSF wings and, with nearly equal PSFs, left a
    pedestal of up to 0.4 sigma over the whole difference, which halved the
    network's completeness there.  The difference's median over the valid pixels
    is subtracted instead.

    Parameters
    ----------
    template, science : `numpy.ndarray`
        Images on the same grid.
    valid : `numpy.ndarray`
        Boolean map of usable pixels (`valid_mask`).
    science_psf_sigma, template_psf_sigma : `float`
        Gaussian-equivalent PSF sigmas in pixels.
    template_variance, science_variance : `numpy.ndarray`
        Variance planes (fit weights and the returned variance).
    mask : `numpy.ndarray`, optional
        Integer mask of the pair (`mask_planes` bits; bad pixels stay out of the fit).
    template_median, science_median : `float`
        Values subtracted from each image (its background).
    n_stamps : `int`
        Maximum number of stars the kernel is fitted on.
    fit_size : `int`
        Side of the central region the kernel is fitted on.
    flux_variance : `bool`
        Also return the variance plane for PSF-weighted fluxes (see Returns).

    Returns
    -------
    difference, variance : `numpy.ndarray`
        ``float32`` ``(H, W)`` difference (0 on invalid pixels) and its per-pixel
        variance (1 there).
    flux_variance : `numpy.ndarray`
        Only with ``flux_variance=True``: a variance plane whose Gaussian-weighted
        sums give the variance of Gaussian-weighted fluxes (weights of the broader PSF
        sigma).  The convolution correlates the convolved image's noise, so the
        per-pixel variance underestimates a flux's error (by 1.6x in flux/error
        when the science image is the one convolved); its convolved part is scaled by
        ``sum((w * K)^2) / (sum(w^2) sum(K^2))`` for the weights ``w`` and the kernel
        ``K``.

    Raises
    ------
    ValueError
        Raised if a PSF sigma is not a positive finite number.
    """
    from ..diffim import SubtractionConfig, subtract_images
    from ..diffim.convolution import convolve_same
    from ..diffim.psf import gaussian_kernel

    sigma_sci = _check_psf_sigma("science_psf_sigma", science_psf_sigma)
    sigma_tmpl = _check_psf_sigma("template_psf_sigma", template_psf_sigma)
    sci = _centred(science, valid, science_median)
    tmpl = _centred(template, valid, template_median)
    sci_var = _filled_variance(science_variance, valid)
    tmpl_var = _filled_variance(template_variance, valid)

    height, width = valid.shape
    y0, x0 = max((height - fit_size) // 2, 0), max((width - fit_size) // 2, 0)
    region = (slice(y0, y0 + fit_size), slice(x0, x0 + fit_size))
    nan = np.float32(np.nan)
    fit_valid = valid[region]
    fit_planes = [np.where(fit_valid, a[region], nan) for a in (sci, sci_var, tmpl, tmpl_var)]
    fit_mask = (np.zeros(fit_valid.shape, dtype=np.int32) if mask is None
                else np.asarray(mask)[region].astype(np.int32))
    convolve_science = sigma_sci < sigma_tmpl
    half = int(np.ceil(5.0 * max(sigma_sci, sigma_tmpl)))
    config = SubtractionConfig(convolve="science" if convolve_science else "template", spatial_order=0,
                               background_order=0, exact_variance=False, n_stamps=int(n_stamps),
                               halo_basis=False)
    fit = subtract_images(fit_planes[0], fit_planes[1], fit_mask, fit_planes[2], fit_planes[3], fit_mask,
                          gaussian_kernel(sigma_sci, half), gaussian_kernel(sigma_tmpl, half), config=config)
    kernel = np.asarray(fit.kernel, dtype=np.float32)
    if convolve_science:
        matched, matched_var = convolve_same(sci, [kernel], dtype=np.float32)[0], \
            convolve_same(sci_var, [kernel * kernel], dtype=np.float32)[0]
        diff = matched - tmpl
        variance = matched_var + tmpl_var
        other_var = tmpl_var
    else:
        matched, matched_var = convolve_same(tmpl, [kernel], dtype=np.float32)[0], \
            convolve_same(tmpl_var, [kernel * kernel], dtype=np.float32)[0]
        diff = sci - matched
        variance = sci_var + matched_var
        other_var = sci_var
    diff = diff.astype(np.float32)
    # The constant differential background is the difference's own median, not the fitted
    # constant: on star stamps that constant absorbs the mismatch of the PSF wings (a pedestal
    # of up to 0.4 sigma over the whole image when the two PSFs are nearly equal).
    indices = _subsample_indices(valid)
    if indices.size:
        diff -= np.float32(np.median(_values(diff, indices)))
    variance = np.maximum(variance, np.float32(1e-30)).astype(np.float32)
    diff[~valid] = 0.0
    variance[~valid] = 1.0
    if not flux_variance:
        return diff, variance
    # Correlated noise of the convolved image: a Gaussian-weighted flux has variance
    # var * sum((w (x) K)^2), not sum(w^2 (var (x) K^2)) = var * sum(w^2) sum(K^2).
    sigma_w = max(sigma_sci, sigma_tmpl)
    weight = gaussian_kernel(sigma_w, int(np.ceil(4 * sigma_w)) + half)
    smoothed = convolve_same(weight, [kernel], dtype=np.float64)[0]
    correlation = float(np.sum(smoothed**2) / (np.sum(weight**2) * np.sum(kernel.astype(np.float64) ** 2)))
    flux_var = (other_var + np.float32(correlation) * matched_var).astype(np.float32)
    flux_var = np.maximum(flux_var, np.float32(1e-30))
    flux_var[~valid] = 1.0
    return diff, variance, flux_var


def fitted_pair_difference(
    template: np.ndarray,
    science: np.ndarray,
    *,
    template_variance: np.ndarray,
    science_variance: np.ndarray,
    science_psf_sigma: float,
    template_psf_sigma: float,
    mask: np.ndarray | None = None,
    spec: NormalizationSpec | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the fitted-kernel difference of a pair exactly as `normalize_pair` builds it.

    `fitted_difference` with the pair's own valid pixels and medians (`compute_stats`
    with ``spec``), in image units, NaN on invalid pixels.  Passed to
    ``normalize_pair(difference=...)`` it gives the same network input as computing it
    there, so that the difference serves both the network and the flux measurement
    (`~.peaks.difference_fluxes`) at the cost of one fit.

    Returns
    -------
    difference, variance, flux_variance : `numpy.ndarray`
        ``float32`` ``(H, W)``; NaN on invalid pixels.  ``flux_variance`` accounts
        for the noise the kernel correlates (see `fitted_difference`): the one to
        use for fluxes.

    Raises
    ------
    ValueError
        Raised for mismatched shapes, invalid PSF sigmas or no valid pixel.
    """
    science = _as_image("science", science, None)
    shape = science.shape
    template = _as_image("template", template, shape)
    template_variance = _as_image("template_variance", template_variance, shape)
    science_variance = _as_image("science_variance", science_variance, shape)
    if mask is not None:
        mask = _as_image("mask", mask, shape)
    valid = valid_mask(template, science, mask=mask, template_variance=template_variance,
                       science_variance=science_variance)
    stats = compute_stats(template, science, valid, science_variance=science_variance, spec=spec)
    planes = fitted_difference(template, science, valid, science_psf_sigma, template_psf_sigma,
                               template_variance=template_variance, science_variance=science_variance,
                               mask=mask, template_median=stats.template_median,
                               science_median=stats.science_median, flux_variance=True)
    for plane in planes:
        plane[~valid] = np.nan
    return planes


def _difference_sigma(diff: np.ndarray, valid: np.ndarray) -> float:
    """Robust (1.4826 x MAD) scatter of the valid difference pixels."""
    values = _values(diff, _subsample_indices(valid))
    sigma = float(1.4826 * np.median(np.abs(values - np.median(values))))
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError("Cannot estimate the noise sigma of the matched difference (identical images?).")
    return sigma


def _difference_plane(
    template: np.ndarray,
    science: np.ndarray,
    valid: np.ndarray,
    mask: np.ndarray | None,
    spec: NormalizationSpec,
    stats: NormalizationStats,
    science_psf_sigma: float,
    template_psf_sigma: float,
    template_variance: np.ndarray | None,
    science_variance: np.ndarray | None,
    difference: tuple[np.ndarray, ...] | None = None,
) -> np.ndarray:
    """Return the asinh-stretched ``"difference"`` channel of `normalize_pair`."""
    have_variances = template_variance is not None and science_variance is not None
    needs_variances = spec.difference_noise == "variance" or spec.difference_kernel == "fitted"
    if needs_variances and not have_variances:
        raise ValueError(f"The 'difference' channel with difference_noise={spec.difference_noise!r} and "
                         f"difference_kernel={spec.difference_kernel!r} needs both variance planes "
                         "(template_variance, science_variance).")
    if spec.difference_kernel == "fitted" and difference is not None:
        diff, diff_var = (_as_image("difference", a, valid.shape) for a in difference[:2])
    elif spec.difference_kernel == "fitted":
        diff, diff_var = fitted_difference(template, science, valid, science_psf_sigma, template_psf_sigma,
                                           template_variance=template_variance,
                                           science_variance=science_variance, mask=mask,
                                           template_median=stats.template_median,
                                           science_median=stats.science_median)
    elif spec.difference_noise == "variance":
        diff, diff_var = matched_difference(template, science, valid, science_psf_sigma, template_psf_sigma,
                                            template_median=stats.template_median,
                                            science_median=stats.science_median,
                                            template_variance=template_variance,
                                            science_variance=science_variance)
    else:
        diff = matched_difference(template, science, valid, science_psf_sigma, template_psf_sigma,
                                  template_median=stats.template_median, science_median=stats.science_median)
    if spec.difference_noise == "variance":
        with np.errstate(divide="ignore", invalid="ignore"):
            z = diff / np.sqrt(diff_var)
        z[~np.isfinite(z)] = 0.0
        return np.arcsinh(z * np.float32(1.0 / spec.asinh_softening))
    diff_sigma = stats.difference_sigma
    if diff_sigma is None:
        diff_sigma = _difference_sigma(diff, valid)
    elif not (np.isfinite(diff_sigma) and diff_sigma > 0):
        raise ValueError(f"stats.difference_sigma must be positive and finite; got {diff_sigma}.")
    return np.arcsinh(diff * np.float32(1.0 / (diff_sigma * spec.asinh_softening)))


def normalize_pair(
    template: np.ndarray,
    science: np.ndarray,
    *,
    template_variance: np.ndarray | None = None,
    science_variance: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    spec: NormalizationSpec | None = None,
    stats: NormalizationStats | None = None,
    science_psf_sigma: float | None = None,
    template_psf_sigma: float | None = None,
    difference: tuple[np.ndarray, ...] | None = None,
) -> np.ndarray:
    """Build the normalised network input for one (template, science) pair.

    Parameters
    ----------
    template, science : `numpy.ndarray`
        Images on the same pixel grid (any flux unit, same for both).
    template_variance, science_variance : `numpy.ndarray`, optional
        Variance planes; required if the spec asks for variance channels.
    mask : `numpy.ndarray`, optional
        Integer mask (`mask_planes` bits); ``NO_DATA`` pixels are invalid.
    spec : `NormalizationSpec`, optional
        Channels and stretch; default template, science, valid.
    stats : `NormalizationStats`, optional
        Precomputed statistics (e.g. from the whole detector); measured if `None`.
    science_psf_sigma, template_psf_sigma : `float`, optional
        Gaussian-equivalent PSF sigmas (pixels) of the two images; required if
        the spec has a ``"difference"`` channel (`NormalizationSpec.needs_psf_sigmas`),
        ignored otherwise.
    difference : `tuple` [`numpy.ndarray`, ...], optional
        The pair's planes from `fitted_pair_difference` (difference and variance first), used
        instead of fitting it again when the spec's ``difference_kernel`` is
        ``"fitted"`` (ignored otherwise).

    Returns
    -------
    inputs : `numpy.ndarray`
        ``float32`` array of shape ``(n_channels, H, W)``, finite everywhere.

    Raises
    ------
    ValueError
        Raised for mismatched shapes, missing variance planes or PSF sigmas, or
        unmeasurable noise.
    """
    spec = spec or NormalizationSpec()
    if spec.needs_psf_sigmas and (science_psf_sigma is None or template_psf_sigma is None):
        raise ValueError(f"The TransiNet channels {list(spec.channels)} include a PSF-matched 'difference', "
                         "which needs science_psf_sigma and template_psf_sigma (Gaussian-equivalent PSF "
                         f"sigmas in pixels); got science_psf_sigma={science_psf_sigma!r}, "
                         f"template_psf_sigma={template_psf_sigma!r}.")
    science = _as_image("science", science, None)
    shape = science.shape
    template = _as_image("template", template, shape)
    if mask is not None:
        mask = _as_image("mask", mask, shape)
    if template_variance is not None:
        template_variance = _as_image("template_variance", template_variance, shape)
    if science_variance is not None:
        science_variance = _as_image("science_variance", science_variance, shape)
    for name, var in (("variance_template", template_variance), ("variance_science", science_variance)):
        if name in spec.channels and var is None:
            raise ValueError(f"Channel {name!r} requested by the normalisation spec but no variance "
                             "was given.")
    valid = valid_mask(template, science, mask=mask, template_variance=template_variance,
                       science_variance=science_variance)
    if stats is None:
        stats = compute_stats(template, science, valid, science_variance=science_variance, spec=spec)
    out = np.zeros((spec.n_channels,) + shape, dtype=np.float32)
    inv_sigma = 1.0 / stats.sigma
    for i, name in enumerate(spec.channels):
        if name == "valid":
            out[i] = valid
            continue
        if name == "template":
            plane = np.arcsinh((template - stats.template_median) * (inv_sigma / spec.asinh_softening))
        elif name == "science":
            plane = np.arcsinh((science - stats.science_median) * (inv_sigma / spec.asinh_softening))
        elif name == "difference":
            plane = _difference_plane(template, science, valid, mask, spec, stats, science_psf_sigma,
                                      template_psf_sigma, template_variance, science_variance, difference)
        elif name == "variance_template":
            plane = np.sqrt(np.clip(template_variance, 0, None)) * inv_sigma
        else:
            plane = np.sqrt(np.clip(science_variance, 0, None)) * inv_sigma
        out[i] = np.where(valid, plane, 0.0)
    return out
