"""Simulation of one (visit, detector): science and template planes plus truth."""

from __future__ import annotations

__all__ = ["PlaneSet", "SimulatedVisit", "make_wcs", "simulate_survey", "simulate_visit"]

import functools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from astropy.table import Table
from astropy.wcs import WCS
from scipy import fft as sp_fft
from scipy.ndimage import correlate

from ..ids import MAX_DETECTOR, MAX_VISIT, make_source_ids
from ..mask_planes import EDGE, NO_DATA, SAT
from .artifacts import (
    ArtifactRow,
    add_bad_columns,
    add_cosmic_rays,
    add_diffraction_spikes,
    add_hot_pixels,
    add_nan_regions,
    add_satellite_trail,
    apply_saturation,
)
from .config import SurveyConfig
from .psf import PsfModel, draw_kernel, draw_psf_model, effective_sigma
from .scene import (
    AB_NJY_ZERO_POINT,
    StaticScene,
    draw_galaxy_layer,
    mag_to_njy,
    make_static_scene,
    njy_to_mag,
    seeded_rng,
)

TRUTH_COLUMNS = ("id", "x", "y", "ra", "dec", "category", "type", "flux", "snr", "mag", "host_id", "x1", "y1")
"""Truth catalogue columns, in order (see DESIGN.md)."""

TRANSIENT_TYPES = (
    "hostless",
    "galaxy_offset",
    "galaxy_nuclear",
    "variable_brighten",
    "variable_fade",
    "moving",
)
"""Transient types."""

ARTIFACT_TYPES = (
    "cosmic_ray",
    "hot_pixel",
    "bad_column",
    "bleed_trail",
    "satellite_trail",
    "misregistration",
    "psf_residual",
    "nan_region",
    "edge",
)
"""Artefact types."""


@dataclass
class PlaneSet:
    """Image, variance and mask planes on one pixel grid."""

    image: np.ndarray
    """Image in nJy per pixel (float32)."""
    variance: np.ndarray
    """Variance in nJy^2 (float32)."""
    mask: np.ndarray
    """Integer mask (int32) with the bits of `lsst.meas.realbogus.mask_planes`."""

    def __post_init__(self) -> None:
        self.image = np.asarray(self.image, dtype=np.float32)
        self.variance = np.asarray(self.variance, dtype=np.float32)
        self.mask = np.asarray(self.mask, dtype=np.int32)
        if (
            self.image.ndim != 2
            or self.image.shape != self.variance.shape
            or self.image.shape != self.mask.shape
        ):
            raise ValueError(
                f"Planes must be 2-D with equal shapes, got image {self.image.shape}, "
                f"variance {self.variance.shape}, mask {self.mask.shape}."
            )

    def copy(self) -> PlaneSet:
        """Return a deep copy."""
        return PlaneSet(self.image.copy(), self.variance.copy(), self.mask.copy())


@dataclass
class SimulatedVisit:
    """Everything simulated for one (visit, detector)."""

    visit: int
    """Visit number."""
    detector: int
    """Detector number."""
    science: PlaneSet
    """Science (calexp-like, sky-subtracted) planes."""
    template: PlaneSet
    """Template (coadd warped to the science grid) planes."""
    science_psf: np.ndarray
    """Normalised science PSF kernel at the detector centre."""
    science_psf_sigma: float
    """Gaussian-equivalent sigma (pixels) of the science PSF."""
    template_psf: np.ndarray
    """Normalised template PSF kernel."""
    template_psf_sigma: float
    """Gaussian-equivalent sigma (pixels) of the template PSF."""
    wcs: WCS
    """TAN WCS shared by science and template."""
    truth: Table
    """Truth catalogue of changes and artefacts (DESIGN.md columns)."""
    metadata: dict = field(default_factory=dict)
    """Observation metadata (band, mjd, seeing, sky, misregistration, seed, ...)."""


def _check_ids(visit: int, detector: int, seed: int) -> None:
    if not 0 <= int(visit) < MAX_VISIT:
        raise ValueError(f"visit must be in [0, {MAX_VISIT}), got {visit}.")
    if not 0 <= int(detector) < MAX_DETECTOR:
        raise ValueError(f"detector must be in [0, {MAX_DETECTOR}), got {detector}.")
    if int(seed) < 0:
        raise ValueError(f"seed must be non-negative, got {seed}.")


