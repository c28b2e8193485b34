"""`pipetask run` of the TransiNet path side by side with differencing on a tiny simulated repo
(pipelines/SimulatedAPBothPaths.yaml), and the pipeline definitions themselves.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lsst.daf.butler import Butler
from lsst.meas.realbogus.ids import unpack_source_id
from lsst.pipe.base import Pipeline
from test_rb_task_support import DATA_ID, make_sim_only_repo

PIPELINES = Path(__file__).parents[1] / "pipelines"


def _pipetask() -> str:
    return str(Path(sys.executable).parent / "pipetask")


def test_both_paths_pipeline_has_both_paths_on_the_same_inputs():
    """SimulatedAPBothPaths has differencing and TransiNet reading the same science/template inputs."""
    pipeline = Pipeline.from_uri(str(PIPELINES / "SimulatedAPBothPaths.yaml"))
    graph = pipeline.to_graph()
    labels = set(graph.tasks)
    assert {"subtractImages", "detectDiaSources", "transiNetDetect"} <= labels
    tn = graph.tasks["transiNetDetect"]
    sub = graph.tasks["subtractImages"]
    tn_inputs = {edge.parent_dataset_type_name for edge in tn.inputs.values()}
    sub_inputs = {edge.parent_dataset_type_name for edge in sub.inputs.values()}
    assert tn_inputs == {"preliminary_visit_image", "template_detector"}
    assert tn_inputs <= sub_inputs
    outputs = {edge.parent_dataset_type_name for edge in tn.outputs.values()}
    assert {"transinet_score_image", "dia_source_transinet"} <= outputs
    assert "transinet" in pipeline.subsets


def test_transinet_pipeline_alone():
    """TransiNet.yaml: only transiNetDetect, packaged model, one thread, 5-sigma flux cut, threshold 0.85."""
    pipeline = Pipeline.from_uri(str(PIPELINES / "TransiNet.yaml"))
    assert set(pipeline.task_labels) == {"transiNetDetect"}
    config = pipeline.to_graph().tasks["transiNetDetect"].config
    assert config.modelSource == "package"
    assert config.numThreads == 1
    assert config.minFluxSnr == 5.0
    assert config.threshold == 0.85  # the flux cut's operating point (doc/transinet.rst)
    assert config.footprintLevel == 0.5 and config.trailElongation == 1.5


@pytest.mark.slow
def test_pipetask_both_paths(tmp_path):
    """Run #diffim,transinet of SimulatedAPBothPaths with pipetask and read every output back."""
    make_sim_only_repo(tmp_path / "repo", size=160)
    command = [_pipetask(), "run", "-b", str(tmp_path / "repo"), "-i", "SimCam/sim", "-o", "test/both",
               "-p", f"{PIPELINES / 'SimulatedAPBothPaths.yaml'}#diffim,transinet",
               "-c", "transiNetDetect:threshold=0.2", "--register-dataset-types"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    butler = Butler.from_config(str(tmp_path / "repo"), collections="test/both")
    science = butler.get("preliminary_visit_image", DATA_ID)
    score = butler.get("transinet_score_image", DATA_ID)
    assert score.bbox == science.bbox
    assert np.isfinite(score.array).all()
    catalog = butler.get("dia_source_transinet", DATA_ID)
    classic = butler.get("dia_source_unstandardized", DATA_ID)
    assert len(classic) > 0
    assert "peak_score" in catalog.colnames and "flux" in catalog.colnames
    assert np.all(catalog["peak_score"] >= 0.2)
    visit, detector, _ = unpack_source_id(np.asarray(catalog["id"]))
    assert np.all(visit == DATA_ID["visit"]) and np.all(detector == DATA_ID["detector"])
    # The two paths' ids are made from the same (visit, detector) but are separate catalogues.
    assert len(np.unique(catalog["id"])) == len(catalog)
    log = butler.get("transiNetDetect_log", DATA_ID)
    assert any("TransiNet" in record.message for record in log)
