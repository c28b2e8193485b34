"""Vectorised multi-plane cutout extraction.

Cutouts are centred on the pixel nearest to each position, using the package
convention that pixel centres are at integer 0-based coordinates and images are
indexed ``array[y, x]``.  The nearest pixel is ``floor(x + 0.5)`` (halves round
up, unlike `numpy.round`).  For a stamp of size ``S`` the centre pixel is at
index ``S // 2`` in both axes, for odd and even ``S`` alike, so an even stamp
has one more pixel before the centre than after it.

Pixels that fall outside the image, and pixels whose mask has any of the
``unusable_bits`` set, are returned as NaN; the fractions of such pixels are
reported per source so that callers can flag rather than discard them.

Extraction is done without a Python loop per source: sources whose stamp lies
fully inside the image are gathered from a strided window view of each plane
(no copy of the image), and the remaining (edge) sources are gathered with
clipped fancy indexing and then blanked where they fall outside.
"""

from __future__ import annotations

__all__ = ["CutoutBatch", "extract_cutouts", "iter_cutout_batches", "center_crop_or_pad", "nearest_pixel"]

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import mask_planes


@dataclass
class CutoutBatch:
    """Cutouts of several image planes around a set of positions.

    Attributes
    ----------
    stamps : `numpy.ndarray`
        ``(N, C, S, S)`` float32 stamps, channels in the order of ``channels``.
        Pixels outside the image or masked as unusable are NaN.
    channels : `tuple` [`str`]
        Names of the channels, in stamp order.
    x, y : `numpy.ndarray`
        ``(N,)`` float64 requested positions (0-based pixel coordinates).
    edge_fraction : `numpy.ndarray`
        ``(N,)`` fraction of stamp pixels outside the image (1 for non-finite
        positions).
    bad_fraction : `numpy.ndarray`
        ``(N,)`` fraction of stamp pixels that are unusable in any channel:
        outside the image, non-finite, or masked with an unusable bit.
    center_bad : `numpy.ndarray`
        ``(N,)`` bool, True if any pixel of the central 3×3 is unusable in any
        channel.
    """

    stamps: np.ndarray
    channels: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    edge_fraction: np.ndarray
    bad_fraction: np.ndarray
    center_bad: np.ndarray

    def __len__(self) -> int:
        return int(self.stamps.shape[0])

    @property
    def size(self) -> int:
        """Side length of the stamps in pixels (`int`)."""
        return int(self.stamps.shape[-1])

    def channel(self, name: str) -> np.ndarray:
        """Return the ``(N, S, S)`` stamps of one channel.

        Parameters
        ----------
        name : `str`
            Channel name.

        Returns
        -------
        stamps : `numpy.ndarray`
            View of the channel's stamps.

        Raises
        ------
        KeyError
            Raised if the channel is not present.
        """
        try:
            index = self.channels.index(name)
        except ValueError:
            raise KeyError(f"Channel {name!r} not in cutout batch channels {self.channels}") from None
        return self.stamps[:, index]

    def __getitem__(self, item: slice | np.ndarray) -> CutoutBatch:
        """Return a subset of the sources (slice, index or boolean array)."""
        return CutoutBatch(
            stamps=self.stamps[item],
            channels=self.channels,
            x=self.x[item],
            y=self.y[item],
            edge_fraction=self.edge_fraction[item],
            bad_fraction=self.bad_fraction[item],
            center_bad=self.center_bad[item],
        )