def make_wcs(config: SurveyConfig, detector: int) -> WCS:
    """Return the TAN WCS of a detector; detectors tile the sky on a grid around the field centre.

    Parameters
    ----------
    config : `SurveyConfig`
        Survey configuration.
    detector : `int`
        Detector number.

    Returns
    -------
    wcs : `astropy.wcs.WCS`
        The celestial WCS (0-based pixel convention through astropy's ``*_values`` methods).
    """
    col = detector % config.detectors_per_row
    row = detector // config.detectors_per_row
    step_x = config.width * config.pixel_scale / 3600.0 * 1.02
    step_y = config.height * config.pixel_scale / 3600.0 * 1.02
    dec = config.field_dec + (row - 2) * step_y
    ra = config.field_ra + (col - (config.detectors_per_row - 1) / 2) * step_x / np.cos(np.radians(dec))
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra % 360.0, dec]
    wcs.wcs.crpix = [(config.width + 1) / 2.0, (config.height + 1) / 2.0]
    s = config.pixel_scale / 3600.0
    wcs.wcs.cd = [[-s, 0.0], [0.0, s]]
    wcs.wcs.cunit = ["deg", "deg"]
    return wcs


def _conv_kernel_size(config: SurveyConfig, fwhm_arcsec: float) -> int:
    n = int(np.ceil(8 * fwhm_arcsec / config.pixel_scale)) | 1
    return int(np.clip(n, config.psf_kernel_size, 81)) | 1


def _calib(config: SurveyConfig, ib: int) -> float:
    """NJy per electron in band index ``ib``."""
    return float(mag_to_njy(config.instrumental_zero_points[ib]) / config.exposure_time)


def _sky_electrons(config: SurveyConfig, ib: int, sky_mag: float) -> float:
    sky_njy = float(mag_to_njy(sky_mag)) * config.pixel_scale**2
    return sky_njy / _calib(config, ib)


def _uv(config: SurveyConfig, x: float, y: float) -> tuple[float, float]:
    return (2.0 * x / (config.width - 1) - 1.0, 2.0 * y / (config.height - 1) - 1.0)


def _stamp_radius(fwhm_pix: float, flux: float) -> int:
    return int(
        np.clip(np.ceil(fwhm_pix * (3.0 + 2.2 * max(0.0, np.log10(max(abs(flux), 1.0) / 1.0e3)))), 8, 150)
    )


def _add_points(
    image: np.ndarray,
    config: SurveyConfig,
    model: PsfModel,
    xs: np.ndarray,
    ys: np.ndarray,
    fluxes: np.ndarray,
    fwhm_scales: np.ndarray | None = None,
) -> None:
    """Draw point sources with the (spatially varying) PSF model onto ``image`` in place."""
    h, w = image.shape
    fwhm_pix = model.fwhm / config.pixel_scale
    for k in range(len(xs)):
        x, y, f = float(xs[k]), float(ys[k]), float(fluxes[k])
        if f == 0.0:
            continue
        s = 1.0 if fwhm_scales is None else float(fwhm_scales[k])
        r = _stamp_radius(fwhm_pix * s, f)
        ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
        x0, x1, y0, y1 = ix - r, ix + r + 1, iy - r, iy + r + 1
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            continue
        u, v = _uv(config, x, y)
        n = 2 * r + 1
        stamp = (
            model.profile(u, v, s, f)
            .drawImage(nx=n, ny=n, scale=config.pixel_scale, method="no_pixel", offset=(x - ix, y - iy))
            .array
        )
        image[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)] += stamp[
            max(0, -y0) : n - max(0, y1 - h), max(0, -x0) : n - max(0, x1 - w)
        ].astype(image.dtype)


