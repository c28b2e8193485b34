"""RBTransiNetTask: connections, config validation and quanta on a real temporary Butler repo."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from lsst.daf.butler import Butler
from lsst.meas.realbogus.butler.ingest_model import ingest_model_package
from lsst.meas.realbogus.errors import ModelPackageError
from lsst.meas.realbogus.scoring import DEFAULT_MODEL_PATH, load_model
from lsst.meas.realbogus.tasks import rb_transinet
from lsst.meas.realbogus.tasks.rb_transinet import RBTransiNetConfig, RBTransiNetTask
from lsst.pipe.base import testUtils
from test_rb_task_support import DATA_ID, make_model_file, make_processed_repo

RUN = "SimCam/sim"
CONNECTIONS = ("science", "template", "difference", "diaSources", "classifications")


def _io_ids(butler: Butler, skip: tuple[str, ...] = ()) -> dict:
    """Return expanded data IDs per connection (output file templates need the dimension records)."""
    expanded = butler.registry.expandDataId(DATA_ID)
    return {name: expanded for name in CONNECTIONS if name not in skip}


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """Build a processed tiny repo and two tiny model packages (3-plane and difference-only)."""
    root = tmp_path_factory.mktemp("rb_quantum")
    make_processed_repo(root / "repo", run=RUN)
    model = make_model_file(root / "model.safetensors")
    diff_only = make_model_file(root / "diff_only.safetensors", channels=["difference"], version="d0.1")
    return {"root": str(root / "repo"), "model": model, "diff_only": diff_only}


def _butler(repo) -> Butler:
    """Return a writeable Butler on the fixture repo, default run ``SimCam/sim``."""
    return Butler.from_config(repo["root"], writeable=True, run=RUN, collections=[RUN])


def _file_config(path, **overrides) -> RBTransiNetConfig:
    """Return a validated config reading the model from a file, with overrides."""
    config = RBTransiNetConfig()
    config.modelSource = "file"
    config.modelPath = str(path)
    for key, value in overrides.items():
        setattr(config, key, value)
    config.validate()
    return config


def test_connections_follow_config(repo):
    """Check: connections follow config."""
    config = RBTransiNetConfig()
    connections = config.ConnectionsClass(config=config)
    assert connections.inputs == {"science", "template", "difference", "diaSources"}
    assert connections.prerequisiteInputs == {"pretrainedModel"}
    assert connections.pretrainedModel.name == "realbogus_model"
    assert connections.pretrainedModel.dimensions == ()
    assert connections.classifications.name == "dia_source_reliability"

    config = _file_config(repo["diff_only"], modelChannels=["difference"],
                          catalogStorageClass="DataFrame", outputStorageClass="ArrowNumpy")
    connections = config.ConnectionsClass(config=config)
    assert connections.inputs == {"difference", "diaSources"}
    assert connections.prerequisiteInputs == set()
    assert connections.diaSources.storageClass == "DataFrame"
    assert connections.classifications.storageClass == "ArrowNumpy"


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"modelSource": "file"}, "needs modelPath"),
        ({"modelSource": "package", "modelPath": "x.safetensors"}, "only used with modelSource='file'"),
        ({"modelChannels": ["science", "template"]}, "must include 'difference'"),
        ({"modelChannels": ["difference", "variance"]}, "unknown planes"),
        ({"modelChannels": ["difference", "difference"]}, "duplicates"),
        ({"xColumn": ""}, "xColumn"),
    ],
)
def test_config_validation(overrides, match):
    """Check: config validation."""
    config = RBTransiNetConfig()
    for key, value in overrides.items():
        setattr(config, key, value)
    with pytest.raises(ValueError, match=match):
        config.validate()


def test_bad_choice_and_batch_size_rejected():
    """Check: bad choice and batch size rejected."""
    config = RBTransiNetConfig()
    with pytest.raises(Exception, match="device"):
        config.device = "tpu"
    with pytest.raises(Exception, match="batchSize"):
        config.batchSize = 0


def test_package_source_without_default_model_is_a_clear_error():
    """Check: package source without default model is a clear error."""
    if DEFAULT_MODEL_PATH.exists():
        task = RBTransiNetTask(config=RBTransiNetConfig(modelSource="package"))
        assert task.load_model().version == load_model().version
    else:
        task = RBTransiNetTask(config=RBTransiNetConfig(modelSource="package"))
        with pytest.raises(ModelPackageError, match="default model .* is not installed"):
            task.load_model()


def test_run_quantum_from_file_model(repo):
    """Check: run quantum from file model."""
    butler = _butler(repo)
    task = RBTransiNetTask(config=_file_config(repo["model"]))
    quantum = testUtils.makeQuantum(task, butler, DATA_ID, _io_ids(butler))
    # runQuantum passes the right in-memory objects to run().
    run = testUtils.runTestQuantum(task, butler, quantum, mockRun=True)
    run.assert_called_once()
    kwargs = run.call_args.kwargs
    assert set(kwargs) == {"science", "template", "difference", "diaSources", "model"}
    assert kwargs["model"] is None
    # And the real thing.
    testUtils.runTestQuantum(task, butler, quantum, mockRun=False)
    sources = butler.get("dia_source_unstandardized", DATA_ID)
    got = butler.get("dia_source_reliability", DATA_ID)
    assert len(sources) > 0
    np.testing.assert_array_equal(got["id"], sources["id"])
    assert got["id"].dtype == np.int64 and got["score"].dtype == np.float32
    assert set(got["version"]) == {"t0.1"}
    assert np.all(got["threshold"] == np.float32(0.4))
    for name in ("flag_edge", "flag_bad", "flag_nan_center"):
        assert got[name].dtype == bool
    finite = np.isfinite(got["score"])
    assert finite.sum() > 0 and np.all((got["score"][finite] >= 0) & (got["score"][finite] <= 1))
    # Same numbers as the core scorer on the same arrays.
    direct = task.run(
        diaSources=sources, difference=butler.get("difference_image", DATA_ID),
        science=butler.get("preliminary_visit_image", DATA_ID),
        template=butler.get("template_detector", DATA_ID),
    )
    testUtils.assertValidOutput(task, direct)
    np.testing.assert_array_equal(np.asarray(direct.classifications["score"]), np.asarray(got["score"]))
    # Scores do not depend on the batch size.
    small = RBTransiNetTask(config=_file_config(repo["model"], batchSize=3)).run(
        diaSources=sources, difference=butler.get("difference_image", DATA_ID),
        science=butler.get("preliminary_visit_image", DATA_ID),
        template=butler.get("template_detector", DATA_ID),
    )
    np.testing.assert_array_equal(small.classifications["score"], direct.classifications["score"])


def test_empty_catalogue_gives_empty_output_with_all_columns(repo):
    """Check: empty catalogue gives empty output with all columns."""
    butler = _butler(repo)
    task = RBTransiNetTask(config=_file_config(repo["model"]))
    sources = butler.get("dia_source_unstandardized", DATA_ID)
    result = task.run(diaSources=sources[:0], difference=butler.get("difference_image", DATA_ID),
                      science=butler.get("preliminary_visit_image", DATA_ID),
                      template=butler.get("template_detector", DATA_ID))
    table = result.classifications
    assert len(table) == 0
    assert table.colnames == ["id", "score", "version", "threshold", "flag_edge", "flag_bad",
                              "flag_nan_center", "reason"]
    assert table["id"].dtype == np.int64 and table["score"].dtype == np.float32
    # It round-trips through the Butler as a zero-row table.
    butler.registry.registerRun("test/empty")
    butler.put(table, "dia_source_reliability", DATA_ID, run="test/empty")
    back = butler.get("dia_source_reliability", DATA_ID, collections="test/empty")
    assert len(back) == 0 and back.colnames == table.colnames


def test_duplicate_and_bad_ids_are_errors(repo):
    """Check: duplicate and bad ids are errors."""
    butler = _butler(repo)
    task = RBTransiNetTask(config=_file_config(repo["model"]))
    sources = butler.get("dia_source_unstandardized", DATA_ID)
    images = {"difference": butler.get("difference_image", DATA_ID),
              "science": butler.get("preliminary_visit_image", DATA_ID),
              "template": butler.get("template_detector", DATA_ID)}
    dup = sources.copy()
    dup["id"][1] = dup["id"][0]
    with pytest.raises(ValueError, match="duplicated ids"):
        task.run(diaSources=dup, **images)
    floats = sources.copy()
    floats["id"] = floats["id"].astype(float)
    with pytest.raises(ValueError, match="must be integer"):
        task.run(diaSources=floats, **images)
    with pytest.raises(ValueError, match="lacks columns"):
        task.run(diaSources=Table({"id": np.arange(3, dtype=np.int64)}), **images)
    with pytest.raises(ValueError, match="needs the template image"):
        task.run(diaSources=sources, difference=images["difference"], science=images["science"])
    # Ids survive exactly, whatever their values (large, unordered).
    odd = sources.copy()
    odd["id"] = np.arange(len(odd), dtype=np.int64)[::-1] * 7919 + (2**62 + 5)
    got = task.run(diaSources=odd, **images).classifications
    np.testing.assert_array_equal(got["id"], odd["id"])


def test_difference_only_model_needs_no_science_or_template(repo):
    """Check: difference only model needs no science or template."""
    butler = _butler(repo)
    config = _file_config(repo["diff_only"], modelChannels=["difference"])
    task = RBTransiNetTask(config=config)
    io_ids = _io_ids(butler, skip=("science", "template"))
    quantum = testUtils.makeQuantum(task, butler, DATA_ID, io_ids)
    names = {dataset_type.name for dataset_type in quantum.inputs}
    assert names == {"difference_image", "dia_source_unstandardized"}
    run = testUtils.runTestQuantum(task, butler, quantum, mockRun=True)
    assert set(run.call_args.kwargs) == {"difference", "diaSources", "model"}
    sources = butler.get("dia_source_unstandardized", DATA_ID)
    result = task.run(diaSources=sources, difference=butler.get("difference_image", DATA_ID))
    assert set(result.classifications["version"]) == {"d0.1"}
    np.testing.assert_array_equal(result.classifications["id"], sources["id"])
    # A three-plane model with a difference-only config (and the reverse) fails clearly.
    mismatched = RBTransiNetTask(config=_file_config(repo["model"], modelChannels=["difference"]))
    with pytest.raises(ValueError, match="set modelChannels to"):
        mismatched.run(diaSources=sources, difference=butler.get("difference_image", DATA_ID))
    reverse = RBTransiNetTask(config=_file_config(repo["diff_only"]))
    with pytest.raises(ValueError, match=r"reads channels \['difference'\]"):
        reverse.run(diaSources=sources, difference=butler.get("difference_image", DATA_ID))


def test_afw_output_without_afw_is_a_clear_run_time_error(repo):
    """Check: afw output without afw is a clear run time error."""
    butler = _butler(repo)
    task = RBTransiNetTask(config=_file_config(repo["model"], outputStorageClass="Catalog"))
    assert task.config.ConnectionsClass(config=task.config).classifications.storageClass == "Catalog"
    try:
        import lsst.afw.table  # noqa: F401
    except ImportError:
        with pytest.raises(RuntimeError, match="needs lsst.afw"):
            task.run(diaSources=butler.get("dia_source_unstandardized", DATA_ID),
                     difference=butler.get("difference_image", DATA_ID),
                     science=butler.get("preliminary_visit_image", DATA_ID),
                     template=butler.get("template_detector", DATA_ID))
    else:
        result = task.run(diaSources=butler.get("dia_source_unstandardized", DATA_ID),
                          difference=butler.get("difference_image", DATA_ID),
                          science=butler.get("preliminary_visit_image", DATA_ID),
                          template=butler.get("template_detector", DATA_ID))
        assert len(result.classifications) == len(butler.get("dia_source_unstandardized", DATA_ID))


def test_output_storage_classes(repo):
    """Check: output storage classes."""
    butler = _butler(repo)
    sources = butler.get("dia_source_unstandardized", DATA_ID)
    images = {"difference": butler.get("difference_image", DATA_ID),
              "science": butler.get("preliminary_visit_image", DATA_ID),
              "template": butler.get("template_detector", DATA_ID)}
    reference = RBTransiNetTask(config=_file_config(repo["model"])).run(diaSources=sources, **images)
    for storage_class in ("DataFrame", "ArrowNumpy", "ArrowTable"):
        task = RBTransiNetTask(config=_file_config(repo["model"], outputStorageClass=storage_class))
        result = task.run(diaSources=sources.to_pandas() if storage_class == "DataFrame" else sources,
                          **images)
        testUtils.assertValidOutput(task, result)
        out = result.classifications
        ids = np.asarray(out["id"]) if storage_class != "ArrowTable" else out.column("id").to_numpy()
        np.testing.assert_array_equal(ids, reference.classifications["id"])


def test_model_from_butler_collection_is_cached_by_dataset(repo):
    """Check: model from butler collection is cached by dataset."""
    from lsst.daf.butler import Quantum

    butler = _butler(repo)
    ingested = ingest_model_package(butler, repo["model"], "quantum-test", chain="test_models")
    rb_transinet.clear_task_model_cache()
    # makeQuantum only looks in one RUN; add the model's ref (in models/quantum-test) by hand.
    file_task = RBTransiNetTask(config=_file_config(repo["model"]))
    base = testUtils.makeQuantum(file_task, butler, DATA_ID, _io_ids(butler))
    inputs = {dataset_type: list(refs) for dataset_type, refs in base.inputs.items()}
    inputs[ingested.ref.datasetType] = [ingested.ref]
    quantum = Quantum(taskClass=RBTransiNetTask, dataId=base.dataId, inputs=inputs, outputs=base.outputs)
    reader = Butler.from_config(repo["root"], writeable=True, run=RUN, collections=[RUN, ingested.run])
    task = RBTransiNetTask(config=RBTransiNetConfig())
    run = testUtils.runTestQuantum(task, reader, quantum, mockRun=True)
    model = run.call_args.kwargs["model"]
    assert model.version == "t0.1"
    # A second task (pipetask builds one per quantum) reuses the same network object.
    second_task = RBTransiNetTask(config=RBTransiNetConfig())
    again = testUtils.runTestQuantum(second_task, reader, quantum, mockRun=True)
    assert again.call_args.kwargs["model"] is model
    images = {"diaSources": butler.get("dia_source_unstandardized", DATA_ID),
              "difference": butler.get("difference_image", DATA_ID),
              "science": butler.get("preliminary_visit_image", DATA_ID),
              "template": butler.get("template_detector", DATA_ID)}
    from_butler = task.run(model=model, **images).classifications
    from_file = RBTransiNetTask(config=_file_config(repo["model"])).run(**images).classifications
    # Same weights, same numbers (up to float32 rounding of torch's thread-dependent reductions).
    np.testing.assert_allclose(from_butler["score"], from_file["score"], rtol=1e-6, atol=1e-7)
