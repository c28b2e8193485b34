"""Tests of PSF-matched image subtraction on synthetic images."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from lsst.meas.realbogus import mask_planes
from lsst.meas.realbogus.diffim import SubtractionConfig, gaussian_kernel, psf_sigma, subtract_images
from synthetic_images import render_point_sources as render


def make_pair(shape=(400, 400), n_stars=120, s_sci=2.0, s_tmp=1.3, sky_sci=100.0, sky_tmp=30.0, seed=1,
              bg_offset=0.0, scale=1.0, s_sci_slope=0.0, extra_science=None):
    """Science/template pair sharing a star field; returns (inputs dict, star positions)."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    xs = rng.uniform(8, nx - 8, n_stars)
    ys = rng.uniform(8, ny - 8, n_stars)
    fl = 10 ** rng.uniform(3.7, 5.3, n_stars)
    sig_sci = s_sci + s_sci_slope * (xs - nx / 2) / (nx / 2)
    sci_true = scale * render(shape, xs, ys, fl, sig_sci) + bg_offset
    if extra_science is not None:
        sci_true += extra_science
    tmp_true = render(shape, xs, ys, fl, s_tmp)
    var_sci = sky_sci**2 + np.maximum(sci_true - bg_offset, 0)
    var_tmp = sky_tmp**2 + 0.1 * np.maximum(tmp_true, 0)
    inputs = dict(
        science_image=sci_true + rng.normal(size=shape) * np.sqrt(var_sci),
        science_variance=var_sci,
        science_mask=np.zeros(shape, np.int32),
        template_image=tmp_true + rng.normal(size=shape) * np.sqrt(var_tmp),
        template_variance=var_tmp,
        template_mask=np.zeros(shape, np.int32),
        science_psf=gaussian_kernel(s_sci, 12),
        template_psf=gaussian_kernel(s_tmp, 8),
    )
    return inputs, xs, ys


def source_free(shape, xs, ys, radius):
    """Boolean map of pixels farther than ``radius`` from every star."""
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]]
    free = np.ones(shape, bool)
    for x, y in zip(xs, ys):
        free &= (xx - x) ** 2 + (yy - y) ** 2 > radius**2
    return free


def test_difference_noise_matches_variance():
    """Source-free difference pixels have chi² per pixel ≈ 1 against the variance plane."""
    inputs, xs, ys = make_pair()
    result = subtract_images(**inputs)
    assert result.image.dtype == np.float32 and result.variance.dtype == np.float32
    assert result.mask.dtype == np.int32
    assert not result.metrics["fallback"]
    assert result.n_stamps_used >= 20
    region = source_free(result.image.shape, xs, ys, 12) & (result.mask == 0)
    chi = result.image[region] / np.sqrt(result.variance[region])
    assert region.sum() > 40000
    assert abs(np.mean(chi**2) - 1.0) < 0.03
    assert abs(np.mean(chi)) < 0.03
    # Whole image, stars included: residuals stay close to the noise.
    good = result.mask == 0
    assert np.mean(result.image[good] ** 2 / result.variance[good]) < 1.15
    np.testing.assert_allclose(result.psf, inputs["science_psf"] / inputs["science_psf"].sum())
    assert result.psf_sigma == pytest.approx(psf_sigma(inputs["science_psf"]))


