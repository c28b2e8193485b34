"""Self-describing model packages: one safetensors file with JSON metadata.

A package is a standard safetensors file.  Its header's ``__metadata__``
(a str→str mapping) holds, under the key ``"meas_realbogus"``, a JSON object
with the fields of `ModelMetadata`: the registered architecture and its
keyword arguments, the ordered input channels, the cutout size, the
normalisation, the output activation, the version string reported in alerts,
the operating threshold, provenance and metrics, and a SHA-256 checksum of
the weights.

Reading never unpickles and never evaluates anything from the file: the
header length and JSON are checked before anything else, tensors are read by
`safetensors`, and the network is built from code registered in
`architectures`.  Every failure raises `ModelPackageError` with a message
saying what is wrong.

The weights checksum (``weights_sha256``) is the SHA-256 of, for each tensor
in sorted name order: the UTF-8 name, a NUL byte, the dtype name (e.g.
``float32``), a NUL byte, the shape as JSON (e.g. ``[16, 4, 3, 3]``), a NUL
byte, then the tensor's raw little-endian C-order bytes.
"""

from __future__ import annotations

__all__ = [
    "FORMAT_VERSION",
    "METADATA_KEY",
    "ModelMetadata",
    "ModelPackage",
    "weights_sha256",
    "save_model_package",
    "model_package_to_bytes",
    "read_model_package",
]

import dataclasses
import hashlib
import json
import math
import os
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .architectures import architecture_info, build_architecture
from .errors import ModelPackageError, UnknownArchitectureError
from .normalization import NormalizationSpec

FORMAT_VERSION = 1
"""Version of the package format written by this code."""

METADATA_KEY = "meas_realbogus"
"""Key of the JSON metadata in the safetensors ``__metadata__``."""

OUTPUT_ACTIVATIONS: tuple[str, ...] = ("sigmoid", "identity")
"""Supported output activations (``identity``: outputs are probabilities)."""

MAX_VERSION_LENGTH = 7
"""Maximum length of the version string (alert ``reliabilityVersion``)."""

