"""bench/compare_approaches.py: operating-point logic on hand-made candidates, and one tiny
end-to-end evaluation (simulate, difference, detect, classify, TransiNet) writing table, JSON and plot.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_rb_task_support import make_model_file

BENCH = Path(__file__).parents[1] / "bench" / "compare_approaches.py"


@pytest.fixture(scope="module")
def compare():
    """Import bench/compare_approaches.py as a module."""
    spec = importlib.util.spec_from_file_location("compare_approaches", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["compare_approaches"] = module
    spec.loader.exec_module(module)
    return module


def _visit(compare, truth_xy, candidates, snr=None, types=None):
    """Return visit."""
    truth_xy = np.asarray(truth_xy, float).reshape(-1, 2)
    n = len(truth_xy)
    return compare._VisitResult(
        truth_x=truth_xy[:, 0], truth_y=truth_xy[:, 1],
        truth_snr=np.full(n, 10.0) if snr is None else np.asarray(snr, float),
        truth_type=np.array(["hostless"] * n if types is None else types),
        detected_5sigma=np.zeros(n, bool),
        candidates={m: tuple(np.asarray(c, float) for c in cands) for m, cands in candidates.items()},
    )


def test_found_and_false_positives(compare):
    """Completeness, false positives and per-type numbers on hand-made candidates."""
    # Two transients; method "a" has a hit on the first (score 0.9), a hit on the second (0.4) and
    # two false positives (0.8, 0.2).
    cands = {"a": ([10.0, 50.5, 100.0, 200.0], [10.0, 50.0, 100.0, 200.0], [0.9, 0.4, 0.8, 0.2])}
    results = [_visit(compare, [[10, 10], [50, 50]], cands, snr=[10.0, 4.0],
                      types=["galaxy_nuclear", "hostless"])]
    found, n_fp = compare._found(results, "a", 0.5, 2.5)
    np.testing.assert_array_equal(found, [True, False])
    assert n_fp == 1
    found, n_fp = compare._found(results, "a", 0.1, 2.5)
    np.testing.assert_array_equal(found, [True, True])
    assert n_fp == 2
    summary = compare._summary(results, "a", 0.5, 2.5)
    assert summary["completeness_snr_ge_6"] == 1.0
    assert summary["completeness_nuclear_snr_ge_6"] == 1.0
    assert summary["fp_per_detector"] == 1.0
    assert sum(b["n_true"] for b in summary["bins"]) == 2


def test_matched_threshold_is_lowest_meeting_target(compare):
    """The matched threshold is the lowest one meeting the false-positive target."""
    rng = np.random.default_rng(1)
    cands = {"a": (rng.uniform(300, 900, 40), rng.uniform(300, 900, 40), rng.uniform(0, 1, 40))}
    results = [_visit(compare, [[10, 10]], cands), _visit(compare, [[20, 20]], cands)]
    for target in (0.0, 3.0, 10.5, 40.0):
        thr = compare._matched_threshold(results, "a", target, 2.5)
        _, n_fp = compare._found(results, "a", thr, 2.5)
        assert n_fp / 2 <= target
        lower = np.max(cands["a"][2][cands["a"][2] < thr], initial=-1.0)
        if lower >= 0:  # any lower threshold exceeds the target
            _, n_fp_lower = compare._found(results, "a", lower, 2.5)
            assert n_fp_lower / 2 > target


@pytest.mark.slow
def test_tiny_end_to_end(compare, tmp_path):
    """Evaluate one tiny held-out visit end to end and check the written table, JSON and plot."""
    c3 = make_model_file(tmp_path / "c3.safetensors", version="c3", threshold=0.5)
    c1 = make_model_file(tmp_path / "c1.safetensors", channels=["difference"], version="c1", threshold=0.5)
    report = compare.evaluate(classifier3=str(c3), classifier1=str(c1), size=256, n_visits=1,
                              output_dir=tmp_path / "out", prefix="cmp", fixed_thresholds=(0.5,))
    for suffix in ("json", "md", "csv", "png"):
        assert (tmp_path / "out" / f"cmp.{suffix}").stat().st_size > 0
    saved = json.loads((tmp_path / "out" / "cmp.json").read_text())
    assert saved["config"]["sim_seed"] == compare.HELD_OUT_SEED
    labels = [r["operating_point"] for r in report["rows"]]
    n = len(compare.METHODS)
    assert labels.count("matched FP") == n and labels.count("recommended") == n
    target = report["fp_target_per_detector"]
    for row in report["rows"]:
        if row["operating_point"] == "matched FP":
            assert row["fp_per_detector"] <= target + 1e-9
        for b in row["bins"]:
            assert 0 <= b["n_found"] <= b["n_true"]
    table = (tmp_path / "out" / "cmp.md").read_text()
    assert "transinet" in table and "classic_rb1" in table and "classic_rb3" in table
    for method in ("transinet", "transinet_snr5"):
        assert set(report["recovered"][method]) >= {"transinet_only", "classic_rb3_only",
                                                     "transinet_only_by_type"}


def test_tiny_shifted_surveys(compare, tmp_path, capsys):
    """The shifted-survey comparison covers every bench_robustness variant at every operating point."""
    c3 = make_model_file(tmp_path / "c3.safetensors", version="c3", threshold=0.5)
    out = compare.shifted(classifier3=str(c3), n_visits=1, size=256, fp_budgets=(2.0,),
                          json_path=tmp_path / "shifted.json")
    sys.path.insert(0, str(BENCH.parent))
    import bench_robustness

    assert list(out["variants"]) == list(bench_robustness.VARIANTS)
    assert json.loads((tmp_path / "shifted.json").read_text())["models"] == out["models"]
    version = out["models"][0]
    for row in out["variants"].values():
        # The classifier's own FP rate, then 2.0.
        assert [p["operating_point"] for p in row["points"]] == ["classic_rb3 threshold", "2 FP"]
        assert row["points"][0]["fp_per_detector"] == row["rb3_fp_per_detector"]
        for point in row["points"]:
            values = [point[k] for k in ("classic_rb3", f"{version} transinet", f"{version} transinet_snr5")]
            assert all(0.0 <= v <= 1.0 for v in values) or row["n_snr_ge_6"] == 0
    printed = capsys.readouterr().out
    assert "crowded" in printed and "classic_rb3" in printed
