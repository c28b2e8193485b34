"""Tests of the TransiNet training loop and inference wrapper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lsst.meas.realbogus.transinet.model import TransiNetModel
from lsst.meas.realbogus.transinet.synthetic import make_synthetic_pair
from lsst.meas.realbogus.transinet.training import (
    TransiNetTrainingConfig,
    dihedral,
    train_transinet,
    weighted_loss,
)


@pytest.fixture(scope="module")
def pairs() -> tuple[list, list]:
    train = [make_synthetic_pair((96, 96), seed=s, n_transients=8, snr_range=(15, 60)) for s in range(3)]
    val = [make_synthetic_pair((96, 96), seed=50, n_transients=8, snr_range=(15, 60))]
    return train, val


def _config(**kwargs: object) -> TransiNetTrainingConfig:
    base = dict(base_width=4, depth=2, crop_size=48, crops_per_epoch=16, batch_size=8, max_epochs=4,
                patience=10, learning_rate=1e-2, seed=3)
    base.update(kwargs)
    return TransiNetTrainingConfig(**base)


def test_dihedral_group() -> None:
    a = np.arange(12, dtype=float).reshape(1, 3, 4)
    images = {dihedral(a, k).tobytes() + bytes(dihedral(a, k).shape) for k in range(8)}
    assert len(images) == 8
    for k in range(8):
        assert sorted(dihedral(a, k).ravel()) == sorted(a.ravel())
    with pytest.raises(ValueError):
        dihedral(a, 8)


def test_weighted_loss_ignores_zero_weight() -> None:
    logits = torch.tensor([[0.0, 5.0, -5.0]])
    target = torch.tensor([[1.0, 0.0, 0.0]])
    w_all = weighted_loss(logits, target, torch.ones(1, 3), kind="bce")
    w_skip = weighted_loss(logits, target, torch.tensor([[1.0, 0.0, 1.0]]), kind="bce")
    assert float(w_skip) < float(w_all)
    focal = weighted_loss(logits, target, torch.ones(1, 3), kind="focal")
    assert 0 < float(focal) < float(w_all)


def test_training_decreases_loss_and_model_detects(pairs: tuple[list, list]) -> None:
    train, val = pairs
    torch.set_num_threads(1)
    result = train_transinet(train, val, _config(max_epochs=8))
    vals = [h["val_loss"] for h in result.history]
    assert len(vals) == 8
    assert min(vals[1:]) < 0.7 * vals[0]
    assert result.best_epoch == int(np.argmin(vals))
    meta = result.package_metadata()
    assert meta["architecture"] == "transinet_unet" and meta["kind"] == "segmentation"
    assert meta["output_activation"] == "sigmoid" and len(meta["version"]) <= 7
    model = TransiNetModel.from_training_result(result, tile_size=64)
    pair = val[0]
    score = model.score_image(pair.template.image, pair.science.image, pair.template.variance,
                              pair.science.variance, pair.science.mask)
    tr = pair.truth[pair.truth["category"] == "transient"]
    at_truth = score[np.round(tr["y"]).astype(int), np.round(tr["x"]).astype(int)]
    assert np.median(at_truth) > 2 * np.median(score)


def test_resume_is_deterministic(pairs: tuple[list, list], tmp_path) -> None:
    train, val = pairs
    torch.set_num_threads(1)
    cfg = _config(max_epochs=3)
    straight = train_transinet(train, val, cfg)
    interrupted = train_transinet(train, val, cfg, checkpoint_dir=tmp_path, stop_after_epochs=1)
    assert len(interrupted.history) == 1
    resumed = train_transinet(train, val, cfg, checkpoint_dir=tmp_path)
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in straight.history]
    for (name, a), b in zip(straight.module.state_dict().items(), resumed.module.state_dict().values()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="different configuration"):
        train_transinet(train, val, _config(max_epochs=3, seed=4), checkpoint_dir=tmp_path)


def test_config_validation(pairs: tuple[list, list]) -> None:
    with pytest.raises(ValueError, match="crop_size"):
        _config(crop_size=50).validate()
    with pytest.raises(ValueError, match="version"):
        _config(version="toolongversion").validate()
    with pytest.raises(ValueError, match="at least one"):
        train_transinet([], pairs[1], _config())


def test_model_package_round_trip(pairs: tuple[list, list], tmp_path) -> None:
    from lsst.meas.realbogus.model_package import read_model_package
    from lsst.meas.realbogus.transinet.model import save_transinet_package

    train, val = pairs
    torch.set_num_threads(1)
    result = train_transinet(train, val, _config(max_epochs=1))
    path = tmp_path / "transinet.safetensors"
    save_transinet_package(result, path, threshold=0.4, metrics={"completeness": 0.5})
    package = read_model_package(path)
    assert package.metadata.kind == "segmentation" and package.metadata.architecture == "transinet_unet"
    loaded = TransiNetModel.from_package(package)
    assert loaded.threshold == pytest.approx(0.4)
    direct = TransiNetModel.from_training_result(result)
    pair = val[0]
    args = (pair.template.image, pair.science.image, pair.template.variance, pair.science.variance)
    np.testing.assert_array_equal(loaded.score_image(*args), direct.score_image(*args))
    with pytest.raises(ValueError, match="architecture"):
        TransiNetModel.from_package(type("P", (), {"metadata": {"architecture": "rb3_cnn"}})())


def test_fine_tuning_starts_from_package_weights(pairs: tuple[list, list], tmp_path) -> None:
    """``initial_state`` starts training from a package's weights; mismatches are named."""
    from lsst.meas.realbogus.model_package import read_model_package
    from lsst.meas.realbogus.transinet.model import save_transinet_package
    from lsst.meas.realbogus.transinet.training import initial_state_from_package

    train, val = pairs
    torch.set_num_threads(1)
    base = train_transinet(train, val, _config(max_epochs=6))
    path = tmp_path / "base.safetensors"
    save_transinet_package(base, path)
    package = read_model_package(path)
    cfg = _config(max_epochs=1, learning_rate=1e-3, initialized_from=package.metadata.version)
    state = initial_state_from_package(package, cfg)
    tuned = train_transinet(train, val, cfg, initial_state=state)
    scratch = train_transinet(train, val, _config(max_epochs=1, learning_rate=1e-3))
    # One small-step epoch from the trained weights stays near them and keeps their validation
    # loss; from a random start it is far worse.
    assert tuned.history[0]["val_loss"] < 0.8 * scratch.history[0]["val_loss"]
    assert tuned.history[0]["val_loss"] < 1.5 * min(h["val_loss"] for h in base.history)
    change = [float((a - b).abs().max()) for a, b in zip(tuned.module.state_dict().values(),
                                                         base.module.state_dict().values())]
    assert 0 < max(change) < 0.1
    assert tuned.package_metadata()["training"]["config"]["initialized_from"] == package.metadata.version
    with pytest.raises(ValueError, match="architecture_kwargs"):
        initial_state_from_package(package, _config(base_width=6))
    with pytest.raises(ValueError, match="difference_noise"):
        initial_state_from_package(package, _config(difference_noise="variance",
                                                    channels=("template", "science", "difference", "valid")))
    with pytest.raises(ValueError, match="go together"):
        train_transinet(train, val, _config(max_epochs=1), initial_state=state)
    with pytest.raises(ValueError, match="does not fit"):
        train_transinet(train, val, cfg, initial_state={k: v for k, v in list(state.items())[1:]})
