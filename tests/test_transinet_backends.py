"""Tests of TransiNet's fast inference paths.

The inference network, the ONNX Runtime backend against PyTorch, parallel tiles
and the normalisation statistics.
"""

from __future__ import annotations

import copy
import logging
import pickle

import numpy as np
import pytest
import torch
from lsst.meas.realbogus import backends
from lsst.meas.realbogus.transinet import normalization
from lsst.meas.realbogus.transinet.architecture import TransiNetInferenceNet, TransiNetUNet
from lsst.meas.realbogus.transinet.model import TransiNetModel
from lsst.meas.realbogus.transinet.normalization import NormalizationSpec, compute_stats, valid_mask
from lsst.meas.realbogus.transinet.synthetic import make_synthetic_pair
from lsst.meas.realbogus.transinet.tiling import predict_tiled


def _net(depth: int = 3, seed: int = 4) -> TransiNetUNet:
    torch.manual_seed(seed)
    net = TransiNetUNet(in_channels=3, base_width=8, depth=depth)
    torch.nn.init.normal_(net.head_out.weight, std=0.5)  # default init outputs a constant
    return net.eval()


def _model(backend: str, **kwargs: object) -> TransiNetModel:
    return TransiNetModel(_net(), NormalizationSpec(), tile_size=128, backend=backend, **kwargs)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_inference_net_equals_training_net(depth: int) -> None:
    """The inference network's folded head gives the training network's logits."""
    net = _net(depth)
    fast = TransiNetInferenceNet(net)
    x = torch.from_numpy(np.random.default_rng(depth).normal(size=(2, 3, 45, 70)).astype(np.float32))
    with torch.inference_mode():
        expected = net(x)
        got = fast(x)
    assert got.shape == expected.shape == (2, 1, 45, 70)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5, rtol=0)
    assert not any(p.requires_grad for p in fast.parameters())
    with pytest.raises(TypeError):
        TransiNetInferenceNet(torch.nn.Conv2d(3, 1, 1))  # type: ignore[arg-type]


def test_onnx_and_torch_backends_agree() -> None:
    """ONNX Runtime and PyTorch give the same scores and logits (float tolerance)."""
    pair = make_synthetic_pair((203, 181), seed=8, n_transients=8, nan_box=(30, 60, 0, 40))
    args = (pair.template.image, pair.science.image, pair.template.variance, pair.science.variance,
            pair.science.mask)
    on_torch = _model("torch")
    on_onnx = _model("onnx")
    assert on_torch.backend_name == "torch" and on_onnx.backend_name == "onnx"
    a = on_torch.score_image(*args)
    b = on_onnx.score_image(*args)
    assert a.dtype == b.dtype == np.float32 and np.ptp(a) > 1e-3
    np.testing.assert_allclose(b, a, atol=1e-5, rtol=0)
    assert np.all(b[30:60, 0:40] == 0)
    # Logits, tiled on ONNX Runtime against one PyTorch pass of the training network.
    inputs = on_onnx._inputs(*args)
    logits_onnx = predict_tiled(on_onnx._network(), inputs, tile_size=128, margin=on_onnx.margin,
                                channels_last=False)
    np.testing.assert_allclose(b, on_torch.score_image(*args, tiled=False), atol=1e-5, rtol=0)
    with torch.inference_mode():
        reference = _net()(torch.from_numpy(np.pad(inputs, ((0, 0),) + ((on_onnx.margin,) * 2,) * 2))[None])
    m = on_onnx.margin
    np.testing.assert_allclose(logits_onnx, reference.numpy()[0, 0, m:-m, m:-m], atol=1e-4, rtol=1e-5)


def test_onnx_sides_not_multiple_of_downsampling() -> None:
    """The ONNX network pads odd-sized inputs like the module does."""
    model = _model("onnx")
    x = torch.from_numpy(np.random.default_rng(1).normal(size=(1, 3, 37, 50)).astype(np.float32))
    with torch.inference_mode():
        expected = _net()(x).numpy()
    np.testing.assert_allclose(model._network()(x).numpy(), expected, atol=1e-5, rtol=0)


