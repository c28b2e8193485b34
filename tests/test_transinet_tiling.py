"""Tests of seamless tiled TransiNet inference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lsst.meas.realbogus.transinet.architecture import TransiNetUNet
from lsst.meas.realbogus.transinet.model import TransiNetModel
from lsst.meas.realbogus.transinet.normalization import NormalizationSpec
from lsst.meas.realbogus.transinet.synthetic import make_synthetic_pair
from lsst.meas.realbogus.transinet.tiling import plan_tiles, predict_full, predict_tiled


def _model(tile_size: int) -> TransiNetModel:
    torch.manual_seed(4)
    net = TransiNetUNet(in_channels=3, base_width=8, depth=3)
    torch.nn.init.normal_(net.head_out.weight, std=0.5)  # default init outputs a constant
    return TransiNetModel(net, NormalizationSpec(), tile_size=tile_size, batch_size=3)


def test_plan_tiles_covers_image() -> None:
    layout = plan_tiles((300, 1000), tile_size=256, margin=40, multiple=8)
    assert layout.margin == 40
    assert layout.n_y * layout.core_y >= 300 and layout.n_x * layout.core_x >= 1000
    assert layout.core_y % 8 == 0 and layout.core_x % 8 == 0
    assert max(layout.tile_shape) <= 256
    with pytest.raises(ValueError, match="no room"):
        plan_tiles((100, 100), tile_size=64, margin=32, multiple=8)
    with pytest.raises(ValueError, match="empty"):
        plan_tiles((0, 10))


def test_tiled_equals_full_without_seams() -> None:
    pair = make_synthetic_pair((301, 277), seed=5, n_transients=10)
    model = _model(tile_size=160)  # forces a 3x3 grid of tiles
    args = (pair.template.image, pair.science.image, pair.template.variance, pair.science.variance,
            pair.science.mask)
    tiled = model.score_image(*args, tiled=True)
    full = model.score_image(*args, tiled=False)
    assert tiled.shape == (301, 277)
    assert np.ptp(full) > 1e-3  # a non-trivial score map
    np.testing.assert_allclose(tiled, full, atol=1e-5, rtol=0)
    # Logit level, on random inputs, with a tile grid that does not divide the image.
    inputs = np.random.default_rng(0).normal(size=(3, 203, 157)).astype(np.float32)
    a = predict_tiled(model.module, inputs, tile_size=136, margin=model.margin, batch_size=2)
    b = predict_full(model.module, inputs, margin=model.margin)
    np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)


def test_nan_regions_and_edges() -> None:
    pair = make_synthetic_pair((200, 180), seed=6, nan_box=(40, 90, 0, 60))
    pair.science.image[150:, 120:] = np.nan  # NaN without a mask bit too
    model = _model(tile_size=128)
    score = model.score_image(pair.template.image, pair.science.image, pair.template.variance,
                              pair.science.variance, pair.science.mask)
    assert np.isfinite(score).all()
    assert np.all(score[40:90, 0:60] == 0) and np.all(score[150:, 120:] == 0)
    assert np.all((score >= 0) & (score <= 1))
    # Only the invalid pixels are zeroed: the NaNs do not spread.
    assert np.all(score[100:140, 70:110] > 0)
    # Image edges (incl. the first/last rows and columns) get ordinary finite scores.
    assert np.all(score[0, 70:] > 0) and np.all(score[:40, -1] > 0)


def test_tiling_rejects_non_finite_inputs() -> None:
    model = _model(tile_size=128)
    bad = np.zeros((3, 20, 20), dtype=np.float32)
    bad[0, 3, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        predict_tiled(model.module, bad)
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        predict_tiled(model.module, np.zeros((20, 20), dtype=np.float32))
    mask = np.zeros((32, 32), dtype=np.int32)
    with pytest.raises(ValueError, match="shape"):
        model.score_image(np.zeros((32, 32)), np.zeros((32, 31)), mask=mask)
