"""Tests of the training loop: learning, determinism, exact resume, calibration, splits."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from lsst.meas.realbogus import metrics
from lsst.meas.realbogus.stamp_dataset import ArrayStampSource, StampStore
from lsst.meas.realbogus.training import (
    CHECKPOINT_JSON,
    CHECKPOINT_TENSORS,
    TrainingConfig,
    fit_temperature,
    fold_calibration,
    scheduled_lr,
    split_by_group,
    train_classifier,
)
from torch import nn

CHANNELS = ("science", "template", "difference")
SIZE = 21


def make_stamps(n: int, seed: int, real_fraction: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Real: a PSF blob in the difference (and science); bogus: a sharp single-pixel spike."""
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=n) < real_fraction).astype(np.int64)
    stamps = rng.normal(0.0, 10.0, (n, 3, SIZE, SIZE)).astype(np.float32)
    stamps[:, 1] += 100.0  # template background
    yy, xx = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    amp = rng.uniform(60.0, 300.0, n)
    for i in range(n):
        dy, dx = rng.integers(-2, 3, 2)
        if labels[i]:
            blob = np.exp(-((xx - dx) ** 2 + (yy - dy) ** 2) / (2 * 1.6**2))
            stamps[i, 2] += amp[i] * blob
            stamps[i, 0] += amp[i] * blob
        else:
            stamps[i, 2, SIZE // 2 + dy, SIZE // 2 + dx] += 3 * amp[i]
            stamps[i, 0, SIZE // 2 + dy, SIZE // 2 + dx] += 3 * amp[i]
    return stamps, labels


def small_config(**kwargs) -> TrainingConfig:
    base = dict(
        architecture="rb3_cnn",
        architecture_kwargs={"widths": (8, 12, 16), "hidden": 16},
        channels=("template", "science", "difference"),
        cutout_size=SIZE,
        epochs=6,
        batch_size=32,
        lr=3e-3,
        patience=3,
        seed=7,
        num_threads=1,
    )
    base.update(kwargs)
    return TrainingConfig(**base)


@pytest.fixture(scope="module")
def data() -> tuple[ArrayStampSource, ArrayStampSource, ArrayStampSource]:
    return tuple(
        ArrayStampSource(*make_stamps(n, seed), CHANNELS) for n, seed in ((320, 1), (240, 2), (400, 3))
    )


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_learns_separable_set_and_records_threshold(data, caplog) -> None:
    train, val, test = data
    with caplog.at_level(logging.INFO, logger="lsst.meas.realbogus.training"):
        result = train_classifier(train, val, small_config())
    assert metrics.roc_auc(result.val_scores, result.val_labels) > 0.95
    assert any("val AUC" in r.getMessage() for r in caplog.records)
    assert 1 <= len(result.history) <= 6
    assert {"epoch", "train_loss", "val_loss", "val_auc", "seconds"} <= set(result.history[0])
    meta = result.metadata
    choice = metrics.threshold_for_purity(result.val_scores, result.val_labels, 0.99)
    assert meta.threshold == pytest.approx(choice.threshold)
    assert meta.threshold_purity >= 0.99
    assert meta.threshold_completeness == pytest.approx(choice.completeness)
    assert meta.architecture_kwargs["in_channels"] == 4  # 3 channels + the "valid" mask channel
    # Independent test set: the module itself outputs calibrated probabilities.
    from lsst.meas.realbogus.training import predict_scores

    scores = predict_scores(result.module, test, meta.channels)
    assert metrics.roc_auc(scores, test.labels) > 0.95
    assert metrics.expected_calibration_error(scores, test.labels) < 0.1


def test_same_seed_gives_identical_weights(data) -> None:
    train, val, _ = data
    cfg = small_config(epochs=2)
    w1 = _weights(train_classifier(train, val, cfg).module)
    w2 = _weights(train_classifier(train, val, cfg).module)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    w3 = _weights(train_classifier(train, val, small_config(epochs=2, seed=8)).module)
    assert not all(torch.equal(w1[k], w3[k]) for k in w1)


@pytest.mark.parametrize("balance", ["weight", "sample"])
def test_resume_after_interruption_is_exact(data, tmp_path, balance) -> None:
    train, val, _ = data
    cfg = small_config(epochs=3, class_balance=balance, patience=10)
    full = train_classifier(train, val, cfg, checkpoint_dir=tmp_path / "full")
    part = train_classifier(train, val, cfg, checkpoint_dir=tmp_path / "resumed", stop_after_epoch=1)
    assert len(part.history) == 1
    resumed = train_classifier(train, val, cfg, checkpoint_dir=tmp_path / "resumed")
    w_full, w_res = _weights(full.module), _weights(resumed.module)
    assert all(torch.equal(w_full[k], w_res[k]) for k in w_full)
    assert [h["val_loss"] for h in full.history] == [h["val_loss"] for h in resumed.history]
    # Only safetensors and JSON: no pickles.
    files = sorted(p.name for p in (tmp_path / "resumed").iterdir())
    assert files == sorted([CHECKPOINT_JSON, CHECKPOINT_TENSORS])
    state = json.loads((tmp_path / "resumed" / CHECKPOINT_JSON).read_text())
    assert state["epoch"] == 2


def test_cosine_schedule_is_followed_and_resumes_exactly(data, tmp_path) -> None:
    """The cosine rate decays from lr to 2 % of it; each epoch records its rate; resume is exact."""
    cfg = small_config(epochs=4, lr_schedule="cosine", patience=10)
    rates = [scheduled_lr(cfg, e) for e in range(5)]
    assert rates[0] == pytest.approx(cfg.lr) and rates[4] == pytest.approx(0.02 * cfg.lr)
    assert rates[2] == pytest.approx(0.51 * cfg.lr) and all(np.diff(rates) < 0)
    assert scheduled_lr(small_config(), 3) == small_config().lr
    train, val, _ = data
    full = train_classifier(train, val, cfg, checkpoint_dir=tmp_path / "full")
    assert [h["lr"] for h in full.history] == pytest.approx(rates[:4])
    train_classifier(train, val, cfg, checkpoint_dir=tmp_path / "resumed", stop_after_epoch=2)
    resumed = train_classifier(train, val, cfg, checkpoint_dir=tmp_path / "resumed")
    w_full, w_res = _weights(full.module), _weights(resumed.module)
    assert all(torch.equal(w_full[k], w_res[k]) for k in w_full)
    with pytest.raises(ValueError, match="lr_schedule"):
        small_config(lr_schedule="step").validate()


def test_occlusion_is_deterministic_resumes_exactly_and_leaves_rotations_alone(data, tmp_path) -> None:
    train, val, _ = data
    cfg = small_config(epochs=3, patience=10, occlusion_probability=0.5)
    full = train_classifier(train, val, cfg, checkpoint_dir=tmp_path / "full")
    train_classifier(train, val, cfg, checkpoint_dir=tmp_path / "resumed", stop_after_epoch=1)
    resumed = train_classifier(train, val, cfg, checkpoint_dir=tmp_path / "resumed")
    w_full, w_res = _weights(full.module), _weights(resumed.module)
    assert all(torch.equal(w_full[k], w_res[k]) for k in w_full)
    plain = _weights(train_classifier(train, val, small_config(epochs=3, patience=10)).module)
    assert not all(torch.equal(w_full[k], plain[k]) for k in plain)
    assert full.metadata.training["config"]["occlusion_probability"] == 0.5
    with pytest.raises(ValueError, match="occlusion_probability"):
        small_config(occlusion_probability=-0.1).validate()


def test_resume_with_other_seed_is_refused(data, tmp_path) -> None:
    train, val, _ = data
    train_classifier(train, val, small_config(epochs=1), checkpoint_dir=tmp_path, stop_after_epoch=1)
    with pytest.raises(RuntimeError, match="seed"):
        train_classifier(train, val, small_config(epochs=2, seed=99), checkpoint_dir=tmp_path)


def test_early_stopping_keeps_best(data) -> None:
    train, val, _ = data
    # A learning rate far below float32 resolution: the loss never improves after epoch 0.
    result = train_classifier(train, val, small_config(epochs=10, lr=1e-30, patience=1, calibrate=False))
    assert len(result.history) == 3
    assert result.metadata.training["best_epoch"] == 0


def test_trains_from_a_stamp_store(tmp_path, data) -> None:
    stamps, labels = make_stamps(200, 5)
    store = StampStore.create(tmp_path / "store", 200, CHANNELS, SIZE)
    store.append(stamps[:100] * 1e5, labels[:100])  # large values: stored pre-scaled in float16
    store.append(stamps[100:] * 1e5, labels[100:])
    result = train_classifier(StampStore.open(tmp_path / "store"), data[1], small_config(epochs=3))
    assert metrics.roc_auc(result.val_scores, result.val_labels) > 0.9


def test_fit_temperature_recovers_scale() -> None:
    rng = np.random.default_rng(0)
    true_logit = rng.normal(0, 3, 50_000)
    labels = (rng.uniform(size=true_logit.size) < 1 / (1 + np.exp(-true_logit))).astype(int)
    # Overconfident logits (x2.5) shifted by a prior offset of log(4).
    t = fit_temperature(2.5 * true_logit + np.log(4.0), labels, shift=np.log(4.0))
    assert t == pytest.approx(2.5, rel=0.05)


def test_fold_calibration_in_final_layer() -> None:
    torch.manual_seed(0)
    module = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.ReLU(), nn.Linear(5, 1))
    x = torch.randn(7, 3, 2, 2)
    before = module(x).detach()
    fold_calibration(module, 2.0, 0.5)
    torch.testing.assert_close(module(x).detach(), (before - 0.5) / 2.0)
    with pytest.raises(ValueError):
        fold_calibration(nn.Sequential(nn.Linear(3, 2)), 1.0, 0.0)


def test_split_by_group() -> None:
    groups = np.repeat(np.arange(40), 25)
    tr, va, te = split_by_group(groups, (0.7, 0.15, 0.15), seed=3)
    assert tr.size + va.size + te.size == groups.size
    assert not set(groups[tr]) & set(groups[va]) and not set(groups[va]) & set(groups[te])
    assert abs(tr.size / groups.size - 0.7) < 0.05
    again = split_by_group(groups, (0.7, 0.15, 0.15), seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    assert all(s.size for s in split_by_group(np.array([1, 2, 3]), (0.9, 0.05, 0.05)))
    with pytest.raises(ValueError, match="distinct groups"):
        split_by_group(np.array([1, 1, 2]), (0.5, 0.25, 0.25))


def test_bad_inputs(data) -> None:
    train, val, _ = data
    with pytest.raises(ValueError, match="class_balance"):
        train_classifier(train, val, small_config(class_balance="bogus"))
    with pytest.raises(ValueError, match="cutout_size"):
        train_classifier(train, val, small_config(cutout_size=31))
    single = ArrayStampSource(*make_stamps(10, 1, real_fraction=0.0), CHANNELS)
    with pytest.raises(ValueError, match="both classes"):
        train_classifier(single, val, small_config())
    with pytest.raises(ValueError, match="version"):
        train_classifier(train, val, small_config(version="12345678"))
