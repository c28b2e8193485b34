"""Hostile or broken model files are refused with a clear `ModelPackageError`, and nothing in them runs.

Every case goes through the three public entry points (`read_model_package`, `load_model` and
`load_model_cached`).  Cases that could execute code (pickles with a ``__reduce__``, Python source,
code strings in the JSON metadata) point it at a sentinel file and check that the file was never
created.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from lsst.meas.realbogus.architectures import build_architecture
from lsst.meas.realbogus.errors import ModelPackageError
from lsst.meas.realbogus.model_package import (
    METADATA_KEY,
    ModelMetadata,
    model_package_to_bytes,
    read_model_package,
    weights_sha256,
)
from lsst.meas.realbogus.scoring import clear_model_cache, load_model, load_model_cached
from safetensors.torch import save


def _net(widths=(4, 6), hidden: int = 6, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_architecture("rb3_cnn", in_channels=4, widths=widths, hidden=hidden)


def _metadata(**overrides: Any) -> ModelMetadata:
    values: dict[str, Any] = dict(
        architecture="rb3_cnn",
        architecture_kwargs={"in_channels": 4, "widths": [4, 6], "hidden": 6},
        channels=["template", "science", "difference"],
        cutout_size=21,
        version="hostile",
    )
    values.update(overrides)
    return ModelMetadata(**values)


@pytest.fixture(scope="module")
def good_bytes() -> bytes:
    """Return good bytes."""
    return model_package_to_bytes(_net(), _metadata())


def _split(data: bytes) -> tuple[dict[str, Any], bytes]:
    (n,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _join(header: dict[str, Any], body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + body


def _with_metadata(data: bytes, edit) -> bytes:
    """Return ``data`` with its JSON model metadata replaced by ``edit(meta_dict)``."""
    header, body = _split(data)
    meta = json.loads(header["__metadata__"][METADATA_KEY])
    meta = edit(meta)
    header["__metadata__"][METADATA_KEY] = meta if isinstance(meta, str) else json.dumps(meta)
    return _join(header, body)


def _signed(state: dict[str, torch.Tensor], metadata: ModelMetadata) -> bytes:
    """Return a safetensors file with a correct checksum for ``state``, whatever the architecture."""
    meta = metadata.to_dict()
    meta["weights_sha256"] = weights_sha256(state)
    return save(state, metadata={METADATA_KEY: json.dumps(meta)})


def _refused(tmp_path: Path, data: bytes, match: str, name: str = "model.safetensors") -> ModelPackageError:
    """Check all entry points refuse ``data`` with a message matching ``match``."""
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(ModelPackageError, match=match) as info:
        read_model_package(path)
    with pytest.raises(ModelPackageError, match=match):
        read_model_package(data)
    with pytest.raises(ModelPackageError, match=match):
        load_model(path)
    clear_model_cache()
    with pytest.raises(ModelPackageError, match=match):
        load_model_cached(path)
    # The message names the file it is about.
    assert str(path) in str(info.value) or "Not a" in str(info.value)
    return info.value


def test_good_package_loads(good_bytes: bytes, tmp_path: Path) -> None:
    """Control: the unmodified package is accepted, so each refusal below is caused by its edit."""
    path = tmp_path / "good.safetensors"
    path.write_bytes(good_bytes)
    assert load_model(path).version == "hostile"


@pytest.mark.parametrize("keep", [0, 5, 8, 20, -1, -100])
def test_truncated_file_is_refused(good_bytes: bytes, tmp_path: Path, keep: int) -> None:
    """Check: truncated file is refused."""
    data = good_bytes[:keep] if keep >= 0 else good_bytes[:keep]
    if keep == 0:
        assert data == b""
    _refused(tmp_path, data, r"truncated|only \d+ bytes|cut short|Not a")


def test_wrong_checksum_is_refused(good_bytes: bytes, tmp_path: Path) -> None:
    """Check: wrong checksum is refused."""
    corrupted = bytearray(good_bytes)
    corrupted[-3] ^= 0x40  # one bit of one weight
    _refused(tmp_path, bytes(corrupted), "checksum mismatch")
    edited = _with_metadata(good_bytes, lambda m: {**m, "weights_sha256": "0" * 64})
    _refused(tmp_path, edited, "checksum mismatch")
    _refused(tmp_path, _with_metadata(good_bytes, lambda m: {**m, "weights_sha256": ""}), "no weights_sha256")


@pytest.mark.parametrize("version", [0, 2, 999, "1", None, 1.5])
def test_unknown_format_version_is_refused(good_bytes: bytes, tmp_path: Path, version: Any) -> None:
    """Check: unknown format version is refused."""
    _refused(
        tmp_path, _with_metadata(good_bytes, lambda m: {**m, "format_version": version}), "format_version"
    )


def test_missing_format_version_and_metadata_are_refused(good_bytes: bytes, tmp_path: Path) -> None:
    """Check: missing format version and metadata are refused."""
    _refused(
        tmp_path,
        _with_metadata(good_bytes, lambda m: {k: v for k, v in m.items() if k != "format_version"}),
        "format_version",
    )
    _refused(tmp_path, _with_metadata(good_bytes, lambda m: "{not json"), "not valid JSON")
    _refused(tmp_path, _with_metadata(good_bytes, lambda m: [1, 2]), "JSON object")
    header, body = _split(good_bytes)
    del header["__metadata__"]
    _refused(tmp_path, _join(header, body), "no 'meas_realbogus' metadata")


@pytest.mark.parametrize("name", ["no_such_net", "torch.nn.Linear", "os.system", ""])
def test_unknown_architecture_is_refused(good_bytes: bytes, tmp_path: Path, name: str) -> None:
    """Check: unknown architecture is refused."""
    _refused(tmp_path, _with_metadata(good_bytes, lambda m: {**m, "architecture": name}), "architecture")


def test_weights_not_fitting_architecture_are_refused(tmp_path: Path) -> None:
    # Correctly signed weights of another width.
    """Check: weights not fitting architecture are refused."""
    state = _net(widths=(8, 8), hidden=6).state_dict()
    _refused(tmp_path, _signed(state, _metadata()), "do not fit")
    # A missing and an extra tensor.
    state = dict(_net().state_dict())
    state.pop("head.2.bias")
    _refused(tmp_path, _signed(state, _metadata()), "do not fit")
    state = dict(_net().state_dict())
    state["extra.weight"] = torch.zeros(3)
    _refused(tmp_path, _signed(state, _metadata()), "do not fit")
    # Architecture arguments that the factory rejects, and a channel count that contradicts them.
    bad_kwargs = _metadata(architecture_kwargs={"in_channels": 4, "widths": [4, 6], "hidden": 6, "evil": 1})
    _refused(tmp_path, _signed(_net().state_dict(), bad_kwargs), "Cannot build")
    two_channels = _metadata(channels=["difference"])  # 2 network inputs, weights expect 4
    _refused(tmp_path, _signed(_net().state_dict(), two_channels), "does not accept")
    # NaN weights.
    state = {k: v.clone() for k, v in _net().state_dict().items()}
    state["head.2.bias"][:] = float("nan")
    _refused(tmp_path, _signed(state, _metadata()), "NaN or Inf")


def test_inconsistent_metadata_is_refused(good_bytes: bytes, tmp_path: Path) -> None:
    """Check: inconsistent metadata is refused."""
    cases = {
        "cutout_size": ("cutout_size", 0),
        "channels": ("channels", []),
        "threshold": ("threshold", 2.0),
        "output_activation": ("output_activation", "eval"),
        "normali": ("normalization", {"method": "robust", "exec": "print(1)"}),
        "Unknown model metadata fields": ("__reduce__", "os.system"),
        "kind": ("kind", "segmentation"),
    }
    for match, (field, value) in cases.items():
        _refused(tmp_path, _with_metadata(good_bytes, lambda m: {**m, field: value}), match)


class _Exploit:
    """Unpickling this runs ``open(sentinel, "w")`` via ``__reduce__``."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return (open, (self.sentinel, "w"))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_pickle_with_reduce_is_refused_and_not_run(tmp_path: Path, protocol: int) -> None:
    """Check: pickle with reduce is refused and not run."""
    sentinel = tmp_path / "pwned"
    payload = pickle.dumps({"weights": _Exploit(sentinel)}, protocol=protocol)
    # Sanity check that the payload is live: unpickling it (only here, deliberately) creates the file.
    probe = tmp_path / "probe"
    pickle.loads(payload.replace(str(sentinel).encode(), str(probe).encode()))
    assert probe.exists()
    error = _refused(tmp_path, payload, "pickle|Not a valid")
    assert not sentinel.exists()
    if protocol >= 2:
        assert "pickle" in str(error)


