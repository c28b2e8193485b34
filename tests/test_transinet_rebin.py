"""Tests of TransiNet's block binning of pairs with a PSF broader than the training range."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lsst.meas.realbogus.transinet.architecture import TransiNetUNet
from lsst.meas.realbogus.transinet.model import DEFAULT_MAX_PSF_SIGMA, TransiNetModel
from lsst.meas.realbogus.transinet.normalization import NormalizationSpec
from lsst.meas.realbogus.transinet.rebin import bin_image, bin_mask, binning_factor, upsample_score
from lsst.meas.realbogus.transinet.synthetic import make_synthetic_pair

CHANNELS = ("template", "science", "difference", "valid")


@pytest.mark.parametrize(("sigma", "limit", "factor"),
                         [(3.9, 4.0, 1), (4.0, 4.0, 1), (4.4, 4.0, 2), (8.0, 4.0, 2), (8.1, 4.0, 3),
                          (5.0, None, 1), (None, 4.0, 1)])
def test_binning_factor(sigma: float | None, limit: float | None, factor: int) -> None:
    assert binning_factor(sigma, limit) == factor


def test_binning_factor_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="max_psf_sigma"):
        binning_factor(2.0, 0.0)
    with pytest.raises(ValueError, match="psf_sigma"):
        binning_factor(float("nan"), 4.0)
    with pytest.raises(ValueError, match="max_psf_sigma"):
        TransiNetModel(TransiNetUNet(in_channels=3, base_width=4, depth=2), NormalizationSpec(),
                       max_psf_sigma=-1.0)


def test_bin_image_and_mask_sum_and_or_blocks_with_partial_edges() -> None:
    image = np.arange(35, dtype=np.float32).reshape(5, 7)
    binned = bin_image(image, 2)
    assert binned.shape == (3, 4) and binned.dtype == np.float32
    assert binned[0, 0] == 0 + 1 + 7 + 8
    assert binned[1, 2] == image[2:4, 4:6].sum()
    # Blocks reaching past the edge repeat the last row / column.
    assert binned[2, 0] == 2 * (28 + 29) and binned[0, 3] == 2 * (6 + 13)
    assert np.isfinite(binned).all()
    image[1, 1] = np.nan
    assert np.isnan(bin_image(image, 2)[0, 0]) and np.isfinite(bin_image(image, 2)[0, 1])
    mask = np.zeros((5, 7), dtype=np.int32)
    mask[1, 1] = 4
    mask[0, 0] = 1
    mask[4, 6] = 2
    bm = bin_mask(mask, 2)
    assert bm.shape == (3, 4)
    assert bm[0, 0] == 5 and bm[2, 3] == 2 and bm.sum() == 7
    mask[3, 6] = 8  # last column, repeated into the padding
    assert bin_mask(mask, 2)[1, 3] == 8
    np.testing.assert_array_equal(bin_image(image, 1), image)
    assert bin_mask(mask, 1) is mask


def test_upsample_score_keeps_peak_position_and_shape() -> None:
    score = np.zeros((8, 9), dtype=np.float32)
    score[3, 5] = 0.9
    up = upsample_score(score, 3, (23, 26))
    assert up.shape == (23, 26) and up.dtype == np.float32
    assert 0.0 <= up.min() and up.max() <= 0.9 + 1e-6
    iy, ix = np.unravel_index(np.argmax(up), up.shape)
    # Block (3, 5) covers input pixels 9-11 (rows) and 15-17 (columns).
    assert 9 <= iy <= 11 and 15 <= ix <= 17


def _model(max_psf_sigma: float | None) -> TransiNetModel:
    torch.manual_seed(0)
    net = TransiNetUNet(in_channels=len(CHANNELS), base_width=4, depth=2)
    spec = NormalizationSpec(channels=CHANNELS, difference_noise="variance")
    return TransiNetModel(net, spec, backend="torch", max_psf_sigma=max_psf_sigma)


def test_score_image_bins_broad_psf_pairs() -> None:
    """A pair broader than max_psf_sigma is scored on block sums, interpolated back to its grid."""
    pair = make_synthetic_pair((101, 90), seed=3, science_psf_sigma=5.0, template_psf_sigma=3.0,
                               nan_box=(10, 20, 30, 40))
    s, t = pair.science, pair.template
    args = (t.image, s.image, t.variance, s.variance, s.mask | t.mask)
    sig = {"science_psf_sigma": 5.0, "template_psf_sigma": 3.0}
    binned_model, plain_model = _model(4.0), _model(None)
    score = binned_model.score_image(*args, **sig)
    assert score.shape == (101, 90) and score.dtype == np.float32
    assert (score[~np.isfinite(s.image)] == 0).all()
    expected = plain_model.score_image(bin_image(t.image, 2), bin_image(s.image, 2), bin_image(t.variance, 2),
                                       bin_image(s.variance, 2), bin_mask(s.mask | t.mask, 2),
                                       science_psf_sigma=2.5, template_psf_sigma=1.5)
    manual = upsample_score(expected, 2, (101, 90))
    # Equal away from the NaN box (whose zeroed blocks the manual path interpolates in).
    far = np.ones(score.shape, bool)
    far[10 - 4:30 + 4, 20 - 4:40 + 4] = False
    np.testing.assert_allclose(score[far], manual[far], atol=1e-6)
    # Without binning the same weights give a different score image; within the limit nothing changes.
    assert np.abs(plain_model.score_image(*args, **sig) - score).max() > 1e-4
    np.testing.assert_array_equal(_model(6.0).score_image(*args, **sig), plain_model.score_image(*args, **sig))


def test_default_model_finds_broad_psf_transients_when_binned() -> None:
    """The default model, trained on PSF sigmas up to about 4 px, scores 5-6 px transients far
    better on the binned pair."""
    assert DEFAULT_MAX_PSF_SIGMA == TransiNetModel.default().max_psf_sigma == 4.0
    found = {}
    for limit in (4.0, None):
        model = TransiNetModel.default(max_psf_sigma=limit)
        hits = n = 0
        for seed in range(3):
            pair = make_synthetic_pair((256, 256), seed=seed, n_transients=8, science_psf_sigma=5.5,
                                       template_psf_sigma=2.5, snr_range=(12.0, 40.0), edge_margin=20)
            s, t = pair.science, pair.template
            peaks = model.detect(t.image, s.image, t.variance, s.variance, s.mask | t.mask, threshold=0.5,
                                 science_psf_sigma=5.5, template_psf_sigma=2.5)
            truth = pair.truth[np.asarray(pair.truth["category"]).astype(str) == "transient"]
            for row in truth:
                d = np.hypot(np.asarray(peaks["x"], float) - row["x"], np.asarray(peaks["y"], float) - row["y"])
                hits += int(d.size > 0 and d.min() <= 3.0)
                n += 1
        found[limit] = hits / n
    assert found[4.0] >= 0.8
    assert found[4.0] > found[None]