def _convolve_layer(
    layer: np.ndarray, config: SurveyConfig, model: PsfModel, offset: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Convolve a layer with the PSF model, bilinearly blending corner kernels if the PSF varies.

    The layer's FFT is computed once and reused for every kernel.
    """
    size = _conv_kernel_size(config, model.fwhm * 1.1)
    varies = any(abs(g) > 0 for g in (model.dfwhm_x, model.dfwhm_y, model.dg1, model.dg2))
    h, w = layer.shape
    half = size // 2
    shape = (sp_fft.next_fast_len(h + size - 1, real=True), sp_fft.next_fast_len(w + size - 1, real=True))
    layer_ft = sp_fft.rfft2(layer.astype(np.float32), s=shape, workers=1)

    def conv(kernel: np.ndarray) -> np.ndarray:
        k_ft = sp_fft.rfft2(kernel.astype(np.float32), s=shape, workers=1)
        full = sp_fft.irfft2(layer_ft * k_ft, s=shape, workers=1)
        return full[half : half + h, half : half + w].astype(np.float32, copy=False)

    if not varies or min(config.width, config.height) < 512:
        return conv(draw_kernel(model.profile(), size, config.pixel_scale, offset))
    uu = np.linspace(-1, 1, w, dtype=np.float32)[None, :]
    vv = np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    out = np.zeros((h, w), dtype=np.float32)
    for cu in (-1.0, 1.0):
        for cv in (-1.0, 1.0):
            k = draw_kernel(model.profile(cu, cv), size, config.pixel_scale, offset)
            out += conv(k) * (((1 + cu * uu) / 2) * ((1 + cv * vv) / 2))
    return out


@functools.lru_cache(maxsize=16)
def _cached_scene(config: SurveyConfig, detector: int, seed: int) -> StaticScene:
    return make_static_scene(config, detector, seed)


@functools.lru_cache(maxsize=4)
def _cached_galaxy_layer(config: SurveyConfig, detector: int, seed: int, band: str) -> np.ndarray:
    layer = draw_galaxy_layer(_cached_scene(config, detector, seed), config, band)
    layer.setflags(write=False)
    return layer


@dataclass(frozen=True)
class _Template:
    planes: PlaneSet
    kernel: np.ndarray
    sigma: float
    model: PsfModel
    sky_mag: float
    noise_corr_factor: float


@functools.lru_cache(maxsize=4)
def _cached_template(config: SurveyConfig, detector: int, seed: int, band: str) -> _Template:
    scene = _cached_scene(config, detector, seed)
    ib = config.band_index(band)
    rng = seeded_rng(seed, detector, ib, 3_000_003)
    model = draw_psf_model(rng, float(scene.template_fwhm[ib]), 0.03, 0.0, kinds=config.template_psf_kinds)
    truth_img = _convolve_layer(_cached_galaxy_layer(config, detector, seed, band), config, model)
    _add_points(truth_img, config, model, scene.star_x, scene.star_y, mag_to_njy(scene.star_mag[:, ib]))
    np.maximum(truth_img, 0, out=truth_img)
    c = _calib(config, ib)
    sky_mag = float(np.mean(config.sky_brightness_ranges[ib]))
    sky_e = _sky_electrons(config, ib, sky_mag)
    depth = float(scene.template_depth[ib])
    var = ((truth_img / c + sky_e + scene.read_noise**2) * (c * c) / depth).astype(np.float32)
    # Warping and coadding correlate the template noise between neighbouring pixels; the
    # per-pixel variance is unchanged.
    noise = rng.standard_normal(truth_img.shape, dtype=np.float32)
    corr = float(rng.uniform(0.0, config.template_noise_correlation))
    k = np.array([[corr * corr, corr, corr * corr], [corr, 1.0, corr], [corr * corr, corr, corr * corr]])
    # Variance of a PSF-scale weighted sum relative to white noise of the same per-pixel variance.
    corr_factor = float(np.sum(k) ** 2 / np.sum(k * k))
    if corr > 0:
        noise = correlate(noise, (k / np.sqrt(np.sum(k * k))).astype(np.float32), mode="reflect")
    image = truth_img + noise * np.sqrt(var)
    mask = np.zeros(image.shape, dtype=np.int32)
    sat_level = (config.full_well - sky_e) * c
    sat = truth_img > sat_level
    image[sat] = sat_level
    mask[sat] |= SAT
    _mask_edges(mask, config.edge_width)
    kernel = draw_kernel(model.profile(), config.psf_kernel_size, config.pixel_scale)
    planes = PlaneSet(image, var, mask)
    for arr in (planes.image, planes.variance, planes.mask):
        arr.setflags(write=False)
    return _Template(planes, kernel, effective_sigma(kernel), model, sky_mag, corr_factor)


def _mask_edges(mask: np.ndarray, width: int) -> None:
    if width <= 0:
        return
    mask[:width, :] |= EDGE
    mask[-width:, :] |= EDGE
    mask[:, :width] |= EDGE
    mask[:, -width:] |= EDGE


def _local_kernel(
    config: SurveyConfig, model: PsfModel, x: float, y: float, r: int
) -> tuple[np.ndarray, int, int]:
    ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
    u, v = _uv(config, x, y)
    k = draw_kernel(model.profile(u, v), 2 * r + 1, config.pixel_scale, (x - ix, y - iy))
    return k, ix, iy


def _crop(arr: np.ndarray, ix: int, iy: int, r: int) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Return the stamp of ``arr`` around (ix, iy) and the matching kernel slices (clipped at borders)."""
    h, w = arr.shape
    x0, x1, y0, y1 = ix - r, ix + r + 1, iy - r, iy + r + 1
    n = 2 * r + 1
    sub = arr[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)]
    ks = (slice(max(0, -y0), n - max(0, y1 - h)), slice(max(0, -x0), n - max(0, x1 - w)))
    return sub, ks


