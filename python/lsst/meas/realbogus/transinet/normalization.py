"""Input normalisation for TransiNet, shared by training and inference.

The network sees a stack of channels built from one (template, science) pair:

* ``"template"`` and ``"science"``: each image minus its own median, divided by one
  common noise sigma (estimated from the science image), then asinh-stretched;
* optional ``"difference"``: a Gaussian-PSF-matched difference (see below);
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
channels make nearly impossible (e.g. for a variable star).  It is a *fixed*
operation, with no fitted kernel and no detection, computed from the images and
the Gaussian-equivalent sigmas of their own PSF models: both images minus their
medians, invalid pixels set to 0 (the median), the sharper of the two convolved
with a Gaussian of sigma ``sqrt(|sigma_sci**2 - sigma_tmpl**2|)`` (zero padding
beyond the image, i.e. the median), science minus template, divided by the
robust (1.4826 x MAD) scatter of that difference on the valid pixels and
asinh-stretched like the other channels.  A model whose spec has this channel
needs both PSF sigmas (`NormalizationSpec.needs_psf_sigmas`).  Like the
statistics, the difference is computed once on the whole image, so tiled
inference stays seamless.
"""

from __future__ import annotations

__all__ = ["NormalizationSpec", "NormalizationStats", "KNOWN_CHANNELS", "PSF_CHANNELS", "compute_stats",
           "matched_difference", "normalize_pair", "valid_mask"]

import dataclasses
from typing import Any

import numpy as np
from scipy import ndimage

from ..mask_planes import NO_DATA

KNOWN_CHANNELS = ("template", "science", "difference", "variance_template", "variance_science", "valid")
"""Channel names understood by `normalize_pair`."""

PSF_CHANNELS = ("difference",)
"""Channels that need the science and template PSF sigmas."""

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
    """

    channels: tuple[str, ...] = ("template", "science", "valid")
    asinh_softening: float = 3.0
    noise_source: str = "variance"
    difference_noise: str = "mad"

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
    sci = np.where(valid, np.asarray(science, dtype=np.float32) - np.float32(science_median), np.float32(0))
    tmpl = np.where(valid, np.asarray(template, dtype=np.float32) - np.float32(template_median),
                    np.float32(0))
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
        var = np.asarray(var, dtype=np.float32)
        good = valid & np.isfinite(var)
        fill = np.float32(np.median(var[good])) if good.any() else np.float32(1.0)
        var = np.where(good, var, fill)
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


def _difference_sigma(diff: np.ndarray, valid: np.ndarray) -> float:
    """Robust (1.4826 x MAD) scatter of the valid difference pixels."""
    values = _values(diff, _subsample_indices(valid))
    sigma = float(1.4826 * np.median(np.abs(values - np.median(values))))
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError("Cannot estimate the noise sigma of the matched difference (identical images?).")
    return sigma


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
        elif name == "difference" and spec.difference_noise == "variance":
            if template_variance is None or science_variance is None:
                raise ValueError("The 'difference' channel with difference_noise='variance' needs both "
                                 "variance planes (template_variance, science_variance).")
            diff, diff_var = matched_difference(template, science, valid, science_psf_sigma,
                                                template_psf_sigma, template_median=stats.template_median,
                                                science_median=stats.science_median,
                                                template_variance=template_variance,
                                                science_variance=science_variance)
            with np.errstate(divide="ignore", invalid="ignore"):
                z = diff / np.sqrt(diff_var)
            z[~np.isfinite(z)] = 0.0
            plane = np.arcsinh(z * np.float32(1.0 / spec.asinh_softening))
        elif name == "difference":
            diff = matched_difference(template, science, valid, science_psf_sigma, template_psf_sigma,
                                      template_median=stats.template_median,
                                      science_median=stats.science_median)
            diff_sigma = stats.difference_sigma
            if diff_sigma is None:
                diff_sigma = _difference_sigma(diff, valid)
            elif not (np.isfinite(diff_sigma) and diff_sigma > 0):
                raise ValueError(f"stats.difference_sigma must be positive and finite; got {diff_sigma}.")
            plane = np.arcsinh(diff * np.float32(1.0 / (diff_sigma * spec.asinh_softening)))
        elif name == "variance_template":
            plane = np.sqrt(np.clip(template_variance, 0, None)) * inv_sigma
        else:
            plane = np.sqrt(np.clip(science_variance, 0, None)) * inv_sigma
        out[i] = np.where(valid, plane, 0.0)
    return out
