"""SubtractImagesTask, DetectDiaSourcesTask and MatchTruthTask through lsst.pipe.base.testUtils."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from lsst.daf.butler import Butler
from lsst.meas.realbogus import mask_planes
from lsst.meas.realbogus.butler import images, repo
from lsst.meas.realbogus.detection import CATALOG_COLUMNS, DetectionConfig
from lsst.meas.realbogus.diffim import SubtractionConfig, subtract_images
from lsst.meas.realbogus.simulation import small_test_config
from lsst.meas.realbogus.tasks import (
    DetectDiaSourcesConfig,
    DetectDiaSourcesTask,
    MatchTruthConfig,
    MatchTruthTask,
    SubtractImagesConfig,
    SubtractImagesTask,
)
from lsst.pipe.base import testUtils
from scipy import ndimage

DATA_ID = {"instrument": "SimCam", "visit": 3, "detector": 0}
RUN = "test/upstream"  # testUtils.makeQuantum finds inputs and writes outputs in butler.run


@pytest.fixture(scope="module")
def butler(tmp_path_factory) -> Butler:
    root = tmp_path_factory.mktemp("tasks_repo")
    writer = repo.create_sim_repo(root, n_detectors=1)
    repo.ingest_simulated_visits(writer, small_test_config(256), [3], [0], seed=5, run=RUN)
    repo.register_dataset_types(
        writer, ["difference_image", "dia_source_unstandardized", "dia_source_truth_match"]
    )
    return Butler.from_config(str(root), writeable=True, run=RUN)


def _run(task, butler) -> None:
    """Run one quantum of ``task`` through its runQuantum, reading and writing ``butler``."""
    connections = task.config.connections.ConnectionsClass(config=task.config)
    # Expanded data IDs: the default file templates use visit.day_obs.
    data_id = butler.registry.expandDataId(DATA_ID)
    io = {name: data_id for name in list(connections.inputs) + list(connections.outputs)}
    quantum = testUtils.makeQuantum(task, butler, data_id, io)
    return testUtils.runTestQuantum(task, butler, quantum, mockRun=False)


def test_subtract_images_quantum(butler):
    task = SubtractImagesTask()
    _run(task, butler)
    difference = butler.get("difference_image", DATA_ID)
    science = butler.get("preliminary_visit_image", DATA_ID)
    template = butler.get("template_detector", DATA_ID)
    sci, tmpl, diff = (images.exposure_to_arrays(x) for x in (science, template, difference))
    assert difference.bbox == science.bbox
    assert diff.visit == 3 and diff.band == science.band
    # The template was convolved: the difference has the science PSF.
    assert diff.psf_sigma == pytest.approx(sci.psf_sigma)
    assert "DIFFIM_CONVOLVED" in diff.metadata
    # The task feeds the numerics exactly the stored planes and PSFs.
    direct = subtract_images(
        sci.image,
        sci.variance,
        sci.mask,
        tmpl.image,
        tmpl.variance,
        tmpl.mask,
        sci.psf,
        tmpl.psf,
        config=task.config.to_subtraction_config(),
    )
    np.testing.assert_array_equal(diff.image, direct.image)
    np.testing.assert_array_equal(diff.mask, direct.mask)
    # The brightest unmasked static star cancels.
    bad = ((tmpl.mask | sci.mask | diff.mask) != 0) | ~np.isfinite(diff.image)
    usable = np.where(ndimage.maximum_filter(bad, size=9), -np.inf, tmpl.image)
    y, x = np.unravel_index(np.argmax(usable), usable.shape)
    box = np.s_[y - 3 : y + 4, x - 3 : x + 4]
    assert abs(np.sum(diff.image[box])) < 0.1 * np.sum(sci.image[box])
    # The science mask bits survive in the difference.
    assert ((diff.mask & sci.mask) == sci.mask).all()
    assert tmpl.psf_sigma < sci.psf_sigma


def test_detect_and_match_quanta(butler):
    detect = DetectDiaSourcesTask()
    _run(detect, butler)
    sources = butler.get("dia_source_unstandardized", DATA_ID)
    struct = detect.run(butler.get("difference_image", DATA_ID))
    testUtils.assertValidOutput(detect, struct)
    np.testing.assert_array_equal(struct.dia_sources["id"], sources["id"])
    assert list(sources.colnames) == list(CATALOG_COLUMNS)
    assert len(sources) > 0
    assert (sources["visit"] == 3).all() and (sources["detector"] == 0).all()
    assert len(np.unique(sources["id"])) == len(sources)
    assert np.isfinite(sources["ra"]).all()

    match = MatchTruthTask()
    _run(match, butler)
    matches = butler.get("dia_source_truth_match", DATA_ID)
    truth = butler.get("truth_transients", DATA_ID)
    struct = match.run(sources, truth, butler.get("difference_image.sky_projection", DATA_ID))
    testUtils.assertValidOutput(match, struct)
    assert list(matches.colnames) == [
        "id",
        "is_real",
        "truth_id",
        "truth_type",
        "truth_snr",
        "separation_arcsec",
    ]
    np.testing.assert_array_equal(matches["id"], sources["id"])
    real = np.asarray(matches["is_real"])
    assert real.any() and (~real).any()
    assert (np.asarray(matches["separation_arcsec"])[real] <= 0.5).all()
    transient_ids = set(truth["id"][truth["category"] == "transient"])
    assert set(matches["truth_id"][real]) <= transient_ids
    assert len(set(matches["truth_id"][real])) == real.sum()  # one-to-one
    assert (matches["truth_id"][~real] == -1).all()
    known = set(truth["type"][truth["category"] == "artifact"]) | {"other"}
    assert set(matches["truth_type"][~real]) <= known


def test_match_truth_radius(butler):
    sources = butler.get("dia_source_unstandardized", DATA_ID)
    truth = butler.get("truth_transients", DATA_ID)
    wide = MatchTruthTask(config=MatchTruthConfig(match_radius_arcsec=0.5)).run(
        sources, truth, pixel_scale=0.2
    )
    tiny = MatchTruthTask(config=MatchTruthConfig(match_radius_arcsec=1e-4)).run(
        sources, truth, pixel_scale=0.2
    )
    assert tiny.matches["is_real"].sum() == 0 < wide.matches["is_real"].sum()
    with pytest.raises(ValueError, match="lacks columns"):
        MatchTruthTask().run(sources[["id", "x"]], truth, pixel_scale=0.2)
    with pytest.raises(ValueError, match="pixel_scale"):
        MatchTruthTask().run(sources, truth)


def test_catalog_storage_class_is_configurable(butler):
    config = DetectDiaSourcesConfig()
    config.catalog_storage_class = "DataFrame"
    config.connections.dia_sources = "dia_source_dataframe"
    connections = config.connections.ConnectionsClass(config=config)
    assert connections.dia_sources.storageClass == "DataFrame"
    assert connections.dia_sources.name == "dia_source_dataframe"
    assert (
        DetectDiaSourcesConfig()
        .connections.ConnectionsClass(config=DetectDiaSourcesConfig())
        .dia_sources.storageClass
        == "ArrowAstropy"
    )


def test_configs_mirror_numerical_dataclasses():
    sub = SubtractImagesConfig()
    sub.bad_mask_planes = ["BAD", "CR"]
    sub.basis_degrees = [2, 1, 1]
    numeric = sub.to_subtraction_config()
    assert numeric.bad_mask_bits == mask_planes.BAD | mask_planes.CR
    assert numeric.basis_degrees == (2, 1, 1)
    # Every numerical field has a pex_config twin with the same default.
    assert SubtractImagesConfig().to_subtraction_config() == SubtractionConfig()
    defaults = SubtractionConfig()
    for field in dataclasses.fields(SubtractionConfig):
        if field.name not in ("bad_mask_bits", "basis_degrees"):
            assert getattr(numeric, field.name) == getattr(defaults, field.name), field.name
    det = DetectDiaSourcesConfig().to_detection_config()
    assert det == DetectionConfig()
    bad = DetectDiaSourcesConfig()
    bad.unusable_planes = ["NOPE"]
    with pytest.raises(ValueError, match="unknown mask plane"):
        bad.validate()
    bad = SubtractImagesConfig()
    bad.basis_degrees = [1]
    with pytest.raises(ValueError, match="basis_degrees"):
        bad.validate()
