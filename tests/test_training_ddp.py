"""Data-parallel training (2 gloo processes on the CPU) matches single-process training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lsst.meas.realbogus.stamp_dataset import ArrayStampSource
from lsst.meas.realbogus.testing.distributed import run_data_parallel
from lsst.meas.realbogus.training import TrainingConfig, local_batch_size, train_classifier

CHANNELS = ("science", "template", "difference")
SIZE = 21
BALANCE_MODES = ("weight", "sample")
N_TRAIN = 331  # 10 global batches of 32 and a short one of 11: odd, so it is padded on 2 processes


def make_stamps(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Faint PSF blobs (real) and spikes (bogus) in noise: learnable, not perfectly separable."""
    rng = np.random.default_rng(seed)
    labels = (rng.uniform(size=n) < 0.35).astype(np.int64)
    stamps = rng.normal(0.0, 10.0, (n, 3, SIZE, SIZE)).astype(np.float32)
    stamps[:, 1] += 100.0
    yy, xx = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    amp = rng.uniform(5.0, 60.0, n)
    for i in range(n):
        dy, dx = rng.integers(-2, 3, 2)
        if labels[i]:
            blob = amp[i] * np.exp(-((xx - dx) ** 2 + (yy - dy) ** 2) / (2 * 1.6**2))
            stamps[i, 0] += blob
            stamps[i, 2] += blob
        else:
            stamps[i, [0, 2], SIZE // 2 + dy, SIZE // 2 + dx] += 2.5 * amp[i]
    return stamps, labels


def config(class_balance: str) -> TrainingConfig:
    """Small training settings; ``batch_size`` is the global batch."""
    return TrainingConfig(
        architecture="rb3_cnn",
        architecture_kwargs={"widths": (8, 12, 16), "hidden": 16},
        channels=CHANNELS,
        cutout_size=SIZE,
        epochs=3,
        batch_size=32,
        lr=3e-3,
        patience=5,
        seed=11,
        num_threads=1,
        class_balance=class_balance,
        # Occlusions are drawn per global batch like the rotations: covered in one of the modes.
        occlusion_probability=0.3 if class_balance == "sample" else 0.0,
    )


def data() -> tuple[ArrayStampSource, ArrayStampSource]:
    """Training and validation sources."""
    return (
        ArrayStampSource(*make_stamps(N_TRAIN, 1), CHANNELS),
        ArrayStampSource(*make_stamps(300, 2), CHANNELS),
    )


def summary(result) -> dict:
    """JSON-serialisable weights, history, AUC and world size of a training result."""
    weights = torch.cat([v.flatten().double() for v in result.module.state_dict().values()])
    return {
        "weights": weights.tolist(),
        "history": result.history,
        "auc": float(result.metadata.metrics["auc"]),
        "world_size": result.metadata.training["world_size"],
    }


def ddp_job(rank: int, world_size: int, checkpoint_root: str) -> dict:
    """Per class-balance mode: train one epoch, stop, then resume to the end; return the summaries."""
    import torch.distributed as dist

    train, val = data()
    out = {}
    for mode in BALANCE_MODES:
        checkpoint_dir = f"{checkpoint_root}/{mode}"
        train_classifier(train, val, config(mode), checkpoint_dir=checkpoint_dir, stop_after_epoch=1)
        dist.barrier()  # rank 0 has written the checkpoint
        out[mode] = summary(train_classifier(train, val, config(mode), checkpoint_dir=checkpoint_dir))
    return out


def test_two_processes_match_single_process(tmp_path) -> None:
    """2 processes take the same steps as 1 (both class-balance modes), resume included."""
    # One spawn for both modes: starting the processes is most of the time.
    ranks = run_data_parallel(ddp_job, 2, (str(tmp_path),), env={"OMP_NUM_THREADS": "1"})
    train, val = data()
    for mode in BALANCE_MODES:
        single = summary(train_classifier(train, val, config(mode)))
        assert ranks[0][mode]["weights"] == ranks[1][mode]["weights"]  # DDP keeps replicas identical
        ddp = ranks[0][mode]
        assert ddp["world_size"] == 2 and single["world_size"] == 1
        # Same global batches, same augmentations, same optimiser steps: the same model, up to the
        # floating-point order of the gradient sums.
        assert len(ddp["history"]) == len(single["history"]) == 3
        np.testing.assert_allclose(ddp["weights"], single["weights"], rtol=0, atol=1e-4)
        for a, b in zip(ddp["history"], single["history"], strict=True):
            assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
            assert a["val_auc"] == pytest.approx(b["val_auc"], abs=1e-3)
        assert 0.8 < single["auc"] < 0.999, mode  # learnt, but not trivially separable
        assert abs(ddp["auc"] - single["auc"]) <= 0.002, (mode, ddp["auc"], single["auc"])
        # The checkpoint records the world size; a single process may not resume it.
        with pytest.raises(RuntimeError, match="2 processes"):
            train_classifier(train, val, config(mode), checkpoint_dir=tmp_path / mode)


def test_local_batch_size() -> None:
    """The global batch is split evenly, or refused with both numbers in the message."""
    assert local_batch_size(128, 1) == 128
    assert local_batch_size(128, 2) == 64
    with pytest.raises(ValueError, match="batch_size 127 .* processes 2"):
        local_batch_size(127, 2)
    with pytest.raises(ValueError, match="batch_size 2 .* processes 4"):
        local_batch_size(2, 4)
