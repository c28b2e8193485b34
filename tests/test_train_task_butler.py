"""RealBogusTrainTask: pipetask training on a tiny simulated repo, inference with the registered
model by collection, runQuantum through testUtils, resume from a checkpoint, bad inputs.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch
from lsst.daf.butler import Butler
from lsst.meas.realbogus.butler import repo
from lsst.meas.realbogus.candidates import ALERT_CHANNELS
from lsst.meas.realbogus.cli import demo
from lsst.meas.realbogus.simulation import small_test_config
from lsst.meas.realbogus.stamp_dataset import IndexedStampSource, StampStore
from lsst.meas.realbogus.tasks.train_realbogus import (
    PLOT_NAMES,
    RealBogusTrainConfig,
    RealBogusTrainTask,
)
from lsst.pex.config import FieldValidationError
from lsst.pipe.base import NoWorkFound, Pipeline
from lsst.pipe.base.testUtils import assertValidOutput, makeQuantum, runTestQuantum

PIPELINE = Path(__file__).parents[1] / "pipelines" / "TrainRealBogus.yaml"
RESOURCE = "resource://lsst.meas.realbogus/pipelines/TrainRealBogus.yaml"
VISITS = [1, 2, 3, 4, 5, 6]
TRAIN_OUTPUT = "test/train"
INPUT_NAMES = {
    "difference_images": "difference_image",
    "science_images": "preliminary_visit_image",
    "templates": "template_detector",
    "dia_sources": "dia_source_unstandardized",
    "truths": "truth_transients",
}
SMALL = {"epochs": 2, "batch_size": 16, "cutout_size": 31, "split_fractions": [0.5, 0.25, 0.25]}


def _small_config(**overrides) -> RealBogusTrainConfig:
    config = RealBogusTrainConfig()
    for key, value in {**SMALL, **overrides}.items():
        setattr(config, key, value)
    return config


@pytest.fixture(scope="module")
def trained_repo(tmp_path_factory) -> str:
    """Build a 6-visit 256x256 SimCam repo and run TrainRealBogus.yaml on it into test/train."""
    root = tmp_path_factory.mktemp("train_repo")
    butler = repo.create_sim_repo(root, n_detectors=1)
    repo.ingest_simulated_visits(butler, small_test_config(256), VISITS, [0], seed=1)
    settings = {**SMALL, "split_fractions": "[0.5,0.25,0.25]", "version": "t1"}
    overrides = [arg for k, v in settings.items() for arg in ("-c", f"trainRealBogus:{k}={v}")]
    demo.run_pipetask(str(root), str(PIPELINE), TRAIN_OUTPUT, extra=overrides)
    return str(root)


def _handles(butler: Butler) -> dict[str, list]:
    out = {}
    for arg, name in INPUT_NAMES.items():
        refs = sorted(
            butler.query_datasets(name, collections=TRAIN_OUTPUT, explain=False),
            key=lambda r: (r.dataId["visit"], r.dataId["detector"]),
        )
        out[arg] = [butler.getDeferred(r) for r in refs]
    return out


def test_pipeline_graph():
    """The pipeline imports the simulated AP steps and declares the training outputs."""
    graph = Pipeline.from_uri(RESOURCE).to_graph()
    assert list(graph.tasks) == ["subtractImages", "detectDiaSources", "matchTruth", "trainRealBogus"]
    training = Pipeline.from_uri(f"{RESOURCE}#training").to_graph()
    assert list(training.tasks) == ["trainRealBogus"]
    config = graph.tasks["trainRealBogus"].config
    assert config.match_radius_arcsec == graph.tasks["matchTruth"].config.match_radius_arcsec == 0.5
    connections = config.ConnectionsClass(config=config)
    assert connections.model.name == "realbogus_model" and tuple(connections.model.dimensions) == ()
    assert connections.model.storageClass == "RealBogusModelPackage"
    assert connections.train_metrics.storageClass == "StructuredDataDict"
    for name in PLOT_NAMES:
        plot = getattr(connections, f"plot_{name}")
        assert (plot.name, plot.storageClass) == (f"realbogus_plot_{name}", "Plot")
    for name in INPUT_NAMES:
        assert getattr(connections, name).multiple and getattr(connections, name).deferLoad


@pytest.mark.slow
def test_pipetask_registers_model_metrics_and_plots(trained_repo):
    """Running pipetask registers a model found by collection, test-visit metrics and PNG plots."""
    butler = Butler.from_config(trained_repo, collections=[TRAIN_OUTPUT])
    package = butler.get("realbogus_model")  # no data ID: found by collection
    assert package.metadata.version == "t1"
    assert package.metadata.cutout_size == 31
    assert 0.0 <= package.metadata.threshold <= 1.0
    metrics = butler.get("realbogus_train_metrics")
    splits = metrics["splits"]
    visit_sets = [set(splits[s]["visits"]) for s in ("train", "validation", "test")]
    assert all(visit_sets) and not (
        visit_sets[0] & visit_sets[1] or visit_sets[0] & visit_sets[2] or visit_sets[1] & visit_sets[2]
    )
    assert set().union(*visit_sets) <= set(VISITS)
    evaluated = metrics["evaluated_on"]
    assert evaluated in ("test", "validation")
    summary = metrics["summary"]
    assert summary["n"] == splits[evaluated]["n"] and summary["n_real"] == splits[evaluated]["n_real"]
    assert 0.0 <= summary["auc"] <= 1.0 and 0.0 <= summary["ece"] <= 1.0
    assert summary["threshold"] == pytest.approx(package.metadata.threshold)
    assert {"completeness_vs_snr", "per_type", "reliability"} <= set(summary)
    roc = metrics["roc"]
    assert len(roc["fpr"]) == len(roc["tpr"]) >= 2 and roc["tpr"][-1] == 1.0
    assert len(metrics["precision_recall"]["precision"]) == len(metrics["precision_recall"]["recall"])
    assert len(metrics["purity_completeness"]["purity"]) >= 1
    assert [h["epoch"] for h in metrics["history"]] == [0, 1]
    for name in PLOT_NAMES:
        uri = butler.getURI(f"realbogus_plot_{name}")
        image = matplotlib.image.imread(uri.ospath)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100, name
    log = butler.get("trainRealBogus_log")
    messages = [record.message for record in log]
    assert any(m.startswith("Gathered visit") for m in messages)
    assert any(m.startswith("Epoch 1:") for m in messages)


@pytest.mark.slow
def test_rb_transinet_uses_registered_model(trained_repo, tmp_path):
    """Inference run with -i <training output> scores with the newly registered model."""
    pipeline = tmp_path / "score.yaml"
    pipeline.write_text(
        "description: score with the model found by collection\n"
        "instrument: lsst.meas.realbogus.butler.instrument.SimCam\n"
        "tasks:\n"
        "  rbTransiNet:\n"
        "    class: lsst.meas.realbogus.tasks.rb_transinet.RBTransiNetTask\n"
        "    config:\n"
        "      modelSource: butler\n"
    )
    demo.run_pipetask(trained_repo, str(pipeline), "test/scores", inputs=TRAIN_OUTPUT)
    butler = Butler.from_config(trained_repo, collections=["test/scores"])
    package = butler.get("realbogus_model")
    refs = butler.query_datasets("dia_source_reliability", explain=False)
    assert sorted(r.dataId["visit"] for r in refs) == VISITS
    for ref in refs:
        scores = butler.get(ref)
        sources = butler.get("dia_source_unstandardized", dataId=ref.dataId)
        np.testing.assert_array_equal(scores["id"], sources["id"])
        if len(scores):
            assert set(scores["version"].astype(str)) == {"t1"}
            np.testing.assert_allclose(scores["threshold"], package.metadata.threshold)
            assert np.all((scores["score"] >= 0) & (scores["score"] <= 1))


@pytest.mark.slow
def test_run_quantum_pairs_inputs_by_data_id(trained_repo):
    """The runQuantum method pairs the five inputs by data ID and drops incomplete pairs."""
    # testUtils finds every input in the Butler's run: copy the inputs into one.
    butler = Butler.from_config(trained_repo, collections=[TRAIN_OUTPUT], run="test/quantum", writeable=True)
    visits = VISITS[:3]
    for name in INPUT_NAMES.values():
        for ref in butler.query_datasets(name, explain=False):
            if ref.dataId["visit"] in visits:
                butler.put(butler.get(ref), ref.datasetType, ref.dataId)
    task = RealBogusTrainTask(config=_small_config())
    data_ids = [{"instrument": "SimCam", "visit": v, "detector": 0} for v in visits]
    io = {name: data_ids for name in INPUT_NAMES}
    io.update({"model": {}, "train_metrics": {}, **{f"plot_{n}": {} for n in PLOT_NAMES}})
    # Drop one truth table: that (visit, detector) must be left out of every input list.
    io["truths"] = data_ids[1:]
    quantum = makeQuantum(task, butler, {"instrument": "SimCam"}, io)
    run = runTestQuantum(task, butler, quantum, mockRun=True)
    run.assert_called_once()
    kwargs = run.call_args.kwargs
    assert set(kwargs) == set(INPUT_NAMES)
    for name in INPUT_NAMES:
        assert [h.dataId["visit"] for h in kwargs[name]] == visits[1:], name


def test_no_plots_config_removes_plot_outputs():
    """do_plots=False removes the plot outputs."""
    config = _small_config(do_plots=False)
    connections = config.ConnectionsClass(config=config)
    assert set(connections.outputs) == {"model", "train_metrics"}


def test_occlusion_setting_reaches_the_training_loop():
    """occlusion_probability is passed to TrainingConfig; values outside [0, 1] are refused."""
    assert _small_config().make_training_config().occlusion_probability == 0.0
    assert _small_config(occlusion_probability=0.3).make_training_config().occlusion_probability == 0.3
    with pytest.raises(FieldValidationError):
        _small_config(occlusion_probability=1.5).validate()


def _interrupted_then_resumed(butler: Butler, config: RealBogusTrainConfig, stop_after: int):
    handles = _handles(butler)
    first = RealBogusTrainTask(config=config)
    catalogs = [h.get() for h in handles["dia_sources"]]
    store_dir = Path(config.checkpoint_dir).parent / "store"
    writer = StampStore.create(store_dir, sum(len(c) for c in catalogs), ALERT_CHANNELS, config.cutout_size)
    first.gather(
        writer,
        handles["difference_images"],
        handles["science_images"],
        handles["templates"],
        catalogs,
        handles["truths"],
    )
    store = StampStore.open(store_dir)
    train, val, _ = first.split(store.groups)
    first.train(IndexedStampSource(store, train), IndexedStampSource(store, val), stop_after_epoch=stop_after)
    # A fresh task (as after a restart) resumes from the checkpoint.
    return RealBogusTrainTask(config=config).run(**handles)


@pytest.mark.slow
def test_resume_after_interruption_matches_uninterrupted(trained_repo, tmp_path):
    """Training stopped after one epoch and resumed equals an uninterrupted run bit for bit."""
    butler = Butler.from_config(trained_repo, collections=[TRAIN_OUTPUT])
    config = _small_config(epochs=3, patience=10, do_plots=False)
    # Uninterrupted, on in-memory datasets (not handles).
    in_memory = {k: [h.get() for h in v] for k, v in _handles(butler).items()}
    full = RealBogusTrainTask(config=config).run(**in_memory)
    assertValidOutput(RealBogusTrainTask(config=config), full)
    resumed_config = _small_config(
        epochs=3, patience=10, do_plots=False, checkpoint_dir=str(tmp_path / "ckpt")
    )
    resumed = _interrupted_then_resumed(butler, resumed_config, stop_after=1)
    assert [h["epoch"] for h in full.history] == [h["epoch"] for h in resumed.history] == [0, 1, 2]
    for a, b in zip(full.history, resumed.history, strict=True):
        assert a["train_loss"] == b["train_loss"] and a["val_loss"] == b["val_loss"]
    state_a, state_b = full.model.state_dict, resumed.model.state_dict
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key
    assert full.model.metadata.threshold == resumed.model.metadata.threshold
    assert full.train_metrics["summary"]["auc"] == resumed.train_metrics["summary"]["auc"]


@pytest.mark.slow
def test_bad_inputs_are_reported(trained_repo):
    """Mismatched, empty and too few inputs and bad configs raise clear errors."""
    butler = Butler.from_config(trained_repo, collections=[TRAIN_OUTPUT])
    handles = _handles(butler)
    task = RealBogusTrainTask(config=_small_config())
    with pytest.raises(ValueError, match="one entry per"):
        task.run(**{**handles, "truths": handles["truths"][:-1]})
    with pytest.raises(NoWorkFound):
        task.run(**{k: [] for k in handles})
    empty = handles["dia_sources"][0].get()[:0]
    with pytest.raises(NoWorkFound, match="empty"):
        task.run(**{**{k: v[:1] for k, v in handles.items()}, "dia_sources": [empty]})
    with pytest.raises(ValueError, match="at least 3 visits"):
        task.run(**{k: v[:2] for k, v in handles.items()})
    config = RealBogusTrainConfig()
    with pytest.raises(FieldValidationError, match="version"):
        config.version = "too-long-version"
    with pytest.raises(FieldValidationError, match="architecture_kwargs"):
        config.architecture_kwargs = "[1, 2]"
    config.split_fractions = [0.0, 0.5, 0.5]
    with pytest.raises(ValueError, match="train and validation"):
        config.validate()
