"""Instrumental and processing artefacts injected into simulated science images."""

from __future__ import annotations

__all__ = [
    "ArtifactRow",
    "add_bad_columns",
    "add_diffraction_spikes",
    "add_cosmic_rays",
    "add_hot_pixels",
    "add_nan_regions",
    "add_satellite_trail",
    "apply_saturation",
]

from dataclasses import dataclass

import numpy as np

from ..mask_planes import BAD, CR, NO_DATA, SAT


@dataclass
class ArtifactRow:
    """One artefact for the truth catalogue (pixel coordinates)."""

    type: str
    x: float
    y: float
    x1: float
    y1: float


def add_cosmic_rays(
    image: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator,
    n: int,
    njy_per_electron: float,
    mask_fraction: float,
) -> list[ArtifactRow]:
    """Add ``n`` cosmic rays (single hits, straight tracks and curved worms).

    Parameters
    ----------
    image, mask : `numpy.ndarray`
        Science image (nJy) and mask, modified in place.
    rng : `numpy.random.Generator`
        Random generator.
    n : `int`
        Number of cosmic rays.
    njy_per_electron : `float`
        Calibration.
    mask_fraction : `float`
        Probability that a cosmic ray is flagged with the CR bit.

    Returns
    -------
    rows : `list` [`ArtifactRow`]
        One row per cosmic ray, from track start to track end.
    """
    h, w = image.shape
    rows = []
    for _ in range(n):
        x0, y0 = rng.uniform(0, w - 1), rng.uniform(0, h - 1)
        kind = rng.choice(3, p=[0.45, 0.4, 0.15])
        amp = np.exp(rng.uniform(np.log(150.0), np.log(2.0e4)))  # electrons per pixel
        if kind == 0:
            length, npts = rng.uniform(0, 1.5), 3
        elif kind == 1:
            length = np.exp(rng.uniform(np.log(2.0), np.log(40.0)))
            npts = int(4 * length) + 2
        else:
            length = rng.uniform(5.0, 30.0)
            npts = int(4 * length) + 2
        theta = rng.uniform(0, 2 * np.pi)
        if kind == 2:
            dtheta = np.cumsum(rng.normal(0, 0.15, size=npts))
        else:
            dtheta = np.zeros(npts)
        step = length / max(npts - 1, 1)
        xs = x0 + np.concatenate([[0.0], np.cumsum(step * np.cos(theta + dtheta[1:]))])
        ys = y0 + np.concatenate([[0.0], np.cumsum(step * np.sin(theta + dtheta[1:]))])
        ix = np.clip(np.round(xs).astype(int), 0, w - 1)
        iy = np.clip(np.round(ys).astype(int), 0, h - 1)
        pix = np.unique(iy * w + ix)
        py, px = np.divmod(pix, w)
        # Deposited charge varies along the track; a sharp core with some charge diffusion.
        vals = amp * rng.uniform(0.4, 1.0, size=len(pix)) * njy_per_electron
        image[py, px] += vals.astype(image.dtype)
        if rng.uniform() < 0.5:
            for ddx, ddy in ((1, 0), (-1, 0), (0, 1), (0, -1)):
                qx, qy = np.clip(px + ddx, 0, w - 1), np.clip(py + ddy, 0, h - 1)
                image[qy, qx] += (0.08 * vals).astype(image.dtype)
        if rng.uniform() < mask_fraction:
            mask[py, px] |= CR
        rows.append(ArtifactRow("cosmic_ray", float(xs[0]), float(ys[0]), float(xs[-1]), float(ys[-1])))
    return rows


