"""Smoke test of the speed benchmark's --quick mode (nothing is timed here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_speed.py"


def test_bench_quick_runs(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--quick",
            "--counts",
            "40,120",
            "--image-size",
            "160",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for title in ("1. Cutout extraction", "2. Model throughput", "3. End to end", "4. Peak RSS", "Summary"):
        assert title in proc.stdout
    results = json.loads(out.read_text())
    assert results["config"]["threads"] == 1
    assert [c["n"] for c in results["cutouts"]] == [40, 120]
    assert {m["architecture"] for m in results["models"]} == {"rb3_cnn", "rb1_cnn", "incumbent_cnn"}
    assert {m["backend"] for m in results["models"]} >= {"torch", "torchscript", "onnx"}
    for m in results["models"]:
        assert m["rate"] > 0 and m["flops_per_source"] > 0
    flops = {m["architecture"]: m["flops_per_source"] for m in results["models"]}
    assert flops["incumbent_cnn"] > 1.5e7  # ~17 MFLOP per 51x51 source
    assert flops["rb3_cnn"] < flops["incumbent_cnn"] / 5
    for entry in results["end_to_end"]:
        assert entry["incumbent"]["rate"] > 0
    assert results["summary"]["end_to_end_ratio"] > 0
