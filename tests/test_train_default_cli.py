"""realbogus-train-default: reproduce the default model end to end, with tiny settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lsst.daf.butler import Butler
from lsst.meas.realbogus.cli import train_default
from lsst.meas.realbogus.model_package import read_model_package
from lsst.meas.realbogus.scoring import load_model
from lsst.meas.realbogus.simulation import small_test_config
from lsst.meas.realbogus.stamp_dataset import StampStore

TINY = [
    "--no-mix",
    "--detectors",
    "1",
    "--size",
    "256",
    "--epochs",
    "1",
    "--heldout-visits",
    "3",
    "--cutout-size",
    "31",
    "--batch-size",
    "16",
    "--model-version",
    "tiny",
]
SCRIPT = Path(__file__).parents[1] / "bin" / "realbogus_train_default.py"


def _check_outputs(output: Path, capsys_out: str, mode: str) -> dict:
    package = read_model_package(output.read_bytes())
    assert package.metadata.version == "tiny" and package.metadata.cutout_size == 31
    result = json.loads(output.with_suffix(".json").read_text())
    assert result["mode"] == mode
    assert result["heldout_visits"] == [train_default.HELDOUT_VISIT_OFFSET + i for i in range(3)]
    assert 0 < result["n_real"] < result["n"]
    assert 0.0 <= result["auc"] <= 1.0 and 0.0 <= result["ece"] <= 1.0
    assert result["model_threshold"] == pytest.approx(package.metadata.threshold)
    assert result["training_seconds"] > 0
    assert result["simulation_and_training_seconds"] >= result["training_seconds"]
    for line in ("AUC", "completeness SNR>=6 at purity 0.99", "ECE", "training time (s)"):
        assert line in capsys_out
    return result


def test_butler_free_mode(tmp_path, capsys):
    """Default mode: simulate, train, evaluate held-out visits; the model scores like the report."""
    output = tmp_path / "model.safetensors"
    work = tmp_path / "work"
    argv = ["--visits", "3", "--output", str(output), "--work-dir", str(work), "--keep-stores"]
    assert train_default.main([*argv, *TINY, "--log-level", "WARNING"]) == 0
    result = _check_outputs(output, capsys.readouterr().out, "butler-free")
    # --keep-stores leaves the training and held-out stamp stores for later use.
    kept_heldout = StampStore.open(work / "stores" / "heldout" / "store")
    assert len(kept_heldout) == result["n"]
    assert len(StampStore.open(work / "stores" / "train" / "store")) > 0
    with pytest.raises(SystemExit):  # never overwrites kept stores
        train_default.main([*argv, *TINY, "--log-level", "WARNING"])
    # The held-out evaluation is reproducible: same seed, same candidates, same scores.
    store = train_default.simulate_to_store(
        small_test_config(256),
        result["heldout_visits"],
        [0],
        result["heldout_seed"],
        tmp_path / "again",
        cutout_size=31,
    )
    again = train_default.evaluate_heldout(output, store)
    assert again["auc"] == result["auc"] and again["n"] == result["n"]
    assert again["per_survey"] == {}
    # Per-survey breakdown: one "survey" of all visits reproduces the pooled numbers; a split
    # into two partitions the candidates.
    visits = result["heldout_visits"]
    whole = train_default.evaluate_heldout(output, store, surveys=dict.fromkeys(visits, "main"))
    main = whole["per_survey"]["main"]
    assert (main["n"], main["n_real"]) == (result["n"], result["n_real"])
    assert main["auc"] == pytest.approx(result["auc"])
    assert main["own_threshold_for_purity"] == pytest.approx(main_threshold := whole["heldout_threshold_for_purity"])
    pooled_completeness = result["completeness_snr_ge_6_at_purity"]
    assert main["completeness_snr_ge_6_at_own_purity_threshold"] == pytest.approx(pooled_completeness)
    assert main["completeness_snr_ge_6_at_pooled_purity_threshold"] == pytest.approx(pooled_completeness)
    assert np.isfinite(main_threshold)
    split = train_default.evaluate_heldout(
        output, store, surveys={v: ("a" if i < 2 else "b") for i, v in enumerate(visits)}
    )["per_survey"]
    assert set(split) == {"a", "b"}
    assert split["a"]["n"] + split["b"]["n"] == result["n"]
    assert split["a"]["n_real"] + split["b"]["n_real"] == result["n_real"]
    scores = load_model(output).score_stamps(store.read(np.arange(len(store))))
    assert np.all((scores[np.isfinite(scores)] >= 0) & (scores[np.isfinite(scores)] <= 1))


@pytest.mark.slow
def test_butler_mode_via_script(tmp_path):
    """--butler: simulated repo, pipetask TrainRealBogus.yaml, export of the registered model."""
    output = tmp_path / "out" / "model.safetensors"
    repo = tmp_path / "repo"
    command = [
        sys.executable,
        str(SCRIPT),
        "--butler",
        str(repo),
        "--visits",
        "4",
        "--output",
        str(output),
        "--collection",
        "u/test/default",
        *TINY,
        "--log-level",
        "WARNING",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    _check_outputs(output, done.stdout, "butler")
    registered = Butler.from_config(str(repo), collections=["u/test/default"]).get("realbogus_model")
    exported = read_model_package(output.read_bytes())
    assert registered.metadata.weights_sha256 == exported.metadata.weights_sha256


def test_bad_arguments(tmp_path):
    """Invalid settings are rejected before any work."""
    base = ["--output", str(tmp_path / "m.safetensors")]
    with pytest.raises(SystemExit):
        train_default.main([*base, "--visits", "1"])
    with pytest.raises(SystemExit):
        train_default.main([*base, "--heldout-seed", "0", "--seed", "0"])
    with pytest.raises(SystemExit):
        train_default.main([*base, "--model-version", "12345678"])
    with pytest.raises(SystemExit):
        train_default.main([*base, "--size", "40"])
    with pytest.raises(SystemExit):
        train_default.main([*base, "--architecture-kwargs", "[1]"])
    with pytest.raises(SystemExit):  # main-survey visits would run into the mix's visit ids
        train_default.main([*base, "--visits", "5000"])
    assert not (tmp_path / "m.safetensors").exists()


def test_defaults_are_module_constants():
    """The shipped-model settings are the DEFAULT_* constants at the top of the module."""
    args = train_default.build_parser().parse_args([])
    assert args.visits == train_default.DEFAULT_VISITS
    assert args.detectors == train_default.DEFAULT_DETECTORS
    assert args.size == train_default.DEFAULT_SIZE
    assert args.architecture == train_default.DEFAULT_ARCHITECTURE
    assert args.cutout_size == train_default.DEFAULT_CUTOUT_SIZE
    assert args.epochs == train_default.DEFAULT_EPOCHS
    config = train_default.training_config(args)
    assert config.version == train_default.DEFAULT_VERSION and config.target_purity == 0.99
    assert config.occlusion_probability == train_default.DEFAULT_OCCLUSION > 0
    assert train_default.DEFAULT_SEED != train_default.DEFAULT_HELDOUT_SEED


def test_survey_mix_members_have_their_own_sky_fields():
    """The robustness mix adds surveys on detectors (sky fields) after the main survey's."""
    args = train_default.build_parser().parse_args(["--detectors", "3"])
    survey = small_test_config(256)
    jobs = train_default.survey_mix(args, survey)
    assert len(jobs) == len(train_default.DEFAULT_SURVEY_MIX)
    seen: set[int] = set(range(3))
    seen_visits: set[int] = set(range(args.visits))
    for (member, visits, detectors), spec in zip(jobs, train_default.DEFAULT_SURVEY_MIX, strict=True):
        assert not seen & set(detectors)
        seen |= set(detectors)
        # Visit ids are disjoint too, so that every member fits in one Butler repository.
        assert not seen_visits & set(visits)
        seen_visits |= set(visits)
        assert visits[0] == spec["first_visit"]
        assert len(visits) == spec["visits"] and len(detectors) == spec["detectors"]
        for key, value in spec["overrides"].items():
            assert getattr(member, key) == value
    # Held-out visits are mirrored into each member's own visit range.
    heldout = [train_default.HELDOUT_VISIT_OFFSET + i for i in range(2)]
    for (_, visits, _), spec in zip(
        train_default.survey_mix(args, survey, heldout), train_default.DEFAULT_SURVEY_MIX, strict=True
    ):
        assert visits == [spec["first_visit"] + v for v in heldout]
    assert train_default.survey_mix(train_default.build_parser().parse_args(["--no-mix"]), survey) == []
    # Every held-out visit is named after its survey.
    names = train_default.heldout_surveys(args, heldout)
    assert [names[v] for v in heldout] == ["main", "main"]
    for spec in train_default.DEFAULT_SURVEY_MIX:
        assert [names[spec["first_visit"] + v] for v in heldout] == [spec["name"]] * 2
    no_mix = train_default.build_parser().parse_args(["--no-mix"])
    assert set(train_default.heldout_surveys(no_mix, heldout).values()) == {"main"}
