"""Per-pixel training targets for TransiNet built from a truth catalogue.

Targets are PSF-sized Gaussian blobs (peak 1, sigma = the science PSF sigma) at the
true positions of ``category == "transient"`` rows, 0 elsewhere (blobs combine by
maximum).  Loss weights are 1 by default, up-weighted near transients
(``positive_weight``) and near artefacts (``artifact_weight``; artefacts are hard
negatives: points for e.g. cosmic rays, segments ``(x, y)-(x1, y1)`` for trails and
columns), and 0 (ignored) on invalid pixels (non-finite or ``NO_DATA``) and,
optionally, around transients too faint to be learnable (``min_snr``).
"""

from __future__ import annotations

__all__ = ["TransiNetTargets", "build_targets"]

import dataclasses

import numpy as np
from astropy.table import Table

from ..mask_planes import NO_DATA

_REQUIRED = ("x", "y", "category")


@dataclasses.dataclass
class TransiNetTargets:
    """Per-pixel target and loss weight images.

    Attributes
    ----------
    target : `numpy.ndarray`
        ``float32`` (H, W) map in [0, 1].
    weight : `numpy.ndarray`
        ``float32`` (H, W) non-negative loss weights; 0 means ignore.
    """

    target: np.ndarray
    weight: np.ndarray


def _segment_distance(
    xx: np.ndarray, yy: np.ndarray, x0: float, y0: float, x1: float, y1: float
) -> np.ndarray:
    dx, dy = x1 - x0, y1 - y0
    length2 = dx * dx + dy * dy
    if length2 == 0:
        return np.hypot(xx - x0, yy - y0)
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / length2, 0.0, 1.0)
    return np.hypot(xx - (x0 + t * dx), yy - (y0 + t * dy))


def _box(x0: float, y0: float, x1: float, y1: float, pad: float, shape: tuple[int, int]
         ) -> tuple[slice, slice] | None:
    ylo = max(int(np.floor(min(y0, y1) - pad)), 0)
    yhi = min(int(np.ceil(max(y0, y1) + pad)) + 1, shape[0])
    xlo = max(int(np.floor(min(x0, x1) - pad)), 0)
    xhi = min(int(np.ceil(max(x0, x1) + pad)) + 1, shape[1])
    if ylo >= yhi or xlo >= xhi:
        return None
    return slice(ylo, yhi), slice(xlo, xhi)