def test_torch_save_checkpoints_are_refused_and_not_run(tmp_path: Path) -> None:
    """Check: torch save checkpoints are refused and not run."""
    sentinel = tmp_path / "pwned_zip"
    buffer = io.BytesIO()
    torch.save({"state": _net().state_dict(), "x": _Exploit(sentinel)}, buffer)
    _refused(tmp_path, buffer.getvalue(), "zip archive|pickle")
    buffer = io.BytesIO()
    torch.save({"x": _Exploit(sentinel)}, buffer, _use_new_zipfile_serialization=False)
    _refused(tmp_path, buffer.getvalue(), "pickle|Not a valid")
    assert not sentinel.exists()
    # A zip archive renamed .safetensors.
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("data.pkl", pickle.dumps(_Exploit(sentinel)))
    _refused(tmp_path, archive.getvalue(), "zip archive")
    assert not sentinel.exists()


def test_python_source_file_is_refused_and_not_run(tmp_path: Path) -> None:
    """Check: python source file is refused and not run."""
    sentinel = tmp_path / "pwned_py"
    source = f"import os\nopen({str(sentinel)!r}, 'w').close()\n".encode()
    _refused(tmp_path, source, "Python source|Not a valid", name="model.py")
    assert not sentinel.exists()


def test_code_in_metadata_is_never_executed(good_bytes: bytes, tmp_path: Path) -> None:
    """Code strings in any metadata field are data: valid packages load, and nothing runs."""
    sentinel = tmp_path / "pwned_meta"
    code = f"__import__('os').system('touch {sentinel}')"
    lam = f"lambda: open({str(sentinel)!r}, 'w')"
    # Free-form fields accept strings; they must be carried as plain text.
    benign = _with_metadata(
        good_bytes,
        lambda m: {**m, "training": {"code": code, "hook": lam}, "metrics": {"__reduce__": code}},
    )
    path = tmp_path / "with_code.safetensors"
    path.write_bytes(benign)
    model = load_model(path)
    assert model.metadata.training["code"] == code
    clear_model_cache()
    assert load_model_cached(path).metadata.metrics["__reduce__"] == code
    # In fields that name code or data, the strings are refused.
    for field, value in (
        ("architecture", code),
        ("architecture_kwargs", {"in_channels": 4, "widths": code, "hidden": 6}),
        ("architecture_kwargs", {"in_channels": code, "widths": [4, 6], "hidden": 6}),
        ("version", lam),
        ("channels", [code, "difference"]),
        ("normalization", {"method": code}),
        ("cutout_size", code),
    ):
        with pytest.raises(ModelPackageError):
            read_model_package(_with_metadata(good_bytes, lambda m: {**m, field: value}))
    # Extra top-level header keys (outside the JSON metadata) carrying code.
    header, body = _split(good_bytes)
    header["__metadata__"]["__init__"] = code
    loaded = read_model_package(_join(header, body))
    assert loaded.metadata.version == "hostile"
    assert not sentinel.exists()
    assert not (Path.cwd() / "pwned_meta").exists()