def test_parallel_tiles_equal_sequential() -> None:
    """Running tiles on several threads does not change the result."""
    pair = make_synthetic_pair((260, 240), seed=9, n_transients=6)
    args = (pair.template.image, pair.science.image, pair.template.variance, pair.science.variance,
            pair.science.mask)
    one = _model("onnx", threads=1).score_image(*args)
    three = _model("onnx", threads=3).score_image(*args)
    np.testing.assert_array_equal(three, one)
    inputs = np.random.default_rng(2).normal(size=(3, 150, 140)).astype(np.float32)
    net = TransiNetInferenceNet(_net())
    a = predict_tiled(net, inputs, tile_size=112, margin=48, batch_size=1, workers=1)
    b = predict_tiled(net, inputs, tile_size=112, margin=48, batch_size=2, workers=4)
    np.testing.assert_allclose(b, a, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="workers"):
        predict_tiled(net, inputs, workers=0)


def test_backend_options_and_fallback(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
                                      ) -> None:
    """Unknown backends and bad thread counts fail; 'auto' falls back to PyTorch."""
    with pytest.raises(ValueError, match="backend"):
        _model("tensorrt")
    with pytest.raises(ValueError, match="threads"):
        _model("auto", threads=0)

    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("no exporter")

    monkeypatch.setattr(backends, "export_onnx", broken)
    with pytest.raises(RuntimeError, match="ONNX Runtime"):
        _model("onnx").backend_name
    with caplog.at_level(logging.WARNING):
        auto = _model("auto")
        assert auto.backend_name == "torch"
    assert "runs on PyTorch" in caplog.text
    pair = make_synthetic_pair((64, 72), seed=3)
    args = (pair.template.image, pair.science.image, pair.template.variance, pair.science.variance)
    np.testing.assert_array_equal(auto.score_image(*args), _model("torch").score_image(*args))


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_onnx_backend_predict_outputs_keeps_maps() -> None:
    """`OnnxBackend.predict_outputs` returns per-pixel maps of a dynamic-size export."""
    net = TransiNetInferenceNet(_net())
    model = backends.export_onnx(net, 3, 64, dynamic_size=True)
    backend = backends.OnnxBackend(None, 3, 64, chunk_size=2, onnx_model=model)
    x = np.random.default_rng(5).normal(size=(5, 3, 48, 40)).astype(np.float32)
    out = backend.predict_outputs(x)
    assert out.shape == (5, 1, 48, 40)
    with torch.inference_mode():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, atol=1e-5, rtol=0)


def test_compute_stats_matches_thinning_the_valid_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Indexing the thinned valid pixels gives the statistics of the former definition exactly."""
    rng = np.random.default_rng(11)
    template = rng.normal(10.0, 2.0, (300, 310)).astype(np.float32)
    science = rng.normal(12.0, 3.0, (300, 310)).astype(np.float32)
    variance = rng.uniform(4.0, 16.0, (300, 310)).astype(np.float32)
    science[rng.random(science.shape) < 0.1] = np.nan
    monkeypatch.setattr(normalization, "_MAX_STAT_PIXELS", 7_000)  # force thinning
    valid = valid_mask(template, science, science_variance=variance)
    stats = compute_stats(template, science, valid, science_variance=variance)

    def thin(image: np.ndarray) -> np.ndarray:  # the original definition
        values = np.asarray(image, dtype=np.float64).ravel()[valid.ravel()]
        return values[::max(1, values.size // 7_000)]

    assert stats.template_median == float(np.median(thin(template)))
    assert stats.science_median == float(np.median(thin(science)))
    assert stats.sigma == float(np.sqrt(np.median(thin(variance))))


def test_model_pickles_and_copies() -> None:
    """A model whose ONNX Runtime session is built can be pickled and deep-copied."""
    model = _model("onnx")
    pair = make_synthetic_pair((64, 80), seed=12)
    args = (pair.template.image, pair.science.image, pair.template.variance, pair.science.variance)
    expected = model.score_image(*args)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        assert clone.backend_name == "onnx"
        np.testing.assert_array_equal(clone.score_image(*args), expected)
