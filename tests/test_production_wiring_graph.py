"""pipelines/production/ApPipeWithRealBogus.yaml builds a pipeline graph with the production labels
and dataset type names, against a stand-in ap_pipe made of pipe_base mock tasks.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from lsst.meas.realbogus.tasks.rb_transinet import RBTransiNetTask
from lsst.pipe.base import Pipeline

PRODUCTION = Path(__file__).parents[1] / "pipelines" / "production" / "ApPipeWithRealBogus.yaml"
RESOURCE = "resource://lsst.meas.realbogus/pipelines/production/ApPipeWithRealBogus.yaml"
VISIT = '["instrument", "visit", "detector"]'


def _mock_task(label: str, inputs: dict[str, tuple[str, str]], outputs: dict[str, tuple[str, str]]) -> str:
    """Return YAML of a DynamicTestPipelineTask with the given {connection: (dataset type, storage class)}."""
    lines = ["from lsst.pipe.base.tests.mocks import DynamicConnectionConfig as C",
             f"config.dimensions = {VISIT}"]
    for kind, connections in (("inputs", inputs), ("outputs", outputs)):
        for name, (dataset_type, storage_class) in connections.items():
            lines.append(f'config.{kind}["{name}"] = C(dataset_type_name="{dataset_type}", '
                         f'storage_class="{storage_class}", dimensions={VISIT}, mock_storage_class=False)')
    body = textwrap.indent("\n".join(lines), " " * 8)
    return (f"  {label}:\n    class: lsst.pipe.base.tests.mocks.DynamicTestPipelineTask\n"
            f"    config:\n      python: |\n{body}\n")


def _contract(a: str, a_conn: str, b: str, b_conn: str) -> str:
    """Return YAML of an ApPipe-style contract equating two connection dataset type names."""
    return (f"  - contract: {a}.connections.ConnectionsClass(config={a}).{a_conn}.name ==\n"
            f"              {b}.connections.ConnectionsClass(config={b}).{b_conn}.name\n"
            f'    msg: "{a}.{a_conn} != {b}.{b_conn}"\n')


def _write_stand_in_ap_pipe(root: Path) -> None:
    """Write a stand-in for $AP_PIPE_DIR/pipelines/_ingredients/ApPipe.yaml: production labels, dataset
    types and storage classes, mock tasks, meas_transiNet at computeReliability, ApPipe-style
    contracts and subsets.
    """
    tasks = "".join([
        _mock_task("calibrateImage", {}, {"exposure": ("preliminary_visit_image", "VisitImage")}),
        _mock_task("retrieveTemplate", {}, {"template": ("template_detector", "VisitImage")}),
        _mock_task("subtractImages",
                   {"science": ("preliminary_visit_image", "VisitImage"),
                    "template": ("template_detector", "VisitImage")},
                   {"difference": ("difference_image_predetection", "DifferenceImage")}),
        _mock_task("detectAndMeasure",
                   {"difference": ("difference_image_predetection", "DifferenceImage")},
                   {"subtractedMeasuredExposure": ("difference_image", "DifferenceImage"),
                    "diaSources": ("dia_source_unfiltered", "SourceCatalog")}),
        _mock_task("filterDiaSrcCat", {"diaSourceCat": ("dia_source_unfiltered", "SourceCatalog")},
                   {"filteredDiaSourceCat": ("dia_source_unstandardized", "SourceCatalog")}),
        # What ap_pipe has today (never imported here: the label is redefined with our class).
        "  computeReliability:\n    class: lsst.meas.transiNet.RBTransiNetTask\n"
        "    config:\n      modelPackageStorageMode: butler\n",
        _mock_task("filterDiaSourcePostReliability",
                   {"diaSourceCat": ("dia_source_unstandardized", "SourceCatalog"),
                    "reliability": ("dia_source_reliability", "Catalog")},
                   {"filteredDiaSources": ("dia_source_high_reliability", "SourceCatalog"),
                    "rejectedDiaSources": ("dia_source_low_reliability", "SourceCatalog")}),
        _mock_task("standardizeDiaSource",
                   {"diaSourceCat": ("dia_source_high_reliability", "SourceCatalog"),
                    "diffIm": ("difference_image", "DifferenceImage")},
                   {"diaSourceTable": ("dia_source_detector", "ArrowAstropy")}),
    ])
    contracts = "".join([
        _contract("calibrateImage", "exposure", "computeReliability", "science"),
        _contract("retrieveTemplate", "template", "computeReliability", "template"),
        _contract("detectAndMeasure", "subtractedMeasuredExposure", "computeReliability", "difference"),
        _contract("filterDiaSrcCat", "filteredDiaSourceCat", "computeReliability", "diaSources"),
        _contract("computeReliability", "classifications", "filterDiaSourcePostReliability", "reliability"),
    ])
    subsets = textwrap.dedent("""\
        subsets:
          prompt:
            subset: [calibrateImage, retrieveTemplate, subtractImages, detectAndMeasure, filterDiaSrcCat,
                     computeReliability, filterDiaSourcePostReliability, standardizeDiaSource]
            description: Stand-in for ApPipe's prompt subset.
        """)
    path = root / "pipelines" / "_ingredients" / "ApPipe.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("description: stand-in ApPipe\ntasks:\n" + tasks + subsets + "contracts:\n" + contracts)


@pytest.fixture
def ap_pipe_dir(tmp_path, monkeypatch) -> Path:
    """Point ``AP_PIPE_DIR`` at a stand-in ap_pipe."""
    _write_stand_in_ap_pipe(tmp_path)
    monkeypatch.setenv("AP_PIPE_DIR", str(tmp_path))
    return tmp_path


def test_production_pipeline_replaces_compute_reliability(ap_pipe_dir):
    """Check: production pipeline replaces compute reliability."""
    pipeline = Pipeline.from_uri(str(PRODUCTION))
    graph = pipeline.to_graph()
    graph.resolve()
    node = graph.tasks["computeReliability"]
    assert node.task_class is RBTransiNetTask
    assert node.config.modelSource == "butler" and node.config.catalogStorageClass == "SourceCatalog"
    assert (node.config.xColumn, node.config.yColumn) == ("slot_Centroid_x", "slot_Centroid_y")
    inputs = {edge.connection_name: edge.parent_dataset_type_name for edge in node.inputs.values()}
    assert inputs == {"science": "preliminary_visit_image", "template": "template_detector",
                      "difference": "difference_image", "diaSources": "dia_source_unstandardized"}
    assert {e.parent_dataset_type_name for e in node.prerequisite_inputs.values()} == {"realbogus_model"}
    assert [e.parent_dataset_type_name for e in node.outputs.values()] == ["dia_source_reliability"]
    # Wired between the production neighbours.
    assert graph.producer_of("dia_source_unstandardized").label == "filterDiaSrcCat"
    consumers = [n.label for n in graph.consumers_of("dia_source_reliability")]
    assert consumers == ["filterDiaSourcePostReliability"]
    assert graph.dataset_types["dia_source_reliability"].storage_class_name == "Catalog"
    assert graph.dataset_types["realbogus_model"].dimensions.names == set()
    prompt = Pipeline.from_uri(f"{PRODUCTION}#prompt").to_graph()
    assert "computeReliability" in prompt.tasks
    assert prompt.tasks["computeReliability"].task_class is RBTransiNetTask
    # The packaged copy is the same file.
    assert list(Pipeline.from_uri(RESOURCE).to_graph().tasks) == list(graph.tasks)


def test_contracts_catch_a_miswired_reliability_step(ap_pipe_dir, tmp_path):
    """Check: contracts catch a miswired reliability step."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        f"description: miswired\nimports:\n  - location: {PRODUCTION}\n"
        "tasks:\n  computeReliability:\n    class: lsst.meas.realbogus.tasks.rb_transinet.RBTransiNetTask\n"
        "    config:\n      connections.diaSources: dia_source_unfiltered\n"
    )
    message = "filterDiaSrcCat.filteredDiaSourceCat != computeReliability.diaSources"
    with pytest.raises(Exception, match=message):
        Pipeline.from_uri(str(broken)).to_graph()
