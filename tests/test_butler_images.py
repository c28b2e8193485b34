"""Butler round trips of the lsst.images conversions (VisitImage, DifferenceImage, truth)."""

from __future__ import annotations

import numpy as np
import pytest
from lsst.meas.realbogus import mask_planes
from lsst.meas.realbogus.butler import images, repo
from lsst.meas.realbogus.butler.toy_data import make_toy_visit

SIZE = 96


@pytest.fixture(scope="module")
def butler_with_visit(tmp_path_factory):
    root = tmp_path_factory.mktemp("images_repo")
    butler = repo.create_sim_repo(root, n_detectors=2)
    toy = make_toy_visit(7, 1, size=SIZE, seed=3)
    # Every mask plane somewhere, including combinations.
    for i, bit in enumerate(mask_planes.MASK_PLANES.values()):
        toy.science.mask[2 + i, 3] |= bit
        toy.science.mask[2 + i, 4] |= bit | mask_planes.SUSPECT
    regions = {1: repo._corners_region(toy.wcs, SIZE, SIZE)}
    repo.register_visit(butler, 7, toy.metadata, regions)
    butler.registry.registerRun(repo.DEFAULT_SIM_RUN)
    repo.put_simulated_visit(butler, toy, 7, 1)
    return butler, toy


def test_visit_image_round_trip(butler_with_visit):
    butler, toy = butler_with_visit
    data_id = {"instrument": "SimCam", "visit": 7, "detector": 1}
    science = butler.get("preliminary_visit_image", data_id, collections=repo.DEFAULT_SIM_RUN)
    arrays = images.exposure_to_arrays(science)
    np.testing.assert_array_equal(arrays.image, toy.science.image)
    np.testing.assert_array_equal(arrays.variance, toy.science.variance)
    np.testing.assert_array_equal(arrays.mask, toy.science.mask)
    for array in (arrays.image, arrays.variance, arrays.mask, arrays.psf):
        assert array.dtype.isnative
    assert arrays.mask.dtype == np.int32
    assert str(science.unit) == "nJy"
    assert arrays.band == "r" and arrays.physical_filter == "r_sim"
    assert arrays.visit == 7 and arrays.detector == 1
    assert arrays.psf_sigma == pytest.approx(toy.science_psf_sigma)
    assert arrays.psf.shape[0] % 2 == 1 and arrays.psf.shape[0] == arrays.psf.shape[1]
    assert arrays.psf.sum() == pytest.approx(1.0)
    c = arrays.psf.shape[0] // 2
    assert np.unravel_index(np.argmax(arrays.psf), arrays.psf.shape) == (c, c)
    x = np.array([0.0, 10.5, SIZE - 1.0])
    y = np.array([0.0, 40.25, SIZE - 1.0])
    ra_in, dec_in = toy.wcs.pixel_to_world_values(x, y)
    ra_out, dec_out = arrays.wcs.pixel_to_world_values(x, y)
    np.testing.assert_allclose(ra_out, ra_in, rtol=0, atol=1e-9)
    np.testing.assert_allclose(dec_out, dec_in, rtol=0, atol=1e-9)
    assert science.obs_info.exposure_time.value == pytest.approx(30.0)
    assert arrays.metadata["seeing_arcsec"] == pytest.approx(toy.metadata["seeing_arcsec"])
    template = butler.get("template_detector", data_id, collections=repo.DEFAULT_SIM_RUN)
    assert images.psf_sigma(template.psf) == pytest.approx(toy.template_psf_sigma)


def test_mask_plane_names(butler_with_visit):
    butler, toy = butler_with_visit
    science = butler.get(
        "preliminary_visit_image", instrument="SimCam", visit=7, detector=1, collections=repo.DEFAULT_SIM_RUN
    )
    # Our planes are stored under the lsst.images names.
    assert {"SATURATED", "COSMIC_RAY", "NO_DATA", "DETECTED_NEGATIVE"} <= set(science.mask.schema.names)
    np.testing.assert_array_equal(science.mask.get("COSMIC_RAY"), (toy.science.mask & mask_planes.CR) != 0)


