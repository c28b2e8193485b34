"""Pipeline YAML of the reliability step: RealBogus.yaml alone and inside SimulatedAP.yaml."""

from __future__ import annotations

from pathlib import Path

from lsst.meas.realbogus.tasks import FilterDiaSourceReliabilityTask, RBTransiNetTask
from lsst.pipe.base import Pipeline

PIPELINES = Path(__file__).parents[1] / "pipelines"


def test_realbogus_yaml_alone():
    """RealBogus.yaml holds rbTransiNet only, model from the Butler, by path and as a resource."""
    for uri in (str(PIPELINES / "RealBogus.yaml"), "resource://lsst.meas.realbogus/pipelines/RealBogus.yaml"):
        graph = Pipeline.from_uri(uri).to_graph()
        graph.resolve()
        assert list(graph.tasks) == ["rbTransiNet"]
        node = graph.tasks["rbTransiNet"]
        assert node.task_class is RBTransiNetTask and node.config.modelSource == "butler"
        assert {e.parent_dataset_type_name for e in node.inputs.values()} == {
            "preliminary_visit_image", "template_detector", "difference_image", "dia_source_unstandardized"}
        assert graph.dataset_types["realbogus_model"].storage_class_name == "RealBogusModelPackage"


def test_simulated_ap_chain():
    """SimulatedAP.yaml: subtractImages -> detectDiaSources -> rbTransiNet -> filterReliability (+ truth)."""
    graph = Pipeline.from_uri(str(PIPELINES / "SimulatedAP.yaml")).to_graph()
    graph.resolve()
    assert {"subtractImages", "detectDiaSources", "rbTransiNet", "filterReliability", "matchTruth"} <= set(
        graph.tasks)
    assert graph.producer_of("dia_source_unstandardized").label == "detectDiaSources"
    assert graph.producer_of("dia_source_reliability").label == "rbTransiNet"
    assert graph.tasks["filterReliability"].task_class is FilterDiaSourceReliabilityTask
    for name in ("dia_source_high_reliability", "dia_source_low_reliability"):
        assert graph.producer_of(name).label == "filterReliability"
    reliability = Pipeline.from_uri(f"{PIPELINES / 'SimulatedAP.yaml'}#reliability").to_graph()
    assert set(reliability.tasks) == {"rbTransiNet", "filterReliability"}
    # A difference-only model drops the science and template inputs from the graph.
    pipeline = Pipeline.from_uri(str(PIPELINES / "SimulatedAP.yaml"))
    pipeline.addConfigOverride("rbTransiNet", "modelChannels", ["difference"])
    node = pipeline.to_graph().tasks["rbTransiNet"]
    assert {e.parent_dataset_type_name for e in node.inputs.values()} == {
        "difference_image", "dia_source_unstandardized"}
