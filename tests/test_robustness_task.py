"""Bad inputs at the task level: `RBTransiNetTask.run` on in-memory `lsst.images` objects.

Duplicate, missing and non-integer ids, empty catalogues, images of other shapes and other flux
units, and configs that contradict the model: each gives a clear error or a defined result.
"""

from __future__ import annotations

from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
from astropy.table import MaskedColumn, Table
from lsst.meas.realbogus.butler.images import make_difference_image, make_visit_image
from lsst.meas.realbogus.simulation import make_wcs, small_test_config
from lsst.meas.realbogus.tasks.rb_transinet import RBTransiNetConfig, RBTransiNetTask
from tiny_models import write_tiny_classifier

SHAPE = (96, 110)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return model path."""
    return write_tiny_classifier(tmp_path_factory.mktemp("task") / "m.safetensors",
                                 channels=("science", "template", "difference"), seed=2, version="rtask")


def _images(shape: tuple[int, int] = SHAPE, seed: int = 0):
    rng = np.random.default_rng(seed)
    wcs = make_wcs(small_test_config(max(shape)), 0)
    template = rng.normal(300, 8, shape)
    science = template + rng.normal(0, 8, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for cx, cy, a in ((20, 30, 900), (60, 50, -500), (100, 90, 2000), (2, 40, 700)):
        science += a * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 5.0)
    var = np.full(shape, 128.0)
    mask = np.zeros(shape, np.int32)
    common = dict(
        wcs=wcs, psf_sigma=1.5, instrument="SimCam", visit=1, detector=0, physical_filter="r_sim", band="r"
    )
    sci = make_visit_image(science, var, mask, **common)
    tmpl = make_visit_image(template, var / 2, mask, **common)
    diff = make_difference_image(science - template, var * 1.5, mask, science=sci)
    return sci, tmpl, diff


@pytest.fixture(scope="module")
def images():
    """Return images."""
    return _images()


def _task(model_path: Path, **overrides) -> RBTransiNetTask:
    config = RBTransiNetConfig()
    config.modelSource = "file"
    config.modelPath = str(model_path)
    config.numThreads = 1
    for key, value in overrides.items():
        setattr(config, key, value)
    config.validate()
    return RBTransiNetTask(config=config)


def _catalog(n: int = 40, seed: int = 1) -> Table:
    rng = np.random.default_rng(seed)
    x = np.r_[20.0, 60.0, 100.0, 2.0, rng.uniform(-3, SHAPE[1] + 2, n - 4)]
    y = np.r_[30.0, 50.0, 90.0, 40.0, rng.uniform(-3, SHAPE[0] + 2, n - 4)]
    return Table({"id": np.arange(1000, 1000 + n, dtype=np.int64), "x": x, "y": y})


def _run(task, catalog, images):
    sci, tmpl, diff = images
    return task.run(diaSources=catalog, difference=diff, science=sci, template=tmpl).classifications


def test_task_output_rows_follow_input_ids(model_path: Path, images) -> None:
    """Check: task output rows follow input ids."""
    catalog = _catalog()
    catalog = catalog[np.random.default_rng(0).permutation(len(catalog))]
    out = _run(_task(model_path), catalog, images)
    np.testing.assert_array_equal(np.asarray(out["id"]), np.asarray(catalog["id"]))
    scores = np.asarray(out["score"], float)
    assert np.isfinite(scores).mean() > 0.9 and np.nanstd(scores) > 1e-3


def test_task_duplicate_ids_raise(model_path: Path, images) -> None:
    """Check: task duplicate ids raise."""
    catalog = _catalog()
    catalog["id"][5] = catalog["id"][9]
    with pytest.raises(ValueError, match="duplicated ids"):
        _run(_task(model_path), catalog, images)


def test_task_missing_id_column_or_non_integer_ids_raise(model_path: Path, images) -> None:
    """Check: task missing id column or non integer ids raise."""
    catalog = _catalog()
    with pytest.raises(ValueError, match="lacks columns"):
        _run(_task(model_path), catalog[["x", "y"]], images)
    floats = catalog.copy()
    floats["id"] = np.asarray(floats["id"], float)
    floats["id"][3] = np.nan
    with pytest.raises(ValueError, match="must be integer"):
        _run(_task(model_path), floats, images)


def test_task_masked_missing_ids_raise(model_path: Path, images) -> None:
    """A masked (missing) id must not be silently replaced by the column's fill data."""
    catalog = _catalog()
    catalog["id"] = MaskedColumn(np.asarray(catalog["id"]), mask=np.arange(len(catalog)) == 7)
    with pytest.raises(ValueError, match="id"):
        _run(_task(model_path), catalog, images)


def test_task_empty_catalogue_gives_empty_table(model_path: Path, images) -> None:
    """Check: task empty catalogue gives empty table."""
    out = _run(_task(model_path), _catalog()[:0], images)
    assert len(out) == 0 and "score" in out.colnames and "id" in out.colnames


def test_task_images_of_different_shapes_raise(model_path: Path, images) -> None:
    """Check: task images of different shapes raise."""
    sci, tmpl, diff = images
    other_sci, other_tmpl, _ = _images((SHAPE[0] + 4, SHAPE[1]))
    task = _task(model_path)
    with pytest.raises(ValueError, match="shape"):
        task.run(diaSources=_catalog(), difference=diff, science=other_sci, template=tmpl)
    with pytest.raises(ValueError, match="shape"):
        task.run(diaSources=_catalog(), difference=diff, science=sci, template=other_tmpl)


def test_task_missing_image_raises(model_path: Path, images) -> None:
    """Check: task missing image raises."""
    sci, tmpl, diff = images
    with pytest.raises(ValueError, match="needs the template"):
        _task(model_path).run(diaSources=_catalog(), difference=diff, science=sci, template=None)


@pytest.mark.parametrize("unit", [u.uJy, u.mJy])
def test_task_scores_do_not_depend_on_image_units(model_path: Path, images, unit) -> None:
    """Check: task scores do not depend on image units."""
    sci, tmpl, diff = images
    converted = tuple(im.convert_unit(unit, copy=True) for im in (sci, tmpl, diff))
    assert converted[2].unit == unit
    base = _run(_task(model_path), _catalog(), images)
    other = _run(_task(model_path), _catalog(), converted)
    np.testing.assert_allclose(np.asarray(other["score"]), np.asarray(base["score"]), atol=2e-4)


def test_task_config_contradicting_model_raises(model_path: Path, images) -> None:
    """Check: task config contradicting model raises."""
    with pytest.raises(ValueError, match="modelChannels"):
        _run(_task(model_path, modelChannels=["difference"]), _catalog(), images)
