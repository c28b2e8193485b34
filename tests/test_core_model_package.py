"""Tests of model package writing, reading and validation."""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import pytest
import torch
from lsst.meas.realbogus.architectures import build_architecture
from lsst.meas.realbogus.errors import ModelPackageError
from lsst.meas.realbogus.model_package import (
    METADATA_KEY,
    ModelMetadata,
    model_package_to_bytes,
    read_model_package,
    save_model_package,
    weights_sha256,
)
from lsst.meas.realbogus.normalization import NormalizationSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


CHANNELS = ["template", "science", "difference"]


def make_metadata(**kwargs) -> ModelMetadata:
    defaults = dict(architecture="rb3_cnn", channels=list(CHANNELS), cutout_size=31, version="t0.1")
    defaults.update(kwargs)
    return ModelMetadata(**defaults)


def small_net() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_architecture("rb3_cnn", widths=(4, 4), hidden=4)


def small_metadata(**kwargs) -> ModelMetadata:
    return make_metadata(architecture_kwargs={"widths": [4, 4], "hidden": 4}, **kwargs)


def rewrite_metadata(data: bytes, edit) -> bytes:
    """Return package bytes with the JSON metadata edited (tensors untouched)."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    edit(meta)
    header["__metadata__"][METADATA_KEY] = json.dumps(meta)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data[8 + n :]


def test_round_trip(tmp_path: Path) -> None:
    net = small_net()
    meta = small_metadata(
        threshold=0.42,
        normalization=NormalizationSpec(asinh_a=5.0),
        training={"seed": 3},
        metrics={"auc": 0.9},
        symmetric=True,
    )
    path = save_model_package(tmp_path / "m.safetensors", net, meta)
    pkg = read_model_package(path)
    assert pkg.metadata.threshold == 0.42
    assert pkg.metadata.normalization == NormalizationSpec(asinh_a=5.0)
    assert pkg.metadata.training == {"seed": 3} and pkg.metadata.symmetric
    assert pkg.metadata.weights_sha256 == weights_sha256(net.state_dict())
    assert meta.weights_sha256 == ""  # caller's metadata untouched
    module = pkg.build_module()
    x = torch.randn(3, 4, 31, 31)
    with torch.inference_mode():
        torch.testing.assert_close(module(x), net.eval()(x))
    assert read_model_package(path.read_bytes()).metadata == pkg.metadata
    assert ModelMetadata.from_dict(pkg.metadata.to_dict()) == pkg.metadata


def test_truncated(tmp_path: Path) -> None:
    data = model_package_to_bytes(small_net(), small_metadata())
    for cut in (len(data) - 10, 100, 5):
        with pytest.raises(ModelPackageError, match="truncated|only"):
            read_model_package(data[:cut])


def test_tampered_weights_checksum() -> None:
    data = bytearray(model_package_to_bytes(small_net(), small_metadata()))
    data[-3] ^= 0xFF
    with pytest.raises(ModelPackageError, match="checksum mismatch"):
        read_model_package(bytes(data))


def test_unknown_format_version() -> None:
    data = model_package_to_bytes(small_net(), small_metadata())
    bad = rewrite_metadata(data, lambda m: m.update(format_version=2))
    with pytest.raises(ModelPackageError, match="format_version"):
        read_model_package(bad)


def test_unknown_architecture() -> None:
    data = model_package_to_bytes(small_net(), small_metadata())
    bad = rewrite_metadata(data, lambda m: m.update(architecture="evil_net"))
    with pytest.raises(ModelPackageError, match="Unknown architecture 'evil_net'"):
        read_model_package(bad)


def test_wrong_shapes() -> None:
    data = model_package_to_bytes(small_net(), small_metadata())
    # Declared kwargs disagree with the stored weights.
    bad = rewrite_metadata(data, lambda m: m["architecture_kwargs"].update(widths=[8, 4]))
    with pytest.raises(ModelPackageError, match="Weights do not fit"):
        read_model_package(bad)
    # Channels inconsistent with the network's input channels.
    bad = rewrite_metadata(data, lambda m: m.update(channels=["difference"]))
    with pytest.raises(ModelPackageError, match="does not accept inputs"):
        read_model_package(bad)
    # Writing weights of another architecture is refused too.
    with pytest.raises(ModelPackageError, match="Weights do not fit"):
        model_package_to_bytes(build_architecture("rb1_cnn"), make_metadata())


def test_incumbent_cutout_size_checked() -> None:
    net = build_architecture("incumbent_cnn", in_channels=3, size=51)
    spec = NormalizationSpec(mask_channel=False)
    model_package_to_bytes(net, make_metadata(architecture="incumbent_cnn", cutout_size=51,
                                              architecture_kwargs={"size": 51}, normalization=spec))
    with pytest.raises(ModelPackageError, match="does not accept inputs"):
        model_package_to_bytes(net, make_metadata(architecture="incumbent_cnn", cutout_size=63,
                                                  architecture_kwargs={"size": 51}, normalization=spec))


def test_pickle_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    with pytest.raises(ModelPackageError, match="pickle"):
        read_model_package(path)
    torch.save(small_net().state_dict(), tmp_path / "ckpt.pt")
    with pytest.raises(ModelPackageError, match="pickle|zip"):
        read_model_package(tmp_path / "ckpt.pt")


def test_python_code_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_text("import os\nos.system('echo pwned')\n")
    with pytest.raises(ModelPackageError, match="Python source"):
        read_model_package(path)


def test_missing_metadata_and_file(tmp_path: Path) -> None:
    from safetensors.torch import save

    with pytest.raises(ModelPackageError, match="no 'meas_realbogus' metadata"):
        read_model_package(save({"w": torch.zeros(2)}))
    with pytest.raises(ModelPackageError, match="Cannot read"):
        read_model_package(tmp_path / "missing.safetensors")


def test_version_too_long() -> None:
    with pytest.raises(ModelPackageError, match="longer than 7"):
        model_package_to_bytes(small_net(), small_metadata(version="v2026.11.25"))
    data = model_package_to_bytes(small_net(), small_metadata())
    with pytest.raises(ModelPackageError, match="longer than 7"):
        read_model_package(rewrite_metadata(data, lambda m: m.update(version="12345678")))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("threshold", 1.5, "threshold"),
        ("output_activation", "softmax", "output_activation"),
        ("cutout_size", 0, "cutout_size"),
        ("channels", [], "channels"),
        ("kind", "segmentation", "kind"),
    ],
)
def test_metadata_validation(field: str, value, message: str) -> None:
    with pytest.raises(ModelPackageError, match=message):
        model_package_to_bytes(small_net(), small_metadata(**{field: value}))
