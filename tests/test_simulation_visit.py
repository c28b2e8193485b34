"""Structure, determinism, masks and truth of simulated visits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from lsst.meas.realbogus.mask_planes import BAD, CR, EDGE, NO_DATA, SAT
from lsst.meas.realbogus.simulation import (
    ARTIFACT_TYPES,
    TRANSIENT_TYPES,
    TRUTH_COLUMNS,
    SurveyConfig,
    simulate_survey,
    make_static_scene,
    simulate_visit,
    small_test_config,
)
from lsst.meas.realbogus.simulation.scene import mag_to_njy


@pytest.fixture(scope="module")
def busy_config():
    """Return a small detector config with boosted transient and artefact rates."""
    return small_test_config(
        320,
        n_hostless_per_detector=1500.0,
        n_galaxy_offset_per_detector=1500.0,
        n_galaxy_nuclear_per_detector=800.0,
        n_variable_per_detector=1500.0,
        n_moving_per_detector=800.0,
        n_cosmic_rays_per_detector=3000.0,
        n_hot_pixels_per_detector=2000.0,
        n_bad_columns_per_detector=20.0,
        satellite_probability=1.0,
        nan_region_probability=1.0,
        star_density=60.0,
        star_mag_range=(9.0, 21.0),
        galaxy_density=120.0,
    )


@pytest.fixture(scope="module")
def busy_visit(busy_config):
    return simulate_visit(busy_config, 7, 3, seed=11)


def test_planes_and_psfs(busy_visit, busy_config):
    sv = busy_visit
    shape = (busy_config.height, busy_config.width)
    for planes in (sv.science, sv.template):
        assert planes.image.shape == planes.variance.shape == planes.mask.shape == shape
        assert planes.image.dtype == np.float32 and planes.variance.dtype == np.float32
        assert planes.mask.dtype == np.int32
    for kernel, sigma in ((sv.science_psf, sv.science_psf_sigma), (sv.template_psf, sv.template_psf_sigma)):
        assert kernel.shape[0] % 2 == 1 and kernel.shape[0] == kernel.shape[1]
        assert kernel.sum() == pytest.approx(1.0)
        c = kernel.shape[0] // 2
        assert np.unravel_index(np.argmax(kernel), kernel.shape) == (c, c)
        assert 0.5 < sigma < 8
    seeing_pix = sv.metadata["seeing_arcsec"] / busy_config.pixel_scale
    assert sv.template_psf_sigma < sv.science_psf_sigma or seeing_pix < 2.8
    for key in (
        "band",
        "physical_filter",
        "mjd",
        "exposure_time",
        "seeing_arcsec",
        "sky",
        "zero_point_njy",
        "misregistration_dx",
        "misregistration_dy",
        "seed",
    ):
        assert key in sv.metadata
    assert (
        sv.metadata["physical_filter"]
        == busy_config.physical_filters[busy_config.bands.index(sv.metadata["band"])]
    )
    shift = np.hypot(sv.metadata["misregistration_dx"], sv.metadata["misregistration_dy"])
    assert busy_config.misregistration_range[0] <= shift <= busy_config.misregistration_range[1]


def test_truth_columns_and_types(busy_visit):
    truth = busy_visit.truth
    assert tuple(truth.colnames) == TRUTH_COLUMNS
    assert truth["id"].dtype == np.int64 and truth["host_id"].dtype == np.int64
    assert len(np.unique(truth["id"])) == len(truth)
    cats = set(truth["category"])
    assert cats == {"transient", "artifact"}
    tr = truth[truth["category"] == "transient"]
    art = truth[truth["category"] == "artifact"]
    assert set(tr["type"]) == set(TRANSIENT_TYPES)
    assert set(art["type"]) <= set(ARTIFACT_TYPES)
    for typ in (
        "cosmic_ray",
        "hot_pixel",
        "bad_column",
        "satellite_trail",
        "nan_region",
        "edge",
        "misregistration",
        "bleed_trail",
        "psf_residual",
    ):
        assert typ in set(art["type"]), typ
    assert np.all(art["flux"] == 0) and np.all(art["snr"] == 0) and np.all(np.isnan(art["mag"]))
    assert np.all(tr["flux"][tr["type"] == "variable_fade"] < 0)
    assert np.all(tr["flux"][tr["type"] != "variable_fade"] > 0)
    # SNR carries the sign of the flux; magnitudes are of |flux|.
    assert np.all(np.sign(tr["snr"][tr["snr"] != 0]) == np.sign(tr["flux"][tr["snr"] != 0]))
    np.testing.assert_allclose(tr["mag"], 31.4 - 2.5 * np.log10(np.abs(tr["flux"])))
    on_galaxy = np.isin(tr["type"], ["galaxy_offset", "galaxy_nuclear"])
    assert np.all(tr["host_id"][on_galaxy] >= 0) and np.all(tr["host_id"][~on_galaxy] == -1)
    # Sky coordinates agree with the WCS.
    ra, dec = busy_visit.wcs.pixel_to_world_values(truth["x"], truth["y"])
    np.testing.assert_allclose(truth["ra"], ra)
    np.testing.assert_allclose(truth["dec"], dec)


def test_masks_where_artifacts_are(busy_visit, busy_config):
    sv = busy_visit
    mask, img = sv.science.mask, sv.science.image
    truth = sv.truth
    h, w = mask.shape
    # NaN pixels always carry NO_DATA, in both images, and NO_DATA pixels are NaN.
    for planes in (sv.science, sv.template):
        nan = ~np.isfinite(planes.image)
        assert np.all(planes.mask[nan] & NO_DATA)
        assert np.all(nan[(planes.mask & NO_DATA) != 0])
    for row in truth[truth["type"] == "nan_region"]:
        box = np.s_[int(row["y"]) : int(row["y1"]) + 1, int(row["x"]) : int(row["x1"]) + 1]
        assert np.all(np.isnan(img[box])) and np.all(mask[box] & NO_DATA)
    ew = busy_config.edge_width
    for m in (mask, sv.template.mask):
        assert np.all(m[:ew] & EDGE) and np.all(m[:, -ew:] & EDGE)
        assert not np.any(m[ew:-ew, ew:-ew] & EDGE)
    for row in truth[truth["type"] == "bleed_trail"]:
        col = mask[int(row["y"]) : int(row["y1"]) + 1, int(row["x"])]
        assert np.all(col & SAT)
        assert row["y1"] - row["y"] >= 1
    # Some, not all, cosmic rays are flagged.
    crs = truth[truth["type"] == "cosmic_ray"]
    flagged = np.array(
        [
            bool(mask[int(round(r["y"])), int(round(r["x"]))] & CR)
            for r in crs
            if 0 <= round(r["y"]) < h and 0 <= round(r["x"]) < w
        ]
    )
    assert len(flagged) > 40
    assert 0.25 < flagged.mean() < 0.75
    assert np.all(mask[(mask & CR) != 0] & CR)
    hot = truth[truth["type"] == "hot_pixel"]
    bad_flags = np.array([bool(mask[int(r["y"]), int(r["x"])] & BAD) for r in hot])
    assert 0.4 < bad_flags.mean() < 0.95
    # Cosmic rays and hot pixels are sharp, bright excursions in the science image only.
    finite = np.isfinite(img)
    hp = [(int(r["y"]), int(r["x"])) for r in hot if finite[int(r["y"]), int(r["x"])]]
    noise = np.sqrt(np.median(sv.science.variance[finite]))
    assert np.median([img[p] - sv.template.image[p] for p in hp]) > 5 * noise


def test_determinism(busy_config):
    a = simulate_visit(busy_config, 4, 1, seed=3)
    b = simulate_visit(busy_config, 4, 1, seed=3)
    for pa, pb in ((a.science, b.science), (a.template, b.template)):
        np.testing.assert_array_equal(pa.image, pb.image)
        np.testing.assert_array_equal(pa.variance, pb.variance)
        np.testing.assert_array_equal(pa.mask, pb.mask)
    assert a.metadata == b.metadata
    for name in a.truth.colnames:
        np.testing.assert_array_equal(a.truth[name], b.truth[name])
    c = simulate_visit(busy_config, 4, 1, seed=4)
    assert not np.array_equal(np.nan_to_num(a.science.image), np.nan_to_num(c.science.image))
    assert not np.array_equal(a.template.image, c.template.image)


def test_survey_structure(busy_config):
    config = dataclasses.replace(busy_config, width=128, height=128)
    visits = list(simulate_survey(config, range(6), [0, 9], seed=1))
    assert [(v.visit, v.detector) for v in visits] == [(v, d) for v in range(6) for d in (0, 9)]
    by = {(v.visit, v.detector): v for v in visits}
    # Visits of one detector look at the same field; detectors look at different fields.
    assert by[(2, 0)].wcs.wcs.crval.tolist() == by[(5, 0)].wcs.wcs.crval.tolist()
    assert by[(2, 0)].wcs.wcs.crval.tolist() != by[(2, 9)].wcs.wcs.crval.tolist()
    mjds = [by[(v, 0)].metadata["mjd"] for v in range(6)]
    assert np.all(np.diff(mjds) > 0)
    bands = [by[(v, 0)].metadata["band"] for v in range(6)]
    assert bands == [by[(v, 9)].metadata["band"] for v in range(6)]
    assert len(set(bands)) > 1
    pairs = [(i, j) for i in range(6) for j in range(i + 1, 6)]
    for i, j in pairs:
        same = np.array_equal(by[(i, 0)].template.image, by[(j, 0)].template.image)
        # The template is static per (detector, band); the science image never repeats.
        assert same == (bands[i] == bands[j])
        assert not np.array_equal(
            np.nan_to_num(by[(i, 0)].science.image), np.nan_to_num(by[(j, 0)].science.image)
        )
    assert any(bands[i] == bands[j] for i, j in pairs)
    # The static scene is shared: the same stars and galaxies appear in all visits of a detector.
    assert by[(0, 0)].metadata["n_stars"] == by[(5, 0)].metadata["n_stars"]


def test_rates_scale_with_area():
    big = SurveyConfig()
    small = dataclasses.replace(big, width=512, height=512)
    assert small.area_factor == pytest.approx(1 / 16)
    counts = []
    for v in range(6):
        sv = simulate_visit(small, v, 0, seed=9)
        counts.append(np.sum(sv.truth["category"] == "transient"))
    expected = (
        big.n_hostless_per_detector
        + big.n_galaxy_offset_per_detector
        + big.n_galaxy_nuclear_per_detector
        + big.n_moving_per_detector
    ) / 16
    assert 0.3 * expected < np.mean(counts) < 3 * expected


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(width=10),
        dict(seeing_range=(1.0, 0.5)),
        dict(psf_kernel_size=40),
        dict(physical_filters=("g_sim",)),
        dict(cosmic_ray_mask_fraction=1.5),
        dict(psf_kinds=("airy",)),
    ],
)
def test_config_validation(kwargs):
    with pytest.raises(ValueError):
        SurveyConfig(**kwargs)


def test_bad_ids_rejected():
    config = small_test_config(64)
    with pytest.raises(ValueError, match="visit"):
        simulate_visit(config, -1, 0)
    with pytest.raises(ValueError, match="detector"):
        simulate_visit(config, 0, 5000)
    with pytest.raises(TypeError):
        simulate_visit("config", 0, 0)  # type: ignore[arg-type]


def test_bright_neighbour_transients():
    """Extra transients land next to bright stars and leave the rest of the scene as it was."""
    base = small_test_config(256, star_density=40.0, star_mag_range=(12.0, 22.0), nan_region_probability=0.0,
                             seeing_range=(0.5, 0.6))
    extra = dataclasses.replace(base, n_bright_neighbour_per_detector=3000.0)
    a = simulate_visit(base, 2, 1, seed=5)
    b = simulate_visit(extra, 2, 1, seed=5)
    key = ["category", "type", "x", "y", "flux"]
    rows_a = {tuple(r[k] for k in key) for r in a.truth}
    rows_b = {tuple(r[k] for k in key) for r in b.truth}
    assert rows_a < rows_b
    new = sorted(rows_b - rows_a)
    assert len(new) > 20
    assert all(r[0] == "transient" and r[1] == "hostless" and r[4] > 0 for r in new)
    # Each lies 2-12 PSF FWHM from a star whose peak reaches 30 % of saturation (a Gaussian
    # peak estimate, generous by 2x; the misregistration moves stars by < 0.3 pixels).
    scene = make_static_scene(base, 1, seed=5)
    sigma = b.science_psf_sigma
    flux = mag_to_njy(scene.star_mag[:, list(base.bands).index(b.metadata["band"])])
    bright = flux / (2 * np.pi * sigma**2) >= 0.15 * b.metadata["saturation_njy"]
    sx, sy = scene.star_x[bright], scene.star_y[bright]
    fwhm_pix = 2.3548 * sigma
    inside = [r for r in new if 0 < r[2] < 255 and 0 < r[3] < 255]  # not clipped onto the edge
    assert len(inside) > 20
    dist = np.array([np.min(np.hypot(sx - r[2], sy - r[3])) for r in inside])
    assert np.all(dist < 12 * fwhm_pix + 0.5)
    ux, uy = np.random.default_rng(0).uniform(0, 255, size=(2, 500))
    dist_uniform = np.min(np.hypot(sx[:, None] - ux, sy[:, None] - uy), axis=0)
    assert np.mean(dist_uniform < 12 * fwhm_pix + 0.5) < 0.6
    # They are in the science image: summed over 3x3 pixels, b - a has the sign of their flux.
    gain = []
    for _, _, x, y, _ in new:
        ix, iy = int(round(x)), int(round(y))
        cut = (slice(max(iy - 1, 0), iy + 2), slice(max(ix - 1, 0), ix + 2))
        sat = ((a.science.mask | b.science.mask)[cut] & SAT).any()
        if not sat:
            gain.append(np.nansum(b.science.image[cut] - a.science.image[cut]) > 0)
    assert len(gain) > 10 and np.mean(gain) > 0.9
    with pytest.raises(ValueError, match="n_bright_neighbour_per_detector"):
        dataclasses.replace(base, n_bright_neighbour_per_detector=-1.0)
