"""Determinism of scoring and training, and exact resume of training after an interruption.

- Scores are bit-identical for any ``batch_size`` and for 1 or 2 torch threads.
- `train_classifier` with the same seed gives bit-identical weights twice.
- Training killed with SIGKILL (a real kill of a subprocess, sent from inside its own epoch-2 log
  record, i.e. after the epoch-1 checkpoint and before the epoch-2 one) and resumed from its
  checkpoint ends with weights bit-identical to an uninterrupted run with the same seed; the same
  holds for ``stop_after_epoch`` followed by a resume.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from lsst.meas.realbogus.architectures import build_architecture
from lsst.meas.realbogus.model_package import ModelMetadata, save_model_package
from lsst.meas.realbogus.scoring import load_model
from lsst.meas.realbogus.training import CHECKPOINT_JSON, TrainingConfig, train_classifier

SIZE = 15
CHANNELS = ("template", "science", "difference")


def make_training_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Toy stamps: real = point source in science and difference; bogus = noise, dipoles, hot pixels."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    stamps = rng.normal(0, 1, (n, 3, SIZE, SIZE)).astype(np.float32)
    stamps[:, :2] += 50.0
    yy, xx = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    for i in range(n):
        amp = rng.uniform(5, 30)
        dx, dy = rng.normal(0, 0.7, 2)
        psf = np.exp(-((xx - dx) ** 2 + (yy - dy) ** 2) / 3.0)
        if labels[i]:
            stamps[i, 1] += amp * psf
            stamps[i, 2] += amp * psf
        elif rng.random() < 0.5:
            shifted = np.exp(-((xx - dx - 1.2) ** 2 + (yy - dy) ** 2) / 3.0)
            stamps[i, 2] += amp * (psf - shifted)
        else:
            stamps[i, 2, SIZE // 2, SIZE // 2] += amp * 3
    return stamps, labels.astype(np.int64)


def config(**overrides) -> TrainingConfig:
    """Return config."""
    values = dict(
        architecture="rb3_cnn",
        architecture_kwargs={"widths": [4, 6], "hidden": 6},
        channels=CHANNELS,
        cutout_size=SIZE,
        epochs=4,
        batch_size=32,
        patience=10,
        seed=5,
        num_threads=1,
        target_purity=0.8,
    )
    values.update(overrides)
    return TrainingConfig(**values)


@pytest.fixture(scope="module")
def data() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Return data."""
    return make_training_set(160, 0), make_training_set(80, 1)


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    """Return assert same state."""
    assert sorted(a) == sorted(b)
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs"


@pytest.fixture(scope="module")
def uninterrupted(data):
    """Return uninterrupted."""
    train, val = data
    return train_classifier(train, val, config())


def test_same_seed_gives_identical_model(data, uninterrupted) -> None:
    """Check: same seed gives identical model."""
    train, val = data
    again = train_classifier(train, val, config())
    assert_same_state(uninterrupted.module.state_dict(), again.module.state_dict())
    assert [h["train_loss"] for h in again.history] == [h["train_loss"] for h in uninterrupted.history]
    np.testing.assert_array_equal(again.val_scores, uninterrupted.val_scores)
    other = train_classifier(train, val, config(seed=6))
    assert not torch.equal(other.module.head[2].weight, uninterrupted.module.head[2].weight)


def test_training_learns_the_toy_task(uninterrupted) -> None:
    """Control: the determinism tests compare a model that actually trained."""
    assert uninterrupted.history[-1]["val_auc"] > 0.8
    assert uninterrupted.history[-1]["train_loss"] < uninterrupted.history[0]["train_loss"]


def test_stop_after_epoch_and_resume_is_bit_identical(data, uninterrupted, tmp_path: Path) -> None:
    """Check: stop after epoch and resume is bit identical."""
    train, val = data
    ckpt = tmp_path / "ckpt"
    train_classifier(train, val, config(), checkpoint_dir=ckpt, stop_after_epoch=2)
    assert json.loads((ckpt / CHECKPOINT_JSON).read_text())["epoch"] == 1
    resumed = train_classifier(train, val, config(), checkpoint_dir=ckpt)
    assert_same_state(uninterrupted.module.state_dict(), resumed.module.state_dict())
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in uninterrupted.history]


KILL_SCRIPT = textwrap.dedent(
    """
    import logging, os, signal, sys
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    from test_robustness_determinism import config, make_training_set
    from lsst.meas.realbogus.training import train_classifier

    class KillOnEpoch(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("Epoch 2:"):
                os.kill(os.getpid(), signal.SIGKILL)

    log = logging.getLogger("killer")
    log.setLevel(logging.INFO)
    log.addHandler(KillOnEpoch())
    train_classifier(make_training_set(160, 0), make_training_set(80, 1), config(),
                     checkpoint_dir=sys.argv[2], log=log)
    print("NOT KILLED")
    """
)


def test_sigkilled_training_resumes_bit_identical(data, uninterrupted, tmp_path: Path) -> None:
    """Check: sigkilled training resumes bit identical."""
    ckpt = tmp_path / "killed"
    script = tmp_path / "kill_train.py"
    script.write_text(KILL_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(Path(__file__).parent), str(ckpt)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    state = json.loads((ckpt / CHECKPOINT_JSON).read_text())
    assert state["epoch"] == 1  # epochs 0 and 1 checkpointed; killed during epoch 2
    train, val = data
    resumed = train_classifier(train, val, config(), checkpoint_dir=ckpt)
    assert_same_state(uninterrupted.module.state_dict(), resumed.module.state_dict())
    assert len(resumed.history) == config().epochs


@pytest.fixture(scope="module")
def scoring_model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the path of a small random model package."""
    torch.manual_seed(3)
    net = build_architecture("rb3_cnn", in_channels=4, widths=(8, 8), hidden=8)
    meta = ModelMetadata(
        architecture="rb3_cnn",
        architecture_kwargs={"in_channels": 4, "widths": [8, 8], "hidden": 8},
        channels=list(CHANNELS),
        cutout_size=SIZE,
        version="det",
    )
    return save_model_package(tmp_path_factory.mktemp("det") / "m.safetensors", net, meta)


@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_scores_identical_for_any_batch_size_and_thread_count(scoring_model_path: Path, backend: str) -> None:
    """Check: bit-identical scores for batch sizes 5..4096 and 1 or 2 threads, per backend.

    ``auto`` is ONNX Runtime on CPU when it is installed; its thread count is set by ``threads``.
    """
    rng = np.random.default_rng(4)
    shape = (150, 170)
    diff = rng.normal(0, 3, shape).astype(np.float32)
    diff[rng.random(shape) < 0.01] = np.nan
    sci = (diff + 100 + rng.normal(0, 1, shape)).astype(np.float32)
    tmpl = (sci - diff).astype(np.float32)
    var = np.full(shape, 9.0, np.float32)
    x, y = rng.uniform(-5, 175, 120), rng.uniform(-5, 155, 120)
    previous = torch.get_num_threads()
    results = {}
    try:
        for threads in (1, 2):
            model = load_model(scoring_model_path, threads=threads, backend=backend)
            for batch_size in (5, 64, 65, 4096):
                results[threads, batch_size] = model.score(
                    sci, tmpl, diff, x, y, var, batch_size=batch_size
                ).scores
    finally:
        torch.set_num_threads(previous)
    reference = results[1, 4096]
    assert np.isfinite(reference).sum() > 100 and np.nanstd(reference) > 1e-3
    for key, scores in results.items():
        np.testing.assert_array_equal(scores, reference, err_msg=f"{backend}: threads, batch_size = {key}")
