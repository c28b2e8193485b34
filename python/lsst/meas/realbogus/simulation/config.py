"""Configuration of the simulated LSST-like survey."""

from __future__ import annotations

__all__ = ["REFERENCE_AREA_PIX", "SurveyConfig", "small_test_config"]

import dataclasses
import math
from dataclasses import dataclass

from .psf import DEFAULT_SCIENCE_PSF_KINDS, PSF_KINDS

REFERENCE_AREA_PIX = 2048 * 2048
"""Detector area (pixels) to which the per-detector rates of `SurveyConfig` refer."""


@dataclass(frozen=True)
class SurveyConfig:
    """Parameters of the simulated survey.

    All rates called ``*_per_detector`` refer to a detector of
    `REFERENCE_AREA_PIX` pixels (2048 x 2048); they are scaled with the
    actual detector area, so that a small test configuration made with
    `dataclasses.replace` (e.g. ``width=height=256``) gives a sensible scaled
    scene.  Densities are per square arcminute.  Ranges are ``(low, high)``
    tuples from which a value is drawn per visit, detector or object.
    """

    width: int = 2048
    """Detector width in pixels (x)."""
    height: int = 2048
    """Detector height in pixels (y)."""
    pixel_scale: float = 0.2
    """Pixel scale in arcsec per pixel."""
    bands: tuple[str, ...] = ("g", "r", "i")
    """Bands observed; each visit draws one."""
    physical_filters: tuple[str, ...] = ("g_sim", "r_sim", "i_sim")
    """Physical filter names, one per band."""
    instrumental_zero_points: tuple[float, ...] = (28.5, 28.4, 28.2)
    """AB magnitude giving 1 electron per second, one per band."""
    sky_brightness_ranges: tuple[tuple[float, float], ...] = ((20.5, 22.4), (19.6, 21.3), (18.8, 20.4))
    """Sky surface brightness range (AB mag / arcsec^2) per band; moon and twilight make it vary."""
    exposure_time: float = 30.0
    """Exposure time in seconds."""
    transparency_range: tuple[float, float] = (0.55, 1.0)
    """Atmospheric transparency range (clouds), drawn per visit; it scales source and sky electrons."""
    read_noise_range: tuple[float, float] = (5.0, 12.0)
    """Read noise range in electrons (drawn per detector)."""
    gain: float = 1.5
    """Gain in electrons per ADU (metadata only: images are calibrated to nJy)."""
    full_well: float = 1.1e5
    """Saturation level in electrons."""
    seeing_range: tuple[float, float] = (0.5, 1.5)
    """Science-epoch PSF FWHM range (arcsec), drawn per visit."""
    template_seeing_range: tuple[float, float] = (0.45, 0.55)
    """Template (coadd) PSF FWHM range (arcsec), drawn per detector and band."""
    template_depth_range: tuple[float, float] = (6.0, 15.0)
    """Ratio of single-visit to template noise variance (a coadd), drawn per detector and band."""
    template_noise_correlation: float = 0.15
    """Maximum neighbour weight of the template noise correlation (warping); 0 gives white noise."""
    psf_max_ellipticity: float = 0.1
    """Maximum PSF ellipticity (reduced shear |g|)."""
    psf_variation: float = 0.04
    """Maximum fractional FWHM change across the detector (corner to centre)."""
    psf_kinds: tuple[str, ...] = DEFAULT_SCIENCE_PSF_KINDS
    """Science PSF profile families drawn from (see `lsst.meas.realbogus.simulation.psf.PSF_KINDS`)."""
    template_psf_kinds: tuple[str, ...] = ("moffat", "kolmogorov")
    """Template PSF profile families."""
    psf_kernel_size: int = 41
    """Size (pixels, odd) of the delivered PSF kernel images."""
    star_density: float = 12.0
    """Mean star density per arcmin^2 (brighter than ``star_mag_range[1]``)."""
    star_density_scatter: tuple[float, float] = (0.3, 3.0)
    """Per-detector multiplicative range of the star density (galactic latitude)."""
    star_mag_range: tuple[float, float] = (13.5, 25.0)
    """Star magnitude range (AB, r band)."""
    star_count_slope: float = 0.15
    """Slope of the star counts, dN/dm proportional to 10**(slope * m)."""
    galaxy_density: float = 40.0
    """Galaxy density per arcmin^2 (brighter than ``galaxy_mag_range[1]``)."""
    galaxy_mag_range: tuple[float, float] = (17.5, 25.5)
    """Galaxy magnitude range (AB, r band)."""
    galaxy_count_slope: float = 0.32
    """Slope of the galaxy counts, dN/dm proportional to 10**(slope * m)."""
    n_hostless_per_detector: float = 50.0
    """Mean number of hostless point-source transients per detector and visit."""
    n_galaxy_offset_per_detector: float = 35.0
    """Mean number of transients offset from a host galaxy centre."""
    n_galaxy_nuclear_per_detector: float = 15.0
    """Mean number of nuclear transients."""
    n_bright_neighbour_per_detector: float = 0.0
    """Mean number of further hostless transients placed 2-12 PSF FWHM from a bright star (one whose
    peak reaches 30 % of saturation, saturated ones included), where bleed trails, diffraction spikes
    and subtraction residuals surround them; 0 (the default) leaves the scene as without this field."""
    n_variable_per_detector: float = 35.0
    """Mean number of variable stars (each brightens or fades in every visit)."""
    n_moving_per_detector: float = 12.0
    """Mean number of moving objects (science epoch only)."""
    transient_snr_range: tuple[float, float] = (3.0, 100.0)
    """Target difference-image SNR range, drawn log-uniformly."""
    edge_fraction: float = 0.06
    """Fraction of hostless transients placed within a few PSF widths of the detector edge."""
    n_cosmic_rays_per_detector: float = 45.0
    """Mean number of cosmic rays per detector for a 30 s exposure."""
    cosmic_ray_mask_fraction: float = 0.5
    """Fraction of cosmic rays flagged in the CR mask plane."""
    n_hot_pixels_per_detector: float = 25.0
    """Mean number of hot pixels (fixed per detector)."""
    hot_pixel_mask_fraction: float = 0.7
    """Fraction of hot pixels flagged BAD."""
    n_bad_columns_per_detector: float = 3.0
    """Mean number of bad columns (fixed per detector)."""
    bad_column_mask_fraction: float = 0.7
    """Fraction of bad columns flagged BAD."""
    satellite_probability: float = 0.15
    """Probability that a (visit, detector) is crossed by a satellite trail."""
    nan_region_probability: float = 0.2
    """Probability that a (visit, detector) has a NaN region."""
    misregistration_range: tuple[float, float] = (0.05, 0.3)
    """Range of the per-visit global template/science misregistration amplitude (pixels)."""
    sky_residual: float = 0.05
    """RMS amplitude, in units of the sky pixel noise, of the planar sky-subtraction residual."""
    diffraction_spikes: bool = True
    """Whether bright stars get four-armed diffraction spikes that rotate between visits."""
    brighter_fatter: float = 0.04
    """Fractional FWHM increase of a star whose peak reaches saturation (PSF-mismatch residuals)."""
    edge_width: int = 4
    """Width in pixels of the EDGE-masked border."""
    residual_snr_threshold: float = 5.0
    """Minimum expected residual SNR for listing ``misregistration``/``psf_residual`` truth rows."""
    mjd_start: float = 61000.0
    """MJD of visit 0."""
    visit_interval_days: float = 0.0243
    """MJD increment per visit number."""
    field_ra: float = 150.0
    """RA of the survey centre (deg)."""
    field_dec: float = 2.0
    """Dec of the survey centre (deg)."""
    detectors_per_row: int = 8
    """Detectors are laid out on a grid of this many columns on the sky."""

    def __post_init__(self) -> None:
        if self.width < 32 or self.height < 32:
            raise ValueError(f"Detector must be at least 32x32 pixels, got {self.width}x{self.height}.")
        if self.width > 8192 or self.height > 8192:
            raise ValueError(
                f"Detector larger than 8192 pixels is not supported: {self.width}x{self.height}."
            )
        if self.pixel_scale <= 0:
            raise ValueError(f"pixel_scale must be positive, got {self.pixel_scale}.")
        n = len(self.bands)
        if n == 0:
            raise ValueError("At least one band is required.")
        for name in ("physical_filters", "instrumental_zero_points", "sky_brightness_ranges"):
            if len(getattr(self, name)) != n:
                raise ValueError(
                    f"{name} must have one entry per band ({n}), got {len(getattr(self, name))}."
                )
        for name in (
            "seeing_range",
            "template_seeing_range",
            "template_depth_range",
            "read_noise_range",
            "star_mag_range",
            "galaxy_mag_range",
            "transient_snr_range",
            "misregistration_range",
            "star_density_scatter",
            "transparency_range",
        ):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi)) or lo > hi or lo < 0:
                raise ValueError(
                    f"{name} must be a (low, high) range of non-negative numbers, got {(lo, hi)}."
                )
        if not 0 < self.transparency_range[0] <= self.transparency_range[1] <= 1:
            raise ValueError(f"transparency_range must lie in (0, 1], got {self.transparency_range}.")
        if not 0 <= self.template_noise_correlation <= 1:
            raise ValueError(
                f"template_noise_correlation must be in [0, 1], got {self.template_noise_correlation}."
            )
        if self.seeing_range[0] <= 0 or self.template_seeing_range[0] <= 0:
            raise ValueError("Seeing ranges must be positive.")
        if self.transient_snr_range[0] <= 0:
            raise ValueError("transient_snr_range must be positive.")
        for name in ("psf_kinds", "template_psf_kinds"):
            kinds = getattr(self, name)
            if not kinds or any(k not in PSF_KINDS for k in kinds):
                raise ValueError(f"{name} must be a non-empty subset of {PSF_KINDS}, got {kinds}.")
        if self.psf_kernel_size % 2 != 1 or self.psf_kernel_size < 9:
            raise ValueError(f"psf_kernel_size must be odd and >= 9, got {self.psf_kernel_size}.")
        for name in (
            "cosmic_ray_mask_fraction",
            "hot_pixel_mask_fraction",
            "bad_column_mask_fraction",
            "satellite_probability",
            "nan_region_probability",
            "edge_fraction",
        ):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {v}.")
        for f in dataclasses.fields(self):
            if f.name.startswith("n_") and f.name.endswith("_per_detector"):
                v = getattr(self, f.name)
                if not (math.isfinite(v) and v >= 0):
                    raise ValueError(f"{f.name} must be a finite number >= 0, got {v}.")
        if self.exposure_time <= 0 or self.full_well <= 0 or self.gain <= 0:
            raise ValueError("exposure_time, full_well and gain must be positive.")
        if self.edge_width < 0 or 2 * self.edge_width >= min(self.width, self.height):
            raise ValueError(
                f"edge_width {self.edge_width} is invalid for a {self.width}x{self.height} detector."
            )

    @property
    def area_factor(self) -> float:
        """Detector area relative to `REFERENCE_AREA_PIX`."""
        return self.width * self.height / REFERENCE_AREA_PIX

    @property
    def area_arcmin2(self) -> float:
        """Detector area in square arcminutes."""
        return self.width * self.height * (self.pixel_scale / 60.0) ** 2

    def band_index(self, band: str) -> int:
        """Return the index of ``band`` in `bands`.

        Raises
        ------
        ValueError
            Raised if the band is not configured.
        """
        try:
            return self.bands.index(band)
        except ValueError:
            raise ValueError(f"Unknown band {band!r}; configured bands: {self.bands}") from None


def small_test_config(size: int = 256, **kwargs: object) -> SurveyConfig:
    """Return a small square `SurveyConfig` for tests and quick looks.

    Parameters
    ----------
    size : `int`
        Width and height in pixels.
    **kwargs
        Further `SurveyConfig` fields to override.

    Returns
    -------
    config : `SurveyConfig`
        The configuration; all per-detector rates scale with the area.
    """
    return dataclasses.replace(SurveyConfig(), width=size, height=size, **kwargs)
