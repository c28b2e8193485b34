"""End-to-end tests of the stamp-file training command line (single and multi-process)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from lsst.meas.realbogus.cli.train_stamps import ALERT_CHANNELS, convert_npz_to_store, load_inputs, main
from lsst.meas.realbogus.model_package import read_model_package
from lsst.meas.realbogus.scoring import load_model
from lsst.meas.realbogus.stamp_dataset import ArrayStampSource
from lsst.meas.realbogus.training import predict_scores

SIZE = 21
REPO = Path(__file__).resolve().parents[1]


def write_npz(path: Path, n: int, seed: int, n_visits: int = 12) -> None:
    """Alert-order stamps (science, template, difference): real = PSF blob, bogus = spike."""
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=n) < 0.35).astype(np.int64)
    stamps = rng.normal(0.0, 10.0, (n, 3, SIZE, SIZE)).astype(np.float32)
    stamps[:, 1] += 100.0
    yy, xx = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    amp = rng.uniform(60.0, 300.0, n)
    snr = amp / 10.0
    for i in range(n):
        if labels[i]:
            blob = amp[i] * np.exp(-(xx**2 + yy**2) / (2 * 1.6**2))
            stamps[i, 0] += blob
            stamps[i, 2] += blob
        else:
            stamps[i, 0, SIZE // 2, SIZE // 2] += 3 * amp[i]
            stamps[i, 2, SIZE // 2, SIZE // 2] += 3 * amp[i]
    types = np.where(labels == 1, "hostless", "cosmic_ray")
    np.savez(path, stamps=stamps, labels=labels, visit=rng.integers(0, n_visits, n), snr=snr, type=types)


def _common_args(tmp_path: Path, npz: Path, name: str) -> list[str]:
    return [
        str(npz),
        "--output",
        str(tmp_path / f"{name}.safetensors"),
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--lr",
        "3e-3",
        "--architecture-kwargs",
        '{"widths": [8, 12, 16], "hidden": 16}',
        "--model-version",
        "t1",
        "--seed",
        "3",
    ]


@pytest.fixture(scope="module")
def single_run(tmp_path_factory) -> Path:
    """One single-process CLI run, shared by the end-to-end and distributed tests."""
    tmp_path = tmp_path_factory.mktemp("cli")
    npz = tmp_path / "stamps.npz"
    write_npz(npz, 400, 0)
    args = _common_args(tmp_path, npz, "model") + [
        "--plots-dir",
        str(tmp_path / "plots"),
        "--store-dir",
        str(tmp_path / "store"),
        "--checkpoint-dir",
        str(tmp_path / "ckpt"),
    ]
    assert main(args) == 0
    return tmp_path


def test_cli_end_to_end(single_run) -> None:
    tmp_path = single_run
    package = read_model_package(tmp_path / "model.safetensors")
    meta = package.metadata
    assert meta.channels == ["template", "science", "difference"]
    assert meta.cutout_size == SIZE and meta.version == "t1"
    assert 0.0 <= meta.threshold <= 1.0 and meta.threshold_purity is not None
    report = json.loads((tmp_path / "model.json").read_text())
    assert report["test"]["auc"] > 0.95
    assert report["test"]["per_type"]["hostless"]["n_real"] > 0
    assert report["n_train"] + report["n_val"] + report["n_test"] == 400
    pngs = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert {"test_roc.png", "test_reliability.png", "test_worst.png", "test_completeness_snr.png"} <= set(
        pngs
    )
    assert (tmp_path / "ckpt" / "checkpoint.safetensors").is_file()
    assert (tmp_path / "store" / "stamps.npy").is_file()  # trained from the float16 memmap
    # Inference (scoring.load_model on alert-order stamps) reproduces the training-side scores.
    with np.load(tmp_path / "stamps.npz") as data:
        stamps = data["stamps"][:64]
    model = load_model(tmp_path / "model.safetensors")
    scores = model.score_stamps(stamps)
    expected = predict_scores(
        model.module,
        ArrayStampSource(stamps, np.zeros(64), ALERT_CHANNELS),
        meta.channels,
        meta.normalization,
    )
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-6)


def test_convert_npz_to_store_matches_in_memory(tmp_path) -> None:
    write_npz(tmp_path / "a.npz", 30, 5)
    write_npz(tmp_path / "b.npz", 20, 6)
    paths = [str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]
    store = convert_npz_to_store(paths, tmp_path / "store")
    mem = load_inputs(paths)
    assert len(store) == len(mem) == 50
    assert store.channels == ALERT_CHANNELS
    np.testing.assert_array_equal(store.labels, mem.labels)
    np.testing.assert_array_equal(store.groups, mem.groups)
    np.testing.assert_array_equal(store.types, mem.types)
    idx = np.arange(50)
    a, b = store.read(idx), mem.read(idx)
    peak = np.abs(b).reshape(50, -1).max(axis=1)[:, None, None, None]
    assert np.all(np.abs(a - b) <= 1e-3 * peak)
    assert isinstance(load_inputs([str(tmp_path / "store")]), type(store))


def test_cli_rejects_bad_npz(tmp_path) -> None:
    np.savez(tmp_path / "bad.npz", stamps=np.zeros((4, 2, 5, 5)), labels=np.zeros(4))
    with pytest.raises(ValueError, match="order"):
        main([str(tmp_path / "bad.npz"), "--output", str(tmp_path / "m.safetensors")])
    np.savez(tmp_path / "nolabels.npz", stamps=np.zeros((4, 3, 5, 5)))
    with pytest.raises(ValueError, match="labels"):
        main([str(tmp_path / "nolabels.npz"), "--output", str(tmp_path / "m.safetensors")])


@pytest.mark.slow
def test_cli_distributed_two_processes(single_run, tmp_path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    assert torchrun is not None, "torchrun not found next to the Python interpreter"
    npz = single_run / "stamps.npz"
    env = dict(os.environ, OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    cmd = [
        torchrun,
        "--standalone",
        "--nproc_per_node",
        "2",
        str(REPO / "bin" / "realbogus_train_stamps.py"),
        *_common_args(tmp_path, npz, "ddp"),
        "--store-dir",  # the single run's float16 store: the same stamps
        str(single_run / "store"),
        "--distributed",
        "--log-level",
        "WARNING",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = json.loads((single_run / "model.json").read_text())
    ddp = json.loads((tmp_path / "ddp.json").read_text())
    meta = read_model_package(tmp_path / "ddp.safetensors").metadata
    assert meta.training["world_size"] == 2
    assert ddp["validation"]["auc"] > 0.95
    # --batch-size is the global batch: 2 x 16 per step, the same steps as the single run.
    assert len(ddp["history"]) == len(single["history"])
    for a, b in zip(ddp["history"], single["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-3)
    assert abs(ddp["validation"]["auc"] - single["validation"]["auc"]) <= 0.002