def _psf_flux_sigma(
    config: SurveyConfig,
    model: PsfModel,
    var: np.ndarray,
    x: float,
    y: float,
    shape: np.ndarray | None = None,
) -> tuple[float, float]:
    """Return (1 / sqrt(sum P^2/V), sum(P S / V) / sum(P^2/V)) for a source of shape S (default: P)."""
    r = int(np.ceil(2.5 * model.fwhm / config.pixel_scale)) + 2
    k, ix, iy = _local_kernel(config, model, x, y, r)
    v, ks = _crop(var, ix, iy, r)
    p = k[ks]
    s = p if shape is None else shape[ks]
    good = np.isfinite(v) & (v > 0)
    if not good.any():
        return np.inf, 0.0
    a = float(np.sum(p[good] ** 2 / v[good]))
    b = float(np.sum(p[good] * s[good] / v[good]))
    if a <= 0:
        return np.inf, 0.0
    return 1.0 / np.sqrt(a), b / a


def simulate_visit(config: SurveyConfig, visit: int, detector: int, seed: int = 0) -> SimulatedVisit:
    """Simulate the science and template planes and the truth of one (visit, detector).

    Parameters
    ----------
    config : `SurveyConfig`
        Survey configuration.
    visit : `int`
        Visit number (non-negative); MJD increases with it.
    detector : `int`
        Detector number (non-negative, below ``ids.MAX_DETECTOR``); selects the sky field.
    seed : `int`
        Survey seed; the result is a deterministic function of ``(config, visit, detector, seed)``.

    Returns
    -------
    result : `SimulatedVisit`
        Planes, PSFs, WCS, truth and metadata.

    Raises
    ------
    TypeError
        Raised if ``config`` is not a `SurveyConfig`.
    ValueError
        Raised if ``visit``, ``detector`` or ``seed`` is out of range.

    Notes
    -----
    Truth conventions: ``flux`` is the science-minus-template flux (nJy, negative for fading
    variables); ``snr`` is the expected PSF-optimal SNR of that flux in the difference image,
    signed like ``flux``, computed from the per-pixel science variance (sky, sources, read noise)
    plus the template variance (scaled for its pixel-scale noise correlation), excluding
    NO_DATA pixels.  Artefact rows have ``flux = snr = 0`` and ``mag = NaN``.  Segment-like
    artefacts (cosmic-ray tracks, bad columns, bleed trails, satellite trails, diffraction-spike
    ``psf_residual`` arms) run from ``(x, y)`` to ``(x1, y1)``; ``nan_region`` and ``edge`` rows
    give the inclusive corners of a rectangle.  The science scene is shifted by
    ``(misregistration_dx, misregistration_dy)`` relative to the template; truth positions are
    science positions.
    """
    if not isinstance(config, SurveyConfig):
        raise TypeError(f"config must be a SurveyConfig, got {type(config).__name__}.")
    _check_ids(visit, detector, seed)
    visit, detector, seed = int(visit), int(detector), int(seed)
    scene = _cached_scene(config, detector, seed)
    w, h = config.width, config.height
    ps = config.pixel_scale

    # Visit-level conditions (shared by all detectors of a visit).
    rng_v = seeded_rng(seed, visit, 2)
    ib = int(rng_v.integers(len(config.bands)))
    band = config.bands[ib]
    lo, hi = config.seeing_range
    seeing = float(lo * (hi / lo) ** rng_v.beta(1.6, 2.4)) if lo > 0 and hi > lo else float(lo)
    sky_mag = float(rng_v.uniform(*config.sky_brightness_ranges[ib]))
    transparency = float(rng_v.uniform(*config.transparency_range))

    # Detector-level draws, on independent streams.
    rng_psf = seeded_rng(seed, visit, detector, 11)
    rng_tr = seeded_rng(seed, visit, detector, 12)
    rng_art = seeded_rng(seed, visit, detector, 13)
    rng_noise = seeded_rng(seed, visit, detector, 14)
    rng_static = seeded_rng(seed, detector, 15)
    fwhm = seeing * float(np.exp(rng_psf.normal(0, 0.02)))
    model = draw_psf_model(rng_psf, fwhm, config.psf_max_ellipticity, config.psf_variation, config.psf_kinds)
    amp = rng_psf.uniform(*config.misregistration_range)
    ang = rng_psf.uniform(0, 2 * np.pi)
    dx, dy = float(amp * np.cos(ang)), float(amp * np.sin(ang))

    tmpl = _cached_template(config, detector, seed, band)
    c = _calib(config, ib) / transparency
    sky_e = _sky_electrons(config, ib, sky_mag) * transparency
    rn = scene.read_noise
    sat_level = (config.full_well - sky_e) * c
    fwhm_pix = fwhm / ps
    kernel = draw_kernel(model.profile(), config.psf_kernel_size, ps)
    sigma = effective_sigma(kernel)
    peak_frac = float(kernel.max())
    depth = float(scene.template_depth[ib])
    v_bg = (sky_e + rn**2) * c * c * (1 + 1 / depth)

    # Static scene at the science epoch: galaxies and stars shifted by the misregistration.
    science = _convolve_layer(_cached_galaxy_layer(config, detector, seed, band), config, model, (dx, dy))
    star_flux = mag_to_njy(scene.star_mag[:, ib])
    peak_ratio = star_flux * peak_frac / sat_level
    bf_scale = 1.0 + config.brighter_fatter * np.clip(peak_ratio, 0, 1.5)
    sx, sy = scene.star_x + dx, scene.star_y + dy
    _add_points(science, config, model, sx, sy, star_flux, bf_scale)

    # Truth rows.
    rows: list[dict] = []

    def add_row(
        category: str,
        typ: str,
        x: float,
        y: float,
        flux: float = 0.0,
        host: int = -1,
        x1: float | None = None,
        y1: float | None = None,
        shape: np.ndarray | None = None,
    ) -> None:
        rows.append(
            dict(
                x=float(x),
                y=float(y),
                category=category,
                type=typ,
                flux=float(flux),
                host_id=int(host),
                x1=float(x if x1 is None else x1),
                y1=float(y if y1 is None else y1),
                shape=shape,
            )
        )

    # Misregistration dipoles and brighter-fatter residuals of bright, unsaturated stars.
    star_sig = np.sqrt(v_bg * 4 * np.pi * sigma**2 + star_flux * c * (1 + 1 / depth))
    star_snr = star_flux / star_sig
    inside = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1) & (peak_ratio < 1.0)
    dip_snr = star_snr * amp / (sigma * np.sqrt(2.0))
    for k in np.nonzero(inside & (dip_snr > config.residual_snr_threshold))[0]:
        add_row("artifact", "misregistration", sx[k], sy[k])
    res_snr = star_snr * (bf_scale - 1.0) * np.sqrt(2.0)
    for k in np.nonzero(inside & (res_snr > config.residual_snr_threshold))[0]:
        add_row("artifact", "psf_residual", sx[k], sy[k])

    # Diffraction spikes of bright stars, rotating with the camera from visit to visit.
    pix_noise = float(np.sqrt(sky_e + rn**2) * c)
    if config.diffraction_spikes:
        spike_angle = float(rng_psf.uniform(0, np.pi / 2))
        for r_ in add_diffraction_spikes(science, sx, sy, star_flux, spike_angle, pix_noise):
            add_row("artifact", r_.type, r_.x, r_.y, x1=r_.x1, y1=r_.y1)

    # Variance of the static scene (for target transient fluxes).
    # Template variance as seen by PSF photometry (its noise is correlated on pixel scales).
    var_t = tmpl.planes.variance * np.float32(tmpl.noise_corr_factor)
    base_var = (np.maximum(science, 0) / c + sky_e + rn**2) * (c * c) + var_t

    # Transients.
    trans = np.zeros_like(science)
    lo_snr, hi_snr = config.transient_snr_range

    kappa = float(np.sum(kernel**3) / np.sum(kernel**2) ** 2)
    source_var_per_njy = c * kappa * (1 + 1 / depth)

    def target_flux(sig: float, rng: np.random.Generator = rng_tr) -> float:
        """Flux whose expected SNR, including its own photon noise, is a log-uniform draw."""
        s = float(np.exp(rng.uniform(np.log(lo_snr), np.log(hi_snr))))
        if not np.isfinite(sig):
            return s
        b = s * s * source_var_per_njy
        return 0.5 * (b + np.sqrt(b * b + 4 * s * s * sig * sig))

    af = config.area_factor
    margin = 3 * fwhm_pix + 5
    for _ in range(rng_tr.poisson(config.n_hostless_per_detector * af)):
        if rng_tr.uniform() < config.edge_fraction:
            side = int(rng_tr.integers(4))
            d = min(rng_tr.uniform(1, margin), (min(w, h) - 1) / 2)
            t = rng_tr.uniform(0, 1)
            if side == 0:
                x, y = d, t * (h - 1)
            elif side == 1:
                x, y = w - 1 - d, t * (h - 1)
            elif side == 2:
                x, y = t * (w - 1), d
            else:
                x, y = t * (w - 1), h - 1 - d
        else:
            x, y = rng_tr.uniform(0, w - 1), rng_tr.uniform(0, h - 1)
        sig, _ = _psf_flux_sigma(config, model, base_var, x, y)
        add_row("transient", "hostless", x, y, target_flux(sig))
    if config.n_bright_neighbour_per_detector > 0:
        # Own random stream, so that the rest of the scene does not change with this rate.
        rng_nb = seeded_rng(seed, visit, detector, 18)
        bright = np.nonzero((peak_ratio >= 0.3) & (sx > -5) & (sx < w + 4) & (sy > -5) & (sy < h + 4))[0]
        n_nb = rng_nb.poisson(config.n_bright_neighbour_per_detector * af) if len(bright) else 0
        for _ in range(n_nb):
            k = int(rng_nb.choice(bright))
            rr = rng_nb.uniform(2.0, 12.0) * fwhm_pix
            th = rng_nb.uniform(0, 2 * np.pi)
            x = float(np.clip(sx[k] + rr * np.cos(th), 0, w - 1))
            y = float(np.clip(sy[k] + rr * np.sin(th), 0, h - 1))
            sig, _ = _psf_flux_sigma(config, model, base_var, x, y)
            add_row("transient", "hostless", x, y, target_flux(sig, rng_nb))
    gx, gy = scene.gal_x + dx, scene.gal_y + dy
    gmag = scene.gal_mag[:, ib]
    hosts = np.nonzero((gx > 2) & (gx < w - 3) & (gy > 2) & (gy < h - 3) & (gmag < 24.5))[0]
    if len(hosts):
        for typ, nexp in (
            ("galaxy_offset", config.n_galaxy_offset_per_detector),
            ("galaxy_nuclear", config.n_galaxy_nuclear_per_detector),
        ):
            for _ in range(rng_tr.poisson(nexp * af)):
                k = int(rng_tr.choice(hosts))
                if typ == "galaxy_offset":
                    rr = scene.gal_disk_hlr[k] / ps * rng_tr.uniform(0.2, 1.8)
                    th = rng_tr.uniform(0, 2 * np.pi)
                    x, y = gx[k] + rr * np.cos(th), gy[k] + rr * np.sin(th)
                else:
                    x, y = gx[k] + rng_tr.normal(0, 0.05), gy[k] + rng_tr.normal(0, 0.05)
                x, y = float(np.clip(x, 0, w - 1)), float(np.clip(y, 0, h - 1))
                sig, _ = _psf_flux_sigma(config, model, base_var, x, y)
                add_row("transient", typ, x, y, target_flux(sig), host=int(scene.gal_id[k]))
    var_idx = np.nonzero(scene.star_is_variable & (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1))[0]
    var_df = np.zeros(len(var_idx))
    for j, k in enumerate(var_idx):
        sig, _ = _psf_flux_sigma(config, model, base_var, sx[k], sy[k])
        df = target_flux(sig)
        if rng_tr.uniform() < 0.5:
            df = -min(df, 0.95 * star_flux[k])
            typ = "variable_fade"
        else:
            typ = "variable_brighten"
        var_df[j] = df
        add_row("transient", typ, sx[k], sy[k], df)
    _add_points(trans, config, model, sx[var_idx], sy[var_idx], var_df, bf_scale[var_idx])
    for _ in range(rng_tr.poisson(config.n_moving_per_detector * af)):
        x, y = rng_tr.uniform(0, w - 1), rng_tr.uniform(0, h - 1)
        length = (
            0.0
            if rng_tr.uniform() < 0.4
            else float(np.exp(rng_tr.uniform(np.log(1.5), np.log(6 * fwhm_pix))))
        )
        sig, _ = _psf_flux_sigma(config, model, base_var, x, y)
        flux = target_flux(sig) * (1 + length / (2 * fwhm_pix))
        th = rng_tr.uniform(0, np.pi)
        npts = max(1, int(np.ceil(2 * length)) + 1)
        t = np.linspace(-0.5, 0.5, npts) * length if npts > 1 else np.zeros(1)
        px, py = x + t * np.cos(th), y + t * np.sin(th)
        _add_points(trans, config, model, px, py, np.full(npts, flux / npts))
        shape = None
        if npts > 1:
            r = int(np.ceil(2.5 * model.fwhm / ps)) + 2
            ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
            shape = np.zeros((2 * r + 1, 2 * r + 1))
            for qx, qy in zip(px, py):
                kq, _, _ = _local_kernel(config, model, float(qx) - ix + x, float(qy) - iy + y, r)
                # Place each point's kernel relative to (ix, iy).
                sub = np.zeros_like(shape)
                ox, oy = int(np.floor(qx + 0.5)) - ix, int(np.floor(qy + 0.5)) - iy
                ys_, xs_ = (
                    slice(max(0, oy), 2 * r + 1 + min(0, oy)),
                    slice(max(0, ox), 2 * r + 1 + min(0, ox)),
                )
                ys2, xs2 = (
                    slice(max(0, -oy), 2 * r + 1 - max(0, oy)),
                    slice(max(0, -ox), 2 * r + 1 - max(0, ox)),
                )
                sub[ys_, xs_] = kq[ys2, xs2]
                shape += sub / npts
        add_row("transient", "moving", x, y, flux, shape=shape)
    for row in rows:
        if row["category"] == "transient" and row["type"] in ("hostless", "galaxy_offset", "galaxy_nuclear"):
            _add_points(
                trans, config, model, np.array([row["x"]]), np.array([row["y"]]), np.array([row["flux"]])
            )
    science += trans
    np.maximum(science, 0, out=science)

    # Noise, saturation and bleeding in electrons.
    expected_e = science.astype(np.float64) / c + sky_e
    variance = ((expected_e + rn**2) * (c * c)).astype(np.float32)
    electrons = rng_noise.poisson(expected_e).astype(np.float64) + rng_noise.normal(
        0, rn, size=expected_e.shape
    )
    del expected_e
    mask = np.zeros((h, w), dtype=np.int32)
    bright = np.nonzero(peak_ratio > 0.8)[0]
    for r_ in apply_saturation(
        electrons,
        mask,
        config.full_well,
        np.stack([sx[bright], sy[bright]], axis=1) if len(bright) else np.zeros((0, 2)),
        bleed=True,
    ):
        add_row("artifact", r_.type, r_.x, r_.y, x1=r_.x1, y1=r_.y1)
    image = ((electrons - sky_e) * c).astype(np.float32)
    del electrons
    # Imperfect sky subtraction: a faint plane.
    a0, a1, a2 = rng_art.normal(0, config.sky_residual * pix_noise, size=3)
    image += (
        a0
        + a1 * np.linspace(-1, 1, w, dtype=np.float32)[None, :]
        + a2 * np.linspace(-1, 1, h, dtype=np.float32)[:, None]
    )

    # Artefacts.
    art: list[ArtifactRow] = []
    n_cr = rng_art.poisson(config.n_cosmic_rays_per_detector * af * config.exposure_time / 30.0)
    art += add_cosmic_rays(image, mask, rng_art, n_cr, c, config.cosmic_ray_mask_fraction)
    art += add_hot_pixels(
        image,
        mask,
        seeded_rng(seed, detector, 16),
        rng_art,
        rng_static.poisson(config.n_hot_pixels_per_detector * af),
        c,
        config.hot_pixel_mask_fraction,
    )
    art += add_bad_columns(
        image,
        mask,
        seeded_rng(seed, detector, 17),
        rng_static.poisson(config.n_bad_columns_per_detector * np.sqrt(af)),
        c,
        sky_e,
        config.bad_column_mask_fraction,
    )
    if rng_art.uniform() < config.satellite_probability:
        art.append(add_satellite_trail(image, rng_art, sigma, pix_noise))
    if rng_art.uniform() < config.nan_region_probability:
        art += add_nan_regions((image, variance), mask, rng_art)
    _mask_edges(mask, config.edge_width)
    ew = config.edge_width
    if ew > 0:
        art += [
            ArtifactRow("edge", 0, 0, w - 1, ew - 1),
            ArtifactRow("edge", 0, h - ew, w - 1, h - 1),
            ArtifactRow("edge", 0, 0, ew - 1, h - 1),
            ArtifactRow("edge", w - ew, 0, w - 1, h - 1),
        ]
    for a in art:
        add_row("artifact", a.type, a.x, a.y, x1=a.x1, y1=a.y1)

    # Final expected SNR of the transients in the difference image.
    diff_var = variance.astype(np.float64) + var_t
    diff_var[(mask & NO_DATA) != 0] = np.nan
    n = len(rows)
    snr = np.zeros(n)
    for i, row in enumerate(rows):
        if row["category"] != "transient":
            continue
        sig, gain_ = _psf_flux_sigma(config, model, diff_var, row["x"], row["y"], row["shape"])
        snr[i] = row["flux"] * gain_ / sig if np.isfinite(sig) else 0.0
    truth = _make_truth(config, visit, detector, rows, snr)

    metadata = dict(
        visit=visit,
        detector=detector,
        seed=seed,
        band=band,
        physical_filter=config.physical_filters[ib],
        mjd=config.mjd_start + visit * config.visit_interval_days,
        exposure_time=config.exposure_time,
        seeing_arcsec=fwhm,
        visit_seeing_arcsec=seeing,
        template_seeing_arcsec=float(scene.template_fwhm[ib]),
        template_depth=depth,
        **model.to_metadata("psf_"),
        **tmpl.model.to_metadata("template_psf_"),
        transparency=transparency,
        sky=float(sky_e * c),
        sky_mag=sky_mag,
        sky_electrons=sky_e,
        zero_point_njy=AB_NJY_ZERO_POINT,
        njy_per_electron=c,
        instrumental_zero_point=float(config.instrumental_zero_points[ib]),
        read_noise=rn,
        gain=config.gain,
        saturation_njy=float(sat_level),
        misregistration_dx=dx,
        misregistration_dy=dy,
        n_stars=scene.n_stars,
        n_galaxies=scene.n_galaxies,
    )
    return SimulatedVisit(
        visit=visit,
        detector=detector,
        science=PlaneSet(image, variance, mask),
        template=tmpl.planes.copy(),
        science_psf=kernel,
        science_psf_sigma=sigma,
        template_psf=tmpl.kernel.copy(),
        template_psf_sigma=tmpl.sigma,
        wcs=make_wcs(config, detector),
        truth=truth,
        metadata=metadata,
    )