def nearest_pixel(coord: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the nearest integer pixel of coordinates and their finiteness.

    Parameters
    ----------
    coord : `numpy.ndarray`
        Float coordinates (0-based pixel centres).

    Returns
    -------
    index : `numpy.ndarray`
        int64 ``floor(coord + 0.5)``; 0 where ``coord`` is not finite or too
        large to represent.
    finite : `numpy.ndarray`
        Bool, True where ``coord`` is finite and representable.
    """
    coord = np.asarray(coord, dtype=np.float64)
    finite = np.isfinite(coord) & (np.abs(coord) < 2.0**52)
    index = np.zeros(coord.shape, dtype=np.int64)
    index[finite] = np.floor(coord[finite] + 0.5).astype(np.int64)
    return index, finite


def _validate_planes(planes: Mapping[str, np.ndarray], mask: np.ndarray | None) -> tuple[int, int]:
    if not isinstance(planes, Mapping) or len(planes) == 0:
        raise ValueError("planes must be a non-empty mapping of channel name to 2-D image array")
    shapes = {name: np.shape(plane) for name, plane in planes.items()}
    for name, shape in shapes.items():
        if len(shape) != 2:
            raise ValueError(f"Plane {name!r} must be 2-D, got shape {shape}")
    if len(set(shapes.values())) != 1:
        raise ValueError(f"All planes must share one shape; got {shapes}")
    shape = next(iter(shapes.values()))
    if mask is not None:
        if np.shape(mask) != shape:
            raise ValueError(f"Mask shape {np.shape(mask)} differs from the planes' shape {shape}")
        if not np.issubdtype(np.asarray(mask).dtype, np.integer):
            raise ValueError(f"Mask must be an integer array, got dtype {np.asarray(mask).dtype}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"Planes must not be empty, got shape {shape}")
    return int(shape[0]), int(shape[1])


def _validate_positions(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D arrays of one length; got shapes {x.shape} and {y.shape}")
    return x, y


def _validate_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"Cutout size must be a positive integer, got {size!r}")
    return int(size)


_CHUNK = 256
"""Sources processed together inside one extraction (keeps temporaries in cache)."""


def _gather(
    plane: np.ndarray,
    windows: np.ndarray,
    ix: np.ndarray,
    iy: np.ndarray,
    interior: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    out: np.ndarray,
) -> None:
    """Fill ``out`` (n, S, S) with stamps of one plane (outside pixels arbitrary)."""
    half = out.shape[-1] // 2
    if interior.all():
        out[...] = windows[iy - half, ix - half]
        return
    inner = np.flatnonzero(interior)
    if inner.size:
        out[inner] = windows[iy[inner] - half, ix[inner] - half]
    outer = np.flatnonzero(~interior)
    if outer.size:
        out[outer] = plane[rows[outer][:, :, None], cols[outer][:, None, :]]


def _extract(
    planes: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    size: int,
    mask: np.ndarray | None,
    unusable_bits: int,
    windows: dict[str, np.ndarray],
    mask_windows: np.ndarray | None,
) -> CutoutBatch:
    height, width = next(iter(planes.values())).shape
    n = x.size
    channels = tuple(planes)
    half = size // 2
    ix, fx = nearest_pixel(x)
    iy, fy = nearest_pixel(y)
    finite = fx & fy
    offsets = np.arange(size, dtype=np.int64) - half
    stamps = np.empty((n, len(channels), size, size), dtype=np.float32)
    edge_count = np.zeros(n, dtype=np.int64)
    bad_count = np.zeros(n, dtype=np.int64)
    center_bad = np.zeros(n, dtype=bool)
    lo = max(half - 1, 0)
    # A loop over fixed-size chunks of sources (not over sources) keeps the
    # gathered temporaries in cache; each chunk is fully vectorised.
    for start in range(0, n, _CHUNK):
        sl = slice(start, min(start + _CHUNK, n))
        cix, ciy, cfin = ix[sl], iy[sl], finite[sl]
        rows = ciy[:, None] + offsets[None, :]
        cols = cix[:, None] + offsets[None, :]
        row_in = (rows >= 0) & (rows < height) & cfin[:, None]
        col_in = (cols >= 0) & (cols < width) & cfin[:, None]
        interior = row_in.all(axis=1) & col_in.all(axis=1)
        np.clip(rows, 0, height - 1, out=rows)
        np.clip(cols, 0, width - 1, out=cols)
        chunk = stamps[sl]
        for c, name in enumerate(channels):
            _gather(planes[name], windows[name], cix, ciy, interior, rows, cols, chunk[:, c])
        bad = np.zeros(chunk.shape[:1] + chunk.shape[2:], dtype=bool)
        if not interior.all():
            inside = row_in[:, :, None] & col_in[:, None, :]
            bad |= ~inside
            edge_count[sl] = (~inside).sum(axis=(1, 2))
        if mask is not None:
            mstamp = np.empty(bad.shape, dtype=np.asarray(mask).dtype)
            _gather(mask, mask_windows, cix, ciy, interior, rows, cols, mstamp)
            bad |= (mstamp & unusable_bits) != 0
        if bad.any():
            chunk[np.broadcast_to(bad[:, None], chunk.shape)] = np.nan
        bad |= ~np.isfinite(chunk).all(axis=1)
        bad_count[sl] = bad.sum(axis=(1, 2))
        center_bad[sl] = bad[:, lo : half + 2, lo : half + 2].any(axis=(1, 2))

    npix = float(size * size)
    return CutoutBatch(
        stamps=stamps,
        channels=channels,
        x=x,
        y=y,
        edge_fraction=edge_count / npix,
        bad_fraction=bad_count / npix,
        center_bad=center_bad,
    )


def _window_views(
    planes: Mapping[str, np.ndarray], mask: np.ndarray | None, size: int
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    def view(a: np.ndarray) -> np.ndarray:
        if a.shape[0] < size or a.shape[1] < size:
            # No stamp fits inside; every source takes the edge path.
            return np.empty((0, 0, size, size), dtype=a.dtype)
        return sliding_window_view(a, (size, size))

    windows = {name: view(np.asarray(plane)) for name, plane in planes.items()}
    mask_windows = view(np.asarray(mask)) if mask is not None else None
    return windows, mask_windows


def extract_cutouts(
    planes: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    size: int = 51,
    *,
    mask: np.ndarray | None = None,
    unusable_bits: int = mask_planes.UNUSABLE,
) -> CutoutBatch:
    """Cut square stamps of several planes around positions.

    Parameters
    ----------
    planes : `~collections.abc.Mapping` [`str`, `numpy.ndarray`]
        Channel name to 2-D image; all planes must share one shape.  The
        stamps' channel order is the mapping's order.
    x, y : `numpy.ndarray`
        ``(N,)`` positions in 0-based pixel coordinates.  Positions may be
        non-finite or far outside the image: their stamps are all NaN.
    size : `int`, optional
        Side length ``S`` of the stamps; the centre pixel is at index
        ``S // 2``.
    mask : `numpy.ndarray`, optional
        Integer mask plane of the same shape (bits of `mask_planes`); pixels
        with any of ``unusable_bits`` set become NaN in every channel.
    unusable_bits : `int`, optional
        Mask bits that make a pixel unusable.

    Returns
    -------
    batch : `CutoutBatch`
        The stamps and per-source quality fractions.

    Raises
    ------
    ValueError
        Raised if the planes are not 2-D or do not share a shape, if the mask
        shape differs, if ``x`` and ``y`` differ in shape or if ``size`` is not
        a positive integer.
    """
    size = _validate_size(size)
    _validate_planes(planes, mask)
    x, y = _validate_positions(x, y)
    windows, mask_windows = _window_views(planes, mask, size)
    return _extract(planes, x, y, size, mask, int(unusable_bits), windows, mask_windows)


def iter_cutout_batches(
    planes: Mapping[str, np.ndarray],
    x: np.ndarray,
    y: np.ndarray,
    size: int = 51,
    batch_size: int = 4096,
    *,
    mask: np.ndarray | None = None,
    unusable_bits: int = mask_planes.UNUSABLE,
) -> Iterator[CutoutBatch]:
    """Yield cutouts in consecutive batches of at most ``batch_size`` sources.

    Memory use is bounded by one batch of stamps; the images are not copied.
    The concatenation of the batches equals `extract_cutouts` on all sources.

    Parameters
    ----------
    planes, x, y, size, mask, unusable_bits
        As for `extract_cutouts`.
    batch_size : `int`, optional
        Maximum number of sources per batch.

    Yields
    ------
    batch : `CutoutBatch`
        Cutouts of sources ``[i, i + batch_size)``.

    Raises
    ------
    ValueError
        Raised for invalid inputs, as `extract_cutouts`, or a non-positive
        ``batch_size``.
    """
    size = _validate_size(size)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    _validate_planes(planes, mask)
    x, y = _validate_positions(x, y)
    windows, mask_windows = _window_views(planes, mask, size)
    for start in range(0, x.size, int(batch_size)):
        stop = start + int(batch_size)
        yield _extract(
            planes, x[start:stop], y[start:stop], size, mask, int(unusable_bits), windows, mask_windows
        )


def center_crop_or_pad(stamps: np.ndarray, size: int) -> np.ndarray:
    """Crop stamps centrally to ``size`` or pad them with NaN.

    The centre pixel of an ``H × W`` stamp is ``(H // 2, W // 2)`` (for even
    sizes the pixel just after the geometric centre, as in `extract_cutouts`);
    it maps to ``(size // 2, size // 2)`` of the output, so cropping a cutout
    gives the same pixels as cutting the smaller size directly.

    Parameters
    ----------
    stamps : `numpy.ndarray`
        ``(N, C, H, W)`` stamps; ``H`` and ``W`` may differ and be odd or even.
    size : `int`
        Output side length.

    Returns
    -------
    out : `numpy.ndarray`
        ``(N, C, size, size)`` array (float, NaN where padded).  A view of the
        input is never returned.

    Raises
    ------
    ValueError
        Raised if ``stamps`` is not 4-D or ``size`` is not a positive integer.
    """
    size = _validate_size(size)
    stamps = np.asarray(stamps)
    if stamps.ndim != 4:
        raise ValueError(f"stamps must have shape (N, C, H, W), got shape {stamps.shape}")
    if not np.issubdtype(stamps.dtype, np.floating):
        stamps = stamps.astype(np.float32)
    n, c, height, width = stamps.shape
    out = np.full((n, c, size, size), np.nan, dtype=stamps.dtype)
    r0 = height // 2 - size // 2
    c0 = width // 2 - size // 2
    # Overlap of output rows [0, size) with input rows [-r0, height - r0).
    out_r = slice(max(0, -r0), min(size, height - r0))
    out_c = slice(max(0, -c0), min(size, width - c0))
    in_r = slice(out_r.start + r0, out_r.stop + r0)
    in_c = slice(out_c.start + c0, out_c.stop + c0)
    if out_r.stop > out_r.start and out_c.stop > out_c.start:
        out[:, :, out_r, out_c] = stamps[:, :, in_r, in_c]
    return out
