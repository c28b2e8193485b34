"""Compact on-disk storage of raw training cutouts and batch iteration for training.

A `StampStore` is a directory holding memory-mapped ``.npy`` arrays:

``stamps.npy``
    ``float16``, shape ``(N, C, S, S)``: the raw cutouts divided by a per-stamp scale.
``scales.npy``
    ``float32``, shape ``(N,)``: the per-stamp scale; ``stamp = stamps[i] * scales[i]``.
``labels.npy`` (``uint8``), ``snr.npy`` (``float32``), ``groups.npy`` (``int64``, e.g. visit),
``types.npy`` (fixed-width unicode)
    Per-candidate metadata.
``store.json``
    Channel names, cutout size, capacity and the number of rows written.

float16 overflows above 65504 and loses relative precision below about 6e-5, so each stamp is
stored pre-scaled: it is divided by ``max(|finite pixels|) / 1024`` (a power-of-two-free
positive scale saved in ``scales.npy``), which puts every stamp's largest pixel at 1024, well inside
float16's normal range (relative precision ~5e-4).  Reading multiplies the scale back, so batches are
in the original units (nJy) and the normalisation applied by training is exactly the one used at
inference.  NaN pixels stay NaN.  A million 51×51×3 candidates take about 15 GB on disk and are
never loaded whole into memory: only one float32 batch at a time exists in RAM.
"""

from __future__ import annotations

__all__ = [
    "ArrayStampSource",
    "DIHEDRAL_COUNT",
    "IndexedStampSource",
    "OCCLUSION_MIN_RADIUS",
    "StampBatchIterator",
    "StampSource",
    "StampStore",
    "StampTorchDataset",
    "apply_occlusions",
    "draw_occlusions",
    "apply_dihedral",
    "dihedral_variants",
]

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

DIHEDRAL_COUNT = 8
"""Number of distinct rotations/flips of a square stamp (the dihedral group D4)."""

_STORED_MAX = 1024.0
_TYPE_WIDTH = 24
_FILES = ("stamps", "scales", "labels", "snr", "groups", "types")


