"""TransiNetDetectTask: connections, config validation, quanta on a real temporary Butler repo,
NaN regions and empty results.
"""

from __future__ import annotations

import numpy as np
import pytest
from lsst.daf.butler import Butler, DatasetType
from lsst.meas.realbogus.butler.ingest_model import ingest_model_package
from lsst.meas.realbogus.ids import make_source_ids
from lsst.meas.realbogus.tasks import transinet_detect
from lsst.meas.realbogus.tasks.transinet_detect import (
    TransiNetDetectConfig,
    TransiNetDetectTask,
    make_transinet_catalog,
)
from lsst.meas.realbogus.transinet.model import DEFAULT_MODEL_FILE, TransiNetModel
from lsst.pipe.base import testUtils
from test_rb_task_support import DATA_ID, make_sim_only_repo

RUN = "SimCam/sim"
COLUMNS = ["id", "visit", "detector", "x", "y", "ra", "dec", "peak_score", "flux", "flux_err", "snr",
           "flag_edge", "flag_nan", "flag_trail"]

def _default_model_path():
    """Return default model path."""
    from importlib.resources import files

    return files("lsst.meas.realbogus").joinpath("data", DEFAULT_MODEL_FILE)

@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Build a tiny simulated repo with the default TransiNet ingested as transinet_model."""
    root = tmp_path_factory.mktemp("tn_quantum")
    make_sim_only_repo(root / "repo", size=192)
    butler = Butler.from_config(str(root / "repo"), writeable=True, run=RUN, collections=[RUN])
    # The task's outputs are registered as `pipetask run --register-dataset-types` would.
    for name, dims, storage_class in (
        ("transinet_score_image", ("instrument", "visit", "detector"), "ImageV2"),
        ("dia_source_transinet", ("instrument", "visit", "detector"), "ArrowAstropy"),
    ):
        dataset_type = DatasetType(name, dims, storage_class, universe=butler.dimensions)
        butler.registry.registerDatasetType(dataset_type)
    ingest_model_package(butler, str(_default_model_path()), "tn-test", dataset_type="transinet_model")
    return str(root / "repo")

def _butler(root: str, collections=(RUN,)) -> Butler:
    return Butler.from_config(root, writeable=True, run=RUN, collections=list(collections))

def _butler_in_new_run(root: str, run: str) -> Butler:
    """Return a Butler writing to ``run`` with copies of the inputs (testUtils quanta use one RUN)."""
    source = _butler(root, collections=(RUN, "pretrained_models"))
    butler = Butler.from_config(root, writeable=True, run=run, collections=[run])
    for name in ("preliminary_visit_image", "template_detector"):
        butler.put(source.get(name, DATA_ID), name, DATA_ID)
    butler.put(source.get("transinet_model", {}), "transinet_model", {})
    return butler


def _io_ids(butler: Butler, config: TransiNetDetectConfig) -> dict:
    expanded = butler.registry.expandDataId(DATA_ID)
    names = ["science", "template", "diaSources"] + (["scoreImage"] if config.writeScoreImage else [])
    return {name: expanded for name in names}

def test_connections_follow_config():
    """Prerequisite, score image and catalogue storage class follow the config."""
    config = TransiNetDetectConfig()
    connections = config.ConnectionsClass(config=config)
    assert connections.inputs == {"science", "template"}
    assert connections.outputs == {"scoreImage", "diaSources"}
    assert connections.prerequisiteInputs == set()
    assert connections.diaSources.name == "dia_source_transinet"
    assert connections.scoreImage.name == "transinet_score_image"
    assert connections.scoreImage.storageClass == "ImageV2"

    config = TransiNetDetectConfig(modelSource="butler", writeScoreImage=False,
                                   outputStorageClass="DataFrame")
    connections = config.ConnectionsClass(config=config)
    assert connections.prerequisiteInputs == {"transinetModel"}
    assert connections.transinetModel.name == "transinet_model"
    assert connections.transinetModel.dimensions == ()
    assert connections.outputs == {"diaSources"}
    assert connections.diaSources.storageClass == "DataFrame"

@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"modelSource": "file"}, "needs modelPath"),
        ({"modelSource": "package", "modelPath": "x.safetensors"}, "only used with modelSource='file'"),
        ({"minFluxSnr": 5.0, "measureFlux": False}, "minFluxSnr needs measureFlux"),
    ],
)
def test_config_validation(overrides, match):
    """The config refuses disagreeing modelSource and modelPath."""
    config = TransiNetDetectConfig()
    for key, value in overrides.items():
        setattr(config, key, value)
    with pytest.raises(ValueError, match=match):
        config.validate()

def test_bad_field_values_rejected():
    """Out-of-range threshold and separation are refused on assignment."""
    config = TransiNetDetectConfig()
    with pytest.raises(Exception, match="threshold"):
        config.threshold = 1.5
    with pytest.raises(Exception, match="minSeparation"):
        config.minSeparation = -1.0
    with pytest.raises(Exception, match="outputStorageClass"):
        config.outputStorageClass = "SourceCatalog"

def test_missing_model_file_is_a_clear_error(tmp_path):
    """A missing model file names the path."""
    config = TransiNetDetectConfig(modelSource="file", modelPath=str(tmp_path / "nope.safetensors"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TransiNetDetectTask(config=config).load_model()

def test_run_quantum_package_model(repo):
    """The quantum passes the right objects to run(); outputs round-trip and match run()."""
    butler = _butler(repo)
    config = TransiNetDetectConfig()
    task = TransiNetDetectTask(config=config)
    quantum = testUtils.makeQuantum(task, butler, DATA_ID, _io_ids(butler, config))
    run = testUtils.runTestQuantum(task, butler, quantum, mockRun=True)
    run.assert_called_once()
    assert set(run.call_args.kwargs) == {"science", "template", "model", "visit", "detector"}
    assert run.call_args.kwargs["model"] is None
    assert run.call_args.kwargs["visit"] == DATA_ID["visit"]

    testUtils.runTestQuantum(task, butler, quantum, mockRun=False)
    science = butler.get("preliminary_visit_image", DATA_ID)
    score = butler.get("transinet_score_image", DATA_ID)
    catalog = butler.get("dia_source_transinet", DATA_ID)
    assert score.bbox == science.bbox
    array = np.asarray(score.array, dtype=np.float32)
    assert np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0
    # The stored score is what the model computes on the same planes.
    model = TransiNetModel.default()
    result = task.run(science=science, template=butler.get("template_detector", DATA_ID), model=model)
    np.testing.assert_allclose(array, result.scoreImage.array, atol=1e-6)
    assert catalog.colnames == COLUMNS
    assert len(catalog) == len(result.diaSources)
    assert catalog["id"].dtype == np.int64
    np.testing.assert_array_equal(catalog["id"], make_source_ids(DATA_ID["visit"], DATA_ID["detector"],
                                                                 len(catalog)))
    threshold = model.threshold
    assert np.all(catalog["peak_score"] >= threshold - 1e-6)
    if len(catalog):
        assert np.all(np.diff(catalog["peak_score"]) <= 0)
        # Each peak is the score maximum of its pixel neighbourhood.
        ix, iy = np.rint(catalog["x"]).astype(int), np.rint(catalog["y"]).astype(int)
        np.testing.assert_allclose(catalog["peak_score"], array[iy, ix], atol=1e-5)
        assert np.isfinite(catalog["ra"]).all() and np.isfinite(catalog["dec"]).all()

def test_min_flux_snr_cut(repo):
    """The minFluxSnr cut keeps exactly the detections with |snr| >= the cut (and unmeasured ones)."""
    butler = _butler(repo)
    science = butler.get("preliminary_visit_image", DATA_ID)
    template = butler.get("template_detector", DATA_ID)
    model = TransiNetModel.default()
    everything = TransiNetDetectTask(config=TransiNetDetectConfig(threshold=0.05, writeScoreImage=False)).run(
        science=science, template=template, model=model).diaSources
    snr = np.abs(np.asarray(everything["snr"]))
    cut_value = 50.0  # the tiny repo's peaks are bright: a high cut so that some are dropped
    assert (snr >= cut_value).sum() > 0 and (snr < cut_value).sum() > 0
    config = TransiNetDetectConfig(threshold=0.05, writeScoreImage=False, minFluxSnr=cut_value)
    config.validate()
    cut = TransiNetDetectTask(config=config).run(science=science, template=template, model=model).diaSources
    expected = everything[~(snr < cut_value)]
    np.testing.assert_array_equal(cut["x"], expected["x"])
    assert cut.meta["min_flux_snr"] == cut_value and cut.colnames == everything.colnames


def test_run_quantum_butler_model_cached(repo):
    """A transinet_model dataset is used and its network cached by dataset id."""
    from lsst.daf.butler import DataCoordinate

    config = TransiNetDetectConfig(modelSource="butler", writeScoreImage=False)
    transinet_detect.clear_transinet_model_cache()
    models: list = []
    for run in ("test/butler_model", "test/butler_model2"):
        butler = _butler_in_new_run(repo, run)
        task = TransiNetDetectTask(config=config)
        ids = _io_ids(butler, config)
        ids["transinetModel"] = DataCoordinate.make_empty(butler.dimensions)
        quantum = testUtils.makeQuantum(task, butler, DATA_ID, ids)
        testUtils.runTestQuantum(task, butler, quantum, mockRun=False)
        got = butler.get("dia_source_transinet", DATA_ID, collections=run)
        assert got.colnames == COLUMNS
        # One network per model dataset, keyed by the dataset id.
        key = f"dataset:{butler.find_dataset('transinet_model', {}).id}"
        assert key in transinet_detect._MODEL_CACHE
        models.append(transinet_detect._MODEL_CACHE[key])
        handle = butler.getDeferred("transinet_model", {})
        model, cached = transinet_detect._model_from_handle(handle)
        assert cached and model is models[-1]
    assert len(transinet_detect._MODEL_CACHE) == 2
    assert models[0] is not models[1]

def test_nan_region_gives_no_nan_outputs(repo):
    """NaN blocks give a finite score (0 inside), no detections inside, flags next to them."""
    butler = _butler(repo)
    science = butler.get("preliminary_visit_image", DATA_ID)
    template = butler.get("template_detector", DATA_ID)
    science.image.array[40:90, 30:100] = np.nan
    template.image.array[120:150, :] = np.nan
    task = TransiNetDetectTask(config=TransiNetDetectConfig(threshold=0.05))
    result = task.run(science=science, template=template)
    score = np.asarray(result.scoreImage.array)
    assert np.isfinite(score).all()
    assert np.all(score[40:90, 30:100] == 0.0) and np.all(score[120:150, :] == 0.0)
    catalog = result.diaSources
    assert len(catalog) > 0
    for name in ("x", "y", "ra", "dec", "peak_score"):
        assert np.isfinite(np.asarray(catalog[name])).all(), name
    # No detection inside the NaN regions; flux is finite unless the peak is flagged near NaN.
    x, y = np.asarray(catalog["x"]), np.asarray(catalog["y"])
    assert not np.any((y >= 40) & (y < 90) & (x >= 30) & (x < 100))
    assert not np.any((y >= 120) & (y < 150))
    clean = ~np.asarray(catalog["flag_nan"])
    assert np.isfinite(np.asarray(catalog["flux"])[clean]).all()
    # Pixels next to the NaN blocks are flagged.
    near = (y > 36) & (y < 94) & (x > 26) & (x < 104)
    assert np.all(np.asarray(catalog["flag_nan"])[near])

def test_all_nan_science_gives_empty_catalogue_with_all_columns(repo):
    """A science image without any usable pixel gives a zero score and an empty catalogue."""
    butler = _butler(repo)
    science = butler.get("preliminary_visit_image", DATA_ID)
    template = butler.get("template_detector", DATA_ID)
    science.mask.array[...] = 0
    science.image.array[...] = np.nan
    result = TransiNetDetectTask(config=TransiNetDetectConfig(threshold=0.01)).run(science=science,
                                                                                   template=template)
    assert len(result.diaSources) == 0
    assert result.diaSources.colnames == COLUMNS
    assert np.all(np.asarray(result.scoreImage.array) == 0.0)

def test_empty_result_round_trips_with_all_columns(repo):
    """An empty catalogue is written and read back with every column and dtype."""
    butler = _butler_in_new_run(repo, "test/empty")
    config = TransiNetDetectConfig(threshold=1.0, outputStorageClass="ArrowAstropy")
    task = TransiNetDetectTask(config=config)
    quantum = testUtils.makeQuantum(task, butler, DATA_ID, _io_ids(butler, config))
    testUtils.runTestQuantum(task, butler, quantum, mockRun=False)
    catalog = butler.get("dia_source_transinet", DATA_ID, collections="test/empty")
    assert len(catalog) == 0
    assert catalog.colnames == COLUMNS
    assert catalog["id"].dtype == np.int64
    assert catalog["flag_edge"].dtype == bool
    assert catalog["peak_score"].dtype == np.float32

def test_make_catalog_dtypes_and_snr():
    """Catalogue ids, dtypes, snr and metadata from hand-made peaks."""
    from astropy.table import Table

    peaks = Table({"x": [1.0, 2.0], "y": [3.0, 4.0], "ra": [0.1, 0.2], "dec": [0.3, 0.4],
                   "peak_score": [0.9, 0.6], "flux": [100.0, 50.0], "flux_err": [10.0, 0.0],
                   "flag_edge": [False, True], "flag_nan": [False, False], "flag_trail": [False, True]})
    cat = make_transinet_catalog(peaks, visit=7, detector=3, version="tn")
    assert cat.colnames == COLUMNS
    np.testing.assert_array_equal(cat["id"], make_source_ids(7, 3, 2))
    assert cat["snr"][0] == pytest.approx(10.0)
    assert np.isnan(cat["snr"][1])
    assert cat.meta["model_version"] == "tn"
