"""Inference backends for the registered classifiers.

A backend wraps a classifier `torch.nn.Module` (``(N, C, S, S)`` float32
stamps → ``(N,)`` logits) and runs it on NumPy arrays with a fixed number of
CPU threads:

``"torch"``
    Eager PyTorch under `torch.inference_mode`.
``"torchscript"``
    `torch.jit.trace`, frozen (`torch.jit.freeze`: weights become constants,
    conv/bias folding).
``"compile"``
    `torch.compile` (Inductor; needs a C++ compiler on CPU).  Compilation
    happens on the first call of each new input shape, so this backend pads
    every call to fixed-size chunks.
``"onnx"``
    `torch.onnx.export` with a dynamic batch axis, run by an ONNX Runtime
    `~onnxruntime.InferenceSession` (CPU provider, sequential execution, all
    graph optimisations, ``threads`` intra-op threads).

All expose `InferenceBackend.predict_logits`.  Inputs are processed in chunks
of at most ``chunk_size`` sources; with ``fixed_chunks=True`` the last chunk is
zero-padded to the full chunk size so that every source always goes through an
identically shaped computation (outputs then do not depend on the batch size
bit for bit, at the cost of the padding).

The PyTorch backends set PyTorch's process-wide intra-op thread count
(`torch.set_num_threads`) to ``threads`` when they run.
"""

from __future__ import annotations

__all__ = [
    "BACKEND_NAMES",
    "InferenceBackend",
    "TorchBackend",
    "TorchScriptBackend",
    "CompiledBackend",
    "OnnxBackend",
    "make_backend",
    "export_onnx",
]

import copy
import io
import warnings
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import torch
from torch import nn

BACKEND_NAMES: tuple[str, ...] = ("torch", "torchscript", "compile", "onnx")
"""Names accepted by `make_backend`."""

_DEFAULT_CHUNK = 256


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _set_torch_threads(threads: int) -> None:
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


class InferenceBackend(ABC):
    """Base class of the inference backends.

    Parameters
    ----------
    in_channels : `int`
        Number of input channels ``C``.
    size : `int`
        Stamp side length ``S`` (the example shape used for tracing and
        export; the torch and torchscript backends of size-agnostic networks
        accept other sizes too, the onnx backend with ``dynamic_size``).
    threads : `int`, optional
        Number of intra-op CPU threads.
    chunk_size : `int`, optional
        Maximum number of sources per forward pass.
    fixed_chunks : `bool`, optional
        Zero-pad the last chunk to ``chunk_size`` sources.
    """

    name: str = ""

    def __init__(
        self,
        in_channels: int,
        size: int,
        threads: int = 1,
        chunk_size: int = _DEFAULT_CHUNK,
        fixed_chunks: bool = False,
    ) -> None:
        self.in_channels = _check_positive_int("in_channels", in_channels)
        self.size = _check_positive_int("size", size)
        self.threads = _check_positive_int("threads", threads)
        self.chunk_size = _check_positive_int("chunk_size", chunk_size)
        self.fixed_chunks = bool(fixed_chunks)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(in_channels={self.in_channels}, size={self.size}, "
            f"threads={self.threads}, chunk_size={self.chunk_size}, fixed_chunks={self.fixed_chunks})"
        )

    def _check_input(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{self.name} backend expects stamps of shape (N, {self.in_channels}, S, S), got {x.shape}"
            )
        return np.ascontiguousarray(x, dtype=np.float32)

    def predict_logits(self, x: np.ndarray) -> np.ndarray:
        """Return the logits of a batch of normalised stamps.

        Parameters
        ----------
        x : `numpy.ndarray`
            ``(N, C, S, S)`` float32 stamps (other float dtypes are
            converted).

        Returns
        -------
        logits : `numpy.ndarray`
            ``(N,)`` float32 logits.

        Raises
        ------
        ValueError
            Raised if ``x`` does not have shape ``(N, in_channels, S, S)``.
        """
        x = self._check_input(x)
        n = x.shape[0]
        out = np.empty(n, dtype=np.float32)
        if n == 0:
            return out
        step = self.chunk_size
        for start in range(0, n, step):
            chunk = x[start : start + step]
            m = chunk.shape[0]
            if self.fixed_chunks and m < step:
                padded = np.zeros((step,) + chunk.shape[1:], dtype=np.float32)
                padded[:m] = chunk
                chunk = padded
            out[start : start + m] = self._run(chunk).reshape(-1)[:m]
        return out

    def predict_outputs(self, x: np.ndarray) -> np.ndarray:
        """Return the network's raw outputs for a batch, in their own shape.

        Unlike `predict_logits` the outputs are not flattened to one value per
        stamp, so this also serves fully convolutional networks (exported with
        ``dynamic_size``) that return a map per input, e.g. ``(N, 1, H, W)``.
        Inputs are run in chunks of at most ``chunk_size``; ``fixed_chunks``
        does not apply.

        Parameters
        ----------
        x : `numpy.ndarray`
            ``(N, C, H, W)`` float32 inputs (other float dtypes are converted).

        Returns
        -------
        outputs : `numpy.ndarray`
            The network outputs, concatenated along the first axis.

        Raises
        ------
        ValueError
            Raised if ``x`` does not have shape ``(N, in_channels, H, W)``.
        """
        x = self._check_input(x)
        step = self.chunk_size
        if x.shape[0] <= step:
            return self._run(x)
        return np.concatenate([self._run(x[start : start + step]) for start in range(0, x.shape[0], step)])

    @abstractmethod
    def _run(self, x: np.ndarray) -> np.ndarray:
        """Run one chunk (contiguous float32) and return its logits."""
        raise NotImplementedError()