class StampSource(Protocol):
    """Anything training can read stamps and labels from."""

    channels: tuple[str, ...]
    size: int

    def __len__(self) -> int: ...

    @property
    def labels(self) -> np.ndarray:
        """Binary labels (1 = real) of all rows."""
        ...

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Return the stamps of the given rows as float32 in original units."""
        ...


def _as_channels(channels: Sequence[str]) -> tuple[str, ...]:
    channels = tuple(str(c) for c in channels)
    if not channels:
        raise ValueError("channels must name at least one channel.")
    if len(set(channels)) != len(channels):
        raise ValueError(f"channels contain duplicates: {channels}.")
    return channels


def _check_labels(labels: Any, n: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"labels must have shape ({n},), got {labels.shape}.")
    if labels.dtype != bool and not np.all(np.isin(labels, (0, 1))):
        raise ValueError("labels must be binary (0 = bogus, 1 = real).")
    return labels.astype(np.uint8)


def _optional(values: Any, n: int, dtype: Any, name: str, fill: Any) -> np.ndarray:
    if values is None:
        return np.full(n, fill, dtype=dtype)
    arr = np.asarray(values)
    if arr.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {arr.shape}.")
    return arr.astype(dtype)


class StampStore:
    """Memory-mapped float16 store of raw cutouts with labels and metadata.

    Create with `StampStore.create`, fill with `append`, open with `StampStore.open`.

    Parameters
    ----------
    directory : `str` or `pathlib.Path`
        The store directory.
    mode : `str`
        ``"r"`` (read-only) or ``"r+"`` (appendable).
    """

    def __init__(self, directory: str | os.PathLike[str], mode: str = "r") -> None:
        if mode not in ("r", "r+"):
            raise ValueError(f"mode must be 'r' or 'r+', got {mode!r}.")
        self.directory = Path(directory)
        meta_path = self.directory / "store.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{self.directory} is not a stamp store (no store.json).")
        meta = json.loads(meta_path.read_text())
        self.channels = _as_channels(meta["channels"])
        self.size = int(meta["size"])
        self.capacity = int(meta["capacity"])
        self._count = int(meta["count"])
        self._mode = mode
        self._arrays = {name: np.load(self.directory / f"{name}.npy", mmap_mode=mode) for name in _FILES}
        expected = (self.capacity, len(self.channels), self.size, self.size)
        if self._arrays["stamps"].shape != expected or self._arrays["stamps"].dtype != np.float16:
            raise ValueError(
                f"{self.directory}/stamps.npy has shape {self._arrays['stamps'].shape} and dtype "
                f"{self._arrays['stamps'].dtype}; expected {expected} float16."
            )

    @classmethod
    def create(
        cls, directory: str | os.PathLike[str], n: int, channels: Sequence[str], size: int
    ) -> StampStore:
        """Create an empty store with room for ``n`` stamps.

        Parameters
        ----------
        directory : `str` or `pathlib.Path`
            Directory to create (it must not already hold a store).
        n : `int`
            Capacity (number of stamps).
        channels : sequence of `str`
            Channel names of the stored stamps, in storage order.
        size : `int`
            Stamp side length in pixels.

        Returns
        -------
        store : `StampStore`
            The store, open for appending.
        """
        channels = _as_channels(channels)
        if n <= 0 or size <= 0:
            raise ValueError(f"n and size must be positive, got n={n}, size={size}.")
        directory = Path(directory)
        if (directory / "store.json").exists():
            raise FileExistsError(f"{directory} already holds a stamp store.")
        directory.mkdir(parents=True, exist_ok=True)
        specs = {
            "stamps": (np.float16, (n, len(channels), size, size)),
            "scales": (np.float32, (n,)),
            "labels": (np.uint8, (n,)),
            "snr": (np.float32, (n,)),
            "groups": (np.int64, (n,)),
            "types": (f"<U{_TYPE_WIDTH}", (n,)),
        }
        for name, (dtype, shape) in specs.items():
            arr = np.lib.format.open_memmap(directory / f"{name}.npy", mode="w+", dtype=dtype, shape=shape)
            del arr
        cls._write_meta(directory, channels, size, n, 0)
        return cls(directory, mode="r+")

    @staticmethod
    def _write_meta(directory: Path, channels: tuple[str, ...], size: int, capacity: int, count: int) -> None:
        tmp = directory / "store.json.tmp"
        tmp.write_text(
            json.dumps({"channels": list(channels), "size": size, "capacity": capacity, "count": count})
        )
        os.replace(tmp, directory / "store.json")

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> StampStore:
        """Open an existing store read-only (memory-mapped).

        Parameters
        ----------
        directory : `str` or `pathlib.Path`
            The store directory.

        Returns
        -------
        store : `StampStore`
            The read-only store.
        """
        return cls(directory, mode="r")

    def __len__(self) -> int:
        return self._count

    def append(
        self,
        stamps: np.ndarray,
        labels: Any,
        *,
        snr: Any = None,
        groups: Any = None,
        types: Any = None,
    ) -> None:
        """Append a batch of stamps and their metadata.

        Parameters
        ----------
        stamps : `numpy.ndarray`, shape (n, C, S, S)
            Raw stamps in the store's channel order (any float dtype, NaN allowed).
        labels : array-like, shape (n,)
            Binary labels, 1 = real.
        snr : array-like, optional
            SNR per stamp (NaN if not given).
        groups : array-like of `int`, optional
            Group (e.g. visit) per stamp (−1 if not given).
        types : array-like of `str`, optional
            Type per stamp (empty string if not given); truncated to 24 characters.
        """
        if self._mode != "r+":
            raise PermissionError(f"stamp store {self.directory} is open read-only.")
        stamps = np.asarray(stamps)
        expected = (len(self.channels), self.size, self.size)
        if stamps.ndim != 4 or stamps.shape[1:] != expected:
            raise ValueError(
                f"stamps must have shape (n, {expected[0]}, {self.size}, {self.size}), got {stamps.shape}."
            )
        n = stamps.shape[0]
        if self._count + n > self.capacity:
            raise ValueError(
                f"appending {n} stamps would exceed the capacity {self.capacity} "
                f"({self._count} already written)."
            )
        labels = _check_labels(labels, n)
        stamps32 = stamps.astype(np.float32, copy=False)
        with np.errstate(invalid="ignore"):
            peak = np.nanmax(np.abs(stamps32).reshape(n, -1), axis=1, initial=0.0)
        peak = np.where(np.isfinite(peak) & (peak > 0), peak, _STORED_MAX)
        scales = (peak / _STORED_MAX).astype(np.float32)
        sl = slice(self._count, self._count + n)
        a = self._arrays
        a["stamps"][sl] = (stamps32 / scales[:, None, None, None]).astype(np.float16)
        a["scales"][sl] = scales
        a["labels"][sl] = labels
        a["snr"][sl] = _optional(snr, n, np.float32, "snr", np.nan)
        a["groups"][sl] = _optional(groups, n, np.int64, "groups", -1)
        a["types"][sl] = _optional(types, n, f"<U{_TYPE_WIDTH}", "types", "")
        self._count += n
        for arr in a.values():
            arr.flush()
        self._write_meta(self.directory, self.channels, self.size, self.capacity, self._count)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Read stamps as float32 in the original units.

        Parameters
        ----------
        indices : `numpy.ndarray` of `int`
            Row indices (< ``len(self)``).

        Returns
        -------
        stamps : `numpy.ndarray`, shape (len(indices), C, S, S), float32
            The stamps, multiplied back by their stored scales.
        """
        indices = np.asarray(indices, dtype=np.int64)
        if indices.size and (indices.min() < 0 or indices.max() >= self._count):
            raise IndexError(f"stamp indices must be in [0, {self._count}).")
        # Sorted access is much faster on a memmap; undo the sort afterwards.
        order = np.argsort(indices, kind="stable")
        rows = np.empty((indices.size, len(self.channels), self.size, self.size), dtype=np.float32)
        rows[order] = self._arrays["stamps"][indices[order]]
        rows *= self._arrays["scales"][indices][:, None, None, None]
        return rows

    def _column(self, name: str) -> np.ndarray:
        return np.asarray(self._arrays[name][: self._count])

    @property
    def labels(self) -> np.ndarray:
        """Labels (``uint8``) of the written rows."""
        return self._column("labels")

    @property
    def snr(self) -> np.ndarray:
        """SNR (``float32``, NaN if unknown) of the written rows."""
        return self._column("snr")

    @property
    def groups(self) -> np.ndarray:
        """Group ids (``int64``, −1 if unknown) of the written rows."""
        return self._column("groups")

    @property
    def types(self) -> np.ndarray:
        """Types (unicode, empty if unknown) of the written rows."""
        return self._column("types")


