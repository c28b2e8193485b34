"""End-to-end `pipetask run` of pipelines/SimulatedAP.yaml on a tiny simulated repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from lsst.daf.butler import Butler, CollectionType
from lsst.meas.realbogus.butler import repo
from lsst.meas.realbogus.cli import demo, make_sim_repo
from lsst.meas.realbogus.simulation import small_test_config
from lsst.pipe.base import Pipeline

PIPELINE = Path(__file__).parents[1] / "pipelines" / "SimulatedAP.yaml"
RESOURCE = "resource://lsst.meas.realbogus/pipelines/SimulatedAP.yaml"
OUTPUTS = (
    "difference_image",
    "dia_source_unstandardized",
    "dia_source_truth_match",
    "dia_source_reliability",
    "dia_source_high_reliability",
    "dia_source_low_reliability",
)


@pytest.fixture(scope="module")
def sim_repo(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("pipeline_repo")
    butler = repo.create_sim_repo(root, n_detectors=1)
    # seed 4: two simulated transients, both detected (the reliability summary needs both classes).
    repo.ingest_simulated_visits(butler, small_test_config(160), [4], [0], seed=4)
    return str(root)


def test_pipeline_resolves_as_package_resource():
    by_path = Pipeline.from_uri(str(PIPELINE)).to_graph()
    by_resource = Pipeline.from_uri(RESOURCE).to_graph()
    assert list(by_path.tasks) == [
        "subtractImages", "detectDiaSources", "matchTruth", "rbTransiNet", "filterReliability"
    ]
    assert list(by_resource.tasks) == list(by_path.tasks)
    diffim = Pipeline.from_uri(f"{RESOURCE}#diffim").to_graph()
    assert list(diffim.tasks) == ["subtractImages", "detectDiaSources"]
    assert set(by_path.dataset_types) >= {
        "preliminary_visit_image",
        "template_detector",
        "truth_transients",
        *OUTPUTS,
    }


def _check_outputs(root: str, output: str) -> None:
    butler = Butler.from_config(root, collections=[output])
    for name in OUTPUTS:
        refs = butler.query_datasets(name, collections=output, explain=False)
        assert [(r.dataId["visit"], r.dataId["detector"]) for r in refs] == [(4, 0)], name
    sources = butler.get("dia_source_unstandardized", visit=4, detector=0, instrument="SimCam")
    matches = butler.get("dia_source_truth_match", visit=4, detector=0, instrument="SimCam")
    np.testing.assert_array_equal(sources["id"], matches["id"])


@pytest.mark.slow
def test_pipetask_run_serial_and_parallel(sim_repo):
    demo.run_pipetask(sim_repo, str(PIPELINE), "test/serial", processes=1)
    _check_outputs(sim_repo, "test/serial")
    demo.run_pipetask(sim_repo, RESOURCE, "test/parallel", processes=2)
    _check_outputs(sim_repo, "test/parallel")
    butler = Butler.from_config(sim_repo)
    serial = butler.get(
        "dia_source_unstandardized", visit=4, detector=0, instrument="SimCam", collections="test/serial"
    )
    parallel = butler.get(
        "dia_source_unstandardized", visit=4, detector=0, instrument="SimCam", collections="test/parallel"
    )
    np.testing.assert_array_equal(serial["psf_flux"], parallel["psf_flux"])
    summary = demo.summarize_outputs(sim_repo, "test/serial")
    assert summary["visits"] == [4] and summary["detectors"] == [0]
    assert summary["n_dia_sources"] == summary["n_positive"] + summary["n_negative"] > 0
    assert 0 <= summary["n_transients_detected"] <= summary["n_transients"]
    assert summary["n_real"] <= summary["n_dia_sources"]
    # The pipeline scores every diaSource with the packaged default model.
    scored = summary["reliability"]
    assert 0.0 <= scored["bogus_median"] <= 1.0 and 0.0 <= scored["real_median"] <= 1.0

    # With a (fake) reliability catalogue in the output chain the summary scores it.
    writer = Butler.from_config(sim_repo, writeable=True)
    repo.register_dataset_types(writer, ["dia_source_reliability"])
    writer.registry.registerRun("test/fake_rb")
    matches = writer.get(
        "dia_source_truth_match", visit=4, detector=0, instrument="SimCam", collections="test/serial"
    )
    real = np.asarray(matches["is_real"])
    assert real.any() and (~real).any(), "the tiny simulation should give real and bogus diaSources"
    fake = Table(
        {"id": matches["id"], "score": np.where(real, 0.9, 0.2), "threshold": np.full(len(real), 0.5)}
    )
    writer.put(fake, "dia_source_reliability", visit=4, detector=0, instrument="SimCam", run="test/fake_rb")
    writer.registry.registerCollection("test/fake_chain", CollectionType.CHAINED)
    writer.registry.setCollectionChain("test/fake_chain", ["test/fake_rb", "test/serial"])
    reliability = demo.summarize_outputs(sim_repo, "test/fake_chain")["reliability"]
    assert reliability["real_median"] == pytest.approx(0.9) and reliability["bogus_median"] == pytest.approx(
        0.2
    )
    assert reliability["completeness"] == 1.0 and reliability["purity"] == 1.0
    assert reliability["roc_auc"] == 1.0


@pytest.mark.slow
def test_pipetask_failure_is_reported(sim_repo, tmp_path):
    with pytest.raises(RuntimeError, match="pipetask failed"):
        demo.run_pipetask(sim_repo, str(tmp_path / "missing.yaml"), "test/bad", processes=1)


def test_make_sim_repo_cli(tmp_path):
    root = tmp_path / "cli_repo"
    argv = [str(root), "--visits", "1", "--detectors", "1", "--size", "96", "--seed", "1"]
    assert make_sim_repo.main(argv) == 0
    butler = Butler.from_config(str(root))
    refs = butler.query_datasets("truth_transients", collections="SimCam/sim", explain=False)
    assert [(r.dataId["visit"], r.dataId["detector"]) for r in refs] == [(1, 0)]
    with pytest.raises(FileExistsError, match="already holds"):
        make_sim_repo.main(argv)
    with pytest.raises(SystemExit, match="--size"):
        make_sim_repo.main([str(tmp_path / "other"), "--size", "8"])