def add_hot_pixels(
    image: np.ndarray,
    mask: np.ndarray,
    rng_static: np.random.Generator,
    rng_visit: np.random.Generator,
    n: int,
    njy_per_electron: float,
    mask_fraction: float,
) -> list[ArtifactRow]:
    """Add hot pixels at detector-fixed positions (``rng_static``) with visit-varying amplitude.

    Returns one `ArtifactRow` per hot pixel; masked ones carry the BAD bit.
    """
    h, w = image.shape
    xs = rng_static.integers(0, w, size=n)
    ys = rng_static.integers(0, h, size=n)
    amps = np.exp(rng_static.uniform(np.log(200.0), np.log(3.0e4), size=n))
    masked = rng_static.uniform(size=n) < mask_fraction
    pair = rng_static.uniform(size=n) < 0.2
    rows = []
    for x, y, a, m, p in zip(xs, ys, amps, masked, pair):
        val = a * rng_visit.uniform(0.8, 1.2) * njy_per_electron
        image[y, x] += val
        if m:
            mask[y, x] |= BAD
        if p and x + 1 < w:
            image[y, x + 1] += 0.3 * val
            if m:
                mask[y, x + 1] |= BAD
        rows.append(ArtifactRow("hot_pixel", float(x), float(y), float(x), float(y)))
    return rows


def add_bad_columns(
    image: np.ndarray,
    mask: np.ndarray,
    rng_static: np.random.Generator,
    n: int,
    njy_per_electron: float,
    sky_electrons: float,
    mask_fraction: float,
) -> list[ArtifactRow]:
    """Add bad (hot, warm or dead) column segments at detector-fixed positions.

    Returns one `ArtifactRow` per column from its lower to its upper end.
    """
    h, w = image.shape
    rows = []
    for _ in range(n):
        x = int(rng_static.integers(0, w))
        if rng_static.uniform() < 0.5:
            y0, y1 = 0, h - 1
        else:
            y0 = int(rng_static.integers(0, h - 1))
            y1 = int(rng_static.integers(y0, h)) if rng_static.uniform() < 0.5 else h - 1
        kind = rng_static.uniform()
        masked = rng_static.uniform() < mask_fraction
        if kind < 0.3:  # dead column: no charge, so minus the sky after sky subtraction
            image[y0 : y1 + 1, x] = -sky_electrons * njy_per_electron * rng_static.uniform(0.5, 1.0)
        else:
            image[y0 : y1 + 1, x] += (
                np.exp(rng_static.uniform(np.log(20.0), np.log(2000.0))) * njy_per_electron
            )
        if masked:
            mask[y0 : y1 + 1, x] |= BAD
        rows.append(ArtifactRow("bad_column", float(x), float(y0), float(x), float(y1)))
    return rows


def add_satellite_trail(
    image: np.ndarray, rng: np.random.Generator, sigma_pix: float, pixel_noise: float
) -> ArtifactRow:
    """Add one satellite trail crossing the image (PSF-width Gaussian cross-section).

    Parameters
    ----------
    image : `numpy.ndarray`
        Science image, modified in place.
    rng : `numpy.random.Generator`
        Random generator.
    sigma_pix : `float`
        PSF sigma in pixels (the trail's cross-section width).
    pixel_noise : `float`
        Typical per-pixel noise (nJy), sets the brightness scale.

    Returns
    -------
    row : `ArtifactRow`
        The trail segment between its intersections with the image border.
    """
    h, w = image.shape
    x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
    theta = rng.uniform(0, np.pi)
    c, s = np.cos(theta), np.sin(theta)
    peak = pixel_noise * np.exp(rng.uniform(np.log(0.7), np.log(60.0)))
    width = sigma_pix * rng.uniform(1.0, 1.6)  # defocused at orbit distance
    half = 5 * width + 2
    # Process in row blocks to bound memory.
    block = 256
    flare_period = rng.uniform(50, 2000)
    flare_amp = rng.uniform(0, 0.8)
    xx = np.arange(w, dtype=np.float32)
    for yb in range(0, h, block):
        yy = np.arange(yb, min(h, yb + block), dtype=np.float32)[:, None]
        d = (xx[None, :] - x0) * s - (yy - y0) * c
        near = np.abs(d) < half
        if not near.any():
            continue
        along = (xx[None, :] - x0) * c + (yy - y0) * s
        prof = np.exp(-0.5 * (d / width) ** 2) * (1 + flare_amp * np.sin(2 * np.pi * along / flare_period))
        image[yb : yb + block] += np.where(near, peak * prof, 0).astype(image.dtype)
    # Border intersections of the line x0 + t c, y0 + t s.
    ts = []
    for t in (
        (0 - x0) / c if abs(c) > 1e-9 else None,
        (w - 1 - x0) / c if abs(c) > 1e-9 else None,
        (0 - y0) / s if abs(s) > 1e-9 else None,
        (h - 1 - y0) / s if abs(s) > 1e-9 else None,
    ):
        if t is None:
            continue
        px, py = x0 + t * c, y0 + t * s
        if -1e-6 <= px <= w - 1 + 1e-6 and -1e-6 <= py <= h - 1 + 1e-6:
            ts.append(t)
    t0, t1 = (min(ts), max(ts)) if ts else (0.0, 0.0)
    return ArtifactRow(
        "satellite_trail", float(x0 + t0 * c), float(y0 + t0 * s), float(x0 + t1 * c), float(y0 + t1 * s)
    )