def _prepare_module(module: nn.Module) -> nn.Module:
    """Return an evaluation-mode copy of ``module`` without gradients."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"Expected a torch.nn.Module, got {type(module).__name__}")
    prepared = copy.deepcopy(module).eval()
    for p in prepared.parameters():
        p.requires_grad_(False)
    return prepared


class TorchBackend(InferenceBackend):
    """Eager PyTorch backend.

    Parameters
    ----------
    module : `torch.nn.Module`
        The classifier (copied and put in evaluation mode).
    in_channels, size, threads, chunk_size, fixed_chunks
        See `InferenceBackend`.
    channels_last : `bool`, optional
        Use the `torch.channels_last` memory format for the weights and
        inputs.
    """

    name = "torch"

    def __init__(
        self,
        module: nn.Module,
        in_channels: int,
        size: int,
        threads: int = 1,
        chunk_size: int = _DEFAULT_CHUNK,
        fixed_chunks: bool = False,
        channels_last: bool = False,
    ) -> None:
        super().__init__(in_channels, size, threads, chunk_size, fixed_chunks)
        self.channels_last = bool(channels_last)
        self.module = _prepare_module(module)
        if self.channels_last:
            self.module = self.module.to(memory_format=torch.channels_last)

    def _tensor(self, x: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(x)
        if self.channels_last:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def _run(self, x: np.ndarray) -> np.ndarray:
        _set_torch_threads(self.threads)
        with torch.inference_mode():
            return self.module(self._tensor(x)).float().numpy()


class TorchScriptBackend(TorchBackend):
    """TorchScript backend: a traced, frozen copy of the module.

    Parameters
    ----------
    module, in_channels, size, threads, chunk_size, fixed_chunks, channels_last
        See `TorchBackend`.
    """

    name = "torchscript"

    def __init__(self, module: nn.Module, *args: Any, **kwargs: Any) -> None:
        super().__init__(module, *args, **kwargs)
        example = self._tensor(np.zeros((2, self.in_channels, self.size, self.size), dtype=np.float32))
        _set_torch_threads(self.threads)
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            # torch.jit is deprecated in favour of torch.compile, which is
            # much slower to start; it still works and is measured.
            warnings.simplefilter("ignore", FutureWarning)
            traced = torch.jit.trace(self.module, example, check_trace=False)
            self.module = torch.jit.freeze(traced)


class CompiledBackend(TorchBackend):
    """`torch.compile` backend (static shapes; chunks are always padded).

    Parameters
    ----------
    module, in_channels, size, threads, chunk_size, channels_last
        See `TorchBackend`; ``fixed_chunks`` is always True.
    mode : `str`, optional
        `torch.compile` mode.
    """

    name = "compile"

    def __init__(
        self,
        module: nn.Module,
        in_channels: int,
        size: int,
        threads: int = 1,
        chunk_size: int = _DEFAULT_CHUNK,
        fixed_chunks: bool = True,
        channels_last: bool = False,
        mode: str | None = None,
    ) -> None:
        super().__init__(module, in_channels, size, threads, chunk_size, True, channels_last)
        self.module = torch.compile(self.module, mode=mode, dynamic=False, fullgraph=True)


def export_onnx(
    module: nn.Module,
    in_channels: int,
    size: int,
    *,
    exporter: str = "auto",
    opset: int = 17,
    dynamic_size: bool = False,
) -> bytes:
    """Export a classifier to an ONNX model with a dynamic batch axis.

    Parameters
    ----------
    module : `torch.nn.Module`
        The classifier (a copy is exported in evaluation mode).
    in_channels : `int`
        Number of input channels.
    size : `int`
        Stamp side length of the example input.
    exporter : `str`, optional
        ``"torchscript"`` (the legacy `torch.jit`-based exporter, fast),
        ``"dynamo"`` (the `torch.export`-based exporter; needs the
        ``onnxscript`` package) or ``"auto"`` (the legacy exporter where
        PyTorch still has it, else dynamo).
    opset : `int`, optional
        ONNX opset version.
    dynamic_size : `bool`, optional
        Also make the two spatial axes dynamic (for size-agnostic networks);
        otherwise the model only accepts ``size × size`` stamps.

    Returns
    -------
    model : `bytes`
        Serialised ONNX model with input ``"stamps"`` ``(batch, C, S, S)``
        and output ``"logits"`` ``(batch,)``; ``batch`` is dynamic.

    Raises
    ------
    ValueError
        Raised for an unknown exporter.
    RuntimeError
        Raised if the export fails.
    """
    if exporter not in ("auto", "torchscript", "dynamo"):
        raise ValueError(f"Unknown ONNX exporter {exporter!r}; use 'auto', 'torchscript' or 'dynamo'")
    module = _prepare_module(module)
    example = torch.zeros(2, in_channels, size, size)
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    errors = []
    order = ["torchscript", "dynamo"] if exporter == "auto" else [exporter]
    for kind in order:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                if kind == "torchscript":
                    buffer = io.BytesIO()
                    torch.onnx.export(
                        module,
                        (example,),
                        buffer,
                        dynamo=False,
                        input_names=["stamps"],
                        output_names=["logits"],
                        dynamic_axes={"stamps": axes, "logits": {0: "batch"}},
                        opset_version=opset,
                        do_constant_folding=True,
                    )
                    return buffer.getvalue()
                program = torch.onnx.export(
                    module,
                    (example,),
                    dynamo=True,
                    input_names=["stamps"],
                    output_names=["logits"],
                    dynamic_shapes=({i: torch.export.Dim(n) for i, n in axes.items()},),
                    opset_version=max(opset, 18),
                    verbose=False,
                )
                return program.model_proto.SerializeToString()
        except Exception as err:  # noqa: BLE001 - try the next exporter, report all.
            errors.append(f"{kind}: {type(err).__name__}: {err}")
    raise RuntimeError("ONNX export failed: " + "; ".join(errors))


class OnnxBackend(InferenceBackend):
    """ONNX Runtime backend.

    Parameters
    ----------
    module : `torch.nn.Module`
        The classifier to export.
    in_channels, size, threads, chunk_size, fixed_chunks
        See `InferenceBackend`.
    exporter : `str`, optional
        See `export_onnx`.
    onnx_model : `bytes`, optional
        An already exported model (``module`` is then ignored and may be
        None).
    dynamic_size : `bool`, optional
        See `export_onnx`.
    """

    name = "onnx"

    def __init__(
        self,
        module: nn.Module | None,
        in_channels: int,
        size: int,
        threads: int = 1,
        chunk_size: int = _DEFAULT_CHUNK,
        fixed_chunks: bool = False,
        exporter: str = "auto",
        onnx_model: bytes | None = None,
        dynamic_size: bool = False,
    ) -> None:
        super().__init__(in_channels, size, threads, chunk_size, fixed_chunks)
        import onnxruntime as ort

        if onnx_model is None:
            if module is None:
                raise ValueError("OnnxBackend needs a module or an exported onnx_model")
            onnx_model = export_onnx(
                module, self.in_channels, self.size, exporter=exporter, dynamic_size=dynamic_size
            )
        self.onnx_model = onnx_model
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads == 1:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(onnx_model, options, providers=["CPUExecutionProvider"])
        self._input = self.session.get_inputs()[0].name

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input: x})[0]


def make_backend(
    module: nn.Module,
    name: str = "onnx",
    *,
    in_channels: int,
    size: int,
    threads: int = 1,
    device: str = "cpu",
    **kwargs: Any,
) -> InferenceBackend:
    """Build an inference backend for a classifier.

    Parameters
    ----------
    module : `torch.nn.Module`
        Classifier taking ``(N, in_channels, S, S)`` and returning ``(N,)``
        logits, e.g. from `~lsst.meas.realbogus.architectures.build_architecture`.
        It is copied; the original is not modified.
    name : `str`, optional
        One of `BACKEND_NAMES`.
    in_channels : `int`
        Number of input channels.
    size : `int`
        Stamp side length used for tracing/export.
    threads : `int`, optional
        Number of intra-op CPU threads.
    device : `str`, optional
        Only ``"cpu"`` is supported.
    **kwargs
        Backend options: ``chunk_size``, ``fixed_chunks``, ``channels_last``
        (torch, torchscript, compile), ``mode`` (compile), ``exporter``,
        ``dynamic_size`` and ``onnx_model`` (onnx).

    Returns
    -------
    backend : `InferenceBackend`
        The backend.

    Raises
    ------
    ValueError
        Raised for an unknown backend name, a device other than CPU or
        invalid options.
    """
    if device != "cpu":
        raise ValueError(f"Only the 'cpu' device is supported by the inference backends, got {device!r}")
    classes: dict[str, type[InferenceBackend]] = {
        "torch": TorchBackend,
        "torchscript": TorchScriptBackend,
        "compile": CompiledBackend,
        "onnx": OnnxBackend,
    }
    try:
        cls = classes[name]
    except KeyError:
        raise ValueError(f"Unknown inference backend {name!r}; known backends: {BACKEND_NAMES}") from None
    try:
        return cls(module, in_channels=in_channels, size=size, threads=threads, **kwargs)  # type: ignore[call-arg]
    except TypeError as err:
        raise ValueError(f"Invalid options {kwargs} for backend {name!r}: {err}") from err