def test_kernel_recovers_gaussian_matching_kernel():
    """The fitted kernel matches the exact discrete matching kernel of two Gaussian PSFs."""
    inputs, _, _ = make_pair(sky_sci=10.0, sky_tmp=3.0, seed=2)
    result = subtract_images(**inputs, config=SubtractionConfig(spatial_order=0))
    # The exact discrete matching kernel: Fourier division of the two pixelised PSFs.
    half = result.kernel.shape[0] // 2
    n = 64
    ft = {}
    for name in ("science_psf", "template_psf"):
        psf = inputs[name] / inputs[name].sum()
        padded = np.zeros((n, n))
        padded[: psf.shape[0], : psf.shape[1]] = psf
        ft[name] = np.fft.fft2(np.roll(padded, (-(psf.shape[0] // 2), -(psf.shape[1] // 2)), (0, 1)))
    exact = np.fft.fftshift(np.real(np.fft.ifft2(ft["science_psf"] / ft["template_psf"])))
    expected = exact[n // 2 - half : n // 2 + half + 1, n // 2 - half : n // 2 + half + 1]
    assert np.abs(result.kernel - expected).max() < 0.1 * expected.max()
    assert np.abs(result.kernel - expected).sum() < 0.1
    assert result.kernel.sum() == pytest.approx(1.0, abs=0.01)
    assert psf_sigma(result.kernel) == pytest.approx(np.sqrt(2.0**2 - 1.3**2), rel=0.03)


def test_photometric_scaling_and_background_are_fitted():
    """A flux scaling and a flat background offset are absorbed by the fit."""
    inputs, xs, ys = make_pair(bg_offset=50.0, scale=1.25, seed=3)
    result = subtract_images(**inputs, config=SubtractionConfig(background_order=0))
    assert result.metrics["kernel_sum"] == pytest.approx(1.25, rel=0.01)
    assert result.metrics["background_coeffs"][0] == pytest.approx(50.0, abs=5.0)
    region = source_free(result.image.shape, xs, ys, 12) & (result.mask == 0)
    mean = np.mean(result.image[region])
    err = np.sqrt(np.mean(result.variance[region]) / region.sum())
    assert abs(mean) < 5 * err + 1.0
    # Without a background term the offset stays in the difference.
    no_bg = subtract_images(**inputs, config=SubtractionConfig(background_order=-1))
    assert np.mean(no_bg.image[region]) > 30.0


def test_spatially_varying_kernel_improves_fit():
    """A linearly varying science PSF is fitted better with spatial order 1."""
    inputs, xs, ys = make_pair(n_stars=200, s_sci_slope=0.4, sky_sci=20.0, sky_tmp=6.0, seed=4)
    const = subtract_images(**inputs, config=SubtractionConfig(spatial_order=0))
    linear = subtract_images(**inputs, config=SubtractionConfig(spatial_order=1))
    assert linear.metrics["spatial_order"] == 1
    assert linear.metrics["stamp_chi2_median"] < 0.8 * const.metrics["stamp_chi2_median"]


def test_transient_survives_subtraction():
    """A point source present only in the science image keeps its flux."""
    shape = (400, 400)
    transient = render(shape, [200.3], [150.7], [20000.0], 2.0)
    inputs, _, _ = make_pair(extra_science=transient, seed=5)
    result = subtract_images(**inputs)
    psf = result.psf
    h = psf.shape[0] // 2
    d = result.image[150 - h : 151 + h, 201 - h : 202 + h].astype(float)
    v = result.variance[150 - h : 151 + h, 201 - h : 202 + h].astype(float)
    # Optimal PSF flux at the nearest pixel (loses a little flux to the sub-pixel offset).
    flux = (psf * d / v).sum() / (psf**2 / v).sum()
    err = 1 / np.sqrt((psf**2 / v).sum())
    assert abs(flux - 20000.0 * 0.95) < 5 * err + 0.05 * 20000.0


def test_nan_pixels_stay_local():
    """NaN pixels only spread over a kernel-sized neighbourhood, masked NO_DATA."""
    inputs, _, _ = make_pair(seed=6)
    inputs["template_image"][100:110, 200:205] = np.nan
    inputs["template_mask"][100:110, 200:205] |= mask_planes.NO_DATA
    inputs["science_image"][300, 50] = np.nan
    inputs["science_mask"][300, 50] |= mask_planes.NO_DATA
    result = subtract_images(**inputs)
    half = result.metrics["kernel_half_width"]
    bad = ~np.isfinite(result.image)
    assert bad[100:110, 200:205].all() and bad[300, 50]
    assert np.array_equal(bad, ~np.isfinite(result.variance))
    assert np.all(result.mask[bad] & mask_planes.NO_DATA)
    box = np.zeros(bad.shape, bool)
    box[100 - half : 110 + half, 200 - half : 205 + half] = True
    box[300, 50] = True
    assert not bad[~box].any()
    assert bad.sum() <= box.sum()


def test_template_mask_planes_are_grown():
    """Template mask planes grow by the kernel footprint; science planes do not; EDGE border."""
    inputs, _, _ = make_pair(seed=7)
    inputs["template_mask"][50, 60] |= mask_planes.SAT
    inputs["science_mask"][250, 260] |= mask_planes.CR
    result = subtract_images(**inputs)
    half = result.metrics["kernel_half_width"]
    sat = (result.mask & mask_planes.SAT) != 0
    assert sat[50 - half : 51 + half, 60 - half : 61 + half].all()
    assert sat.sum() == (2 * half + 1) ** 2
    cr = (result.mask & mask_planes.CR) != 0
    assert cr.sum() == 1 and cr[250, 260]
    assert np.all(result.mask[:half] & mask_planes.EDGE)
    assert not np.any(result.mask[half:-half, half:-half] & mask_planes.EDGE)


def test_shape_mismatch_raises():
    """Planes of different shapes raise a ValueError naming the shapes."""
    inputs, _, _ = make_pair(shape=(64, 64), n_stars=5)
    inputs["template_variance"] = np.ones((64, 65))
    with pytest.raises(ValueError, match=r"template_variance.*\(64, 65\)"):
        subtract_images(**inputs)


def test_bad_psf_raises():
    """Invalid PSFs and configurations raise ValueError."""
    inputs, _, _ = make_pair(shape=(64, 64), n_stars=5)
    inputs["science_psf"] = np.ones((4, 4))
    with pytest.raises(ValueError, match="science_psf"):
        subtract_images(**inputs)
    with pytest.raises(ValueError, match="convolve"):
        subtract_images(**make_pair(shape=(64, 64), n_stars=5)[0], config=SubtractionConfig(convolve="both"))


def test_fallback_kernel_without_stars(caplog):
    """Without enough stars an analytic Gaussian kernel is used, with a warning."""
    inputs, _, _ = make_pair(n_stars=2, seed=8)
    with caplog.at_level(logging.WARNING, logger="lsst.meas.realbogus.diffim"):
        result = subtract_images(**inputs)
    assert result.metrics["fallback"] is True
    assert result.n_stamps_used == 0
    assert "analytic Gaussian" in caplog.text
    expected_sigma = np.sqrt(psf_sigma(inputs["science_psf"]) ** 2 - psf_sigma(inputs["template_psf"]) ** 2)
    assert psf_sigma(result.kernel) == pytest.approx(expected_sigma, rel=0.05)
    good = result.mask == 0
    assert np.all(np.isfinite(result.image[good]))
    assert abs(np.mean(result.image[good] ** 2 / result.variance[good]) - 1.0) < 0.1


def test_sharper_science_convolves_science(caplog):
    """A sharper science PSF switches to convolving the science image."""
    inputs, xs, ys = make_pair(s_sci=1.3, s_tmp=2.0, sky_tmp=15.0, seed=9)
    with caplog.at_level(logging.WARNING, logger="lsst.meas.realbogus.diffim"):
        result = subtract_images(**inputs)
    assert result.metrics["convolved"] == "science"
    assert "sharper" in caplog.text
    np.testing.assert_allclose(result.psf, inputs["template_psf"] / inputs["template_psf"].sum())
    region = source_free(result.image.shape, xs, ys, 12) & (result.mask == 0)
    assert abs(np.mean(result.image[region] ** 2 / result.variance[region]) - 1.0) < 0.05
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="lsst.meas.realbogus.diffim"):
        forced = subtract_images(**inputs, config=SubtractionConfig(convolve="template"))
    assert forced.metrics["ill_posed"] is True
    assert "ill-posed" in caplog.text
    assert np.all(np.isfinite(forced.image[forced.mask == 0]))


def test_halo_basis_for_psf_with_wings():
    """A science PSF with a broad halo needs the broad basis member to conserve flux."""
    rng = np.random.default_rng(10)
    shape = (400, 400)
    n = 150
    xs, ys = rng.uniform(10, 390, n), rng.uniform(10, 390, n)
    fl = 10 ** rng.uniform(3.7, 5.3, n)
    sci = 0.9 * render(shape, xs, ys, fl, 2.0) + 0.1 * render(shape, xs, ys, fl, 6.0)
    tmp = render(shape, xs, ys, fl, 1.3)
    var_sci, var_tmp = 100.0**2 + sci, 30.0**2 + 0.1 * tmp
    inputs = dict(
        science_image=sci + rng.normal(size=shape) * np.sqrt(var_sci), science_variance=var_sci,
        science_mask=np.zeros(shape, np.int32),
        template_image=tmp + rng.normal(size=shape) * np.sqrt(var_tmp), template_variance=var_tmp,
        template_mask=np.zeros(shape, np.int32),
        science_psf=0.9 * gaussian_kernel(2.0, 20) + 0.1 * gaussian_kernel(6.0, 20),
        template_psf=gaussian_kernel(1.3, 8),
    )
    auto = subtract_images(**inputs)
    assert auto.metrics["halo_basis"] is True
    assert auto.metrics["kernel_half_width"] > 15
    without = subtract_images(**inputs, config=SubtractionConfig(halo_basis=False))
    assert abs(auto.metrics["kernel_sum"] - 1.0) < 0.006
    assert abs(auto.metrics["kernel_sum"] - 1.0) < abs(without.metrics["kernel_sum"] - 1.0)
    # A Gaussian science PSF does not trigger it.
    plain, _, _ = make_pair(shape=(200, 200), n_stars=40, seed=17)
    assert subtract_images(**plain).metrics["halo_basis"] is False
