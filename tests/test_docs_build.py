"""The Sphinx documentation builds without warnings, and its build-time generators work.

The full build (``sphinx-build -W -n``, the documented command) is marked ``slow``: it imports
every documented module and takes about 20 s of CPU (close to a minute of wall time on a busy
2-core machine).  The generator tests render a model card of a synthetic classifier package
(every metric section) and the benchmark tables with docutils alone, in a few seconds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "doc"

pytest.importorskip("sphinx")
pytest.importorskip("numpydoc")
pytest.importorskip("sphinx_automodapi")


def _load_ext():
    sys.path.insert(0, str(DOC / "_ext"))
    try:
        import realbogus_docs
    finally:
        sys.path.remove(str(DOC / "_ext"))
    return realbogus_docs


def _parse_rst(lines: list[str]) -> str:
    """Parse rst with docutils, returning the warnings it reports (empty if none)."""
    import io

    from docutils.core import publish_doctree

    stream = io.StringIO()
    publish_doctree(
        "\n".join(lines),
        settings_overrides={"warning_stream": stream, "report_level": 2, "halt_level": 5},
    )
    return stream.getvalue()


@pytest.mark.slow
def test_docs_build_without_warnings(tmp_path: Path) -> None:
    """``sphinx-build -W -n --keep-going -b html doc <tmp>`` succeeds."""
    cmd = [
        sys.executable,
        "-m",
        "sphinx",
        "-W",
        "-n",
        "--keep-going",
        "-q",
        "-b",
        "html",
        "-d",
        str(tmp_path / "doctrees"),
        str(DOC),
        str(tmp_path / "html"),
    ]
    start = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - start
    assert proc.returncode == 0, f"sphinx-build failed ({elapsed:.0f} s):\n{proc.stdout}\n{proc.stderr}"
    html = tmp_path / "html"
    assert (html / "index.html").is_file()
    assert (html / "lsst.meas.realbogus" / "tasks" / "RBTransiNetTask.html").is_file()
    # The task tables are generated from the classes.
    page = (html / "lsst.meas.realbogus" / "tasks" / "RBTransiNetTask.html").read_text()
    assert "realbogus_model" in page and "modelSource" in page
    # One model card per shipped package.
    data = REPO / "python" / "lsst" / "meas" / "realbogus" / "data"
    for package in data.glob("*.safetensors"):
        card = html / "lsst.meas.realbogus" / "models" / "generated" / f"{package.stem}.html"
        assert card.is_file(), card


def _classifier_package(path: Path) -> Path:
    import torch
    from lsst.meas.realbogus import metrics
    from lsst.meas.realbogus.architectures import build_architecture
    from lsst.meas.realbogus.model_package import ModelMetadata, save_model_package

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 400)
    scores = np.clip(0.6 * labels + 0.5 * rng.random(400), 0, 1)
    snr = rng.uniform(5, 60, 400)
    types = np.where(labels == 1, "hostless", rng.choice(["cosmic_ray", "hot_pixel"], 400))
    summary = metrics.summarize(scores, labels, snr=snr, types=types)
    torch.manual_seed(0)
    network = build_architecture("rb3_cnn", in_channels=4)
    metadata = ModelMetadata(
        architecture="rb3_cnn",
        architecture_kwargs={"in_channels": 4},
        channels=["science", "template", "difference"],
        cutout_size=51,
        version="test1",
        threshold=float(summary["threshold"]),
        threshold_purity=0.99,
        threshold_completeness=0.5,
        training={"seed": 0, "visits": [1, 2, 3], "history": [{"epoch": 0, "loss": 0.5}]},
        metrics=summary,
    )
    out = save_model_package(path / "default_model.safetensors", network, metadata)
    (path / "default_model.json").write_text(json.dumps({"summary": summary, "training_seconds": 12.5}))
    return out


def test_model_card_renders_every_section(tmp_path: Path) -> None:
    """A classifier's card has every metric section and parses without docutils warnings."""
    ext = _load_ext()
    path = _classifier_package(tmp_path)
    lines = ext.model_card(path)
    text = "\n".join(lines)
    for expected in (
        "ROC AUC",
        "Completeness by SNR",
        "By population",
        "Expected calibration error",
        "Known limits",
        "Training history",
        "Held-out evaluation",
        "``test1``",
    ):
        assert expected in text, expected
    assert _parse_rst(lines) == ""


def test_model_card_of_unreadable_file_is_a_note(tmp_path: Path) -> None:
    """An unreadable package gives a note on its card, not a build failure."""
    ext = _load_ext()
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"\x80\x04not a model")
    lines = ext.model_card(bad)
    assert "could not be read" in "\n".join(lines)
    assert _parse_rst(lines) == ""


def test_bench_tables_render() -> None:
    """Every section of a benchmark JSON renders as valid rst."""
    ext = _load_ext()
    data = {
        "config": {"threads": 1, "image_size": 4096},
        "machine": {"cpu_count": 2},
        "sgemm_gflops": 76.4,
        "cutouts": [{"n": 100, "ours_rate": 3.3e4, "ours_batched_rate": 3.8e4, "incumbent_rate": 1.8e4}],
        "models": [
            {
                "architecture": "rb3_cnn",
                "backend": "torch",
                "flops_per_source": 2628416,
                "rate": 15241.5,
                "gflops": 40.1,
                "fraction_of_peak": 0.52,
            }
        ],
        "end_to_end": [
            {"n": 100, "ours (RealBogusModel, torch)": {"rate": 6636.6}, "incumbent": {"rate": 1934.0}}
        ],
        "breakdown": {"n": 10000, "ours": {"cutouts": 0.36, "model": 0.71}},
        "what_if": [{"n": 10000, "size": 41, "max_stat_pixels": 256, "rate": 12210.6, "ratio": 6.28}],
        "memory": {"n": 100000, "image_bytes": 335544320, "ours": 8192},
        "summary": {"best": "ours", "end_to_end_ratio": 4.68, "cutout_rate": 35840.4},
    }
    lines = ext.bench_tables(data)
    text = "\n".join(lines)
    assert "Cutout extraction" in text and "End to end per detector" in text
    assert _parse_rst(lines) == ""


def test_missing_task_module_leaves_its_page_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task page whose module does not exist is excluded from the build (no warning)."""
    ext = _load_ext()
    monkeypatch.setitem(ext.TASK_PAGES, "NotYetWrittenTask", "lsst.meas.realbogus.tasks.not_yet_written")

    class _Config:
        exclude_patterns: list[str] = []

    config = _Config()
    ext.exclude_missing_task_pages(None, config)
    assert config.exclude_patterns == [f"{ext.TASK_DIR}/NotYetWrittenTask.rst"]


def test_bench_tables_of_empty_results() -> None:
    """An empty or partial benchmark JSON renders nothing rather than failing."""
    ext = _load_ext()
    assert ext.bench_tables({}) == []
    assert _parse_rst(ext.bench_tables({"summary": {"best": "ours"}, "cutouts": []})) == ""
