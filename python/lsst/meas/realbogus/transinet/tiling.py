"""Seamless tiled inference of a fully convolutional network over a whole detector.

The normalised input ``(C, H, W)`` is embedded in a zero canvas with a margin of
``margin`` pixels on every side (zero is the normalised background and the
``valid`` channel is 0 there).  The canvas is cut into overlapping tiles whose
origins are multiples of the network's downsampling factor; from each tile only
the central *core* (the tile minus ``margin`` on each side) is kept.  When
``margin`` is at least the network's receptive-field radius, every kept pixel
sees exactly the same input values as in a single pass over the whole canvas, so
the tiled result equals the full-image result to floating-point rounding: there
are no seams.  Tiles are cut directly from the input (the canvas is never
built), so the network's memory is bounded by ``batch_size`` tiles.
"""

from __future__ import annotations

__all__ = ["TileLayout", "plan_tiles", "predict_tiled", "predict_full"]

import dataclasses
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch


@dataclasses.dataclass(frozen=True)
class TileLayout:
    """Geometry of a tiling of an ``(H, W)`` image.

    Attributes
    ----------
    margin : `int`
        Context kept around each core (and around the image).
    core_y, core_x : `int`
        Core size along each axis (a multiple of the network's factor).
    n_y, n_x : `int`
        Number of tiles along each axis.
    """

    height: int
    width: int
    margin: int
    core_y: int
    core_x: int
    n_y: int
    n_x: int

    @property
    def tile_shape(self) -> tuple[int, int]:
        """Shape of every tile including margins."""
        return (self.core_y + 2 * self.margin, self.core_x + 2 * self.margin)

    @property
    def canvas_shape(self) -> tuple[int, int]:
        """Shape of the zero-padded canvas the tiles are cut from."""
        return (self.n_y * self.core_y + 2 * self.margin, self.n_x * self.core_x + 2 * self.margin)

    def origins(self) -> list[tuple[int, int]]:
        """Return the canvas origin of every tile, row-major."""
        return [(iy * self.core_y, ix * self.core_x) for iy in range(self.n_y) for ix in range(self.n_x)]


def _round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def plan_tiles(
    shape: tuple[int, int], *, tile_size: int = 1024, margin: int = 48, multiple: int = 8
) -> TileLayout:
    """Choose a tile layout covering an image with balanced tiles.

    Parameters
    ----------
    shape : `tuple` [`int`, `int`]
        Image shape ``(H, W)``.
    tile_size : `int`
        Maximum tile side including margins.
    margin : `int`
        Overlap context on each side; rounded up to a multiple of ``multiple``.
        Must be at least the network's receptive-field radius for seamless output.
    multiple : `int`
        Network downsampling factor; tile origins are multiples of it.

    Returns
    -------
    layout : `TileLayout`
        The tiling.

    Raises
    ------
    ValueError
        Raised for empty images or a tile too small for its margins.
    """
    height, width = (int(s) for s in shape)
    if height < 1 or width < 1:
        raise ValueError(f"Cannot tile an empty image of shape {shape}.")
    if multiple < 1 or margin < 0:
        raise ValueError(f"multiple must be >= 1 and margin >= 0; got {multiple}, {margin}.")
    margin = _round_up(margin, multiple)
    max_core = (tile_size - 2 * margin) // multiple * multiple
    if max_core < multiple:
        raise ValueError(
            f"tile_size={tile_size} leaves no room for a core inside margins of {margin} px "
            f"(need tile_size >= {2 * margin + multiple})."
        )
    n_y = math.ceil(height / max_core)
    n_x = math.ceil(width / max_core)
    core_y = _round_up(math.ceil(height / n_y), multiple)
    core_x = _round_up(math.ceil(width / n_x), multiple)
    return TileLayout(height, width, margin, core_y, core_x, n_y, n_x)


def _canvas(inputs: np.ndarray, layout: TileLayout) -> np.ndarray:
    canvas = np.zeros((inputs.shape[0],) + layout.canvas_shape, dtype=np.float32)
    m = layout.margin
    canvas[:, m:m + layout.height, m:m + layout.width] = inputs
    return canvas


def _extract_tile(inputs: np.ndarray, layout: TileLayout, y0: int, x0: int) -> np.ndarray:
    """Return the canvas tile at canvas origin ``(y0, x0)`` without building the canvas."""
    th, tw = layout.tile_shape
    tile = np.zeros((inputs.shape[0], th, tw), dtype=np.float32)
    iy0, ix0 = y0 - layout.margin, x0 - layout.margin  # image coordinates of the tile origin
    ylo, yhi = max(iy0, 0), min(iy0 + th, layout.height)
    xlo, xhi = max(ix0, 0), min(ix0 + tw, layout.width)
    if ylo < yhi and xlo < xhi:
        tile[:, ylo - iy0:yhi - iy0, xlo - ix0:xhi - ix0] = inputs[:, ylo:yhi, xlo:xhi]
    return tile


