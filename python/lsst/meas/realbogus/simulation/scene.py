"""The static sky of one detector: stars and galaxies common to all its visits."""

from __future__ import annotations

__all__ = ["StaticScene", "draw_galaxy_layer", "make_static_scene", "mag_to_njy", "njy_to_mag", "seeded_rng"]

from dataclasses import dataclass

import galsim
import numpy as np

from .config import SurveyConfig

AB_NJY_ZERO_POINT = 31.4
"""AB magnitude of a 1 nJy source."""


def mag_to_njy(mag: np.ndarray | float) -> np.ndarray:
    """Convert AB magnitudes to nJy."""
    return np.power(10.0, -0.4 * (np.asarray(mag, dtype=np.float64) - AB_NJY_ZERO_POINT))


def njy_to_mag(flux: np.ndarray | float) -> np.ndarray:
    """Convert nJy to AB magnitudes of ``abs(flux)`` (NaN for zero flux)."""
    f = np.abs(np.asarray(flux, dtype=np.float64))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(f > 0, AB_NJY_ZERO_POINT - 2.5 * np.log10(np.where(f > 0, f, 1.0)), np.nan)


def seeded_rng(*keys: int) -> np.random.Generator:
    """Return a generator seeded from a tuple of non-negative integers (seed, visit, detector, tag...)."""
    for k in keys:
        if int(k) < 0:
            raise ValueError(f"Seed components must be non-negative integers, got {keys}.")
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


def _power_law_mags(rng: np.random.Generator, n: int, lo: float, hi: float, slope: float) -> np.ndarray:
    """Draw ``n`` magnitudes with dN/dm proportional to 10**(slope m) on [lo, hi]."""
    a, b = 10 ** (slope * lo), 10 ** (slope * hi)
    u = rng.uniform(size=n)
    return np.log10(a + u * (b - a)) / slope


@dataclass
class StaticScene:
    """Static sources of one detector, in template pixel coordinates.

    Magnitude arrays have one column per configured band.
    """

    detector: int
    """Detector number."""
    star_x: np.ndarray
    """Star x positions (pixels)."""
    star_y: np.ndarray
    """Star y positions (pixels)."""
    star_mag: np.ndarray
    """Star AB magnitudes, shape (n_stars, n_bands)."""
    star_is_variable: np.ndarray
    """Whether the star is a variable (brightens or fades in every visit)."""
    gal_x: np.ndarray
    """Galaxy centre x positions."""
    gal_y: np.ndarray
    """Galaxy centre y positions."""
    gal_mag: np.ndarray
    """Galaxy total AB magnitudes, shape (n_galaxies, n_bands)."""
    gal_disk_hlr: np.ndarray
    """Disk half-light radius (arcsec)."""
    gal_bulge_hlr: np.ndarray
    """Bulge half-light radius (arcsec)."""
    gal_bulge_fraction: np.ndarray
    """Bulge flux fraction."""
    gal_g1: np.ndarray
    """Galaxy shear component 1."""
    gal_g2: np.ndarray
    """Galaxy shear component 2."""
    gal_id: np.ndarray
    """Galaxy ids (used as ``host_id``)."""
    template_fwhm: np.ndarray
    """Template PSF FWHM (arcsec) per band."""
    template_depth: np.ndarray
    """Single-visit to template variance ratio per band."""
    read_noise: float
    """Read noise (electrons) of this detector."""

    @property
    def n_stars(self) -> int:
        """Number of stars."""
        return len(self.star_x)

    @property
    def n_galaxies(self) -> int:
        """Number of galaxies."""
        return len(self.gal_x)


