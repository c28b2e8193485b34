"""Tests of TransiNet peak finding on synthetic score maps."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.wcs import WCS
from lsst.meas.realbogus.mask_planes import NO_DATA
from lsst.meas.realbogus.transinet.peaks import PEAK_COLUMNS, difference_fluxes, estimate_fluxes, find_peaks
from lsst.meas.realbogus.transinet.synthetic import make_synthetic_pair


def _blobs(
    shape: tuple[int, int], positions: list[tuple[float, float, float]], sigma: float = 1.6
) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    score = np.zeros(shape)
    for x, y, amp in positions:
        score = np.maximum(score, amp * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / sigma**2))
    return score


def test_subpixel_positions_scores_and_threshold() -> None:
    truth = [(20.3, 30.7, 0.9), (60.6, 12.2, 0.7), (45.0, 50.0, 0.3)]
    table = find_peaks(_blobs((64, 80), truth), threshold=0.5, min_separation=3)
    assert tuple(table.colnames) == PEAK_COLUMNS
    assert len(table) == 2
    assert list(table["peak_score"]) == sorted(table["peak_score"], reverse=True)
    np.testing.assert_allclose(table["x"], [20.3, 60.6], atol=0.02)
    np.testing.assert_allclose(table["y"], [30.7, 12.2], atol=0.02)
    assert np.all(np.isnan(table["ra"])) and np.all(np.isnan(table["flux"]))


def test_min_separation_and_plateaus() -> None:
    close = _blobs((40, 40), [(15.0, 20.0, 0.9), (19.0, 20.0, 0.8)], sigma=1.0)
    assert len(find_peaks(close, threshold=0.5, min_separation=2)) == 2
    assert len(find_peaks(close, threshold=0.5, min_separation=6)) == 1
    plateau = np.zeros((20, 20))
    plateau[8:10, 8:10] = 0.8
    table = find_peaks(plateau, threshold=0.5, min_separation=2)
    assert len(table) == 1


def test_flags_and_wcs() -> None:
    score = _blobs((50, 50), [(2.0, 25.0, 0.9), (25.0, 25.0, 0.9), (40.0, 40.0, 0.9)])
    mask = np.zeros((50, 50), dtype=np.int32)
    mask[40, 43] = NO_DATA
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [1.0, 1.0]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    table = find_peaks(score, threshold=0.5, mask=mask, wcs=wcs, edge_width=5)
    table.sort("x")
    assert list(table["flag_edge"]) == [True, False, False]
    assert list(table["flag_nan"]) == [False, False, True]
    ra, dec = wcs.pixel_to_world_values(table["x"], table["y"])
    np.testing.assert_allclose(table["ra"], ra)
    np.testing.assert_allclose(table["dec"], dec)
    assert np.all(np.isfinite(table["ra"]))


def test_nan_score_and_errors() -> None:
    score = _blobs((30, 30), [(15.0, 15.0, 0.9)])
    score[0:5, 0:5] = np.nan
    assert len(find_peaks(score, threshold=0.5)) == 1
    with pytest.raises(ValueError, match="2-D"):
        find_peaks(np.zeros(5))
    with pytest.raises(ValueError, match="science has shape"):
        find_peaks(score, science=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="psf_sigma"):
        find_peaks(score, threshold=0.5, science=score, template=score)


def test_flux_estimate_unbiased_on_synthetic_pairs() -> None:
    pulls = []
    for seed in range(6):
        pair = make_synthetic_pair((96, 96), seed=seed, n_stars=0, n_cosmic_rays=0, n_hot_pixels=0,
                                   n_transients=6, snr_range=(10, 30))
        tr = pair.truth
        flux, err = estimate_fluxes(tr["x"], tr["y"], pair.science.image, pair.template.image,
                                    pair.science_psf_sigma, pair.template_psf_sigma,
                                    science_variance=pair.science.variance,
                                    template_variance=pair.template.variance)
        pulls.extend((flux - tr["flux"]) / err)
    pulls = np.asarray(pulls)
    assert abs(np.mean(pulls)) < 0.6
    assert 0.6 < np.std(pulls) < 1.5


def _trail(shape: tuple[int, int], start: tuple[float, float], end: tuple[float, float],
           sigma: float = 1.5, amp: float = 0.9, ripple: float = 0.08) -> np.ndarray:
    """A score ridge along a segment with a ripple along it (several local maxima)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    (x0, y0), (x1, y1) = start, end
    dx, dy = x1 - x0, y1 - y0
    t = np.clip(((xx - x0) * dx + (yy - y0) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
    dist2 = (xx - x0 - t * dx) ** 2 + (yy - y0 - t * dy) ** 2
    along = 1.0 - ripple * (1 + np.cos(2 * np.pi * t * 4)) / 2  # four bumps along the trail
    return amp * along * np.exp(-0.5 * dist2 / sigma**2)


def test_trail_is_one_source_at_its_centre() -> None:
    score = _trail((60, 80), (20.0, 20.0), (50.0, 35.0))
    plain = find_peaks(score, threshold=0.5, min_separation=3, footprint_level=None)
    assert len(plain) >= 3  # a row of peaks along the trail without footprints
    assert not plain["flag_trail"].any()
    table = find_peaks(score, threshold=0.5, min_separation=3)
    assert len(table) == 1
    assert table["flag_trail"][0]
    np.testing.assert_allclose([table["x"][0], table["y"][0]], [35.0, 27.5], atol=0.6)
    # Without footprints the best peak lies along the trail, beyond a 2.5-pixel match of the centre.
    assert np.hypot(plain["x"][0] - 35.0, plain["y"][0] - 27.5) > 2.5


def test_round_sources_keep_their_peak_and_separate_footprints() -> None:
    truth = [(20.3, 30.7, 0.9), (40.6, 30.2, 0.7)]
    table = find_peaks(_blobs((64, 80), truth), threshold=0.5, min_separation=3)
    assert len(table) == 2 and not table["flag_trail"].any()
    np.testing.assert_allclose(table["x"], [20.3, 40.6], atol=0.02)
    np.testing.assert_allclose(table["y"], [30.7, 30.2], atol=0.02)


def test_weaker_peak_in_a_footprint_is_merged() -> None:
    # Two blobs 5 px apart: the saddle between them (about 0.7) is above half the main peak.
    score = _blobs((40, 40), [(15.0, 20.0, 0.9), (20.0, 20.0, 0.8)], sigma=2.0)
    assert len(find_peaks(score, threshold=0.5, min_separation=3, footprint_level=None)) == 2
    merged = find_peaks(score, threshold=0.5, min_separation=3, footprint_level=0.5)
    assert len(merged) == 1 and merged["peak_score"][0] == pytest.approx(score.max())
    # A level above the saddle keeps both.
    assert len(find_peaks(score, threshold=0.5, min_separation=3, footprint_level=0.95)) == 2


@pytest.mark.parametrize("kwargs", [{"footprint_level": 0.0}, {"footprint_level": 1.5},
                                    {"trail_elongation": 0.5}, {"footprint_radius": 0}])
def test_footprint_parameters_are_checked(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        find_peaks(np.zeros((10, 10)), **kwargs)


def test_difference_fluxes_of_a_gaussian_source() -> None:
    sigma, flux, var = 1.8, 5000.0, 4.0
    yy, xx = np.mgrid[:60, :60]
    diff = flux / (2 * np.pi * sigma**2) * np.exp(-0.5 * ((xx - 30.3) ** 2 + (yy - 25.6) ** 2) / sigma**2)
    variance = np.full(diff.shape, var)
    diff[0:3, 0:3] = np.nan  # unusable pixels away from the sources
    f, e = difference_fluxes([30.3, 1.0], [25.6, 1.0], diff, variance, sigma)
    assert f[0] == pytest.approx(flux, rel=1e-3)
    # Error of a Gaussian-weighted flux on white noise: sqrt(4 pi sigma^2 var).
    assert e[0] == pytest.approx(np.sqrt(4 * np.pi * sigma**2 * var), rel=0.01)
    assert abs(f[1]) < 1.0 and np.isfinite(e[1])  # the NaN corner is skipped, not propagated
    diff[:] = np.nan
    f, e = difference_fluxes([30.3], [25.6], diff, variance, sigma)
    assert np.isnan(f[0]) and np.isnan(e[0])
    with pytest.raises(ValueError, match="psf_sigma"):
        difference_fluxes([1.0], [1.0], diff, variance, 0.0)
    with pytest.raises(ValueError, match="shape"):
        difference_fluxes([1.0], [1.0], diff, variance[:-1], 1.0)
    with pytest.raises(ValueError, match="psf_sigma"):
        find_peaks(np.ones((60, 60)), difference=(diff, variance))
