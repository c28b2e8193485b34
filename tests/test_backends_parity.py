"""Tests of the inference backends: parity with eager PyTorch, batch-size determinism, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lsst.meas.realbogus.architectures import build_architecture, list_architectures
from lsst.meas.realbogus.backends import (
    BACKEND_NAMES,
    OnnxBackend,
    TorchBackend,
    export_onnx,
    make_backend,
)

_IN_CHANNELS = {"rb3_cnn": 4, "rb1_cnn": 2, "incumbent_cnn": 3}
_SIZE = 51


def _classifiers() -> list[str]:
    names = list_architectures("classifier")
    assert set(_IN_CHANNELS) <= set(names)
    return names


def _module(name: str) -> torch.nn.Module:
    torch.manual_seed(1234)
    return build_architecture(name)


def _stamps(n: int, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, c, _SIZE, _SIZE)).astype(np.float32)
    x[:, :, 20:31, 20:31] += rng.uniform(0, 20, size=(n, c, 1, 1)).astype(np.float32)
    return x


def _eager_logits(module: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    module = module.eval()
    with torch.no_grad():
        return module(torch.from_numpy(x)).numpy()


@pytest.mark.parametrize("arch", _classifiers())
@pytest.mark.parametrize("backend", ["torchscript", "onnx"])
def test_parity_with_eager(arch: str, backend: str) -> None:
    c = _IN_CHANNELS.get(arch)
    assert c is not None, f"test does not know the input channels of new classifier {arch!r}"
    module = _module(arch)
    x = _stamps(40, c)
    ref = _eager_logits(module, x)
    b = make_backend(module, backend, in_channels=c, size=_SIZE, threads=1)
    out = b.predict_logits(x)
    assert out.shape == (40,) and out.dtype == np.float32
    assert np.all(np.isfinite(out))
    # Not trivially constant: the inputs differ, so must the logits.
    assert np.ptp(ref) > 1e-4
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("arch", ["rb3_cnn", "incumbent_cnn"])
def test_channels_last_parity(arch: str) -> None:
    c = _IN_CHANNELS[arch]
    module = _module(arch)
    x = _stamps(16, c, seed=3)
    ref = _eager_logits(module, x)
    for name in ("torch", "torchscript"):
        out = make_backend(module, name, in_channels=c, size=_SIZE, channels_last=True).predict_logits(x)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", ["torch", "torchscript", "onnx"])
def test_batch_size_determinism(backend: str) -> None:
    module = _module("rb3_cnn")
    x = _stamps(70, 4, seed=5)
    b = make_backend(module, backend, in_channels=4, size=_SIZE, chunk_size=32)
    full = b.predict_logits(x)
    singles = np.array([b.predict_logits(x[i : i + 1])[0] for i in range(0, 70, 9)])
    np.testing.assert_allclose(singles, full[::9], rtol=0, atol=1e-6)
    parts = np.concatenate([b.predict_logits(x[s:e]) for s, e in [(0, 5), (5, 38), (38, 70)]])
    np.testing.assert_allclose(parts, full, rtol=0, atol=1e-6)


def test_fixed_chunks_bitwise_identical() -> None:
    module = _module("rb3_cnn")
    x = _stamps(23, 4, seed=7)
    b = make_backend(module, "torch", in_channels=4, size=_SIZE, chunk_size=8, fixed_chunks=True)
    full = b.predict_logits(x)
    for i in (0, 9, 22):
        assert b.predict_logits(x[i : i + 1])[0] == full[i]


def test_module_not_modified() -> None:
    module = _module("rb3_cnn").train()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    make_backend(module, "torchscript", in_channels=4, size=_SIZE, channels_last=True)
    assert module.training
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k])
        assert v.is_contiguous()


def test_size_agnostic_networks_accept_other_sizes() -> None:
    module = _module("rb3_cnn")
    rng = np.random.default_rng(2)
    x = rng.normal(size=(5, 4, 33, 33)).astype(np.float32)
    ref = _eager_logits(module, x)
    for name, kw in (("torch", {}), ("torchscript", {}), ("onnx", {"dynamic_size": True})):
        out = make_backend(module, name, in_channels=4, size=_SIZE, **kw).predict_logits(x)
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5)
    fixed = make_backend(module, "onnx", in_channels=4, size=_SIZE)
    with pytest.raises(Exception, match="dimensions"):
        fixed.predict_logits(x)


def test_onnx_model_reuse_and_threads() -> None:
    module = _module("rb1_cnn")
    model = export_onnx(module, 2, _SIZE)
    assert isinstance(model, bytes) and len(model) > 1000
    b = OnnxBackend(None, in_channels=2, size=_SIZE, threads=2, onnx_model=model)
    x = _stamps(6, 2)
    np.testing.assert_allclose(b.predict_logits(x), _eager_logits(module, x), rtol=0, atol=1e-5)
    assert b.session.get_session_options().intra_op_num_threads == 2


def test_empty_and_dtype_conversion() -> None:
    b = make_backend(_module("rb1_cnn"), "onnx", in_channels=2, size=_SIZE)
    out = b.predict_logits(np.zeros((0, 2, _SIZE, _SIZE), dtype=np.float32))
    assert out.shape == (0,) and out.dtype == np.float32
    x = _stamps(3, 2)
    np.testing.assert_allclose(b.predict_logits(x.astype(np.float64)), b.predict_logits(x), atol=0)


def test_errors() -> None:
    module = _module("rb3_cnn")
    with pytest.raises(ValueError, match="Unknown inference backend"):
        make_backend(module, "tensorrt", in_channels=4, size=_SIZE)
    with pytest.raises(ValueError, match="cpu"):
        make_backend(module, "torch", in_channels=4, size=_SIZE, device="cuda")
    with pytest.raises(ValueError, match="threads"):
        make_backend(module, "torch", in_channels=4, size=_SIZE, threads=0)
    with pytest.raises(ValueError, match="Invalid options"):
        make_backend(module, "onnx", in_channels=4, size=_SIZE, channels_last=True)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        TorchBackend("not a module", in_channels=4, size=_SIZE)  # type: ignore[arg-type]
    b = make_backend(module, "torch", in_channels=4, size=_SIZE)
    with pytest.raises(ValueError, match=r"\(N, 4, S, S\)"):
        b.predict_logits(np.zeros((2, 3, _SIZE, _SIZE), dtype=np.float32))
    with pytest.raises(ValueError, match="exporter"):
        export_onnx(module, 4, _SIZE, exporter="tf")


def test_backend_names() -> None:
    assert set(BACKEND_NAMES) == {"torch", "torchscript", "compile", "onnx"}