def make_static_scene(config: SurveyConfig, detector: int, seed: int = 0) -> StaticScene:
    """Draw the static scene of a detector.

    Parameters
    ----------
    config : `SurveyConfig`
        Survey configuration.
    detector : `int`
        Detector number (non-negative).
    seed : `int`
        Survey seed.

    Returns
    -------
    scene : `StaticScene`
        Stars (including variables) and galaxies.
    """
    rng = seeded_rng(seed, detector, 1_000_001)
    nb = len(config.bands)
    area = config.area_arcmin2
    density_factor = np.exp(rng.uniform(*np.log(config.star_density_scatter)))
    n_stars = rng.poisson(config.star_density * density_factor * area)
    n_var = rng.poisson(config.n_variable_per_detector * config.area_factor)
    w, h = config.width, config.height
    mags = _power_law_mags(rng, n_stars, *config.star_mag_range, config.star_count_slope)
    # Variable stars: bright enough that fades of SNR ~100 are possible, faint enough not to saturate.
    var_mags = rng.uniform(16.8, 21.5, size=n_var)
    mags = np.concatenate([mags, var_mags])
    is_var = np.concatenate([np.zeros(n_stars, bool), np.ones(n_var, bool)])
    n_all = len(mags)
    # Colours: g-r in [0.2, 1.5], r-i in [0.0, 0.8] roughly correlated.
    gr = rng.uniform(0.2, 1.5, size=n_all)
    ri = 0.4 * gr + rng.normal(0, 0.1, size=n_all)
    star_mag = np.empty((n_all, nb))
    # Magnitudes are r-band values; other bands get colour offsets (unknown band names: none).
    offsets = {"u": 1.8 * gr, "g": gr, "i": -ri, "z": -1.3 * ri, "y": -1.5 * ri}
    for i, b in enumerate(config.bands):
        star_mag[:, i] = mags + offsets.get(b, 0.0)
    star_x = rng.uniform(-10, w + 10, size=n_all)
    star_y = rng.uniform(-10, h + 10, size=n_all)

    n_gal = rng.poisson(config.galaxy_density * area)
    gmag = _power_law_mags(rng, n_gal, *config.galaxy_mag_range, config.galaxy_count_slope)
    # Size-magnitude relation with scatter (arcsec).
    disk_hlr = np.clip(np.exp(rng.normal(np.log(0.9) - 0.17 * (gmag - 21.0), 0.35)), 0.12, 6.0)
    bulge_frac = np.clip(rng.beta(1.2, 3.0, size=n_gal), 0, 0.95)
    bulge_hlr = disk_hlr * rng.uniform(0.15, 0.5, size=n_gal)
    e = np.clip(np.abs(rng.normal(0, 0.3, size=n_gal)), 0, 0.8)
    ang = rng.uniform(0, np.pi, size=n_gal)
    gal_color = rng.uniform(0.3, 1.3, size=n_gal)
    gal_mag = np.empty((n_gal, nb))
    for i, b in enumerate(config.bands):
        gal_mag[:, i] = gmag + {"g": gal_color, "i": -0.4 * gal_color, "z": -0.6 * gal_color}.get(
            b, np.zeros(n_gal)
        )
    t_fwhm = rng.uniform(*config.template_seeing_range, size=nb)
    t_depth = rng.uniform(*config.template_depth_range, size=nb)
    return StaticScene(
        detector=int(detector),
        star_x=star_x,
        star_y=star_y,
        star_mag=star_mag,
        star_is_variable=is_var,
        gal_x=rng.uniform(-20, w + 20, size=n_gal),
        gal_y=rng.uniform(-20, h + 20, size=n_gal),
        gal_mag=gal_mag,
        gal_disk_hlr=disk_hlr,
        gal_bulge_hlr=bulge_hlr,
        gal_bulge_fraction=bulge_frac,
        gal_g1=e / 2 * np.cos(2 * ang),
        gal_g2=e / 2 * np.sin(2 * ang),
        gal_id=int(detector) * 10_000_000 + np.arange(n_gal, dtype=np.int64),
        template_fwhm=t_fwhm,
        template_depth=t_depth,
        read_noise=float(rng.uniform(*config.read_noise_range)),
    )


def draw_galaxy_layer(scene: StaticScene, config: SurveyConfig, band: str, oversample: int = 3) -> np.ndarray:
    """Draw the pixel-integrated, unconvolved galaxies of a scene (nJy per pixel).

    Each galaxy is sampled on a sub-pixel grid and block-summed, which approximates
    the pixel integral without an FFT; the PSF is applied later by convolving the
    whole layer.

    Parameters
    ----------
    scene : `StaticScene`
        The static scene.
    config : `SurveyConfig`
        Survey configuration.
    band : `str`
        Band to draw.
    oversample : `int`
        Sub-pixel sampling factor.

    Returns
    -------
    layer : `numpy.ndarray`
        ``(height, width)`` float32 image.
    """
    ib = config.band_index(band)
    w, h = config.width, config.height
    layer = np.zeros((h, w), dtype=np.float32)
    scale = config.pixel_scale
    fluxes = mag_to_njy(scene.gal_mag[:, ib])
    for k in range(scene.n_galaxies):
        hlr = scene.gal_disk_hlr[k]
        bf = scene.gal_bulge_fraction[k]
        flux = fluxes[k]
        disk = galsim.Exponential(half_light_radius=hlr).shear(g1=scene.gal_g1[k], g2=scene.gal_g2[k])
        if bf > 0.05:
            bulge = galsim.DeVaucouleurs(
                half_light_radius=scene.gal_bulge_hlr[k], trunc=8 * scene.gal_bulge_hlr[k]
            )
            bulge = bulge.shear(g1=0.5 * scene.gal_g1[k], g2=0.5 * scene.gal_g2[k])
            obj = (1 - bf) * disk + bf * bulge
        else:
            obj = disk
        # Stamp radius: a few half-light radii, more for bright galaxies.
        rad = int(np.clip(np.ceil(hlr / scale * (3.0 + 0.6 * max(0.0, np.log10(flux / 300.0)))) + 2, 4, 200))
        xc, yc = scene.gal_x[k], scene.gal_y[k]
        ix, iy = int(np.floor(xc + 0.5)), int(np.floor(yc + 0.5))
        x0, x1 = ix - rad, ix + rad + 1
        y0, y1 = iy - rad, iy + rad + 1
        if x1 <= 0 or y1 <= 0 or x0 >= w or y0 >= h:
            continue
        n = 2 * rad + 1
        img = obj.drawImage(
            nx=n * oversample,
            ny=n * oversample,
            scale=scale / oversample,
            method="no_pixel",
            offset=((xc - ix) * oversample, (yc - iy) * oversample),
        )
        stamp = img.array.reshape(n, oversample, n, oversample).sum(axis=(1, 3))
        total = stamp.sum()
        if total <= 0:
            continue
        stamp *= flux / total
        sx0, sy0 = max(0, -x0), max(0, -y0)
        sx1, sy1 = n - max(0, x1 - w), n - max(0, y1 - h)
        layer[max(0, y0) : min(h, y1), max(0, x0) : min(w, x1)] += stamp[sy0:sy1, sx0:sx1]
    return layer