_MAX_HEADER_BYTES = 100 * 1024 * 1024


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class ModelMetadata:
    """Metadata of a model package.

    Parameters
    ----------
    architecture : `str`
        Registered architecture name.
    channels : `list` [`str`]
        Ordered input channels before normalisation, e.g.
        ``["template", "science", "difference"]``.
    cutout_size : `int`
        Side length of the stamps the model is applied to.
    version : `str`
        Short version (≤ 7 characters) reported as ``reliabilityVersion``.
    architecture_kwargs : `dict`
        Keyword arguments of the architecture factory (JSON values).
    normalization : `NormalizationSpec`
        Stamp normalisation (a dict is converted).
    output_activation : `str`
        ``"sigmoid"`` (outputs are logits) or ``"identity"``.
    threshold : `float`
        Operating threshold on the score, in [0, 1].
    threshold_purity, threshold_completeness : `float` or `None`
        Purity and completeness at ``threshold`` on the validation set.
    training : `dict`
        Provenance (data, seeds, code version, ...).
    metrics : `dict`
        Validation/test metrics.
    weights_sha256 : `str`
        Checksum of the weights (filled in when saving).
    created : `str`
        ISO-8601 creation time (UTC).
    kind : `str`
        ``"classifier"`` or ``"segmentation"``; must match the architecture.
    symmetric : `bool`
        The model claims invariance under the 8 flips/rotations of the stamp.
    format_version : `int`
        Package format version.
    """

    architecture: str
    channels: list[str]
    cutout_size: int
    version: str
    architecture_kwargs: dict[str, Any] = field(default_factory=dict)
    normalization: NormalizationSpec = field(default_factory=NormalizationSpec)
    output_activation: str = "sigmoid"
    threshold: float = 0.5
    threshold_purity: float | None = None
    threshold_completeness: float | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    weights_sha256: str = ""
    created: str = field(default_factory=_now)
    kind: str = "classifier"
    symmetric: bool = False
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if isinstance(self.normalization, dict):
            try:
                self.normalization = NormalizationSpec.from_dict(self.normalization)
            except (TypeError, ValueError) as err:
                raise ModelPackageError(f"Invalid normalisation in model metadata: {err}") from err
        if isinstance(self.channels, tuple):
            self.channels = list(self.channels)

    @property
    def input_channels(self) -> int:
        """Number of channels the network receives after normalisation."""
        return len(self.normalization.output_channels(self.channels))

    def validate(self) -> None:
        """Check the metadata fields and their consistency.

        Raises
        ------
        ModelPackageError
            Raised with a message naming the first invalid field.
        """

        def fail(message: str) -> None:
            raise ModelPackageError(f"Invalid model metadata: {message}")

        if not isinstance(self.format_version, int) or isinstance(self.format_version, bool):
            fail(f"format_version must be an int, got {self.format_version!r}")
        if self.format_version != FORMAT_VERSION:
            fail(f"unknown format_version {self.format_version}; this code reads version {FORMAT_VERSION}")
        if not isinstance(self.architecture, str) or not self.architecture:
            fail(f"architecture must be a non-empty string, got {self.architecture!r}")
        try:
            info = architecture_info(self.architecture)
        except UnknownArchitectureError as err:
            fail(str(err))
        if self.kind != info["kind"]:
            fail(f"kind {self.kind!r} does not match architecture {self.architecture!r} ({info['kind']!r})")
        if not isinstance(self.architecture_kwargs, dict):
            fail(f"architecture_kwargs must be a dict, got {type(self.architecture_kwargs).__name__}")
        if (
            not isinstance(self.channels, list)
            or not self.channels
            or not all(isinstance(c, str) and c for c in self.channels)
        ):
            fail(f"channels must be a non-empty list of names, got {self.channels!r}")
        if len(set(self.channels)) != len(self.channels):
            fail(f"channels must be unique, got {self.channels}")
        if not isinstance(self.normalization, NormalizationSpec):
            fail(f"normalization must be a NormalizationSpec, got {type(self.normalization).__name__}")
        if self.normalization.method != "none" and "difference" not in self.channels:
            fail(
                f"normalisation {self.normalization.method!r} needs a 'difference' channel; "
                f"got {self.channels}"
            )
        size = self.cutout_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            fail(f"cutout_size must be a positive int, got {self.cutout_size!r}")
        if not isinstance(self.version, str) or not self.version:
            fail(f"version must be a non-empty string, got {self.version!r}")
        if len(self.version) > MAX_VERSION_LENGTH:
            fail(f"version {self.version!r} is longer than {MAX_VERSION_LENGTH} characters")
        if self.output_activation not in OUTPUT_ACTIVATIONS:
            fail(f"unknown output_activation {self.output_activation!r}; known: {OUTPUT_ACTIVATIONS}")
        if (
            isinstance(self.threshold, bool)
            or not isinstance(self.threshold, int | float)
            or not (0.0 <= self.threshold <= 1.0)
        ):
            fail(f"threshold must be a number in [0, 1], got {self.threshold!r}")
        for name in ("threshold_purity", "threshold_completeness"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float) or not (0.0 <= value <= 1.0)
            ):
                fail(f"{name} must be None or a number in [0, 1], got {value!r}")
        for name in ("training", "metrics"):
            if not isinstance(getattr(self, name), dict):
                fail(f"{name} must be a dict, got {type(getattr(self, name)).__name__}")
        if not isinstance(self.weights_sha256, str):
            fail(f"weights_sha256 must be a string, got {self.weights_sha256!r}")
        if not isinstance(self.created, str):
            fail(f"created must be an ISO-8601 string, got {self.created!r}")
        if not isinstance(self.symmetric, bool):
            fail(f"symmetric must be a bool, got {self.symmetric!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-serialisable metadata dictionary."""
        data = dataclasses.asdict(self)
        data["normalization"] = self.normalization.to_dict()
        data["channels"] = list(self.channels)
        return data

    def to_json(self) -> str:
        """Return the metadata as a JSON string (NaN/Inf are refused)."""
        try:
            return json.dumps(self.to_dict(), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as err:
            raise ModelPackageError(f"Model metadata is not JSON-serialisable: {err}") from err

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelMetadata:
        """Build metadata from `to_dict` output (without validating it).

        Parameters
        ----------
        data : `dict`
            Metadata dictionary.

        Returns
        -------
        metadata : `ModelMetadata`
            The metadata.

        Raises
        ------
        ModelPackageError
            Raised for unknown or missing fields, or an unknown format
            version.
        """
        if not isinstance(data, dict):
            raise ModelPackageError(f"Model metadata must be a JSON object, got {type(data).__name__}")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelPackageError(
                f"Unknown model package format_version {version!r}; this code reads version {FORMAT_VERSION}"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ModelPackageError(f"Unknown model metadata fields {sorted(unknown)}")
        required = {"architecture", "channels", "cutout_size", "version"}
        missing = required - set(data)
        if missing:
            raise ModelPackageError(f"Model metadata lacks required fields {sorted(missing)}")
        return cls(**data)


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    flat = tensor.detach().cpu().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes()


def _dtype_name(tensor: torch.Tensor) -> str:
    return str(tensor.dtype).removeprefix("torch.")


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """Return the canonical SHA-256 of a state dict (see the module docstring).

    Parameters
    ----------
    state_dict : `dict` [`str`, `torch.Tensor`]
        Named tensors.

    Returns
    -------
    digest : `str`
        Hexadecimal SHA-256.
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name]
        h.update(name.encode("utf-8") + b"\0")
        h.update(_dtype_name(tensor).encode("ascii") + b"\0")
        h.update(json.dumps(list(tensor.shape)).encode("ascii") + b"\0")
        h.update(_tensor_bytes(tensor))
    return h.hexdigest()


@dataclass
class ModelPackage:
    """A model package in memory: metadata plus weights.

    Attributes
    ----------
    metadata : `ModelMetadata`
        The metadata.
    state_dict : `dict` [`str`, `torch.Tensor`]
        The weights, by parameter/buffer name.
    """

    metadata: ModelMetadata
    state_dict: dict[str, torch.Tensor]

    def build_module(self) -> nn.Module:
        """Build the registered architecture and load the weights strictly.

        Returns
        -------
        module : `torch.nn.Module`
            The network in evaluation mode.

        Raises
        ------
        ModelPackageError
            Raised if the architecture cannot be built with the declared
            arguments or the weights do not fit it exactly.
        """
        return _build_and_load(self.metadata, self.state_dict)


def _build_and_load(metadata: ModelMetadata, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    try:
        module = build_architecture(metadata.architecture, **metadata.architecture_kwargs)
    except UnknownArchitectureError as err:
        raise ModelPackageError(str(err)) from err
    except (TypeError, ValueError) as err:
        raise ModelPackageError(
            f"Cannot build architecture {metadata.architecture!r} with {metadata.architecture_kwargs}: {err}"
        ) from err
    try:
        module.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ModelPackageError(
            f"Weights do not fit architecture {metadata.architecture!r} "
            f"({metadata.architecture_kwargs}): {err}"
        ) from err
    module.eval()
    return module


def _check_module_io(module: nn.Module, metadata: ModelMetadata) -> None:
    """Dry-run the network on one zero stamp of the declared shape."""
    shape = (1, metadata.input_channels, metadata.cutout_size, metadata.cutout_size)
    try:
        with torch.inference_mode():
            out = module(torch.zeros(shape))
    except Exception as err:  # any failure means the declared inputs do not fit
        raise ModelPackageError(
            f"Architecture {metadata.architecture!r} ({metadata.architecture_kwargs}) does not accept "
            f"inputs of shape {shape} (channels {metadata.normalization.output_channels(metadata.channels)}, "
            f"cutout_size {metadata.cutout_size}): {err}"
        ) from err
    if metadata.kind == "classifier" and (not isinstance(out, torch.Tensor) or tuple(out.shape) != (1,)):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelPackageError(
            f"Classifier {metadata.architecture!r} must return (N,) logits; got {got} for input {shape}"
        )


def _as_state_dict(module_or_state_dict: nn.Module | dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(module_or_state_dict, nn.Module):
        state = module_or_state_dict.state_dict()
    elif isinstance(module_or_state_dict, dict):
        state = module_or_state_dict
    else:
        raise ModelPackageError(
            f"Expected a torch.nn.Module or a state dict, got {type(module_or_state_dict).__name__}"
        )
    out = {}
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise ModelPackageError(f"State dict entries must be str -> torch.Tensor; got {name!r}")
        # Clone so that tied or non-contiguous tensors serialise independently.
        out[name] = tensor.detach().cpu().contiguous().clone()
    return out


def model_package_to_bytes(
    module_or_state_dict: nn.Module | dict[str, torch.Tensor], metadata: ModelMetadata
) -> bytes:
    """Serialise weights and metadata to the bytes of a package file.

    The weights checksum is computed and stored (``metadata`` itself is not
    modified), and the weights are checked to load strictly into the
    declared architecture and to accept the declared input shape.

    Parameters
    ----------
    module_or_state_dict : `torch.nn.Module` or `dict` [`str`, `torch.Tensor`]
        The trained network or its state dict.
    metadata : `ModelMetadata`
        Package metadata.

    Returns
    -------
    data : `bytes`
        Contents of the safetensors file.

    Raises
    ------
    ModelPackageError
        Raised for invalid metadata or weights that do not fit.
    """
    from safetensors.torch import save

    if not isinstance(metadata, ModelMetadata):
        raise ModelPackageError(f"metadata must be a ModelMetadata, got {type(metadata).__name__}")
    state = _as_state_dict(module_or_state_dict)
    metadata = dataclasses.replace(metadata, weights_sha256=weights_sha256(state))
    metadata.validate()
    module = _build_and_load(metadata, state)
    _check_module_io(module, metadata)
    return save(state, metadata={METADATA_KEY: metadata.to_json()})


def save_model_package(
    path: str | os.PathLike[str],
    module_or_state_dict: nn.Module | dict[str, torch.Tensor],
    metadata: ModelMetadata,
) -> Path:
    """Write a model package file.

    Parameters
    ----------
    path : `str` or `os.PathLike`
        Output file (conventionally ``*.safetensors``).
    module_or_state_dict : `torch.nn.Module` or `dict` [`str`, `torch.Tensor`]
        The trained network or its state dict.
    metadata : `ModelMetadata`
        Package metadata (``weights_sha256`` is computed).

    Returns
    -------
    path : `pathlib.Path`
        The written file.

    Raises
    ------
    ModelPackageError
        Raised as by `model_package_to_bytes`.
    """
    data = model_package_to_bytes(module_or_state_dict, metadata)
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def _describe_non_safetensors(data: bytes) -> str:
    if data[8:9] == b"{":
        return "its JSON header is cut short (truncated file?)"
    head = data[:2]
    if head[:1] == b"\x80" and len(head) == 2 and head[1] <= 5:
        return "it looks like a Python pickle (e.g. a torch.save checkpoint); pickles are never loaded"
    if data[:2] == b"PK":
        return "it looks like a zip archive (e.g. a torch.save checkpoint); pickles are never loaded"
    try:
        text = data[:200].decode("utf-8")
    except UnicodeDecodeError:
        return "its header is not valid"
    if any(word in text for word in ("import ", "def ", "class ", "lambda", "print(", "exec(", "eval(")):
        return "it looks like Python source; code is never executed from model files"
    return "its header is not valid"


def _parse_header(data: bytes) -> tuple[dict[str, Any], int]:
    """Check the safetensors framing and return the header and data start."""
    if len(data) < 8:
        raise ModelPackageError(f"Not a safetensors model package: file is only {len(data)} bytes")
    (header_len,) = struct.unpack("<Q", data[:8])
    if header_len == 0 or header_len > _MAX_HEADER_BYTES or header_len > len(data) - 8:
        reason = _describe_non_safetensors(data)
        if reason == "its header is not valid" and header_len <= _MAX_HEADER_BYTES:
            reason = f"the header declares {header_len} bytes but only {len(data) - 8} follow (truncated?)"
        raise ModelPackageError(f"Not a valid safetensors model package: {reason}")
    raw = data[8 : 8 + header_len]
    if raw[:1] != b"{":
        raise ModelPackageError(
            f"Not a valid safetensors model package: {_describe_non_safetensors(data)}"
        )
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelPackageError(f"Not a valid safetensors model package: header is not JSON ({err})") from err
    if not isinstance(header, dict):
        raise ModelPackageError("Not a valid safetensors model package: header is not a JSON object")
    start = 8 + header_len
    available = len(data) - start
    for name, info in header.items():
        if name == "__metadata__":
            continue
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]
        ):
            raise ModelPackageError(f"Invalid safetensors entry for tensor {name!r}: {info!r}")
        if offsets[1] > available:
            raise ModelPackageError(
                f"Model package is truncated: tensor {name!r} ends at byte {offsets[1]} of the data "
                f"section but only {available} bytes are present"
            )
    return header, start


def read_model_package(source: str | os.PathLike[str] | bytes) -> ModelPackage:
    """Read and fully validate a model package.

    Parameters
    ----------
    source : `str`, `os.PathLike` or `bytes`
        Path of the package file, or its contents.

    Returns
    -------
    package : `ModelPackage`
        Validated metadata and weights.

    Raises
    ------
    ModelPackageError
        Raised if the file is missing, not a safetensors file (pickles and
        Python code included), truncated, lacks metadata, has an unknown
        format version or architecture, inconsistent channels or cutout
        size, a checksum mismatch or weights that do not fit the
        architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        where = "<bytes>"
    else:
        path = Path(source)
        where = str(path)
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ModelPackageError(f"Cannot read model package {where}: {err}") from err
    try:
        header, _ = _parse_header(data)
        file_metadata = header.get("__metadata__")
        if not isinstance(file_metadata, dict) or METADATA_KEY not in file_metadata:
            raise ModelPackageError(
                f"safetensors file has no {METADATA_KEY!r} metadata; it is not a meas_realbogus model package"
            )
        try:
            meta_dict = json.loads(file_metadata[METADATA_KEY])
        except (TypeError, json.JSONDecodeError) as err:
            raise ModelPackageError(f"{METADATA_KEY!r} metadata is not valid JSON: {err}") from err
        try:
            metadata = ModelMetadata.from_dict(meta_dict)
        except TypeError as err:
            raise ModelPackageError(f"Invalid model metadata: {err}") from err
        metadata.validate()
        try:
            state = load(data)
        except (SafetensorError, ValueError, RuntimeError) as err:
            raise ModelPackageError(f"Cannot decode the tensors: {err}") from err
        digest = weights_sha256(state)
        if not metadata.weights_sha256:
            raise ModelPackageError("Model metadata has no weights_sha256 checksum")
        if digest != metadata.weights_sha256:
            raise ModelPackageError(
                f"Weights checksum mismatch: metadata says {metadata.weights_sha256}, tensors hash to "
                f"{digest} (file corrupted or tampered with)"
            )
        module = _build_and_load(metadata, state)
        _check_module_io(module, metadata)
    except ModelPackageError as err:
        raise ModelPackageError(f"{where}: {err}") from err
    if not all(math.isfinite(float(t.float().abs().max())) for t in state.values() if t.numel()):
        raise ModelPackageError(f"{where}: weights contain NaN or Inf")
    return ModelPackage(metadata=metadata, state_dict=state)
