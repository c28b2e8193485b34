"""Stamp normalisation shared by training and inference.

A model package declares its normalisation as a `NormalizationSpec`; both the
training code and `scoring` call `normalize_stamps` with it, so that a model
sees identically prepared inputs in both.  All methods are vectorised over
stamps and never return NaN or Inf.

Methods
-------
``"robust"`` (default)
    For each stamp one noise scale ``sigma`` is shared by all channels, taken
    from the ``"difference"`` channel: ``1.4826 * MAD`` of its finite pixels
    (median absolute deviation about the median), or, if a variance stamp of
    the difference is given and ``use_variance`` is set, ``sqrt`` of the
    median of its finite positive pixels.  If the MAD is zero (e.g. heavily
    quantised data) the standard deviation of the finite pixels is used.
    Each channel has its own median (its background) subtracted and is
    divided by ``sigma``; then the compressive stretch
    ``v -> asinh_a * asinh(v / asinh_a)`` is applied (linear for
    ``|v| << asinh_a``, logarithmic beyond) unless ``asinh_a`` is None.
``"difference_snr"``
    Only the difference channel, divided by the same ``sigma`` (no
    background subtraction), then the same optional stretch.
``"none"``
    The channels unchanged (cast to float32); meant for tests.

In every method non-finite pixels become 0 after normalisation, and if
``mask_channel`` is set a last channel ``valid`` is appended that is 1 where
all input channels are finite and 0 elsewhere.  Stamps whose ``sigma`` cannot
be estimated (no finite difference pixel, or zero spread) become all zeros,
including their ``valid`` channel.

Because medians and MADs scale with the data, multiplying all images by a
constant ``k`` (and the variance by ``k**2``) leaves the output unchanged to
float precision: scores do not depend on the flux unit.
"""

from __future__ import annotations

__all__ = [
    "NORMALIZATION_METHODS",
    "NormalizationSpec",
    "normalize_stamps",
    "normalize_stamps_with_scale",
    "noise_scale",
    "nanmedian_rows",
    "BLANK_LIMIT",
]

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np

NORMALIZATION_METHODS: tuple[str, ...] = ("robust", "difference_snr", "none")
"""Names of the supported normalisation methods."""

_MAD_TO_SIGMA = 1.4826


