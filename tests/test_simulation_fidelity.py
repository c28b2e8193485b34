"""Truth fidelity of the simulator: injected fluxes, expected SNRs and variance planes."""

from __future__ import annotations

import numpy as np
import pytest
from lsst.meas.realbogus.simulation import PsfModel, simulate_visit, small_test_config

SIZE = 384


@pytest.fixture(scope="module")
def empty_sky_visits():
    """Visits with only hostless transients on empty sky and a Gaussian PSF (exact PSF photometry)."""
    config = small_test_config(
        SIZE,
        star_density=0.0,
        galaxy_density=0.0,
        n_variable_per_detector=0.0,
        n_hostless_per_detector=3000.0,
        n_galaxy_offset_per_detector=0.0,
        n_galaxy_nuclear_per_detector=0.0,
        n_moving_per_detector=0.0,
        n_cosmic_rays_per_detector=0.0,
        n_hot_pixels_per_detector=0.0,
        n_bad_columns_per_detector=0.0,
        satellite_probability=0.0,
        nan_region_probability=0.0,
        psf_variation=0.0,
        sky_residual=0.0,
        psf_kinds=("gaussian",),
        template_noise_correlation=0.0,
    )
    return config, [simulate_visit(config, v, 2, seed=5) for v in range(5)]


def _psf_photometry(sv, config, radius=12):
    model = PsfModel.from_metadata(sv.metadata)
    diff = sv.science.image.astype(np.float64) - sv.template.image
    var = sv.science.variance.astype(np.float64) + sv.template.variance
    truth = sv.truth[sv.truth["type"] == "hostless"]
    x, y = np.asarray(truth["x"]), np.asarray(truth["y"])
    sep = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
    np.fill_diagonal(sep, np.inf)
    out = []
    for i, row in enumerate(truth):
        ix, iy = int(np.floor(row["x"] + 0.5)), int(np.floor(row["y"] + 0.5))
        if sep[i].min() < 2 * radius or min(ix, iy) < radius or max(ix, iy) >= SIZE - radius:
            continue
        p = model.kernel_at(
            row["x"], row["y"], config.width, config.height, config.pixel_scale, 2 * radius + 1
        )
        sl = np.s_[iy - radius : iy + radius + 1, ix - radius : ix + radius + 1]
        a = np.sum(p * p / var[sl])
        flux = np.sum(p * diff[sl] / var[sl]) / a
        out.append((row["flux"], flux, 1.0 / np.sqrt(a), row["snr"]))
    return np.array(out)


def test_hostless_flux_pulls(empty_sky_visits):
    config, visits = empty_sky_visits
    res = np.concatenate([_psf_photometry(sv, config) for sv in visits])
    assert len(res) > 80
    true_flux, flux, err, snr = res.T
    pull = (flux - true_flux) / err
    assert abs(np.mean(pull)) < 0.25
    assert 0.85 < np.std(pull) < 1.2
    # The truth SNR is the expected PSF-optimal SNR: flux over the measurement error.
    np.testing.assert_allclose(snr, true_flux / err, rtol=0.02)
    # Fluxes span a useful SNR range.
    assert snr.min() < 6 and snr.max() > 50


def test_variance_matches_noise(empty_sky_visits):
    config, visits = empty_sky_visits
    for sv in visits:
        truth = sv.truth[sv.truth["category"] == "transient"]
        free = np.ones((SIZE, SIZE), bool)
        yy, xx = np.mgrid[:SIZE, :SIZE]
        for row in truth:
            x0, y0 = int(row["x"]), int(row["y"])
            free[max(0, y0 - 12) : y0 + 13, max(0, x0 - 12) : x0 + 13] = False
        free[:8], free[-8:], free[:, :8], free[:, -8:] = False, False, False, False
        assert free.sum() > 20000
        for planes in (sv.science, sv.template):
            pull = planes.image[free] / np.sqrt(planes.variance[free])
            assert abs(np.mean(pull)) < 0.05
            assert 0.97 < np.std(pull) < 1.03
        # The template is a deep coadd: much lower noise than the science image.
        assert np.median(sv.template.variance) < 0.25 * np.median(sv.science.variance)


def test_variance_includes_source_poisson():
    config = small_test_config(256, nan_region_probability=0.0)
    sv = simulate_visit(config, 0, 1, seed=2)
    sky_var = np.median(sv.science.variance)
    bright = sv.science.image > 50 * np.sqrt(sky_var)
    bright &= sv.science.mask == 0
    assert bright.any()
    assert np.all(sv.science.variance[bright] > sky_var)
