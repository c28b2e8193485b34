"""Localise transients in a TransiNet score image.

Peaks are local maxima of the score above a threshold, at least
``min_separation`` pixels apart (``scipy.ndimage.maximum_filter``; among equal
neighbouring maxima the first in row-major order wins).  Each peak gets a
sub-pixel position from a log-parabola fit through the 3x3 neighbourhood (exact
for a Gaussian blob).  Peaks are then grouped into *footprints*, as detection
groups the peaks of one source: the footprint of a peak is the connected region
around it where the score is at least ``footprint_level`` times the peak score,
and a lower peak inside the footprint of a higher one is dropped (a trail or an
extended residual gives one source, not a row of peaks).  A footprint elongated
beyond ``trail_elongation`` (axis ratio from its score-weighted second moments)
is flagged ``flag_trail`` and its source placed at the footprint's score-weighted
centroid, the centre of a trail, where the peak may lie anywhere along it.  Each
source has its peak score, edge/NaN/trail flags, and, if images are given,
a flux **estimate**: a PSF-weighted (Gaussian) flux measured on a local stamp of
a PSF-matched difference.  Given a difference image (the fitted-kernel
difference of `~.normalization.fitted_pair_difference`, which the default
model also reads) it is measured there with its variance plane
(`difference_fluxes`); otherwise on ``science - template (x)
G(sqrt(sigma_sci**2 - sigma_tmpl**2))`` (`estimate_fluxes`), whose Gaussian
kernel leaves large residuals on bright static stars.  The weights are
Gaussian, so either flux is an estimate, not a calibrated PSF flux.
"""

from __future__ import annotations

__all__ = ["find_peaks", "difference_fluxes", "estimate_fluxes", "merge_footprints", "PEAK_COLUMNS"]

import numpy as np
from astropy.table import Table
from scipy import ndimage

from ..mask_planes import EDGE, NO_DATA

PEAK_COLUMNS = ("x", "y", "ra", "dec", "peak_score", "flux", "flux_err", "flag_edge", "flag_nan",
                "flag_trail")
"""Columns of the table returned by `find_peaks`."""