@dataclass(frozen=True)
class NormalizationSpec:
    """Declaration of a stamp normalisation (stored in model packages).

    Parameters
    ----------
    method : `str`
        One of `NORMALIZATION_METHODS`.
    asinh_a : `float` or `None`
        Softening of the stretch ``a * asinh(v / a)`` in units of sigma;
        `None` disables the stretch.  Ignored by ``"none"``.
    use_variance : `bool`
        Take sigma from the variance stamp of the difference when one is
        given (otherwise from the MAD of the difference).
    mask_channel : `bool`
        Append a ``valid`` channel (1 where all inputs are finite, else 0).
    per_channel_noise : `bool`
        ``"robust"`` only: divide each non-difference channel (science,
        template) by its own noise scale, ``1.4826 * MAD`` of that channel's
        stamp, instead of the difference's; the difference keeps its own.
        This makes the inputs independent of the depth and of the photometric
        scale of each image separately (e.g. a template delivered in another
        zero point than the science image, as in some alert streams).  A
        channel whose MAD is zero or undefined falls back to the difference's
        sigma.
    max_stat_pixels : `int`
        Medians and MADs are computed on at most about this many pixels per
        stamp: every ``k``-th pixel of the row-major flattened stamp with
        ``k = ceil(S * S / max_stat_pixels)`` (all pixels for small stamps).
        This bounds the cost of the order statistics for large stamps.
    """

    method: str = "robust"
    asinh_a: float | None = 10.0
    use_variance: bool = True
    mask_channel: bool = True
    max_stat_pixels: int = 512
    per_channel_noise: bool = False

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check the parameters.

        Raises
        ------
        ValueError
            Raised with a description of the first invalid parameter.
        """
        if self.method not in NORMALIZATION_METHODS:
            raise ValueError(
                f"Unknown normalisation method {self.method!r}; known methods: {NORMALIZATION_METHODS}"
            )
        if self.asinh_a is not None:
            if isinstance(self.asinh_a, bool) or not isinstance(self.asinh_a, int | float):
                raise ValueError(f"asinh_a must be a positive number or None, got {self.asinh_a!r}")
            if not (np.isfinite(self.asinh_a) and self.asinh_a > 0):
                raise ValueError(f"asinh_a must be a positive finite number or None, got {self.asinh_a!r}")
        if (
            isinstance(self.max_stat_pixels, bool)
            or not isinstance(self.max_stat_pixels, int)
            or self.max_stat_pixels < 16
        ):
            raise ValueError(f"max_stat_pixels must be an integer >= 16, got {self.max_stat_pixels!r}")
        for name in ("use_variance", "mask_channel", "per_channel_noise"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dictionary of the parameters."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NormalizationSpec:
        """Build a spec from `to_dict` output.

        Parameters
        ----------
        data : `dict`
            Parameters; unknown keys are an error.

        Returns
        -------
        spec : `NormalizationSpec`
            The validated spec.

        Raises
        ------
        ValueError
            Raised for unknown keys or invalid values.
        """
        if not isinstance(data, dict):
            raise ValueError(f"Normalisation spec must be a dict, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"Unknown normalisation parameters {sorted(unknown)}; known: {sorted(known)}")
        return cls(**data)

    def stat_stride(self, npix: int) -> int:
        """Return the stride ``k`` of the pixels used for statistics.

        Parameters
        ----------
        npix : `int`
            Number of pixels of a stamp.

        Returns
        -------
        stride : `int`
            ``max(1, ceil(npix / max_stat_pixels))``.
        """
        return max(1, -(-int(npix) // self.max_stat_pixels))

    def input_channels(self, channels: Sequence[str]) -> tuple[str, ...]:
        """Return the input channels the method reads, in output order.

        Parameters
        ----------
        channels : `~collections.abc.Sequence` [`str`]
            Channels of the stamps given to `normalize_stamps`.

        Returns
        -------
        used : `tuple` [`str`]
            ``channels`` for ``"robust"`` and ``"none"``, ``("difference",)``
            for ``"difference_snr"``.
        """
        if self.method == "difference_snr":
            return ("difference",)
        return tuple(channels)

    def output_channels(self, channels: Sequence[str]) -> tuple[str, ...]:
        """Return the names of the output channels.

        Parameters
        ----------
        channels : `~collections.abc.Sequence` [`str`]
            Channels of the input stamps.

        Returns
        -------
        names : `tuple` [`str`]
            Output channel names (``"valid"`` last if ``mask_channel``).
        """
        names = self.input_channels(channels)
        return names + (("valid",) if self.mask_channel else ())


def nanmedian_rows(values: np.ndarray) -> np.ndarray:
    """Median of the finite values of each row, vectorised.

    Parameters
    ----------
    values : `numpy.ndarray`
        ``(M, K)`` array; non-finite values are ignored.

    Returns
    -------
    median : `numpy.ndarray`
        ``(M,)`` float64 medians (mean of the two middle values for an even
        count); NaN for rows without finite values.
    """
    values = np.asarray(values)
    if values.ndim != 2:
        raise ValueError(f"nanmedian_rows needs a 2-D array, got shape {values.shape}")
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    if values.shape[1] == 0:
        return np.full(values.shape[0], np.nan)
    # NaN sorts last; replace Inf so that it does too.
    clean = np.where(finite, values, np.nan)
    ordered = np.sort(clean, axis=1)
    lo = np.maximum((count - 1) // 2, 0)
    hi = np.maximum(count // 2, 0)
    hi = np.minimum(hi, values.shape[1] - 1)
    a = np.take_along_axis(ordered, lo[:, None], axis=1)[:, 0].astype(np.float64)
    b = np.take_along_axis(ordered, hi[:, None], axis=1)[:, 0].astype(np.float64)
    median = 0.5 * (a + b)
    median[count == 0] = np.nan
    return median


def _check_inputs(
    stamps: np.ndarray, channels: Sequence[str], variance: np.ndarray | None
) -> tuple[np.ndarray, tuple[str, ...], np.ndarray | None]:
    stamps = np.asarray(stamps)
    if stamps.ndim != 4:
        raise ValueError(f"stamps must have shape (N, C, S, S), got shape {stamps.shape}")
    if not (np.issubdtype(stamps.dtype, np.floating) or np.issubdtype(stamps.dtype, np.integer)):
        raise ValueError(f"stamps must be numeric, got dtype {stamps.dtype}")
    channels = tuple(channels)
    if len(channels) != stamps.shape[1]:
        raise ValueError(
            f"Got {len(channels)} channel names {channels} for stamps with {stamps.shape[1]} channels"
        )
    if len(set(channels)) != len(channels):
        raise ValueError(f"Channel names must be unique, got {channels}")
    if variance is not None:
        variance = np.asarray(variance)
        if variance.ndim == 4 and variance.shape[1] == 1:
            variance = variance[:, 0]
        expected = (stamps.shape[0],) + stamps.shape[2:]
        if variance.shape != expected:
            raise ValueError(
                f"variance stamps must have shape {expected} (or with a channel axis of 1), "
                f"got {variance.shape}"
            )
    return stamps, channels, variance


def noise_scale(
    stamps: np.ndarray,
    channels: Sequence[str],
    spec: NormalizationSpec | None = None,
    variance: np.ndarray | None = None,
) -> np.ndarray:
    """Per-stamp noise scale sigma used by the normalisation.

    Parameters
    ----------
    stamps : `numpy.ndarray`
        ``(N, C, S, S)`` stamps containing a ``"difference"`` channel.
    channels : `~collections.abc.Sequence` [`str`]
        Channel names of ``stamps``.
    spec : `NormalizationSpec`, optional
        Normalisation (only ``use_variance`` matters); default spec if None.
    variance : `numpy.ndarray`, optional
        ``(N, S, S)`` variance stamps of the difference.

    Returns
    -------
    sigma : `numpy.ndarray`
        ``(N,)`` float64, NaN where it cannot be estimated (no finite
        difference pixel, even if a variance is given, or zero spread).

    Raises
    ------
    ValueError
        Raised if there is no ``"difference"`` channel or shapes disagree.
    """
    spec = spec if spec is not None else NormalizationSpec()
    stamps, channels, variance = _check_inputs(stamps, channels, variance)
    if "difference" not in channels:
        raise ValueError(f"A 'difference' channel is needed to estimate the noise; channels are {channels}")
    return _noise_scale(stamps[:, channels.index("difference")], variance, spec)


def _noise_scale(
    diff: np.ndarray,
    variance: np.ndarray | None,
    spec: NormalizationSpec,
    diff_median: np.ndarray | None = None,
) -> np.ndarray:
    """Noise scale of ``(N, S, S)`` difference stamps (see `noise_scale`)."""
    n = diff.shape[0]
    k = spec.stat_stride(int(np.prod(diff.shape[1:])))
    sigma = np.full(n, np.nan)
    if variance is not None and spec.use_variance:
        var = variance.reshape(n, -1)[:, ::k]
        var = np.where(np.isfinite(var) & (var > 0), var, np.nan)
        sigma = np.sqrt(nanmedian_rows(var))
    todo = ~np.isfinite(sigma)
    if todo.any():
        d = diff.reshape(n, -1)[todo][:, ::k].astype(np.float32)
        med = nanmedian_rows(d) if diff_median is None else diff_median[todo]
        mad = _MAD_TO_SIGMA * nanmedian_rows(np.abs(d - med[:, None].astype(np.float32)))
        zero = np.isfinite(mad) & (mad <= 0)
        if zero.any():
            dz = d[zero].astype(np.float64)
            fin = np.isfinite(dz)
            cnt = fin.sum(axis=1)
            mean = np.where(fin, dz, 0.0).sum(axis=1) / np.maximum(cnt, 1)
            var = np.where(fin, (dz - mean[:, None]) ** 2, 0.0).sum(axis=1) / np.maximum(cnt, 1)
            mad[zero] = np.sqrt(var)
        sigma[todo] = mad
    # A stamp without any finite difference pixel cannot be scored, even with a variance.
    has_data = np.isfinite(diff.reshape(n, -1)).any(axis=1)
    sigma[~(np.isfinite(sigma) & (sigma > 0) & has_data)] = np.nan
    return sigma


BLANK_LIMIT = 1e30
"""Pixels with ``|value| >= BLANK_LIMIT`` are "no data" markers (e.g. the float32 minimum
``-3.4e38`` that some alert streams use for blank template pixels) and are treated like NaN."""


def _blank_markers_to_nan(stamps: np.ndarray) -> np.ndarray:
    """Return ``stamps`` with blank-value markers replaced by NaN (a copy only if there are any)."""
    with np.errstate(invalid="ignore"):
        blank = np.abs(stamps) >= BLANK_LIMIT
    if blank.any():
        stamps = np.where(blank, np.float32(np.nan), stamps).astype(stamps.dtype, copy=False)
    return stamps


def normalize_stamps_with_scale(
    stamps: np.ndarray,
    channels: Sequence[str],
    spec: NormalizationSpec | None = None,
    variance: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise stamps and also return the per-stamp noise scale.

    Parameters
    ----------
    stamps : `numpy.ndarray`
        ``(N, C, S, S)`` stamps in any flux unit; NaN marks missing pixels.
    channels : `~collections.abc.Sequence` [`str`]
        Names of the ``C`` channels, e.g. ``("template", "science",
        "difference")``; ``"robust"`` and ``"difference_snr"`` need a
        ``"difference"`` channel.
    spec : `NormalizationSpec`, optional
        The normalisation; the default ``"robust"`` spec if None.
    variance : `numpy.ndarray`, optional
        ``(N, S, S)`` variance stamps of the difference (unit squared).

    Returns
    -------
    normalized : `numpy.ndarray`
        ``(N, C_out, S, S)`` float32 without NaN or Inf, channels
        ``spec.output_channels(channels)``.
    sigma : `numpy.ndarray`
        ``(N,)`` noise scale per stamp (see `noise_scale`); NaN where it could
        not be estimated (such stamps are all zeros).  For ``"none"``, 1 where
        the stamp has a finite pixel and NaN otherwise.

    Raises
    ------
    ValueError
        Raised for shapes or channel names that do not fit.
    """
    spec = spec if spec is not None else NormalizationSpec()
    stamps, channels, variance = _check_inputs(stamps, channels, variance)
    stamps = _blank_markers_to_nan(stamps)
    n = stamps.shape[0]
    used = spec.input_channels(channels)
    if spec.method != "none" and "difference" not in channels:
        raise ValueError(f"Normalisation {spec.method!r} needs a 'difference' channel; got {channels}")
    n_used = len(used)
    out = np.empty((n, n_used + int(spec.mask_channel)) + stamps.shape[2:], dtype=np.float32)
    if n == 0:
        return out, np.zeros(0)
    data = out[:, :n_used]
    for i, name in enumerate(used):
        data[:, i] = stamps[:, channels.index(name)]
    finite = np.isfinite(data)
    valid = finite.all(axis=1)
    all_finite = bool(valid.all())
    if spec.method == "none":
        sigma = np.where(valid.reshape(n, -1).any(axis=1), 1.0, np.nan)
    else:
        diff_median = None
        if spec.method == "robust":
            npix = int(np.prod(data.shape[2:]))
            k = spec.stat_stride(npix)
            flat = out.reshape(out.shape[0], out.shape[1], -1)[:, :n_used, ::k]
            med = nanmedian_rows(flat.reshape(n * n_used, -1)).reshape(n, n_used)
            diff_median = med[:, used.index("difference")]
            med = np.where(np.isfinite(med), med, 0.0).astype(np.float32)
            data -= med[:, :, None, None]
        diff = stamps[:, channels.index("difference")]
        sigma = _noise_scale(diff, variance, spec, diff_median)
        ok = np.isfinite(sigma)
        channel_sigma = np.repeat(np.where(ok, sigma, 1.0)[:, None], n_used, axis=1)
        if spec.per_channel_noise and spec.method == "robust":
            k = spec.stat_stride(int(np.prod(data.shape[2:])))
            for i, name in enumerate(used):
                if name == "difference":
                    continue
                # ``data`` has had its median removed: the MAD is the median of |data|.
                mad = _MAD_TO_SIGMA * nanmedian_rows(np.abs(data[:, i].reshape(n, -1)[:, ::k]))
                good = np.isfinite(mad) & (mad > 0)
                channel_sigma[good, i] = mad[good]
        inv = np.where(ok[:, None], 1.0 / channel_sigma, 0.0)
        scale = inv / spec.asinh_a if spec.asinh_a is not None else inv
        data *= scale.astype(np.float32)[:, :, None, None]
        if spec.asinh_a is not None:
            np.arcsinh(data, out=data)
            data *= np.float32(spec.asinh_a)
        valid &= ok[:, None, None]
    if not all_finite:
        np.copyto(data, np.float32(0.0), where=~finite)
    if spec.method != "none" and not np.isfinite(data).all():
        # Only pathological dynamic ranges (overflow of value / sigma) get here.
        np.copyto(data, np.float32(0.0), where=~np.isfinite(data))
    if spec.mask_channel:
        out[:, n_used] = valid
    return out, sigma


def normalize_stamps(
    stamps: np.ndarray,
    channels: Sequence[str],
    spec: NormalizationSpec | None = None,
    variance: np.ndarray | None = None,
) -> np.ndarray:
    """Normalise stamps as declared by ``spec`` (see the module docstring).

    Parameters
    ----------
    stamps : `numpy.ndarray`
        ``(N, C, S, S)`` stamps in any flux unit; NaN marks missing pixels.
    channels : `~collections.abc.Sequence` [`str`]
        Names of the ``C`` channels, e.g. ``("template", "science",
        "difference")``; ``"robust"`` and ``"difference_snr"`` need a
        ``"difference"`` channel.
    spec : `NormalizationSpec`, optional
        The normalisation; the default ``"robust"`` spec if None.
    variance : `numpy.ndarray`, optional
        ``(N, S, S)`` variance stamps of the difference (unit squared).

    Returns
    -------
    normalized : `numpy.ndarray`
        ``(N, C_out, S, S)`` float32 without NaN or Inf, channels
        ``spec.output_channels(channels)``.

    Raises
    ------
    ValueError
        Raised for shapes or channel names that do not fit.
    """
    return normalize_stamps_with_scale(stamps, channels, spec, variance)[0]