def build_targets(
    truth: Table,
    shape: tuple[int, int],
    psf_sigma: float,
    *,
    invalid: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    positive_weight: float = 5.0,
    artifact_weight: float = 5.0,
    artifact_radius: float | None = None,
    min_snr: float | None = None,
    core_radius: float = 0.0,
) -> TransiNetTargets:
    """Build the segmentation target and loss weights for one image.

    Parameters
    ----------
    truth : `astropy.table.Table`
        Truth catalogue with at least ``x``, ``y``, ``category`` (``x1``, ``y1``,
        ``snr`` used when present).
    shape : `tuple` [`int`, `int`]
        Image shape ``(H, W)``.
    psf_sigma : `float`
        Science PSF Gaussian sigma in pixels (blob width).
    invalid : `numpy.ndarray`, optional
        Boolean map of invalid pixels (weight 0).
    mask : `numpy.ndarray`, optional
        Integer mask; ``NO_DATA`` pixels get weight 0.
    positive_weight : `float`
        Extra weight ``positive_weight * target`` added on the blobs.
    artifact_weight : `float`
        Weight within ``artifact_radius`` of artefacts (hard negatives).
    artifact_radius : `float`, optional
        Radius around artefacts; default ``3 * psf_sigma``.
    min_snr : `float`, optional
        Transients with ``snr`` below this get no blob and weight 0 within
        ``3 * psf_sigma`` (neither positive nor negative).
    core_radius : `float`
        Blobs are flat-topped: target 1 within this distance (pixels) of the true
        position, a Gaussian fall-off of ``psf_sigma`` beyond it.  With 0 (plain
        Gaussian) the pixel nearest an off-centre position has a target below 1,
        so even certain transients peak below 1; a radius of ~1 pixel lets the
        peak score reach 1.

    Returns
    -------
    targets : `TransiNetTargets`
        Target and weight maps.

    Raises
    ------
    ValueError
        Raised if required columns are missing or parameters are invalid.
    """
    missing = [c for c in _REQUIRED if c not in truth.colnames]
    if missing:
        raise ValueError(f"Truth table lacks required column(s) {missing}; has {truth.colnames}.")
    height, width = (int(s) for s in shape)
    if height < 1 or width < 1:
        raise ValueError(f"Invalid target shape {shape}.")
    if not (np.isfinite(psf_sigma) and psf_sigma > 0):
        raise ValueError(f"psf_sigma must be positive and finite; got {psf_sigma}.")
    if not (np.isfinite(core_radius) and core_radius >= 0):
        raise ValueError(f"core_radius must be >= 0; got {core_radius}.")
    if positive_weight < 0 or artifact_weight < 0:
        raise ValueError("positive_weight and artifact_weight must be >= 0.")
    radius_art = 3.0 * psf_sigma if artifact_radius is None else float(artifact_radius)
    target = np.zeros((height, width), dtype=np.float32)
    weight = np.ones((height, width), dtype=np.float32)
    ignore = np.zeros((height, width), dtype=bool)
    blob_radius = 4.0 * psf_sigma + core_radius
    category = np.asarray(truth["category"]).astype(str)
    xs = np.asarray(truth["x"], dtype=np.float64)
    ys = np.asarray(truth["y"], dtype=np.float64)
    x1s = np.asarray(truth["x1"], dtype=np.float64) if "x1" in truth.colnames else xs
    y1s = np.asarray(truth["y1"], dtype=np.float64) if "y1" in truth.colnames else ys
    if "snr" in truth.colnames:
        snrs = np.asarray(truth["snr"], dtype=np.float64)
    else:
        snrs = np.full(len(truth), np.inf)

    for i in np.flatnonzero(category == "artifact"):
        if not (np.isfinite(xs[i]) and np.isfinite(ys[i])):
            continue
        x1 = x1s[i] if np.isfinite(x1s[i]) else xs[i]
        y1 = y1s[i] if np.isfinite(y1s[i]) else ys[i]
        box = _box(xs[i], ys[i], x1, y1, radius_art, (height, width))
        if box is None:
            continue
        yy, xx = np.mgrid[box]
        near = _segment_distance(xx, yy, xs[i], ys[i], x1, y1) <= radius_art
        weight[box] = np.where(near, np.maximum(weight[box], artifact_weight), weight[box])

    for i in np.flatnonzero(category == "transient"):
        if not (np.isfinite(xs[i]) and np.isfinite(ys[i])):
            continue
        box = _box(xs[i], ys[i], xs[i], ys[i], blob_radius, (height, width))
        if box is None:
            continue
        yy, xx = np.mgrid[box]
        r2 = (xx - xs[i]) ** 2 + (yy - ys[i]) ** 2
        if min_snr is not None and np.isfinite(snrs[i]) and abs(snrs[i]) < min_snr:
            ignore[box] |= r2 <= (3.0 * psf_sigma) ** 2
            continue
        if core_radius > 0:
            excess = np.maximum(np.sqrt(r2) - core_radius, 0.0)
            blob = np.exp(-0.5 * excess**2 / psf_sigma**2).astype(np.float32)
        else:
            blob = np.exp(-0.5 * r2 / psf_sigma**2).astype(np.float32)
        target[box] = np.maximum(target[box], blob)

    weight += positive_weight * target
    if invalid is not None:
        invalid = np.asarray(invalid, dtype=bool)
        if invalid.shape != (height, width):
            raise ValueError(f"invalid has shape {invalid.shape}, expected {(height, width)}.")
        ignore |= invalid
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (height, width):
            raise ValueError(f"mask has shape {mask.shape}, expected {(height, width)}.")
        ignore |= (mask.astype(np.int64) & NO_DATA) != 0
    weight[ignore] = 0.0
    target[ignore] = 0.0
    return TransiNetTargets(target=target, weight=weight)