def _subpixel(score: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    height, width = score.shape
    logs = np.log(np.clip(np.nan_to_num(score, nan=0.0), 1e-12, None))

    def offset(minus: np.ndarray, centre: np.ndarray, plus: np.ndarray) -> np.ndarray:
        denom = minus - 2 * centre + plus
        with np.errstate(divide="ignore", invalid="ignore"):
            off = np.where(denom < 0, 0.5 * (minus - plus) / denom, 0.0)
        return np.clip(np.nan_to_num(off), -0.5, 0.5)

    inner_x = (ix > 0) & (ix < width - 1)
    inner_y = (iy > 0) & (iy < height - 1)
    c = logs[iy, ix]
    dx = np.zeros(len(ix))
    dy = np.zeros(len(iy))
    if inner_x.any():
        jy, jx = iy[inner_x], ix[inner_x]
        dx[inner_x] = offset(logs[jy, jx - 1], c[inner_x], logs[jy, jx + 1])
    if inner_y.any():
        jy, jx = iy[inner_y], ix[inner_y]
        dy[inner_y] = offset(logs[jy - 1, jx], c[inner_y], logs[jy + 1, jx])
    return ix + dx, iy + dy


def merge_footprints(
    score: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    *,
    level: float,
    elongation: float,
    radius: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Group peaks into score footprints and place elongated ones at their centroid.

    Parameters
    ----------
    score : `numpy.ndarray`
        Score image (NaN-free; unusable pixels may be ``-inf``).
    x, y : `numpy.ndarray`
        Peak positions, sorted by decreasing score.
    level : `float`
        The footprint of a peak is the connected region where the score is at least
        ``level`` times the peak score, within ``radius`` pixels (a box) of the peak.
    elongation : `float`
        Footprints whose axis ratio (square root of the eigenvalue ratio of the
        score-weighted second moments) exceeds this are trails.
    radius : `int`
        Half side of the box a footprint is searched in.

    Returns
    -------
    keep : `numpy.ndarray`
        Boolean, `False` for peaks inside the footprint of a higher peak.
    x, y : `numpy.ndarray`
        Positions: the footprint centroid for trails, the input position otherwise.
    trail : `numpy.ndarray`
        Boolean, `True` for trails.
    """
    height, width = score.shape
    n = len(x)
    keep = np.zeros(n, dtype=bool)
    trail = np.zeros(n, dtype=bool)
    x_out = np.array(x, dtype=np.float64)
    y_out = np.array(y, dtype=np.float64)
    taken = np.zeros(score.shape, dtype=bool)
    for i in range(n):
        ix = min(max(int(round(x[i])), 0), width - 1)
        iy = min(max(int(round(y[i])), 0), height - 1)
        if taken[iy, ix]:
            continue
        keep[i] = True
        box = (slice(max(iy - radius, 0), min(iy + radius + 1, height)),
               slice(max(ix - radius, 0), min(ix + radius + 1, width)))
        sub = score[box]
        labels, _ = ndimage.label(sub >= level * score[iy, ix])
        region = labels == labels[iy - box[0].start, ix - box[1].start]
        taken[box] |= region
        ry, rx = np.nonzero(region)
        if len(rx) < 3:
            continue
        weights = sub[region]
        total = weights.sum()
        cx, cy = np.sum(rx * weights) / total, np.sum(ry * weights) / total
        dx, dy = rx - cx, ry - cy
        cxx, cyy, cxy = (np.sum(weights * a) / total for a in (dx * dx, dy * dy, dx * dy))
        # Eigenvalues of the 2x2 second-moment matrix.
        half_trace, det = 0.5 * (cxx + cyy), cxx * cyy - cxy * cxy
        root = np.sqrt(max(half_trace * half_trace - det, 0.0))
        minor, major = half_trace - root, half_trace + root
        if minor > 0 and np.sqrt(major / minor) > elongation:
            trail[i] = True
            x_out[i], y_out[i] = box[1].start + cx, box[0].start + cy
    return keep, x_out, y_out, trail


def _weighted_flux(diff: np.ndarray, var: np.ndarray | None, good: np.ndarray, yy: np.ndarray,
                   xx: np.ndarray, xc: float, yc: float, sigma: float) -> tuple[float, float]:
    """Gaussian-weighted flux and error of one stamp (`difference_fluxes`, `estimate_fluxes`).

    ``sum(P * D) / sum(P**2)`` and ``sqrt(sum(P**2 * V)) / sum(P**2)`` with ``P`` the
    unit-sum Gaussian of ``sigma`` at ``(xc, yc)``, zero outside ``good``; ``diff`` and
    ``var`` must be 0 (not NaN) outside ``good``; the error is NaN without ``var``.
    """
    w = np.where(good, np.exp(-0.5 * ((xx - xc) ** 2 + (yy - yc) ** 2) / sigma**2), 0.0)
    w /= 2 * np.pi * sigma**2
    norm = np.sum(w * w)
    flux = float(np.sum(w * diff) / norm)
    err = np.nan if var is None else float(np.sqrt(np.sum(w * w * var)) / norm)
    return flux, err


def difference_fluxes(
    x: np.ndarray,
    y: np.ndarray,
    difference: np.ndarray,
    variance: np.ndarray,
    psf_sigma: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Measure Gaussian-weighted fluxes on a PSF-matched difference image.

    The flux is ``sum(P * D) / sum(P**2)`` with ``P`` the unit-sum Gaussian of
    ``psf_sigma`` at the sub-pixel position, over the pixels within ``3 psf_sigma``
    (a box) that are finite in both planes; the error is
    ``sqrt(sum(P**2 * V)) / sum(P**2)``.

    Parameters
    ----------
    x, y : `numpy.ndarray`
        Positions (0-based pixels).
    difference, variance : `numpy.ndarray`
        Difference image and its variance (NaN where unusable).
    psf_sigma : `float`
        Gaussian-equivalent PSF sigma of the difference in pixels (the broader of
        the two images' for a matched difference).

    Returns
    -------
    flux, flux_err : `numpy.ndarray`
        NaN where no usable pixel is near.

    Raises
    ------
    ValueError
        Raised if ``psf_sigma`` is not positive or the planes' shapes differ.
    """
    if not (np.isfinite(psf_sigma) and psf_sigma > 0):
        raise ValueError(f"psf_sigma must be positive; got {psf_sigma}.")
    difference = np.asarray(difference)
    variance = np.asarray(variance)
    if difference.shape != variance.shape:
        raise ValueError(f"difference {difference.shape} and variance {variance.shape} differ in shape.")
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    height, width = difference.shape
    rad = int(np.ceil(3 * psf_sigma))
    flux = np.full(len(x), np.nan)
    err = np.full(len(x), np.nan)
    for i, (xc, yc) in enumerate(zip(x, y)):
        x0, y0 = int(round(xc)), int(round(yc))
        box = (slice(max(y0 - rad, 0), min(y0 + rad + 1, height)),
               slice(max(x0 - rad, 0), min(x0 + rad + 1, width)))
        d = np.asarray(difference[box], dtype=np.float64)
        v = np.asarray(variance[box], dtype=np.float64)
        good = np.isfinite(d) & np.isfinite(v)
        if not good.any():
            continue
        yy, xx = np.mgrid[box]
        flux[i], err[i] = _weighted_flux(np.where(good, d, 0.0), np.where(good, v, 0.0), good, yy, xx,
                                         xc, yc, psf_sigma)
    return flux, err


def estimate_fluxes(
    x: np.ndarray,
    y: np.ndarray,
    science: np.ndarray,
    template: np.ndarray,
    science_psf_sigma: float,
    template_psf_sigma: float,
    *,
    science_variance: np.ndarray | None = None,
    template_variance: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate PSF-weighted difference fluxes at given positions.

    The template is convolved with a Gaussian of width
    ``sqrt(max(sigma_sci**2 - sigma_tmpl**2, 0))`` and subtracted from the science
    image on a local stamp; the flux is ``sum(P * D) / sum(P**2)`` with ``P`` the
    unit-sum Gaussian science PSF at the sub-pixel position, and the error is
    ``sqrt(sum(P**2 * V)) / sum(P**2)``.  Non-finite pixels get zero weight.

    Returns
    -------
    flux, flux_err : `numpy.ndarray`
        Estimates in image units (NaN where no valid pixel is available; error NaN
        if no variance was given).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not (np.isfinite(science_psf_sigma) and science_psf_sigma > 0 and np.isfinite(template_psf_sigma)
            and template_psf_sigma > 0):
        raise ValueError(f"PSF sigmas must be positive; got {science_psf_sigma}, {template_psf_sigma}.")
    height, width = science.shape
    kernel_sigma = float(np.sqrt(max(science_psf_sigma**2 - template_psf_sigma**2, 0.0)))
    rad = int(np.ceil(3 * science_psf_sigma))
    pad = int(np.ceil(4 * kernel_sigma)) + 1
    flux = np.full(len(x), np.nan)
    err = np.full(len(x), np.nan)
    for i, (xc, yc) in enumerate(zip(x, y)):
        x0, y0 = int(round(xc)), int(round(yc))
        ylo, yhi = max(y0 - rad - pad, 0), min(y0 + rad + pad + 1, height)
        xlo, xhi = max(x0 - rad - pad, 0), min(x0 + rad + pad + 1, width)
        t_stamp = np.asarray(template[ylo:yhi, xlo:xhi], dtype=np.float64)
        s_stamp = np.asarray(science[ylo:yhi, xlo:xhi], dtype=np.float64)
        good = np.isfinite(t_stamp) & np.isfinite(s_stamp)
        if kernel_sigma > 0:
            t_conv = ndimage.gaussian_filter(np.where(good, t_stamp, 0.0), kernel_sigma, mode="nearest",
                                             truncate=4.0)
        else:
            t_conv = np.where(good, t_stamp, 0.0)
        diff = np.where(good, s_stamp - t_conv, 0.0)
        yy, xx = np.mgrid[ylo:yhi, xlo:xhi]
        inner = (np.abs(xx - x0) <= rad) & (np.abs(yy - y0) <= rad) & good
        if not inner.any():
            continue
        var = None
        if science_variance is not None:
            var = np.asarray(science_variance[ylo:yhi, xlo:xhi], dtype=np.float64)
            if template_variance is not None:
                tvar = np.asarray(template_variance[ylo:yhi, xlo:xhi], dtype=np.float64)
                tvar = np.where(np.isfinite(tvar), tvar, 0.0)
                if kernel_sigma > 0:
                    # Variance of a Gaussian-smoothed white field: var * sum(K**2) = var / (4 pi s^2).
                    tvar = ndimage.uniform_filter(tvar, 3, mode="nearest") / (4 * np.pi * kernel_sigma**2)
                var = var + tvar
            var = np.where(np.isfinite(var), var, 0.0)
        flux[i], err[i] = _weighted_flux(diff, var, inner, yy, xx, xc, yc, science_psf_sigma)
    return flux, err


def find_peaks(
    score: np.ndarray,
    *,
    threshold: float = 0.5,
    min_separation: float = 3.0,
    science: np.ndarray | None = None,
    template: np.ndarray | None = None,
    science_variance: np.ndarray | None = None,
    template_variance: np.ndarray | None = None,
    science_psf_sigma: float | None = None,
    template_psf_sigma: float | None = None,
    mask: np.ndarray | None = None,
    wcs: object | None = None,
    edge_width: int = 8,
    nan_radius: float = 4.0,
    footprint_level: float | None = 0.5,
    trail_elongation: float = 1.5,
    footprint_radius: int = 50,
    difference: tuple[np.ndarray, ...] | None = None,
) -> Table:
    """Find transient candidates as peaks of a score image.

    Parameters
    ----------
    score : `numpy.ndarray`
        Score image ``(H, W)`` (e.g. probabilities in [0, 1]); NaN is ignored.
    threshold : `float`
        Minimum peak score.
    min_separation : `float`
        Minimum distance between peaks in pixels (size of the maximum filter is
        ``2 * ceil(min_separation) + 1``).
    science, template : `numpy.ndarray`, optional
        Images for the flux estimate (both needed, with both PSF sigmas) when no
        ``difference`` is given.
    science_variance, template_variance : `numpy.ndarray`, optional
        Variances for the flux error.
    science_psf_sigma, template_psf_sigma : `float`, optional
        Gaussian-equivalent PSF sigmas in pixels.
    mask : `numpy.ndarray`, optional
        Integer mask: ``NO_DATA`` counts as NaN, ``EDGE`` as edge.
    wcs : `astropy.wcs.WCS`, optional
        If given, ``ra``/``dec`` (degrees) are filled; else they are NaN.
    edge_width : `int`
        Peaks within this many pixels of the image border get ``flag_edge``.
    nan_radius : `float`
        Peaks with a NaN/``NO_DATA`` pixel within this radius get ``flag_nan``.
    footprint_level : `float` or `None`
        Footprint level relative to the peak score (in (0, 1]; see the module
        docstring): lower peaks in a higher peak's footprint are dropped and
        elongated footprints are trails.  `None` keeps every peak where it is.
    trail_elongation : `float`
        Axis ratio above which a footprint is a trail (``flag_trail``, placed at
        its centroid).
    footprint_radius : `int`
        Half side in pixels of the box a footprint is searched in.
    difference : `tuple` [`numpy.ndarray`, ...], optional
        A PSF-matched difference of the pair and its variance, optionally followed by
        its flux variance (`~.normalization.fitted_pair_difference`'s three planes;
        the last plane is the variance used): fluxes are measured on it
        (`difference_fluxes`, Gaussian weights of the broader PSF sigma; both PSF
        sigmas needed) instead of the Gaussian-matched estimate.

    Returns
    -------
    peaks : `astropy.table.Table`
        Columns `PEAK_COLUMNS`, sorted by decreasing ``peak_score``.

    Raises
    ------
    ValueError
        Raised for a non-2-D score, mismatched shapes or invalid parameters.
    """
    score = np.asarray(score, dtype=np.float64)
    if score.ndim != 2:
        raise ValueError(f"score must be a 2-D image; got shape {score.shape}.")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite; got {threshold}.")
    if not (np.isfinite(min_separation) and min_separation >= 0):
        raise ValueError(f"min_separation must be >= 0; got {min_separation}.")
    if footprint_level is not None and not 0.0 < footprint_level <= 1.0:
        raise ValueError(f"footprint_level must be in (0, 1] or None; got {footprint_level}.")
    if not (np.isfinite(trail_elongation) and trail_elongation >= 1.0):
        raise ValueError(f"trail_elongation must be >= 1; got {trail_elongation}.")
    if footprint_radius < 1:
        raise ValueError(f"footprint_radius must be >= 1; got {footprint_radius}.")
    for name, arr in (("science", science), ("template", template), ("mask", mask),
                      ("science_variance", science_variance), ("template_variance", template_variance)):
        if arr is not None and np.shape(arr) != score.shape:
            raise ValueError(f"{name} has shape {np.shape(arr)}, expected {score.shape} (the score's shape).")
    height, width = score.shape
    filled = np.where(np.isfinite(score), score, -np.inf)
    size = 2 * int(np.ceil(min_separation)) + 1
    local_max = ndimage.maximum_filter(filled, size=size, mode="constant", cval=-np.inf)
    cand = (filled >= local_max) & (filled >= threshold)
    iy, ix = np.nonzero(cand)
    order = np.argsort(-filled[iy, ix], kind="stable")
    iy, ix = iy[order], ix[order]
    # Plateaus give several equal maxima: keep peaks greedily, best first, min_separation apart.
    keep = np.ones(len(iy), dtype=bool)
    if min_separation > 0 and len(iy) > 1:
        from scipy.spatial import cKDTree

        tree = cKDTree(np.column_stack([ix, iy]))
        for i in range(len(iy)):
            if not keep[i]:
                continue
            for j in tree.query_ball_point((ix[i], iy[i]), r=min_separation):
                if j > i:
                    keep[j] = False
    iy, ix = iy[keep], ix[keep]
    xs, ys = _subpixel(score, iy, ix)
    trail = np.zeros(len(ix), dtype=bool)
    if footprint_level is not None and len(ix):
        keep, xs, ys, trail = merge_footprints(filled, xs, ys,
                                               level=footprint_level, elongation=trail_elongation,
                                               radius=int(footprint_radius))
        iy, ix, xs, ys, trail = iy[keep], ix[keep], xs[keep], ys[keep], trail[keep]

    invalid = ~np.isfinite(score)
    if science is not None:
        invalid |= ~np.isfinite(science)
    if template is not None:
        invalid |= ~np.isfinite(template)
    if mask is not None:
        invalid |= (np.asarray(mask).astype(np.int64) & NO_DATA) != 0
    r = int(np.ceil(nan_radius))
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    footprint = (xx**2 + yy**2) <= nan_radius**2
    near_nan = ndimage.binary_dilation(invalid, structure=footprint) if invalid.any() else invalid
    flag_nan = near_nan[iy, ix]
    flag_edge = ((ix < edge_width) | (iy < edge_width) | (ix >= width - edge_width)
                 | (iy >= height - edge_width))
    if mask is not None:
        flag_edge |= (np.asarray(mask).astype(np.int64)[iy, ix] & EDGE) != 0

    flux = np.full(len(ix), np.nan)
    flux_err = np.full(len(ix), np.nan)
    if difference is not None:
        if science_psf_sigma is None or template_psf_sigma is None:
            raise ValueError("science_psf_sigma and template_psf_sigma are required to measure fluxes on "
                             "the difference image.")
        diff, diff_var = difference[0], difference[-1]
        if np.shape(diff) != score.shape:
            raise ValueError(f"difference has shape {np.shape(diff)}, expected {score.shape} "
                             "(the score's shape).")
        if len(ix):
            flux, flux_err = difference_fluxes(xs, ys, diff, diff_var,
                                               max(float(science_psf_sigma), float(template_psf_sigma)))
    elif science is not None and template is not None and len(ix):
        if science_psf_sigma is None or template_psf_sigma is None:
            raise ValueError("science_psf_sigma and template_psf_sigma are required for the flux estimate.")
        flux, flux_err = estimate_fluxes(xs, ys, science, template, science_psf_sigma, template_psf_sigma,
                                         science_variance=science_variance,
                                         template_variance=template_variance)
    ra = np.full(len(ix), np.nan)
    dec = np.full(len(ix), np.nan)
    if wcs is not None and len(ix):
        ra, dec = wcs.pixel_to_world_values(xs, ys)
        ra, dec = np.asarray(ra, dtype=np.float64), np.asarray(dec, dtype=np.float64)
    return Table(
        {
            "x": xs.astype(np.float64),
            "y": ys.astype(np.float64),
            "ra": ra,
            "dec": dec,
            "peak_score": score[iy, ix].astype(np.float64),
            "flux": flux,
            "flux_err": flux_err,
            "flag_edge": flag_edge.astype(bool),
            "flag_nan": flag_nan.astype(bool),
            "flag_trail": trail.astype(bool),
        }
    )
