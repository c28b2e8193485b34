"""`pipetask run` of differencing -> detection -> reliability on a tiny simulated repository,
with the model found in the Butler by collection after `realbogus-ingest-model`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lsst.daf.butler import Butler
from lsst.meas.realbogus.cli import ingest_model
from test_rb_task_support import DATA_ID, make_model_file, make_sim_only_repo

PIPELINES = Path(__file__).parents[1] / "pipelines"
OUTPUTS = ("difference_image", "dia_source_unstandardized", "dia_source_reliability",
           "dia_source_high_reliability", "dia_source_low_reliability")
BUTLER_MODEL = ("-c", "rbTransiNet:modelSource=butler")


def _pipetask() -> str:
    """Return the ``pipetask`` script of this interpreter."""
    return str(Path(sys.executable).parent / "pipetask")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Build a tiny simulated repo with one ingested model and a diffim + reliability pipeline."""
    root = tmp_path_factory.mktemp("rb_pipetask")
    make_sim_only_repo(root / "repo")
    model = make_model_file(root / "model.safetensors", version="p0.1", threshold=0.45)
    assert ingest_model.main([str(root / "repo"), str(model), "--name", "pipetask-test"]) == 0
    # Differencing, detection, reliability and the high/low split of the simulated AP pipeline,
    # with the model taken from the Butler by collection.
    pipeline = f"{PIPELINES / 'SimulatedAP.yaml'}#diffim,reliability"
    return {"repo": str(root / "repo"), "pipeline": pipeline, "model": model}


def _run(setup, output: str, *extra: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run pipetask on the fixture repo; raise with its output on failure if ``check``."""
    command = [_pipetask(), "--long-log", "run", "-b", setup["repo"], "-i", "SimCam/sim,pretrained_models",
               "-o", output, "-p", setup["pipeline"], *BUTLER_MODEL, "--register-dataset-types", *extra]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(
            f"pipetask failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
        )
    return result


def _reliability(repo: str, collection: str):
    """Return the diaSources and reliabilities of the one data ID in ``collection``."""
    butler = Butler.from_config(repo)
    sources = butler.get("dia_source_unstandardized", DATA_ID, collections=collection)
    reliability = butler.get("dia_source_reliability", DATA_ID, collections=collection)
    return sources, reliability


@pytest.mark.slow
def test_pipetask_serial_parallel_and_rerun(setup):
    """Check: pipetask serial parallel and rerun."""
    _run(setup, "test/serial", "-j", "1")
    sources, serial = _reliability(setup["repo"], "test/serial")
    assert len(sources) > 0
    np.testing.assert_array_equal(serial["id"], sources["id"])
    assert set(serial["version"]) == {"p0.1"}
    assert np.all(serial["threshold"] == np.float32(0.45))

    butler = Butler.from_config(setup["repo"])
    high = butler.get("dia_source_high_reliability", DATA_ID, collections="test/serial")
    low = butler.get("dia_source_low_reliability", DATA_ID, collections="test/serial")
    assert sorted([*high["id"], *low["id"]]) == sorted(sources["id"])
    assert np.all(high["reliability"] >= np.float32(0.45))

    _run(setup, "test/parallel", "-j", "2")
    _, parallel = _reliability(setup["repo"], "test/parallel")
    np.testing.assert_array_equal(parallel["id"], serial["id"])
    np.testing.assert_array_equal(parallel["score"], serial["score"])

    # Re-running into the same output with --skip-existing-in: every quantum already succeeded,
    # so pipe_base drops them all and pipetask stops on the empty graph; nothing is rewritten and
    # nothing is lost.
    butler = Butler.from_config(setup["repo"])
    before = {name: sorted(str(r.id) for r in butler.query_datasets(name, collections="test/serial",
                                                                    explain=False))
              for name in OUTPUTS}
    again = _run(setup, "test/serial", "--skip-existing-in", "test/serial", check=False)
    log = again.stdout + again.stderr
    assert "previously succeeded and skipped" in log and "QuantumGraph contains no quanta" in log, log[-3000:]
    butler = Butler.from_config(setup["repo"])
    after = {name: sorted(str(r.id) for r in butler.query_datasets(name, collections="test/serial",
                                                                   explain=False))
             for name in OUTPUTS}
    assert after == before
    _, kept = _reliability(setup["repo"], "test/serial")
    np.testing.assert_array_equal(kept["score"], serial["score"])


def test_missing_model_fails_graph_building_clearly(setup):
    """Check: missing model fails graph building clearly."""
    result = subprocess.run(
        [_pipetask(), "run", "-b", setup["repo"], "-i", "SimCam/sim", "-o", "test/no_model",
         "-p", setup["pipeline"], *BUTLER_MODEL, "--register-dataset-types"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode != 0
    assert "realbogus_model" in result.stdout + result.stderr
