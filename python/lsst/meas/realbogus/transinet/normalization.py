"""Input normalisation for TransiNet, shared by training and inference.

The network sees a stack of channels built from one (template, science) pair:

* ``"template"`` and ``"science"``: each image minus its own median, divided by one
  common noise sigma (estimated from the science image), then asinh-stretched;
* optional ``"variance_template"`` / ``"variance_science"``: ``sqrt(variance) / sigma``;
* ``"valid"``: 1 where every input is finite and not ``NO_DATA``, else 0.

Invalid pixels are set to 0 in every channel.  The statistics (medians, sigma) are
computed once per *image* (a whole detector, or a whole training visit) and the
normalised image is then cut into tiles or crops, so that tiled inference is
seamless and identical to full-image inference.  Because every image is divided
by the same sigma measured in its own units, the result does not depend on the
flux unit (nJy, counts, ...).
"""

from __future__ import annotations

__all__ = ["NormalizationSpec", "NormalizationStats", "KNOWN_CHANNELS", "compute_stats", "normalize_pair",
           "valid_mask"]

import dataclasses
from typing import Any

import numpy as np

from ..mask_planes import NO_DATA

KNOWN_CHANNELS = ("template", "science", "variance_template", "variance_science", "valid")
"""Channel names understood by `normalize_pair`."""

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
    """

    channels: tuple[str, ...] = ("template", "science", "valid")
    asinh_softening: float = 3.0
    noise_source: str = "variance"

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

    @property
    def n_channels(self) -> int:
        """Number of network input channels."""
        return len(self.channels)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable description (stored in model packages)."""
        return {
            "name": "transinet_asinh",
            "channels": list(self.channels),
            "asinh_softening": float(self.asinh_softening),
            "noise_source": self.noise_source,
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
    """

    template_median: float
    science_median: float
    sigma: float


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


def normalize_pair(
    template: np.ndarray,
    science: np.ndarray,
    *,
    template_variance: np.ndarray | None = None,
    science_variance: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    spec: NormalizationSpec | None = None,
    stats: NormalizationStats | None = None,
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

    Returns
    -------
    inputs : `numpy.ndarray`
        ``float32`` array of shape ``(n_channels, H, W)``, finite everywhere.

    Raises
    ------
    ValueError
        Raised for mismatched shapes, missing variance planes or unmeasurable noise.
    """
    spec = spec or NormalizationSpec()
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
        elif name == "variance_template":
            plane = np.sqrt(np.clip(template_variance, 0, None)) * inv_sigma
        else:
            plane = np.sqrt(np.clip(science_variance, 0, None)) * inv_sigma
        out[i] = np.where(valid, plane, 0.0)
    return out