def test_truth_round_trip(butler_with_visit):
    butler, toy = butler_with_visit
    truth = butler.get(
        "truth_transients", instrument="SimCam", visit=7, detector=1, collections=repo.DEFAULT_SIM_RUN
    )
    assert truth.colnames == toy.truth.colnames
    for name in truth.colnames:
        if truth[name].dtype.kind == "f":
            np.testing.assert_array_equal(np.asarray(truth[name]), np.asarray(toy.truth[name]))
        else:
            assert list(truth[name]) == list(toy.truth[name])


def test_difference_image_keeps_science_frame():
    toy = make_toy_visit(3, 0, size=64)
    science = images.make_visit_image(
        toy.science.image,
        toy.science.variance,
        toy.science.mask,
        wcs=toy.wcs,
        psf_sigma=2.0,
        instrument="SimCam",
        visit=3,
        detector=0,
        physical_filter="r_sim",
        band="r",
        metadata=toy.metadata,
    )
    diff = images.make_difference_image(
        science.image.array - 1,
        science.variance.array * 2,
        toy.science.mask | mask_planes.DETECTED,
        science=science,
        metadata={"DIFFIM_KERNEL_SUM": 1.01, "ignored": [1, 2]},
    )
    arrays = images.exposure_to_arrays(diff)
    np.testing.assert_array_equal(arrays.image, toy.science.image - 1)
    assert (arrays.mask & mask_planes.DETECTED).all()
    assert arrays.psf_sigma == 2.0
    assert arrays.metadata["DIFFIM_KERNEL_SUM"] == 1.01 and "ignored" not in arrays.metadata
    assert images.sky_projection_pixel_scale(diff.sky_projection) == pytest.approx(0.2, rel=1e-6)


def test_bad_inputs_are_rejected():
    toy = make_toy_visit(3, 0, size=32)
    kwargs = dict(
        wcs=toy.wcs,
        psf_sigma=2.0,
        instrument="SimCam",
        visit=3,
        detector=0,
        physical_filter="r_sim",
        band="r",
    )
    with pytest.raises(ValueError, match="shapes differ"):
        images.make_visit_image(toy.science.image, toy.science.variance[:-1], toy.science.mask, **kwargs)
    with pytest.raises(ValueError, match="not planes"):
        images.make_visit_image(
            toy.science.image, toy.science.variance, toy.science.mask | (1 << 20), **kwargs
        )
    with pytest.raises(ValueError, match="psf_sigma"):
        images.make_visit_image(
            toy.science.image, toy.science.variance, toy.science.mask, **{**kwargs, "psf_sigma": 0.0}
        )


@pytest.mark.parametrize("sigma", [0.8, 1.3, 2.1, 3.7])
def test_butler_free_path_uses_the_psf_the_butler_stores(sigma):
    """The Butler-free training path differences with exactly the kernel the pipeline gets from the
    stored lsst.images Gaussian PSF (sampled at pixel centres, same stamp)."""
    from lsst.images import Box
    from lsst.images.psfs import GaussianPointSpreadFunction
    from lsst.meas.realbogus.diffim import gaussian_kernel
    from lsst.meas.realbogus.training_set import _stored_psf

    stored = GaussianPointSpreadFunction(
        sigma, bounds=Box.factory[0:64, 0:64], stamp_size=images._stamp_size(sigma)
    )
    pipeline = images.psf_kernel_image(stored)
    butler_free = _stored_psf(sigma)
    assert butler_free.shape == pipeline.shape
    np.testing.assert_allclose(butler_free, pipeline, rtol=0, atol=1e-12)
    # The pixel-integrated Gaussian is measurably different for small sigmas.
    if sigma < 1.5:
        assert np.abs(gaussian_kernel(sigma, pipeline.shape[0] // 2) - pipeline).max() > 1e-3
