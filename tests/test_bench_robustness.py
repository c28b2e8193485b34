"""The robustness benchmark simulates shifted surveys and scores models on them (nothing is timed)."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_robustness.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_robustness", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_are_valid_surveys() -> None:
    """Every variant is a valid SurveyConfig replacement; 'reference' changes nothing."""
    import dataclasses

    from lsst.meas.realbogus.simulation import SurveyConfig

    bench = _load()
    assert bench.VARIANTS["reference"] == {}
    for name, fields in bench.VARIANTS.items():
        survey = dataclasses.replace(SurveyConfig(), **fields)
        for key, value in fields.items():
            assert getattr(survey, key) == value, (name, key)


def test_quick_run_writes_a_table_and_json(tmp_path: Path, capsys) -> None:
    """Two variants, tiny detectors: one row per (variant, model), stores cached and reused."""
    bench = _load()
    out = tmp_path / "rob.json"
    args = ["--variants", "reference", "wide", "--visits", "1", "--detectors", "1", "--size", "256",
            "--processes", "1", "--work-dir", str(tmp_path / "stores"), "--json", str(out)]
    assert bench.main(args) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("reference", "wide"))]
    assert len(lines) == 2
    result = json.loads(out.read_text())
    assert result["seed"] == bench.SEED
    for name in ("reference", "wide"):
        row = result["results"][name]["models"]["default"]
        assert row["n"] > 0 and 0 <= row["n_real"] <= row["n"]
        assert math.isnan(row["auc"]) or 0.0 <= row["auc"] <= 1.0
        assert (tmp_path / "stores" / name / "store" / "store.json").is_file()
    # A second run reuses the stores: same candidates, same scores.
    assert bench.main(args) == 0
    again = json.loads(out.read_text())
    same = json.dumps(again["results"]["wide"]["models"]) == json.dumps(result["results"]["wide"]["models"])
    assert same  # compared as text: NaN (no real candidate) is not equal to itself
    with pytest.raises(SystemExit):
        bench.main(["--visits", "0"])
