"""The incumbent real/bogus scoring, re-implemented as a reference.

This module reproduces the *way* Rubin's current real/bogus classifier scores
the diaSources of one detector, from its published description, so that the
benchmark (``bench/bench_speed.py``) can measure it side by side with this
package's vectorised path:

- a Python loop over sources cuts one ``size × size`` box (51 × 51) around the
  nearest pixel of each source in each of the science, template and difference
  images;
- a box that crosses the image edge is replaced by an all-zero cutout (the
  whole source is lost, not only its outside pixels);
- NaN pixels become 0;
- the three cutouts of a source are stacked as channels in the order
  template, science, difference;
- sources are scored in batches of 64 by the ``incumbent_cnn`` architecture
  (three valid 5 × 5 convolutions with 16/32/64 filters and 2 × 2 max pooling,
  a dense layer of 32, one output) under `torch.no_grad`, and a sigmoid gives
  the score.

There is no per-stamp normalisation: stamps are fed in image units.  Every
source whose box crosses the edge gets the same all-zero input and hence the
same, constant score — one of the flaws this package fixes.
"""

from __future__ import annotations

__all__ = [
    "INCUMBENT_CHANNELS",
    "INCUMBENT_STAMP_SIZE",
    "INCUMBENT_BATCH_SIZE",
    "incumbent_cutout",
    "incumbent_cutouts",
    "incumbent_score",
]

import numpy as np
import torch
from torch import nn

INCUMBENT_CHANNELS: tuple[str, ...] = ("template", "science", "difference")
"""Channel order of the incumbent's input stamps."""

INCUMBENT_STAMP_SIZE: int = 51
"""Side length of the incumbent's cutouts in pixels."""

INCUMBENT_BATCH_SIZE: int = 64
"""Number of sources the incumbent scores per forward pass."""


def _check_images(
    science: np.ndarray, template: np.ndarray, difference: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    images = tuple(np.asarray(a) for a in (science, template, difference))
    for name, image in zip(("science", "template", "difference"), images):
        if image.ndim != 2:
            raise ValueError(f"The {name} image must be 2-D, got shape {image.shape}")
    if len({image.shape for image in images}) != 1:
        raise ValueError(
            f"science, template and difference must share one shape; got {[image.shape for image in images]}"
        )
    return images  # type: ignore[return-value]


def _check_positions(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.atleast_1d(np.asarray(x, dtype=np.float64))
    y = np.atleast_1d(np.asarray(y, dtype=np.float64))
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D arrays of one length; got shapes {x.shape} and {y.shape}")
    return x, y


def incumbent_cutout(image: np.ndarray, x: float, y: float, size: int = INCUMBENT_STAMP_SIZE) -> np.ndarray:
    """Cut one box the incumbent's way.

    Parameters
    ----------
    image : `numpy.ndarray`
        2-D image, indexed ``[y, x]``.
    x, y : `float`
        Source position (0-based pixel centres).
    size : `int`, optional
        Side length of the box.

    Returns
    -------
    cutout : `numpy.ndarray`
        ``(size, size)`` float32 copy centred on the nearest pixel (centre at
        index ``size // 2``), NaN replaced by 0; all zeros if the box is not
        fully inside the image or the position is not finite.
    """
    out = np.zeros((size, size), dtype=np.float32)
    if not (np.isfinite(x) and np.isfinite(y)):
        return out
    half = size // 2
    x0 = int(np.floor(x + 0.5)) - half
    y0 = int(np.floor(y + 0.5)) - half
    height, width = image.shape
    if x0 < 0 or y0 < 0 or x0 + size > width or y0 + size > height:
        return out
    out[...] = image[y0 : y0 + size, x0 : x0 + size]
    return np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)


def incumbent_cutouts(
    science: np.ndarray,
    template: np.ndarray,
    difference: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    size: int = INCUMBENT_STAMP_SIZE,
) -> list[np.ndarray]:
    """Cut the stamps of all sources with a Python loop over sources.

    Parameters
    ----------
    science, template, difference : `numpy.ndarray`
        2-D images on one pixel grid.
    x, y : `numpy.ndarray`
        ``(N,)`` source positions.
    size : `int`, optional
        Side length of the boxes.

    Returns
    -------
    stamps : `list` [`numpy.ndarray`]
        One ``(3, size, size)`` float32 array per source, channels in the
        order `INCUMBENT_CHANNELS`.

    Raises
    ------
    ValueError
        Raised if the images are not 2-D arrays of one shape or ``x`` and
        ``y`` differ in shape.
    """
    science, template, difference = _check_images(science, template, difference)
    x, y = _check_positions(x, y)
    stamps = []
    for xi, yi in zip(x.tolist(), y.tolist()):
        t = incumbent_cutout(template, xi, yi, size)
        s = incumbent_cutout(science, xi, yi, size)
        d = incumbent_cutout(difference, xi, yi, size)
        stamps.append(np.stack((t, s, d), axis=0))
    return stamps


def incumbent_score(
    science: np.ndarray,
    template: np.ndarray,
    difference: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    module: nn.Module,
    batch_size: int = INCUMBENT_BATCH_SIZE,
    size: int = INCUMBENT_STAMP_SIZE,
) -> np.ndarray:
    """Score sources the incumbent's way.

    Parameters
    ----------
    science, template, difference : `numpy.ndarray`
        2-D images on one pixel grid.
    x, y : `numpy.ndarray`
        ``(N,)`` source positions (0-based pixel centres).
    module : `torch.nn.Module`
        Classifier taking ``(B, 3, size, size)`` stamps (channels
        `INCUMBENT_CHANNELS`) and returning ``(B,)`` (or ``(B, 1)``) logits,
        normally ``build_architecture("incumbent_cnn")``.  It is put in
        evaluation mode.
    batch_size : `int`, optional
        Sources per forward pass.
    size : `int`, optional
        Side length of the cutouts.

    Returns
    -------
    scores : `numpy.ndarray`
        ``(N,)`` float32 sigmoid scores.

    Raises
    ------
    ValueError
        Raised for invalid images, positions or ``batch_size``.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    stamps = incumbent_cutouts(science, template, difference, x, y, size)
    module.eval()
    outputs = []
    for start in range(0, len(stamps), batch_size):
        blob = torch.stack([torch.from_numpy(s) for s in stamps[start : start + batch_size]])
        with torch.no_grad():
            logits = module(blob)
        outputs.append(torch.sigmoid(logits).reshape(-1))
    if not outputs:
        return np.zeros(0, dtype=np.float32)
    return torch.cat(outputs).numpy().astype(np.float32, copy=False)