def _check_inputs(inputs: np.ndarray) -> np.ndarray:
    inputs = np.asarray(inputs, dtype=np.float32)
    if inputs.ndim != 3:
        raise ValueError(f"Network inputs must have shape (C, H, W); got {inputs.shape}.")
    if not np.all(np.isfinite(inputs)):
        raise ValueError("Network inputs contain non-finite values; normalise them first (NaN -> 0).")
    return inputs


def predict_tiled(
    network: Callable[[torch.Tensor], torch.Tensor],
    inputs: np.ndarray,
    *,
    tile_size: int = 1024,
    margin: int = 48,
    multiple: int = 8,
    batch_size: int = 2,
    channels_last: bool = True,
    workers: int = 1,
) -> np.ndarray:
    """Run a fully convolutional network over a large image in overlapping tiles.

    Parameters
    ----------
    network : callable
        Maps a ``(N, C, h, w)`` float tensor to ``(N, 1, h, w)`` (e.g. logits).
        Called under `torch.inference_mode`; with ``workers > 1`` it is called
        from several threads at once and must be thread-safe.
    inputs : `numpy.ndarray`
        Normalised, finite input of shape ``(C, H, W)``.
    tile_size, margin, multiple : `int`
        See `plan_tiles`.
    batch_size : `int`
        Tiles per network call (bounds memory).
    channels_last : `bool`
        Pass tiles in ``torch.channels_last`` memory format (about twice as
        fast on CPUs with oneDNN when the network's weights are channels-last too).
    workers : `int`
        Number of batches run concurrently, each in its own thread (memory is
        bounded by ``workers * batch_size`` tiles).  Every tile is computed the
        same way whatever ``workers`` is, so the output does not depend on it.

    Returns
    -------
    output : `numpy.ndarray`
        ``float32`` array of shape ``(H, W)``.
    """
    inputs = _check_inputs(inputs)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}.")
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}.")
    layout = plan_tiles(inputs.shape[1:], tile_size=tile_size, margin=margin, multiple=multiple)
    out = np.zeros((layout.n_y * layout.core_y, layout.n_x * layout.core_x), dtype=np.float32)
    th, tw = layout.tile_shape
    m, cy, cx = layout.margin, layout.core_y, layout.core_x
    origins = layout.origins()
    chunks = [origins[start:start + batch_size] for start in range(0, len(origins), batch_size)]

    def run(chunk: list[tuple[int, int]]) -> None:
        # Tiles' cores do not overlap, so concurrent chunks write disjoint parts of ``out``.
        with torch.inference_mode():
            batch = torch.from_numpy(np.stack([_extract_tile(inputs, layout, y0, x0) for y0, x0 in chunk]))
            if channels_last:
                batch = batch.contiguous(memory_format=torch.channels_last)
            pred = network(batch).float().numpy()
        if pred.shape != (len(chunk), 1, th, tw):
            raise ValueError(f"Network returned shape {pred.shape}; expected {(len(chunk), 1, th, tw)}.")
        for (y0, x0), tile in zip(chunk, pred):
            out[y0:y0 + cy, x0:x0 + cx] = tile[0, m:m + cy, m:m + cx]

    workers = min(workers, len(chunks))
    if workers == 1:
        for chunk in chunks:
            run(chunk)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="transinet-tile") as pool:
            for future in [pool.submit(run, chunk) for chunk in chunks]:
                future.result()
    return out[:layout.height, :layout.width]


def predict_full(
    network: Callable[[torch.Tensor], torch.Tensor],
    inputs: np.ndarray,
    *,
    margin: int = 48,
    multiple: int = 8,
) -> np.ndarray:
    """Run the network on the whole image in one pass (reference for `predict_tiled`).

    The image is embedded in the same zero canvas as in `predict_tiled` (margin on
    every side), so both functions compute the same thing.
    """
    inputs = _check_inputs(inputs)
    height, width = inputs.shape[1:]
    layout = plan_tiles((height, width), tile_size=10**9, margin=margin, multiple=multiple)
    canvas = _canvas(inputs, layout)
    with torch.inference_mode():
        pred = network(torch.from_numpy(canvas[None])).float().numpy()[0, 0]
    m = layout.margin
    return pred[m:m + height, m:m + width]