class ArrayStampSource:
    """In-memory stamps with the same reading interface as `StampStore`.

    Parameters
    ----------
    stamps : `numpy.ndarray`, shape (N, C, S, S)
        Raw stamps.
    labels : array-like, shape (N,)
        Binary labels.
    channels : sequence of `str`
        Channel names of ``stamps``.
    snr, groups, types : array-like, optional
        Per-stamp metadata.
    """

    def __init__(
        self,
        stamps: np.ndarray,
        labels: Any,
        channels: Sequence[str],
        *,
        snr: Any = None,
        groups: Any = None,
        types: Any = None,
    ) -> None:
        stamps = np.asarray(stamps)
        self.channels = _as_channels(channels)
        if stamps.ndim != 4 or stamps.shape[1] != len(self.channels) or stamps.shape[2] != stamps.shape[3]:
            raise ValueError(f"stamps must have shape (N, {len(self.channels)}, S, S), got {stamps.shape}.")
        if not np.issubdtype(stamps.dtype, np.floating):
            stamps = stamps.astype(np.float32)
        self._stamps = stamps
        self.size = int(stamps.shape[2])
        n = stamps.shape[0]
        self._labels = _check_labels(labels, n)
        self.snr = _optional(snr, n, np.float32, "snr", np.nan)
        self.groups = _optional(groups, n, np.int64, "groups", -1)
        self.types = _optional(types, n, str, "types", "")

    def __len__(self) -> int:
        return self._stamps.shape[0]

    @property
    def labels(self) -> np.ndarray:
        """Labels (``uint8``)."""
        return self._labels

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Read stamps as float32 (a copy).

        Parameters
        ----------
        indices : `numpy.ndarray` of `int`
            Row indices.

        Returns
        -------
        stamps : `numpy.ndarray`, float32
            The selected stamps.
        """
        return self._stamps[np.asarray(indices, dtype=np.int64)].astype(np.float32)

    def subset(self, indices: np.ndarray) -> ArrayStampSource:
        """Return a new source holding the given rows.

        Parameters
        ----------
        indices : `numpy.ndarray` of `int`
            Row indices.

        Returns
        -------
        source : `ArrayStampSource`
            The subset.
        """
        idx = np.asarray(indices, dtype=np.int64)
        return ArrayStampSource(
            self._stamps[idx],
            self._labels[idx],
            self.channels,
            snr=self.snr[idx],
            groups=self.groups[idx],
            types=self.types[idx],
        )


class IndexedStampSource:
    """A view of selected rows of another stamp source (e.g. the training split of a store).

    Parameters
    ----------
    source : `StampSource`
        The underlying source (a `StampStore` stays memory-mapped).
    indices : `numpy.ndarray` of `int`
        Rows of ``source`` in this view.
    """

    def __init__(self, source: StampSource, indices: np.ndarray) -> None:
        self.source = source
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.ndim != 1:
            raise ValueError("indices must be 1-D.")
        if self.indices.size and (self.indices.min() < 0 or self.indices.max() >= len(source)):
            raise IndexError(f"indices must be in [0, {len(source)}).")
        self.channels = source.channels
        self.size = source.size

    def __len__(self) -> int:
        return self.indices.size

    def _meta(self, name: str, fill: Any, dtype: Any) -> np.ndarray:
        values = getattr(self.source, name, None)
        if values is None:
            return np.full(self.indices.size, fill, dtype=dtype)
        return np.asarray(values)[self.indices]

    @property
    def labels(self) -> np.ndarray:
        """Labels of the selected rows."""
        return np.asarray(self.source.labels)[self.indices]

    @property
    def snr(self) -> np.ndarray:
        """SNR of the selected rows (NaN if unknown)."""
        return self._meta("snr", np.nan, np.float32)

    @property
    def groups(self) -> np.ndarray:
        """Groups of the selected rows (−1 if unknown)."""
        return self._meta("groups", -1, np.int64)

    @property
    def types(self) -> np.ndarray:
        """Types of the selected rows (empty if unknown)."""
        return self._meta("types", "", str)

    def read(self, indices: np.ndarray) -> np.ndarray:
        """Read rows of this view as float32.

        Parameters
        ----------
        indices : `numpy.ndarray` of `int`
            Row indices within the view.

        Returns
        -------
        stamps : `numpy.ndarray`, float32
            The stamps.
        """
        return self.source.read(self.indices[np.asarray(indices, dtype=np.int64)])


def apply_dihedral(stamps: np.ndarray, k: int) -> np.ndarray:
    """Apply one of the 8 dihedral transforms to the last two axes.

    Parameters
    ----------
    stamps : `numpy.ndarray`, shape (..., S, S)
        Square stamps.
    k : `int`
        Transform index in 0..7: ``rot90`` by ``k % 4`` quarter turns, preceded by a left–right
        flip when ``k >= 4``.

    Returns
    -------
    out : `numpy.ndarray`
        The transformed stamps (a view where possible).
    """
    if not 0 <= k < DIHEDRAL_COUNT:
        raise ValueError(f"dihedral index must be in 0..7, got {k}.")
    if stamps.ndim < 2 or stamps.shape[-1] != stamps.shape[-2]:
        raise ValueError(f"stamps must be square in the last two axes, got shape {stamps.shape}.")
    out = stamps[..., ::-1] if k >= 4 else stamps
    return np.rot90(out, k % 4, axes=(-2, -1))


def dihedral_variants(stamp: np.ndarray) -> np.ndarray:
    """All 8 rotations/flips of stamps, stacked on a new leading axis.

    Parameters
    ----------
    stamp : `numpy.ndarray`, shape (..., S, S)
        Square stamp(s).

    Returns
    -------
    variants : `numpy.ndarray`, shape (8, ..., S, S)
        ``variants[k] == apply_dihedral(stamp, k)``.
    """
    return np.stack([apply_dihedral(stamp, k) for k in range(DIHEDRAL_COUNT)])


OCCLUSION_MIN_RADIUS = 3
"""Occlusions drawn by `draw_occlusions` leave every pixel within this Chebyshev distance
(pixels) of the stamp centre untouched."""


def draw_occlusions(
    rng: np.random.Generator, n: int, size: int, probability: float, min_radius: int = OCCLUSION_MIN_RADIUS
) -> np.ndarray | None:
    """Draw random occlusion masks: missing-data blocks and lines away from the stamp centre.

    Real cutouts lose pixels to detector edges, NaN regions, masked columns and the padding of
    alert stamps, whatever the candidate is.  Occluding training stamps of both classes at random
    teaches a classifier that missing pixels *beside* a source are no evidence of an artefact.

    Each stamp is occluded with ``probability``; an occluded stamp gets one of (equally likely)

    - a half-plane: every row (or column) beyond a random offset from the centre on one side,
      as at a detector edge or the padding of a small alert stamp;
    - a corner block: the quadrant beyond random offsets in x and y, as beside a NaN region;
    - a line: one or two adjacent rows or columns, as a masked bad column.

    Offsets are at least ``min_radius + 1`` pixels from the centre, so the central
    ``(2 min_radius + 1)²`` pixels are never occluded.  The draws use only ``rng``.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        Random generator (its stream alone decides the result).
    n : `int`
        Number of stamps.
    size : `int`
        Stamp side length (pixels).
    probability : `float`
        Probability in [0, 1] that a stamp is occluded.
    min_radius : `int`, optional
        Half-width of the protected central square.

    Returns
    -------
    masks : `numpy.ndarray` of `bool`, shape (n, size, size), or `None`
        True where a pixel is occluded; `None` when ``probability`` is 0 (nothing is drawn).

    Raises
    ------
    ValueError
        Raised if ``probability`` is outside [0, 1] or the stamp is too small to occlude
        anything outside the protected centre.
    """
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"occlusion probability must be in [0, 1], got {probability}.")
    if probability == 0.0:
        return None
    centre = size // 2
    lo, hi = min_radius + 1, size - 1 - centre  # offsets from the centre that may be occluded
    if hi < lo:
        raise ValueError(
            f"stamps of {size} px are too small for occlusions outside a central radius of {min_radius} px."
        )
    hit = rng.uniform(size=n) < probability
    kind = rng.integers(0, 3, n)
    side = rng.integers(0, 4, n)
    off_a = rng.integers(lo, hi + 1, n)
    off_b = rng.integers(lo, hi + 1, n)
    width = rng.integers(1, 3, n)
    coord = np.arange(size) - centre
    masks = np.zeros((n, size, size), dtype=bool)
    for i in np.flatnonzero(hit):
        sign = 1 if side[i] % 2 == 0 else -1
        along = sign * coord  # distance from the centre towards the chosen side
        if kind[i] == 0:
            band = along >= off_a[i]
            if side[i] < 2:
                masks[i, band, :] = True
            else:
                masks[i, :, band] = True
        elif kind[i] == 1:
            rows = along >= off_a[i]
            cols = (1 if side[i] < 2 else -1) * coord >= off_b[i]
            masks[i] = rows[:, None] & cols[None, :]
        else:
            band = (along >= off_a[i]) & (along < off_a[i] + width[i])
            if side[i] < 2:
                masks[i, band, :] = True
            else:
                masks[i, :, band] = True
    return masks


def apply_occlusions(stamps: np.ndarray, masks: np.ndarray | None) -> np.ndarray:
    """Set occluded pixels to NaN in every channel (missing data, as cutouts mark it).

    Parameters
    ----------
    stamps : `numpy.ndarray`, shape (n, C, S, S)
        Raw stamps (float).
    masks : `numpy.ndarray` of `bool`, shape (n, S, S), or `None`
        Output of `draw_occlusions`; `None` returns ``stamps`` unchanged.

    Returns
    -------
    stamps : `numpy.ndarray`
        A float32 copy with NaN at the occluded pixels (or ``stamps`` itself).

    Raises
    ------
    ValueError
        Raised if the shapes do not agree.
    """
    if masks is None:
        return stamps
    if masks.shape != (stamps.shape[0],) + stamps.shape[-2:]:
        raise ValueError(f"occlusion masks of shape {masks.shape} do not fit stamps of shape {stamps.shape}.")
    out = np.array(stamps, dtype=np.float32, copy=True)
    out[np.broadcast_to(masks[:, None], out.shape)] = np.nan
    return out


def _default_normalizer(
    channels: Sequence[str], spec: Any, out_channels: Sequence[str] | None = None
) -> Callable[[np.ndarray], np.ndarray]:
    from .normalization import normalize_stamps

    in_channels = tuple(channels)
    want = tuple(out_channels) if out_channels is not None else in_channels

    def normalize(raw: np.ndarray) -> np.ndarray:
        if want != in_channels:
            raw = raw[:, [in_channels.index(c) for c in want]]
        return np.asarray(normalize_stamps(raw, list(want), spec), dtype=np.float32)

    missing = [c for c in want if c not in in_channels]
    if missing:
        raise ValueError(f"model channels {missing} are not in the stored channels {in_channels}.")
    return normalize


class StampBatchIterator:
    """Iterate over normalised, optionally augmented float32 batches of a stamp source.

    Parameters
    ----------
    source : `StampSource`
        Where stamps come from (`StampStore` or `ArrayStampSource`).
    batch_size : `int`
        Stamps per batch.
    channels : sequence of `str`, optional
        Channels the model takes, in its order (a subset/reordering of ``source.channels``);
        default: the source's channels.
    spec : `object`, optional
        ``NormalizationSpec`` passed to ``normalize_stamps``.
    normalize : callable, optional
        Override of the normaliser: ``f(raw (n, C_src, S, S) float32) -> (n, C_out, S, S)``.
    """

    def __init__(
        self,
        source: StampSource,
        batch_size: int,
        channels: Sequence[str] | None = None,
        spec: Any = None,
        normalize: Callable[[np.ndarray], np.ndarray] | None = None,
    ) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.source = source
        self.batch_size = batch_size
        self.normalize = normalize or _default_normalizer(source.channels, spec, channels)

    def get_batch(
        self, indices: np.ndarray, dihedral: np.ndarray | None = None, occlusion: np.ndarray | None = None
    ) -> np.ndarray:
        """Read, (optionally) occlude, normalise and (optionally) rotate/flip one batch.

        Parameters
        ----------
        indices : `numpy.ndarray` of `int`
            Rows to read.
        dihedral : `numpy.ndarray` of `int`, optional
            Per-stamp dihedral transform index (0..7).
        occlusion : `numpy.ndarray` of `bool`, shape (n, S, S), optional
            Pixels to mark missing before normalisation (`draw_occlusions`).

        Returns
        -------
        batch : `numpy.ndarray`, float32, shape (n, C_out, S, S)
            The normalised batch (C-contiguous).
        """
        x = self.normalize(apply_occlusions(self.source.read(indices), occlusion))
        if dihedral is not None:
            dihedral = np.asarray(dihedral)
            if dihedral.shape != (x.shape[0],):
                raise ValueError("dihedral must give one transform per stamp.")
            for k in np.unique(dihedral):
                m = dihedral == k
                x[m] = apply_dihedral(x[m], int(k))
        return np.ascontiguousarray(x, dtype=np.float32)

    def iterate(
        self, indices: np.ndarray, rng: np.random.Generator | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(batch, labels)`` over ``indices`` in order.

        Parameters
        ----------
        indices : `numpy.ndarray` of `int`
            Rows, in the order to visit them.
        rng : `numpy.random.Generator`, optional
            If given, each stamp gets a random dihedral transform drawn from it.

        Yields
        ------
        batch : `numpy.ndarray`, float32
            Normalised stamps.
        labels : `numpy.ndarray`, float32
            Their labels.
        """
        indices = np.asarray(indices, dtype=np.int64)
        labels = self.source.labels
        for start in range(0, indices.size, self.batch_size):
            idx = indices[start : start + self.batch_size]
            dihedral = rng.integers(0, DIHEDRAL_COUNT, idx.size) if rng is not None else None
            yield self.get_batch(idx, dihedral), labels[idx].astype(np.float32)


class StampTorchDataset(Dataset):
    """A map-style ``torch.utils.data.Dataset`` over a stamp source (no augmentation).

    Items are ``(stamp tensor (C_out, S, S), label tensor ())``; prefer `StampBatchIterator` for
    training, which normalises whole batches at once.

    Parameters
    ----------
    iterator : `StampBatchIterator`
        Supplies the source and normaliser.
    """

    def __init__(self, iterator: StampBatchIterator) -> None:
        self.iterator = iterator

    def __len__(self) -> int:
        return len(self.iterator.source)

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        x = self.iterator.get_batch(np.array([index]))[0]
        y = float(self.iterator.source.labels[index])
        return torch.from_numpy(x), torch.tensor(y, dtype=torch.float32)

    def __getitems__(self, indices: list[int]) -> list[tuple[Any, Any]]:
        x = self.iterator.get_batch(np.asarray(indices))
        y = self.iterator.source.labels[np.asarray(indices)].astype(np.float32)
        return [(torch.from_numpy(x[i]), torch.tensor(y[i])) for i in range(len(indices))]