def add_nan_regions(
    planes: tuple[np.ndarray, ...], mask: np.ndarray, rng: np.random.Generator
) -> list[ArtifactRow]:
    """Set one or two regions (rectangle, row band or column band) to NaN with NO_DATA.

    Parameters
    ----------
    planes : `tuple` [`numpy.ndarray`]
        Float planes (image, variance) set to NaN in place.
    mask : `numpy.ndarray`
        Mask, modified in place.
    rng : `numpy.random.Generator`
        Random generator.

    Returns
    -------
    rows : `list` [`ArtifactRow`]
        One row per region, ``(x, y)`` and ``(x1, y1)`` its inclusive corners.
    """
    h, w = mask.shape
    rows = []
    for _ in range(1 + int(rng.uniform() < 0.25)):
        kind = rng.choice(3, p=[0.5, 0.25, 0.25])
        if kind == 0:
            rw = int(rng.integers(max(2, w // 50), max(3, w // 5)))
            rh = int(rng.integers(max(2, h // 50), max(3, h // 5)))
            x0 = int(rng.integers(-rw // 2, w - rw // 2))
            y0 = int(rng.integers(-rh // 2, h - rh // 2))
        elif kind == 1:
            rw, rh = w, int(rng.integers(1, 12))
            x0, y0 = 0, int(rng.integers(0, h - rh))
        else:
            rw, rh = int(rng.integers(1, 12)), h
            x0, y0 = int(rng.integers(0, w - rw)), 0
        xa, xb = max(0, x0), min(w, x0 + rw)
        ya, yb = max(0, y0), min(h, y0 + rh)
        if xb <= xa or yb <= ya:
            continue
        for p in planes:
            p[ya:yb, xa:xb] = np.nan
        mask[ya:yb, xa:xb] |= NO_DATA
        rows.append(ArtifactRow("nan_region", float(xa), float(ya), float(xb - 1), float(yb - 1)))
    return rows


def apply_saturation(
    electrons: np.ndarray, mask: np.ndarray, full_well: float, star_xy: np.ndarray, bleed: bool
) -> list[ArtifactRow]:
    """Clip pixels at the full well and spill the excess charge along columns (bleed trails).

    Parameters
    ----------
    electrons : `numpy.ndarray`
        Image in electrons including the sky, modified in place.
    mask : `numpy.ndarray`
        Mask, SAT set in place.
    full_well : `float`
        Saturation level in electrons.
    star_xy : `numpy.ndarray`
        ``(n, 2)`` positions of stars that may saturate (used to name the trails).
    bleed : `bool`
        Whether to spill charge (science) or only clip (template).

    Returns
    -------
    rows : `list` [`ArtifactRow`]
        One ``bleed_trail`` row per saturated star, from the lowest to the highest SAT pixel.
    """
    h, w = electrons.shape
    sat = electrons > full_well
    rows: list[ArtifactRow] = []
    if not sat.any():
        return rows
    ys_all, xs_all = np.nonzero(sat)
    if bleed:
        for x in np.unique(xs_all):
            col = electrons[:, x]
            csat = np.nonzero(col > full_well)[0]
            # Split the column into contiguous runs and bleed each run.
            runs = np.split(csat, np.nonzero(np.diff(csat) > 1)[0] + 1)
            for run in runs:
                excess = float(np.sum(col[run] - full_well))
                col[run] = full_well
                n_extra = int(np.ceil(excess / full_well))
                up = n_extra // 2 + n_extra % 2
                down = n_extra // 2
                lo, hi = max(0, run[0] - down), min(h, run[-1] + 1 + up)
                col[lo:hi] = np.maximum(col[lo:hi], full_well)
                mask[lo:hi, x] |= SAT
        sat = (mask & SAT) != 0
    else:
        electrons[sat] = full_well
    mask[sat] |= SAT
    for sx, sy in star_xy:
        ix, iy = int(round(sx)), int(round(sy))
        if not (0 <= ix < w and 0 <= iy < h) or not sat[iy, ix]:
            continue
        col = sat[:, ix]
        lo = iy
        while lo > 0 and col[lo - 1]:
            lo -= 1
        hi = iy
        while hi < h - 1 and col[hi + 1]:
            hi += 1
        rows.append(ArtifactRow("bleed_trail", float(ix), float(lo), float(ix), float(hi)))
    return rows


def add_diffraction_spikes(
    image: np.ndarray,
    xs: np.ndarray,
    ys: np.ndarray,
    fluxes: np.ndarray,
    angle: float,
    pixel_noise: float,
    strength: float = 0.004,
) -> list[ArtifactRow]:
    """Add four-armed diffraction spikes to bright stars (science epoch only).

    The spikes rotate with the camera from visit to visit, so a coadded template
    does not contain them and they leave residuals in the difference image.

    Parameters
    ----------
    image : `numpy.ndarray`
        Noiseless science model (nJy), modified in place.
    xs, ys, fluxes : `numpy.ndarray`
        Star positions and fluxes.
    angle : `float`
        Spike position angle (radians) of this visit.
    pixel_noise : `float`
        Per-pixel sky noise (nJy): arms are drawn out to where they fall below it.
    strength : `float`
        Arm surface brightness is ``strength * flux / (r + 2)**2`` per pixel at ``r`` pixels.

    Returns
    -------
    rows : `list` [`ArtifactRow`]
        One ``psf_residual`` row per arm, from the star to the arm end.
    """
    h, w = image.shape
    rows = []
    sigma = 0.7
    for x, y, f in zip(xs, ys, fluxes):
        length = np.sqrt(strength * f / pixel_noise) - 2.0
        if length < 8:
            continue
        length = min(length, 400.0)
        r = int(np.ceil(length)) + 3
        ix, iy = int(round(x)), int(round(y))
        x0, x1, y0, y1 = max(0, ix - r), min(w, ix + r + 1), max(0, iy - r), min(h, iy + r + 1)
        if x1 <= x0 or y1 <= y0:
            continue
        gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        dx, dy = gx - x, gy - y
        stamp = np.zeros(gx.shape, dtype=np.float32)
        for k in range(4):
            th = angle + k * np.pi / 2
            along = dx * np.cos(th) + dy * np.sin(th)
            perp = -dx * np.sin(th) + dy * np.cos(th)
            arm = (along > 1.0) & (along < length)
            stamp += np.where(
                arm,
                strength
                * f
                / (np.abs(along) + 2.0) ** 2
                * np.exp(-0.5 * (perp / sigma) ** 2)
                / (np.sqrt(2 * np.pi) * sigma),
                0.0,
            )
            rows.append(
                ArtifactRow(
                    "psf_residual",
                    float(x),
                    float(y),
                    float(x + length * np.cos(th)),
                    float(y + length * np.sin(th)),
                )
            )
        image[y0:y1, x0:x1] += stamp
    return rows