def _make_truth(config: SurveyConfig, visit: int, detector: int, rows: list[dict], snr: np.ndarray) -> Table:
    n = len(rows)
    wcs = make_wcs(config, detector)
    x = np.array([r["x"] for r in rows], dtype=np.float64)
    y = np.array([r["y"] for r in rows], dtype=np.float64)
    if n:
        ra, dec = wcs.pixel_to_world_values(x, y)
    else:
        ra = dec = np.zeros(0)
    flux = np.array([r["flux"] for r in rows], dtype=np.float64)
    return Table(
        {
            "id": make_source_ids(visit, detector, n),
            "x": x,
            "y": y,
            "ra": np.asarray(ra, dtype=np.float64),
            "dec": np.asarray(dec, dtype=np.float64),
            "category": np.array([r["category"] for r in rows], dtype="U10"),
            "type": np.array([r["type"] for r in rows], dtype="U20"),
            "flux": flux,
            "snr": np.asarray(snr, dtype=np.float64),
            "mag": njy_to_mag(flux),
            "host_id": np.array([r["host_id"] for r in rows], dtype=np.int64),
            "x1": np.array([r["x1"] for r in rows], dtype=np.float64),
            "y1": np.array([r["y1"] for r in rows], dtype=np.float64),
        }
    )


def simulate_survey(
    config: SurveyConfig, visits: Sequence[int], detectors: Sequence[int], seed: int = 0
) -> Iterator[SimulatedVisit]:
    """Simulate every (visit, detector) pair, visit by visit.

    Parameters
    ----------
    config : `SurveyConfig`
        Survey configuration.
    visits, detectors : `Sequence` [`int`]
        Visit and detector numbers.
    seed : `int`
        Survey seed.

    Yields
    ------
    visit : `SimulatedVisit`
        One result per pair, in visit-major order.
    """
    for v in visits:
        for d in detectors:
            yield simulate_visit(config, v, d, seed)
