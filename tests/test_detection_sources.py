"""Tests of matched-filter detection and PSF photometry on synthetic difference images."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from lsst.meas.realbogus import mask_planes
from lsst.meas.realbogus.detection import CATALOG_COLUMNS, DetectionConfig, detect_dia_sources
from lsst.meas.realbogus.diffim import gaussian_kernel, psf_sigma
from lsst.meas.realbogus.ids import make_source_ids
from scipy.spatial import cKDTree
from synthetic_images import render_point_sources

SIGMA = 2.0
NOISE = 10.0
PSF = gaussian_kernel(SIGMA, 10)
# PSF-optimal flux error on a flat background: NOISE / sqrt(sum(P**2)).
FLUX_ERR = NOISE / np.sqrt((PSF**2).sum())


def render(shape, xs, ys, fluxes, sigma=SIGMA):
    """Pixel-integrated circular Gaussian point sources, all of width ``sigma``."""
    return render_point_sources(shape, xs, ys, fluxes, sigma)


def grid_sources(shape, spacing, rng, margin=20):
    """Return x, y of a jittered grid of well-separated positions."""
    g_y = np.arange(margin, shape[0] - margin, spacing)
    g_x = np.arange(margin, shape[1] - margin, spacing)
    xx, yy = np.meshgrid(g_x, g_y)
    return (xx.ravel() + rng.uniform(-0.5, 0.5, xx.size), yy.ravel() + rng.uniform(-0.5, 0.5, xx.size))


def noisy(shape, rng):
    """Return white noise of sigma NOISE, its variance plane and an empty mask."""
    return rng.normal(size=shape) * NOISE, np.full(shape, NOISE**2), np.zeros(shape, np.int32)


def match(catalog, xs, ys, radius=2.0):
    """Index of the nearest detection for each injected source (-1 if none within radius)."""
    if len(catalog) == 0:
        return np.full(len(xs), -1)
    d, i = cKDTree(np.c_[catalog["x"], catalog["y"]]).query(np.c_[xs, ys])
    return np.where(d < radius, i, -1)


def test_completeness_vs_snr():
    """Completeness is ~50 % near SNR 5 and ≥ 90 % at SNR ≥ 7."""
    rng = np.random.default_rng(11)
    shape = (1000, 1000)
    xs, ys = grid_sources(shape, 40, rng)
    levels = np.array([3.0, 5.0, 7.0, 10.0])
    snr = levels[np.arange(xs.size) % 4]
    sign = np.where(rng.random(xs.size) < 0.5, 1.0, -1.0)
    noise, var, mask = noisy(shape, rng)
    image = noise + render(shape, xs, ys, sign * snr * FLUX_ERR)
    result = detect_dia_sources(image, var, mask, PSF)
    found = match(result.catalog, xs, ys) >= 0
    completeness = {level: found[snr == level].mean() for level in levels}
    assert completeness[3.0] < 0.2
    assert 0.35 < completeness[5.0] < 0.8
    assert completeness[7.0] >= 0.9
    assert completeness[10.0] >= 0.98


def rice_expected_peaks(threshold, n_pixels, psf):
    """Return the expected number of local maxima above ``threshold`` of a unit Gaussian field (per polarity).

    Euler-characteristic density of an isotropic 2-D Gaussian field whose correlation function is
    a Gaussian of variance 2 sigma² (white noise filtered by a Gaussian PSF of sigma).
    """
    lam = 1.0 / (2.0 * psf_sigma(psf) ** 2)
    return n_pixels * lam / (2 * np.pi) ** 1.5 * threshold * np.exp(-0.5 * threshold**2)


def test_false_positive_rate_matches_gaussian_expectation():
    """Pure-noise detections match the Gaussian-field peak count."""
    rng = np.random.default_rng(12)
    shape = (1024, 2048)
    noise, var, mask = noisy(shape, rng)
    low = detect_dia_sources(noise, var, mask, PSF, config=DetectionConfig(threshold=4.0)).catalog
    expected4 = 2 * rice_expected_peaks(4.0, noise.size, PSF)
    assert abs(len(low) - expected4) < 4 * np.sqrt(expected4) + 0.1 * expected4
    assert abs(np.sum(~low["is_negative"]) - np.sum(low["is_negative"])) < 4 * np.sqrt(len(low)) + 1
    high = detect_dia_sources(noise, var, mask, PSF).catalog
    expected5 = 2 * rice_expected_peaks(5.0, noise.size, PSF)
    assert expected5 < 2
    assert len(high) <= 8
    assert np.all(np.abs(high["snr"]) > 3.5)


def correlated_noisy(shape, rng, smoothing=0.8):
    """Noise correlated on pixel scales (as after PSF matching) with the *per-pixel* variance.

    White noise convolved with a Gaussian of ``smoothing`` pixels and scaled back to NOISE per
    pixel: the variance plane is exact pixel by pixel but ignores the covariance, so a
    PSF-matched filter sees more noise than the plane predicts.
    """
    from scipy import ndimage

    field = ndimage.gaussian_filter(rng.normal(size=shape), smoothing, mode="wrap")
    field *= NOISE / field.std()
    return field, np.full(shape, NOISE**2), np.zeros(shape, np.int32)


def test_noise_rescaling_is_neutral_on_white_noise():
    rng = np.random.default_rng(21)
    noise, var, mask = noisy((1024, 1024), rng)
    result = detect_dia_sources(noise, var, mask, PSF)
    assert result.noise_scale == pytest.approx(1.0, abs=0.02)
    off = detect_dia_sources(noise, var, mask, PSF, config=DetectionConfig(rescale_noise=False))
    assert off.noise_scale == 1.0
    # Too few usable pixels to measure: no rescaling.
    mask[:] = mask_planes.NO_DATA
    mask[:20, :20] = 0
    assert detect_dia_sources(noise, var, mask, PSF).noise_scale == 1.0
    with pytest.raises(ValueError, match="min_noise_pixels"):
        DetectionConfig(min_noise_pixels=0).validate()


def test_noise_rescaling_restores_the_threshold_and_errors_on_correlated_noise():
    """On pixel-correlated noise the plain threshold lets through far more noise peaks than a
    5 sigma threshold should; the measured rescaling brings the count back to the Gaussian-field
    expectation and makes the flux errors match the measured scatter."""
    rng = np.random.default_rng(22)
    shape = (1024, 2048)
    noise, var, mask = correlated_noisy(shape, rng)
    plain = detect_dia_sources(noise, var, mask, PSF, config=DetectionConfig(threshold=4.0, rescale_noise=False))
    scaled = detect_dia_sources(noise, var, mask, PSF, config=DetectionConfig(threshold=4.0))
    # The significance field is smoother than that of white noise; its peak density is lower, so
    # the white-noise expectation is an upper bound for the rescaled count.
    expected4 = 2 * rice_expected_peaks(4.0, noise.size, PSF)
    assert scaled.noise_scale > 1.2
    assert len(plain.catalog) > 5 * expected4
    assert len(scaled.catalog) < expected4 + 4 * np.sqrt(expected4)
    # Flux errors: injected sources measured on the correlated noise have pulls of unit width.
    xs, ys = grid_sources((700, 700), 30, rng)
    field, var2, mask2 = correlated_noisy((700, 700), rng)
    flux = 20.0 * FLUX_ERR * scaled.noise_scale
    cat = detect_dia_sources(field + render((700, 700), xs, ys, np.full(xs.size, flux)), var2, mask2, PSF).catalog
    idx = match(cat, xs, ys)
    assert np.mean(idx >= 0) > 0.98
    pulls = (cat["psf_flux"][idx[idx >= 0]] - flux) / cat["psf_flux_err"][idx[idx >= 0]]
    assert 0.85 < np.std(pulls) < 1.15


def test_flux_and_centroid_pulls_both_polarities():
    """Fluxes and centroids are unbiased with the expected scatter, both signs."""
    rng = np.random.default_rng(13)
    shape = (700, 700)
    xs, ys = grid_sources(shape, 30, rng)
    sign = np.where(np.arange(xs.size) % 2 == 0, 1.0, -1.0)
    flux = sign * 20.0 * FLUX_ERR
    noise, var, mask = noisy(shape, rng)
    result = detect_dia_sources(noise + render(shape, xs, ys, flux), var, mask, PSF)
    cat = result.catalog
    idx = match(cat, xs, ys)
    assert np.all(idx >= 0)
    assert len(cat) == xs.size
    m = cat[idx]
    assert np.array_equal(m["is_negative"], sign < 0)
    assert np.all(np.sign(m["psf_flux"]) == sign) and np.all(np.sign(m["snr"]) == sign)
    np.testing.assert_allclose(m["psf_flux_err"], FLUX_ERR, rtol=0.01)
    np.testing.assert_allclose(m["snr"], m["psf_flux"] / m["psf_flux_err"])
    pull = (m["psf_flux"] - flux) / m["psf_flux_err"]
    assert abs(np.mean(pull)) < 0.25
    assert 0.8 < np.std(pull) < 1.25
    # Cramér–Rao bound for a Gaussian PSF position: sqrt(2) * sigma / SNR per axis.
    crb = np.sqrt(2) * psf_sigma(PSF) / 20.0
    for name, truth in (("x", xs), ("y", ys)):
        offset = m[name] - truth
        assert abs(np.mean(offset)) < 0.03
        assert np.std(offset) < 1.3 * crb
    assert np.all(m["peak_value"] * sign > 0)
    # Detection bits in the returned mask copy, input mask untouched.
    assert not np.any(mask)
    pos = m[~m["is_negative"]][0]
    neg = m[m["is_negative"]][0]
    assert result.mask[int(round(pos["y"])), int(round(pos["x"]))] & mask_planes.DETECTED
    assert result.mask[int(round(neg["y"])), int(round(neg["x"]))] & mask_planes.DETECTED_NEGATIVE


def test_ids_columns_and_wcs():
    """Columns, dtypes, ids and sky coordinates follow DESIGN.md."""
    rng = np.random.default_rng(14)
    shape = (200, 200)
    noise, var, mask = noisy(shape, rng)
    image = noise + render(shape, [50.2, 150.7], [60.1, 140.4], [30 * FLUX_ERR, -30 * FLUX_ERR])
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [100.0, 100.0]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    cat = detect_dia_sources(image, var, mask, PSF, visit=42, detector=7, wcs=wcs).catalog
    assert cat.colnames == list(CATALOG_COLUMNS)
    for name, dtype in CATALOG_COLUMNS.items():
        assert cat[name].dtype == np.dtype(dtype), name
    assert len(cat) == 2
    assert np.array_equal(np.sort(cat["id"]), make_source_ids(42, 7, 2))
    assert np.all(cat["visit"] == 42) and np.all(cat["detector"] == 7)
    ra, dec = wcs.pixel_to_world_values(cat["x"], cat["y"])
    np.testing.assert_allclose(cat["ra"], ra)
    np.testing.assert_allclose(cat["dec"], dec)
    no_wcs = detect_dia_sources(image, var, mask, PSF).catalog
    assert np.all(np.isnan(no_wcs["ra"])) and np.all(np.isnan(no_wcs["dec"]))


def test_empty_image_gives_empty_table_with_all_columns():
    """No sources gives an empty table with every column."""
    shape = (100, 120)
    mask = np.zeros(shape, np.int32)
    result = detect_dia_sources(np.zeros(shape), np.ones(shape), mask, PSF)
    assert len(result.catalog) == 0
    assert result.catalog.colnames == list(CATALOG_COLUMNS)
    for name, dtype in CATALOG_COLUMNS.items():
        assert result.catalog[name].dtype == np.dtype(dtype), name
    assert result.mask is not mask and not np.any(result.mask)
    # Entirely NaN / NO_DATA image: still empty, no NaN anywhere.
    nan_mask = np.full(shape, mask_planes.NO_DATA, np.int32)
    nan_result = detect_dia_sources(np.full(shape, np.nan), np.full(shape, np.nan), nan_mask, PSF)
    assert len(nan_result.catalog) == 0


def test_flags_and_masked_pixels():
    """Mask bits near sources set the flags; masked pixels never give NaN."""
    rng = np.random.default_rng(15)
    shape = (300, 300)
    noise, var, mask = noisy(shape, rng)
    positions = {"clean": (150.0, 150.0), "edge": (4.0, 100.0), "bad": (60.0, 60.0), "sat": (240.0, 60.0),
                 "nan": (60.0, 240.0), "cr": (240.0, 240.0), "suspect": (150.0, 60.0)}
    xs = [p[0] for p in positions.values()]
    ys = [p[1] for p in positions.values()]
    image = noise + render(shape, xs, ys, np.full(len(xs), 40 * FLUX_ERR))
    mask[60, 61] |= mask_planes.BAD
    image[60, 61] = 1e6  # garbage under the bad pixel must be ignored
    mask[59:62, 239:242] |= mask_planes.SAT
    image[59:62, 239:242] = 5e5
    image[240:242, 60] = np.nan
    mask[240:242, 60] |= mask_planes.NO_DATA
    mask[241, 240] |= mask_planes.CR
    mask[61, 150] |= mask_planes.SUSPECT
    result = detect_dia_sources(image, var, mask, PSF)
    cat = result.catalog
    assert np.all(np.isfinite(cat["psf_flux"])) and np.all(np.isfinite(cat["psf_flux_err"]))
    assert np.all(np.isfinite(cat["x"])) and np.all(np.isfinite(cat["peak_value"]))
    idx = match(cat, xs, ys)
    assert np.all(idx >= 0), "sources touching masked pixels must still be detected"
    assert len(cat) == len(xs)
    rows = dict(zip(positions, cat[idx]))
    flag_names = ["flag_edge", "flag_bad", "flag_saturated", "flag_nan", "flag_cr", "flag_suspect"]
    expected = {"clean": [], "edge": ["flag_edge"], "bad": ["flag_bad"], "sat": ["flag_saturated"],
                "nan": ["flag_nan", "flag_edge"], "cr": ["flag_cr"], "suspect": ["flag_suspect"]}
    for name, row in rows.items():
        set_flags = [f for f in flag_names if row[f]]
        assert set_flags == [f for f in flag_names if f in expected[name]], name
    # Masked pixels are excluded from photometry: fluxes stay unbiased.
    for name in ("bad", "sat", "nan"):
        assert abs(rows[name]["psf_flux"] - 40 * FLUX_ERR) < 5 * rows[name]["psf_flux_err"], name


def test_deblending_of_close_pair():
    """Two well-separated peaks of one footprint become two sources."""
    rng = np.random.default_rng(16)
    shape = (120, 120)
    noise, var, mask = noisy(shape, rng)
    image = noise + render(shape, [50.0, 62.0], [60.0, 60.0], [50 * FLUX_ERR, 30 * FLUX_ERR])
    cat = detect_dia_sources(image, var, mask, PSF).catalog
    assert len(cat) == 2
    assert cat["npix"][0] == cat["npix"][1]
    np.testing.assert_allclose(np.sort(cat["x"]), [50.0, 62.0], atol=0.5)
    single = detect_dia_sources(image, var, mask, PSF, config=DetectionConfig(deblend=False)).catalog
    assert len(single) == 1


def test_invalid_inputs_raise():
    """Bad shapes, PSFs, configurations and ids raise ValueError."""
    shape = (50, 50)
    with pytest.raises(ValueError, match=r"\(50, 51\)"):
        detect_dia_sources(np.zeros(shape), np.ones((50, 51)), np.zeros(shape, np.int32), PSF)
    with pytest.raises(ValueError, match="odd"):
        detect_dia_sources(np.zeros(shape), np.ones(shape), np.zeros(shape, np.int32), np.ones((4, 4)))
    with pytest.raises(ValueError, match="polarity"):
        detect_dia_sources(np.zeros(shape), np.ones(shape), np.zeros(shape, np.int32), PSF,
                           config=DetectionConfig(polarity="up"))
    with pytest.raises(ValueError, match="visit"):
        detect_dia_sources(render(shape, [25], [25], [100 * FLUX_ERR]), np.ones(shape) * 100,
                           np.zeros(shape, np.int32), PSF, visit=-1)
