"""Score difference-image sources with a packaged real/bogus model.

`RealBogusModel` wraps a network built from a `model_package.ModelPackage`
and applies exactly the preprocessing the package declares: channel order,
cutout size (central crop or NaN padding) and `normalization` spec.  Sources
partly off the image or with some bad pixels still get a real score (the
normalisation ignores missing pixels and can pass a validity channel); only
sources that cannot be scored at all (non-finite position, stamp fully off
the image, no usable difference pixel) get NaN, with a reason.

Everything runs under `torch.inference_mode`, batch by batch, so memory is
bounded by ``batch_size`` and the scores do not depend on it.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MODEL_PATH",
    "ALERT_CHANNELS",
    "FORWARD_BATCH",
    "ScoreResult",
    "RealBogusModel",
    "load_model",
    "load_model_cached",
    "clear_model_cache",
]

import hashlib
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cutouts import CutoutBatch, _validate_planes, center_crop_or_pad, extract_cutouts, iter_cutout_batches
from .errors import ModelPackageError
from .model_package import ModelMetadata, ModelPackage, read_model_package
from .normalization import normalize_stamps_with_scale

DEFAULT_MODEL_PATH = Path(__file__).parent / "data" / "default_model.safetensors"
"""Location of the default model shipped with the package."""

ALERT_CHANNELS: tuple[str, ...] = ("science", "template", "difference")
"""Channel order of alert stamps and of `RealBogusModel.score_stamps` input."""

_CHUNK = 256
"""Stamps normalised together (cache-friendly; normalisation is per stamp)."""

FORWARD_BATCH = 64

BACKENDS: tuple[str, ...] = ("auto", "onnx", "torch")
"""Inference backends of `RealBogusModel`."""

_LOG = logging.getLogger(__name__)
"""Fixed number of stamps per forward pass (the last pass is zero-padded)."""

REASON_NON_FINITE_POSITION = "non_finite_position"
REASON_OUTSIDE = "outside_image"
REASON_NO_VALID = "no_valid_pixels"
REASON_NO_NOISE = "no_noise_estimate"


@dataclass
class ScoreResult:
    """Scores and quality flags of a set of sources.

    Attributes
    ----------
    scores : `numpy.ndarray`
        ``(N,)`` float32 reliability in [0, 1]; NaN only where the source
        cannot be scored (see ``reason``).
    flag_edge : `numpy.ndarray`
        ``(N,)`` bool, the stamp extends beyond the image.
    flag_bad : `numpy.ndarray`
        ``(N,)`` bool, the stamp has unusable pixels (masked or non-finite)
        inside the image.
    flag_nan_center : `numpy.ndarray`
        ``(N,)`` bool, a pixel of the central 3×3 is unusable or off-image.
    reason : `numpy.ndarray`
        ``(N,)`` str: ``""`` for a clean score; otherwise comma-separated
        ``edge``, ``bad_pixels``, ``nan_center`` for scored sources, or one
        of ``non_finite_position``, ``outside_image``, ``no_valid_pixels``
        (every pixel unusable) or ``no_noise_estimate`` (the difference
        stamp has no spread, e.g. constant) for unscored (NaN) ones.
    """

    scores: np.ndarray
    flag_edge: np.ndarray
    flag_bad: np.ndarray
    flag_nan_center: np.ndarray
    reason: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @classmethod
    def concatenate(cls, results: Sequence[ScoreResult]) -> ScoreResult:
        """Concatenate results of consecutive batches.

        Parameters
        ----------
        results : `~collections.abc.Sequence` [`ScoreResult`]
            Results to join, in order.

        Returns
        -------
        result : `ScoreResult`
            The joined result (empty arrays if ``results`` is empty).
        """
        if not results:
            empty = np.zeros(0, dtype=bool)
            return cls(np.zeros(0, np.float32), empty, empty.copy(), empty.copy(), np.zeros(0, dtype="<U1"))
        return cls(
            scores=np.concatenate([r.scores for r in results]),
            flag_edge=np.concatenate([r.flag_edge for r in results]),
            flag_bad=np.concatenate([r.flag_bad for r in results]),
            flag_nan_center=np.concatenate([r.flag_nan_center for r in results]),
            reason=np.concatenate([r.reason.astype(str) for r in results]),
        )


def _resolve_device(device: str | torch.device) -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, str) or not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"device must be 'cpu', 'cuda[:N]' or 'auto', got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """Apply the k-th of the 8 flips/rotations to the last two axes."""
    if k >= 4:
        x = torch.flip(x, dims=(-1,))
    return torch.rot90(x, k % 4, dims=(-2, -1))


class RealBogusModel:
    """A real/bogus classifier ready for inference.

    Parameters
    ----------
    module : `torch.nn.Module`
        The network (put in evaluation mode and moved to ``device``).
    metadata : `ModelMetadata`
        Its package metadata (channels, cutout size, normalisation, ...).
    device : `str` or `torch.device`, optional
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    dihedral_average : `bool`, optional
        Average the probabilities over the 8 flips/rotations of each stamp
        (8× slower; rarely useful for ``metadata.symmetric`` models).
    backend : `str`, optional
        ``"torch"`` (default here), ``"onnx"`` (ONNX Runtime export of the
        same weights; CPU only, about 1.5× faster for these small networks) or
        ``"auto"`` (ONNX Runtime on CPU if it can be built, else PyTorch).
    threads : `int`, optional
        Intra-op threads of the ONNX Runtime session.

    Raises
    ------
    ModelPackageError
        Raised if the package is not a classifier.
    """

    def __init__(
        self,
        module: nn.Module,
        metadata: ModelMetadata,
        device: str | torch.device = "cpu",
        *,
        dihedral_average: bool = False,
        backend: str = "torch",
        threads: int = 1,
    ):
        if metadata.kind != "classifier":
            raise ModelPackageError(
                f"RealBogusModel scores classifier packages; {metadata.architecture!r} is a {metadata.kind!r}"
            )
        self.device = _resolve_device(device)
        # channels_last is markedly faster for small convolutions on CPU; numerics are unchanged
        # up to float rounding.
        self.module = module.to(self.device, memory_format=torch.channels_last).eval()
        self.metadata = metadata
        self.dihedral_average = bool(dihedral_average)
        self.backend_name = "torch"
        self._backend = None
        if backend not in BACKENDS:
            raise ValueError(f"Unknown scoring backend {backend!r}; choose one of {BACKENDS}")
        if backend != "torch" and self.device.type == "cpu" and not self.dihedral_average:
            try:
                from .backends import make_backend

                self._backend = make_backend(
                    self.module, "onnx", in_channels=metadata.input_channels, size=metadata.cutout_size,
                    threads=int(threads), chunk_size=FORWARD_BATCH, fixed_chunks=True,
                )
                self.backend_name = "onnx"
            except Exception as err:  # noqa: BLE001 - any export/runtime failure falls back to torch.
                if backend == "onnx":
                    raise RuntimeError(f"Cannot build the ONNX Runtime backend: {err}") from err
                _LOG.warning("ONNX Runtime backend unavailable (%s); scoring with PyTorch.", err)

    @classmethod
    def from_package(
        cls,
        package: ModelPackage,
        device: str | torch.device = "cpu",
        *,
        dihedral_average: bool = False,
        backend: str = "torch",
        threads: int = 1,
    ) -> RealBogusModel:
        """Build the model of a package.

        Parameters
        ----------
        package : `ModelPackage`
            A package from `read_model_package`.
        device : `str` or `torch.device`, optional
            ``"cpu"``, ``"cuda"`` or ``"auto"``.
        dihedral_average : `bool`, optional
            See the class parameters.
        backend : `str`, optional
            See the class parameters.
        threads : `int`, optional
            See the class parameters.

        Returns
        -------
        model : `RealBogusModel`
            The model in evaluation mode.
        """
        return cls(package.build_module(), package.metadata, device, dihedral_average=dihedral_average,
                   backend=backend, threads=threads)

    @property
    def channels(self) -> tuple[str, ...]:
        """Input channels in the model's order (`tuple` [`str`])."""
        return tuple(self.metadata.channels)

    @property
    def cutout_size(self) -> int:
        """Stamp side length the model is applied to (`int`)."""
        return self.metadata.cutout_size

    @property
    def version(self) -> str:
        """Model version reported as ``reliabilityVersion`` (`str`)."""
        return self.metadata.version

    @property
    def threshold(self) -> float:
        """Operating threshold on the score (`float`)."""
        return float(self.metadata.threshold)

    # -- low level --------------------------------------------------------

    def predict_normalized(self, normalized: np.ndarray) -> np.ndarray:
        """Apply the network and output activation to normalised stamps.

        The network always sees batches of exactly `FORWARD_BATCH` stamps (the
        last one zero-padded), so that every stamp goes through the same
        kernels and its score is bit-identical whatever the batch it came in.

        Parameters
        ----------
        normalized : `numpy.ndarray`
            ``(N, C_out, S, S)`` output of the package's normalisation.

        Returns
        -------
        probabilities : `numpy.ndarray`
            ``(N,)`` float32 in [0, 1].
        """
        normalized = np.asarray(normalized, dtype=np.float32)
        if normalized.ndim != 4 or normalized.shape[1] != self.metadata.input_channels:
            raise ValueError(
                f"normalized stamps must have shape (N, {self.metadata.input_channels}, S, S), "
                f"got {normalized.shape}"
            )
        n = normalized.shape[0]
        out = np.empty(n, dtype=np.float32)
        step = FORWARD_BATCH
        transforms = range(8) if self.dihedral_average else range(1)
        with torch.inference_mode():
            for start in range(0, n, step):
                block = normalized[start : start + step]
                k = block.shape[0]
                if k < step:
                    block = np.concatenate([block, np.zeros((step - k,) + block.shape[1:], np.float32)])
                if self._backend is not None:
                    logits_np = self._backend.predict_logits(np.ascontiguousarray(block)).astype(np.float64)
                    if self.metadata.output_activation == "sigmoid":
                        probs_np = 1.0 / (1.0 + np.exp(-logits_np))
                    else:
                        probs_np = np.clip(logits_np, 0.0, 1.0)
                    out[start : start + k] = probs_np[:k].astype(np.float32)
                    continue
                x = torch.from_numpy(np.ascontiguousarray(block)).to(self.device)
                prob = torch.zeros(step, dtype=torch.float32, device=self.device)
                for t in transforms:
                    xt = (_dihedral(x, t) if t else x).contiguous(memory_format=torch.channels_last)
                    logits = self.module(xt).float()
                    if self.metadata.output_activation == "sigmoid":
                        prob += torch.sigmoid(logits)
                    else:
                        prob += logits.clamp(0.0, 1.0)
                prob /= len(transforms)
                out[start : start + k] = prob[:k].cpu().numpy()
        return out

    def _score_stamps_ordered(
        self,
        stamps: np.ndarray,
        variance: np.ndarray | None,
        batch_size: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Score stamps already in model channel order and size; return (scores, scorable)."""
        step = min(_check_batch_size(batch_size), _CHUNK)
        n = stamps.shape[0]
        scores = np.full(n, np.nan, dtype=np.float32)
        scorable = np.zeros(n, dtype=bool)
        spec = self.metadata.normalization
        for start in range(0, n, step):
            sl = slice(start, start + step)
            var = variance[sl] if variance is not None else None
            normalized, sigma = normalize_stamps_with_scale(stamps[sl], self.channels, spec, var)
            ok = np.isfinite(sigma)
            scorable[sl] = ok
            if ok.any():
                probs = self.predict_normalized(normalized[ok] if not ok.all() else normalized)
                chunk = scores[sl]
                chunk[ok] = probs
        return scores, scorable

    # -- public scoring ----------------------------------------------------

    def score_stamps(
        self,
        stamps: np.ndarray,
        variance: np.ndarray | None = None,
        *,
        channels: Sequence[str] = ALERT_CHANNELS,
        batch_size: int = 4096,
    ) -> np.ndarray:
        """Score pre-cut stamps of any size (e.g. alert cutouts).

        Stamps are reordered to the model's channels, centrally cropped or
        NaN-padded to ``cutout_size`` (centre pixel ``(H // 2, W // 2)``) and
        normalised as the package declares.

        Parameters
        ----------
        stamps : `numpy.ndarray`
            ``(N, C, H, W)`` stamps, by default in the alert order science,
            template, difference; any flux unit.
        variance : `numpy.ndarray`, optional
            ``(N, H, W)`` variance stamps of the difference.
        channels : `~collections.abc.Sequence` [`str`], optional
            Names of the ``C`` channels of ``stamps``.
        batch_size : `int`, optional
            Stamps per batch.

        Returns
        -------
        scores : `numpy.ndarray`
            ``(N,)`` float32 in [0, 1]; NaN for stamps without usable
            difference pixels.

        Raises
        ------
        ValueError
            Raised for wrong shapes or missing channels.
        """
        stamps = np.asarray(stamps)
        if stamps.ndim != 4:
            raise ValueError(f"stamps must have shape (N, C, H, W), got {stamps.shape}")
        channels = tuple(channels)
        if len(channels) != stamps.shape[1]:
            raise ValueError(f"{len(channels)} channel names {channels} for {stamps.shape[1]} stamp channels")
        missing = [c for c in self.channels if c not in channels]
        if missing:
            raise ValueError(f"Model needs channels {self.channels}; stamps lack {missing} (have {channels})")
        if variance is not None:
            variance = np.asarray(variance)
            if variance.ndim == 4 and variance.shape[1] == 1:
                variance = variance[:, 0]
            if variance.shape != (stamps.shape[0],) + stamps.shape[2:]:
                raise ValueError(
                    f"variance must have shape {(stamps.shape[0],) + stamps.shape[2:]}, got {variance.shape}"
                )
        batch_size = _check_batch_size(batch_size)
        order = [channels.index(c) for c in self.channels]
        size = self.cutout_size
        out = np.empty(stamps.shape[0], dtype=np.float32)
        for start in range(0, stamps.shape[0], batch_size):
            sl = slice(start, start + batch_size)
            chunk = center_crop_or_pad(stamps[sl][:, order].astype(np.float32, copy=False), size)
            var = None
            if variance is not None:
                var = center_crop_or_pad(variance[sl][:, None].astype(np.float32, copy=False), size)[:, 0]
            out[sl] = self._score_stamps_ordered(chunk, var, batch_size)[0]
        return out

    def score_cutouts(
        self,
        batch: CutoutBatch,
        variance_batch: CutoutBatch | np.ndarray | None = None,
        *,
        batch_size: int = 4096,
    ) -> ScoreResult:
        """Score a `CutoutBatch` (e.g. from `extract_cutouts`).

        Parameters
        ----------
        batch : `CutoutBatch`
            Cutouts containing (at least) the model's channels.
        variance_batch : `CutoutBatch` or `numpy.ndarray`, optional
            Variance stamps of the difference: a one-channel `CutoutBatch` or
            an ``(N, S, S)`` array.
        batch_size : `int`, optional
            Stamps per forward pass.

        Returns
        -------
        result : `ScoreResult`
            Scores and flags.

        Raises
        ------
        ValueError
            Raised if channels are missing or shapes disagree.
        """
        missing = [c for c in self.channels if c not in batch.channels]
        if missing:
            raise ValueError(f"Model needs channels {self.channels}; cutouts lack {missing}")
        order = [batch.channels.index(c) for c in self.channels]
        stamps = batch.stamps[:, order]
        var = None
        if variance_batch is not None:
            var = variance_batch.stamps[:, 0] if isinstance(variance_batch, CutoutBatch) else variance_batch
            var = np.asarray(var)
            if var.shape != (len(batch),) + batch.stamps.shape[2:]:
                raise ValueError(f"variance stamps must have shape {(len(batch),) + batch.stamps.shape[2:]}")
        if batch.size != self.cutout_size:
            stamps = center_crop_or_pad(stamps, self.cutout_size)
            if var is not None:
                var = center_crop_or_pad(var[:, None], self.cutout_size)[:, 0]
        scores, scorable = self._score_stamps_ordered(stamps, var, batch_size)
        return _make_result(batch, scores, scorable)

    def score(
        self,
        science: np.ndarray | None,
        template: np.ndarray | None,
        difference: np.ndarray,
        x: np.ndarray,
        y: np.ndarray,
        variance: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        *,
        batch_size: int = 4096,
    ) -> ScoreResult:
        """Cut out and score sources on full images.

        Parameters
        ----------
        science, template : `numpy.ndarray` or `None`
            2-D images (may be None if the model does not use them).
        difference : `numpy.ndarray`
            2-D difference image.
        x, y : `numpy.ndarray`
            ``(N,)`` 0-based pixel positions.
        variance : `numpy.ndarray`, optional
            2-D variance plane of the difference.
        mask : `numpy.ndarray`, optional
            2-D integer mask (bits of `mask_planes`); unusable pixels are
            treated as missing.
        batch_size : `int`, optional
            Sources cut and scored together (bounds memory).

        Returns
        -------
        result : `ScoreResult`
            Scores and flags, in the order of ``x``, ``y``.

        Raises
        ------
        ValueError
            Raised if an image the model needs is None or shapes disagree.
        """
        given = {"science": science, "template": template, "difference": difference}
        planes = {}
        for name in self.channels:
            if name not in given:
                raise ValueError(f"Model channel {name!r} cannot be supplied to score(); use score_cutouts")
            if given[name] is None:
                raise ValueError(f"Model {self.version!r} needs the {name!r} image, got None")
            planes[name] = given[name]
        _validate_planes(planes, mask)
        if variance is not None and np.shape(variance) != np.shape(difference):
            raise ValueError(
                f"variance shape {np.shape(variance)} differs from the difference image shape "
                f"{np.shape(difference)}"
            )
        size = self.cutout_size
        var_iter = None
        if variance is not None and self.metadata.normalization.use_variance:
            var_iter = iter_cutout_batches({"variance": variance}, x, y, size, batch_size)
        results = []
        for cut in iter_cutout_batches(planes, x, y, size, batch_size, mask=mask):
            var = next(var_iter) if var_iter is not None else None
            results.append(self.score_cutouts(cut, var, batch_size=batch_size))
        if not results:
            # Validate inputs even for zero sources.
            extract_cutouts(planes, np.zeros(0), np.zeros(0), size, mask=mask)
        return ScoreResult.concatenate(results)


def _make_result(batch: CutoutBatch, scores: np.ndarray, scorable: np.ndarray) -> ScoreResult:
    finite_pos = np.isfinite(batch.x) & np.isfinite(batch.y)
    flag_edge = batch.edge_fraction > 0
    flag_bad = batch.bad_fraction > batch.edge_fraction
    flag_center = batch.center_bad.copy()
    outside = batch.edge_fraction >= 1.0
    scores = scores.copy()
    reasons = np.full(len(batch), "", dtype=object)
    for flag, word in ((flag_edge, "edge"), (flag_bad, "bad_pixels"), (flag_center, "nan_center")):
        reasons[flag] = np.where(reasons[flag] == "", word, reasons[flag] + "," + word)
    unscored = ~scorable | ~finite_pos | outside
    reasons[~scorable] = REASON_NO_NOISE
    reasons[~scorable & (batch.bad_fraction >= 1.0)] = REASON_NO_VALID
    reasons[outside] = REASON_OUTSIDE
    reasons[~finite_pos] = REASON_NON_FINITE_POSITION
    scores[unscored] = np.nan
    return ScoreResult(
        scores=scores.astype(np.float32),
        flag_edge=flag_edge,
        flag_bad=flag_bad,
        flag_nan_center=flag_center,
        reason=reasons.astype(str),
    )


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _set_threads(threads: int | None) -> None:
    """Check ``threads`` and set the torch intra-op threads to it (nothing if None)."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        torch.set_num_threads(threads)


def load_model(
    path: str | os.PathLike[str] | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    backend: str = "auto",
) -> RealBogusModel:
    """Load a model package file (validated) into a `RealBogusModel`.

    Parameters
    ----------
    path : `str` or `os.PathLike`, optional
        Package file; the default model shipped with the package if None.
    device : `str`, optional
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    threads : `int`, optional
        If given, set the number of torch intra-op threads (and of the ONNX
        Runtime session).
    backend : `str`, optional
        ``"auto"`` (ONNX Runtime on CPU when available, else PyTorch),
        ``"onnx"`` or ``"torch"``; scores agree to about 1e-6.

    Returns
    -------
    model : `RealBogusModel`
        The model.

    Raises
    ------
    ModelPackageError
        Raised if the file is missing (including the default model before it
        has been trained and installed) or invalid.
    """
    _set_threads(threads)
    path = _resolve_path(path)
    return RealBogusModel.from_package(read_model_package(path), device, backend=backend,
                                       threads=threads or 1)


def _resolve_path(path: str | os.PathLike[str] | None) -> Path:
    if path is None:
        if not DEFAULT_MODEL_PATH.exists():
            raise ModelPackageError(
                f"The default model {DEFAULT_MODEL_PATH} is not installed; train one and save it there "
                "with save_model_package, or pass the path of a model package"
            )
        return DEFAULT_MODEL_PATH
    path = Path(path)
    if not path.is_file():
        raise ModelPackageError(f"Model package {path} does not exist or is not a file")
    return path


_CACHE: dict[tuple[str, str, str, int], RealBogusModel] = {}
_CACHE_LOCK = threading.Lock()


def load_model_cached(
    path: str | os.PathLike[str] | None = None,
    *,
    device: str = "cpu",
    threads: int | None = None,
    backend: str = "auto",
) -> RealBogusModel:
    """Like `load_model`, but return one shared model per file content and device.

    The cache key is the SHA-256 of the file's bytes, so a file is loaded
    once per process however it is named, and a changed file is reloaded.

    Parameters
    ----------
    path : `str` or `os.PathLike`, optional
        Package file; the default model if None.
    device : `str`, optional
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    threads : `int`, optional
        If given, set the number of torch intra-op threads (and of the ONNX
        Runtime session).
    backend : `str`, optional
        As for `load_model`.

    Returns
    -------
    model : `RealBogusModel`
        The (possibly shared) model; do not modify it.
    """
    resolved = _resolve_path(path)
    data = resolved.read_bytes()
    key = (hashlib.sha256(data).hexdigest(), str(_resolve_device(device)), backend, threads or 1)
    _set_threads(threads)
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = RealBogusModel.from_package(read_model_package(data), device, backend=backend,
                                                threads=threads or 1)
            _CACHE[key] = model
    return model


def clear_model_cache() -> None:
    """Forget all models loaded by `load_model_cached`."""
    with _CACHE_LOCK:
        _CACHE.clear()