@pytest.mark.parametrize(
    "data,match",
    [
        (struct.pack("<Q", 2**62) + b"{}", "Not a valid"),
        (struct.pack("<Q", 8) + b"not json", "Not a valid"),
        (struct.pack("<Q", 8) + b'{"a": 1', "JSON|Not a valid"),
        (struct.pack("<Q", 2) + b"[]", "JSON object|Not a valid"),
        (_join({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8), "truncated"),
        (
            _join({"w": {"dtype": "F32", "shape": [4], "data_offsets": "0:16"}}, b"\0" * 16),
            "Invalid safetensors",
        ),
        (random.Random(0).randbytes(64), "Not a|safetensors"),
    ],
)
def test_malformed_safetensors_framing_is_refused(tmp_path: Path, data: bytes, match: str) -> None:
    """Check: malformed safetensors framing is refused."""
    _refused(tmp_path, data, match)


def test_missing_file_and_directory_are_refused(tmp_path: Path) -> None:
    """Check: missing file and directory are refused."""
    with pytest.raises(ModelPackageError, match="does not exist"):
        load_model(tmp_path / "absent.safetensors")
    with pytest.raises(ModelPackageError, match="does not exist|not a file"):
        load_model(tmp_path)
    with pytest.raises(ModelPackageError, match="Cannot read"):
        read_model_package(tmp_path)
