"""Training loop for real/bogus classifiers (Butler-free).

`train_classifier` trains an architecture from the registry on a stamp source, with class balancing,
the 8 dihedral augmentations, early stopping on the validation loss, per-epoch checkpoints with exact
resume, optional data-parallel training (``torch.distributed``, launched by ``torchrun``), a
calibration step and a threshold chosen for a target purity on the validation set.

Data-parallel training.  ``batch_size`` is the global batch: with ``W`` processes each process
takes ``batch_size // W`` stamps of every step.  Every process builds the same epoch order (the
order a single process would visit) and the same augmentations, cuts it into the same global
batches, and takes its slice of each; the per-stamp losses are weighted so that the gradient
``DistributedDataParallel`` averages is the mean over the global batch.  A run on ``W`` processes
therefore takes the same optimiser steps, on the same stamps, as a single-process run (up to
floating-point summation order).

Calibration.  Class balancing shifts the logits by ``log(n_bogus / n_real)`` of the training set
(the prior ratio); that shift is removed analytically, then one temperature ``T`` is fitted on the
validation logits by minimising the log loss.  Both are folded into the final linear layer
(``W -> W / T``, ``b -> (b - shift) / T``) so the module's declared sigmoid output is the calibrated
probability at the training prevalence.

Checkpoints hold tensors (model, best model, optimiser state, torch RNG state) in a safetensors file
and everything else in JSON; nothing is pickled.  Per-epoch data order and augmentations are derived
from ``(seed, epoch)``, so training stopped after epoch ``k`` and resumed reproduces an uninterrupted
run bit for bit (on the same device, with the same number of threads).
"""

from __future__ import annotations

__all__ = [
    "CHECKPOINT_JSON",
    "CHECKPOINT_TENSORS",
    "TrainingConfig",
    "TrainingResult",
    "fit_temperature",
    "fold_calibration",
    "effective_architecture_kwargs",
    "init_distributed",
    "local_batch_size",
    "predict_scores",
    "scheduled_lr",
    "split_by_group",
    "train_classifier",
]

import dataclasses
import datetime
import importlib
import inspect
import json
import logging
import math
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import expit
from torch import nn
from torch.nn import functional

from . import metrics
from .stamp_dataset import (
    DIHEDRAL_COUNT,
    ArrayStampSource,
    StampBatchIterator,
    StampSource,
    draw_occlusions,
)

_LOG = logging.getLogger("lsst.meas.realbogus.training")

CHECKPOINT_TENSORS = "checkpoint.safetensors"
"""File name of the checkpoint tensors inside a checkpoint directory."""
CHECKPOINT_JSON = "checkpoint.json"
"""File name of the checkpoint state (JSON) inside a checkpoint directory."""

_BALANCE_MODES = ("weight", "sample", "none")
_LR_SCHEDULES = ("constant", "cosine")


@dataclasses.dataclass
class TrainingConfig:
    """Configuration of `train_classifier`.

    Attributes
    ----------
    architecture : `str`
        Registry name passed to ``architectures.build_architecture``.
    architecture_kwargs : `dict`
        Keyword arguments of the architecture factory.
    channels : `tuple` [`str`, ...]
        Channels the model takes, in its order.
    cutout_size : `int`
        Stamp side length in pixels.
    normalization : `object` or `None`
        ``NormalizationSpec``; `None` means the default spec.
    epochs : `int`
        Maximum number of epochs.
    batch_size : `int`
        Global batch size: the stamps of one optimiser step summed over all processes.  In
        data-parallel training each of ``W`` processes takes ``batch_size // W`` of them, so
        ``batch_size`` must be a multiple of ``W``.
    lr : `float`
        AdamW learning rate (of the first epoch, with ``lr_schedule="cosine"``).
    lr_schedule : `str`
        ``"constant"``, or ``"cosine"``: the learning rate of epoch ``e`` is
        ``lr * (0.02 + 0.98 * (1 + cos(pi * e / epochs)) / 2)``, decaying to 2 % of ``lr`` by the
        last epoch (a function of the epoch alone, so resumed runs follow it exactly).
    weight_decay : `float`
        AdamW weight decay.
    class_balance : `str`
        ``"weight"`` (BCE ``pos_weight = n_bogus / n_real``), ``"sample"`` (class-balanced sampling
        with replacement) or ``"none"``.
    augment : `bool`
        Apply a random one of the 8 rotations/flips to every training stamp.
    occlusion_probability : `float`
        Fraction of training stamps (of both classes) given a random block or line of missing
        pixels away from the centre (`~lsst.meas.realbogus.stamp_dataset.draw_occlusions`), so that
        missing data beside a source (detector edges, NaN regions, masked columns, the padding of
        alert stamps) is not learnt as a sign of an artefact.  0 turns it off.
    patience : `int`
        Stop after this many epochs without a validation-loss improvement; the best weights are kept.
    seed : `int`
        Seed of the initial weights, data order and augmentations.
    target_purity : `float`
        Purity (at validation prevalence) the threshold is chosen for.
    num_threads : `int`
        ``torch.set_num_threads`` during training (1 gives bitwise determinism on CPU).
    device : `str`
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    version : `str`
        Model version string recorded in the package (at most 7 characters).
    calibrate : `bool`
        Fit and fold the temperature / prior correction.
    """

    architecture: str = "rb3_cnn"
    architecture_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    channels: tuple[str, ...] = ("template", "science", "difference")
    cutout_size: int = 51
    normalization: Any = None
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    lr_schedule: str = "constant"
    weight_decay: float = 1e-4
    class_balance: str = "weight"
    augment: bool = True
    occlusion_probability: float = 0.0
    patience: int = 5
    seed: int = 0
    target_purity: float = 0.99
    num_threads: int = 1
    device: str = "cpu"
    version: str = "0.1.0"
    calibrate: bool = True

    def validate(self) -> None:
        """Raise `ValueError` naming the first invalid setting."""
        if self.class_balance not in _BALANCE_MODES:
            raise ValueError(f"class_balance must be one of {_BALANCE_MODES}, got {self.class_balance!r}.")
        for name in ("epochs", "batch_size", "cutout_size", "num_threads"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0, got {self.patience}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}.")
        if self.lr_schedule not in _LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {_LR_SCHEDULES}, got {self.lr_schedule!r}.")
        if not 0.0 <= self.occlusion_probability <= 1.0:
            raise ValueError(f"occlusion_probability must be in [0, 1], got {self.occlusion_probability}.")
        if not 0 < self.target_purity <= 1:
            raise ValueError(f"target_purity must be in (0, 1], got {self.target_purity}.")
        if len(self.version) > 7:
            raise ValueError(f"version must be at most 7 characters, got {self.version!r}.")
        if not self.channels:
            raise ValueError("channels must not be empty.")

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dictionary of the settings."""
        out = dataclasses.asdict(self)
        out["channels"] = list(self.channels)
        out["normalization"] = _spec_to_jsonable(self.normalization)
        return out


@dataclasses.dataclass
class TrainingResult:
    """What `train_classifier` returns.

    Attributes
    ----------
    module : `torch.nn.Module`
        The trained module (best epoch, calibration folded in), in eval mode on the CPU.
    metadata : ``ModelMetadata``
        Metadata for ``save_model_package`` (threshold, metrics, provenance).
    history : `list` [`dict`]
        Per epoch: ``epoch``, ``train_loss``, ``val_loss``, ``val_auc``, ``seconds``.
    val_scores : `numpy.ndarray`
        Calibrated validation probabilities of the returned module.
    val_labels : `numpy.ndarray`
        Validation labels.
    """

    module: nn.Module
    metadata: Any
    history: list[dict[str, Any]]
    val_scores: np.ndarray
    val_labels: np.ndarray


def split_by_group(
    groups: Any, fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> tuple[np.ndarray, ...]:
    """Split rows into subsets such that no group (e.g. visit) is in two subsets.

    Parameters
    ----------
    groups : array-like, shape (N,)
        Group id of each row.
    fractions : sequence of `float`, optional
        Target fraction of rows per subset (normalised to sum to 1).
    seed : `int`, optional
        Seed of the group shuffle.

    Returns
    -------
    subsets : `tuple` [`numpy.ndarray`, ...]
        Sorted row indices of each subset, one per fraction.
    """
    groups = np.asarray(groups)
    if groups.ndim != 1 or groups.size == 0:
        raise ValueError(f"groups must be a non-empty 1-D array, got shape {groups.shape}.")
    frac = np.asarray(fractions, dtype=np.float64)
    if frac.ndim != 1 or frac.size == 0 or np.any(frac < 0) or frac.sum() <= 0:
        raise ValueError(f"fractions must be non-negative with a positive sum, got {fractions}.")
    frac = frac / frac.sum()
    unique, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    n_needed = int(np.count_nonzero(frac))
    if unique.size < n_needed:
        raise ValueError(f"cannot split {unique.size} distinct groups into {n_needed} non-empty subsets.")
    rng = np.random.default_rng(seed)
    order = rng.permutation(unique.size)
    # Assign each shuffled group to the subset its cumulative-count midpoint falls in.
    mid = (np.cumsum(counts[order]) - counts[order] / 2) / groups.size
    bounds = np.cumsum(frac)
    assign_sorted = np.minimum(np.searchsorted(bounds, mid, side="right"), frac.size - 1)
    # Make sure every subset with a positive fraction gets at least one group.
    for j in np.nonzero(frac)[0]:
        if not np.any(assign_sorted == j):
            donors = [k for k in range(frac.size) if np.count_nonzero(assign_sorted == k) > 1]
            k = max(donors, key=lambda d: np.count_nonzero(assign_sorted == d))
            assign_sorted[np.nonzero(assign_sorted == k)[0][-1]] = j
    assign = np.empty(unique.size, dtype=np.int64)
    assign[order] = assign_sorted
    row_assign = assign[inverse]
    return tuple(np.nonzero(row_assign == j)[0] for j in range(frac.size))


def init_distributed(device: str = "cpu") -> tuple[int, int]:
    """Initialise ``torch.distributed`` from the ``torchrun`` environment.

    Uses gloo on the CPU and NCCL on CUDA devices.  Does nothing if already initialised.

    Parameters
    ----------
    device : `str`, optional
        The training device.

    Returns
    -------
    rank, world_size : `int`
        This process's rank and the number of processes.
    """
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("torch.distributed is not available in this PyTorch build.")
    if not dist.is_initialized():
        for var in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(
                    f"distributed training needs {var} in the environment; launch with torchrun."
                )
        backend = "nccl" if str(device).startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size()


def _dist_info() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _spec_to_jsonable(spec: Any) -> Any:
    if spec is None:
        return None
    if dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(spec).items()}
    if hasattr(spec, "to_dict"):
        return spec.to_dict()
    return spec


def _default_spec(spec: Any) -> Any:
    if spec is not None:
        return spec
    from .normalization import NormalizationSpec

    return NormalizationSpec()


def _as_source(data: Any, channels: Sequence[str], what: str) -> StampSource:
    if hasattr(data, "read") and hasattr(data, "labels") and hasattr(data, "channels"):
        return data
    if isinstance(data, tuple | list) and len(data) == 2:
        return ArrayStampSource(data[0], data[1], channels)
    raise TypeError(
        f"{what} must be a StampStore, an ArrayStampSource or a (stamps, labels) tuple; "
        f"got {type(data).__name__}."
    )


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} requested but CUDA is not available.")
    return dev


def effective_architecture_kwargs(config: TrainingConfig, spec: Any = None) -> dict[str, Any]:
    """Architecture keyword arguments with the input shape filled in from the data.

    ``in_channels`` defaults to the number of channels the normalisation outputs (including its
    ``valid`` channel), and ``size`` (for fixed-size architectures that take it) to
    ``config.cutout_size``; explicit values in ``config.architecture_kwargs`` win.

    Parameters
    ----------
    config : `TrainingConfig`
        The configuration.
    spec : ``NormalizationSpec``, optional
        The normalisation; default ``config.normalization`` or the default spec.

    Returns
    -------
    kwargs : `dict`
        Keyword arguments for ``build_architecture`` (JSON-serialisable).
    """
    from .architectures import architecture_info

    spec = _default_spec(spec if spec is not None else config.normalization)
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.architecture_kwargs.items()}
    info = architecture_info(config.architecture)
    module_name, _, qualname = info["factory"].rpartition(".")
    try:
        factory = getattr(importlib.import_module(module_name), qualname)
        params = inspect.signature(factory).parameters
    except (ImportError, AttributeError, ValueError, TypeError):
        params = {}
    if "in_channels" in params or not params:
        kwargs.setdefault("in_channels", len(spec.output_channels(config.channels)))
    if "size" in params:
        kwargs.setdefault("size", int(config.cutout_size))
    return kwargs


def _build_module(config: TrainingConfig, kwargs: dict[str, Any]) -> nn.Module:
    from .architectures import build_architecture

    return build_architecture(config.architecture, **kwargs)


def _final_linear(module: nn.Module) -> nn.Linear:
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears or linears[-1].out_features != 1:
        raise ValueError("calibration folding needs the module to end in an nn.Linear with one output.")
    return linears[-1]


def fit_temperature(logits: np.ndarray, labels: np.ndarray, shift: float = 0.0) -> float:
    """Fit one temperature ``T`` minimising the log loss of ``sigmoid((logits - shift) / T)``.

    Parameters
    ----------
    logits : `numpy.ndarray`
        Validation logits.
    labels : `numpy.ndarray`
        Binary labels.
    shift : `float`, optional
        Logit offset removed before scaling (the class-balancing prior shift).

    Returns
    -------
    temperature : `float`
        The fitted temperature, in [exp(-4), exp(4)].
    """
    z = np.asarray(logits, dtype=np.float64) - shift
    y = np.asarray(labels, dtype=np.float64)
    if z.shape != y.shape or z.size == 0:
        raise ValueError("logits and labels must be non-empty arrays of the same shape.")

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - y * s))

    res = minimize_scalar(nll, bounds=(-4.0, 4.0), method="bounded", options={"xatol": 1e-6})
    return float(math.exp(res.x))


def fold_calibration(module: nn.Module, temperature: float, shift: float) -> None:
    """Fold ``logit -> (logit - shift) / temperature`` into the module's final linear layer.

    Parameters
    ----------
    module : `torch.nn.Module`
        Module ending in an ``nn.Linear`` with one output (modified in place).
    temperature : `float`
        Positive temperature.
    shift : `float`
        Logit offset to remove.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}.")
    layer = _final_linear(module)
    with torch.no_grad():
        layer.weight.div_(temperature)
        if layer.bias is None:
            layer.bias = nn.Parameter(torch.zeros(1, dtype=layer.weight.dtype, device=layer.weight.device))
        layer.bias.sub_(shift).div_(temperature)


def _predict_logits(
    module: nn.Module, iterator: StampBatchIterator, n: int, device: torch.device
) -> np.ndarray:
    module.eval()
    out = []
    with torch.no_grad():
        for x, _ in iterator.iterate(np.arange(n)):
            out.append(module(torch.from_numpy(x).to(device)).reshape(-1).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def predict_scores(
    module: nn.Module,
    source: Any,
    channels: Sequence[str],
    normalization: Any = None,
    *,
    batch_size: int = 256,
    device: str = "cpu",
) -> np.ndarray:
    """Sigmoid scores of a (calibrated) module on every stamp of a source.

    Parameters
    ----------
    module : `torch.nn.Module`
        Module returning logits ``(N,)``.
    source : `StampSource` or `tuple` (stamps, labels)
        The stamps (a tuple is taken to be in ``channels`` order).
    channels : sequence of `str`
        The model's channels.
    normalization : ``NormalizationSpec``, optional
        The model's normalisation (default spec if `None`).
    batch_size : `int`, optional
        Inference batch size.
    device : `str`, optional
        Torch device.

    Returns
    -------
    scores : `numpy.ndarray`, float64
        Probabilities in [0, 1].
    """
    src = _as_source(source, channels, "source")
    iterator = StampBatchIterator(src, batch_size, channels, _default_spec(normalization))
    dev = _resolve_device(device)
    logits = _predict_logits(module.to(dev), iterator, len(src), dev)
    return expit(logits.astype(np.float64))


def _bce(logits: np.ndarray, labels: np.ndarray, pos_weight: float) -> float:
    z = logits.astype(np.float64)
    y = labels.astype(np.float64)
    loss = pos_weight * y * np.logaddexp(0.0, -z) + (1 - y) * np.logaddexp(0.0, z)
    return float(loss.mean())


def _state_to_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}


def _save_checkpoint(
    directory: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any], stem: str = "checkpoint"
) -> None:
    """Atomically write ``<stem>.safetensors`` (tensors) and ``<stem>.json`` (the rest): no pickle."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    t_name, j_name = f"{stem}.safetensors", f"{stem}.json"
    tmp_t = directory / (t_name + ".tmp")
    tmp_j = directory / (j_name + ".tmp")
    save_file(tensors, str(tmp_t), metadata={"epoch": str(state["epoch"])})
    tmp_j.write_text(json.dumps(state, indent=1, allow_nan=True))
    os.replace(tmp_t, directory / t_name)
    os.replace(tmp_j, directory / j_name)


def _load_checkpoint(
    directory: Path, stem: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    """Read a checkpoint written by `_save_checkpoint`, or None if there is none."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    t_path, j_path = directory / f"{stem}.safetensors", directory / f"{stem}.json"
    if not (t_path.is_file() and j_path.is_file()):
        return None
    state = json.loads(j_path.read_text())
    with safe_open(str(t_path), framework="pt") as f:
        tensor_epoch = (f.metadata() or {}).get("epoch")
    if tensor_epoch != str(state.get("epoch")):
        raise RuntimeError(
            f"checkpoint in {directory} is inconsistent: tensors from epoch {tensor_epoch}, "
            f"state from epoch {state.get('epoch')}."
        )
    return load_file(str(t_path)), state


def _optimizer_to_flat(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in sd["state"].items():
        for name, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{idx}.{name}"] = value.detach().to("cpu").clone().contiguous()
            else:
                scalars.setdefault(str(idx), {})[name] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _optimizer_from_flat(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], info: dict[str, Any]
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, extra in info["scalars"].items():
        state.setdefault(int(idx), {}).update(extra)
    groups = []
    for g in info["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Return the per-process batch of a global ``batch_size`` shared by ``world_size`` processes.

    Parameters
    ----------
    batch_size : `int`
        Global batch size (`TrainingConfig.batch_size`).
    world_size : `int`
        Number of data-parallel processes.

    Returns
    -------
    local : `int`
        ``batch_size // world_size``.

    Raises
    ------
    ValueError
        Raised if ``batch_size`` is smaller than ``world_size`` or not a multiple of it.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be positive, got {world_size}.")
    if batch_size < world_size or batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} is the global batch and must be a positive multiple of the "
            f"number of processes {world_size} (each process takes batch_size // {world_size})."
        )
    return batch_size // world_size


def _epoch_order(labels: np.ndarray, config: TrainingConfig, epoch: int) -> np.ndarray:
    """Return the global visiting order of ``epoch``.

    It depends only on ``(config.seed, epoch)`` and the labels: it is the same in every process,
    for any number of processes, and across resumes.
    """
    from torch.utils.data import DistributedSampler, WeightedRandomSampler

    n = labels.size
    if config.class_balance == "sample":
        n_pos = int(labels.sum())
        w = np.where(labels == 1, 0.5 / n_pos, 0.5 / (n - n_pos))
        gen = torch.Generator().manual_seed(config.seed * 100003 + epoch)
        return np.fromiter(
            WeightedRandomSampler(torch.from_numpy(w), n, replacement=True, generator=gen), dtype=np.int64
        )
    # One replica: the permutation of torch.randperm seeded with seed + epoch.
    sampler = DistributedSampler(range(n), num_replicas=1, rank=0, shuffle=True, seed=config.seed)
    sampler.set_epoch(epoch)
    return np.fromiter(iter(sampler), dtype=np.int64)


def _local_positions(n_step: int, rank: int, world: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions in a global batch of ``n_step`` stamps that process ``rank`` takes.

    Process ``r`` takes the contiguous slice ``[r * m, (r + 1) * m)`` with ``m = ceil(n_step /
    world)``; positions past the end of a short (last) batch wrap around and are padding, so that
    every process takes the same number of stamps.

    Returns
    -------
    positions : `numpy.ndarray` of `int`
        Positions in the global batch.
    real : `numpy.ndarray` of `bool`
        False for padding (to be given zero weight).
    """
    per = -(-n_step // world)
    pos = np.arange(rank * per, (rank + 1) * per)
    return pos % n_step, pos < n_step


def _make_metadata(
    config: TrainingConfig,
    spec: Any,
    arch_kwargs: dict[str, Any],
    choice: metrics.ThresholdChoice,
    provenance: dict[str, Any],
    summary: dict[str, Any],
) -> Any:
    from .model_package import ModelMetadata

    fields = {f.name for f in dataclasses.fields(ModelMetadata)}
    values: dict[str, Any] = {
        "architecture": config.architecture,
        "architecture_kwargs": dict(arch_kwargs),
        "channels": list(config.channels),
        "cutout_size": int(config.cutout_size),
        "normalization": spec,
        "output_activation": "sigmoid",
        "version": config.version,
        "threshold": float(choice.threshold),
        "threshold_purity": float(choice.purity),
        "threshold_completeness": float(choice.completeness),
        "training": metrics.to_jsonable(provenance),
        "metrics": summary,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    metadata = ModelMetadata(**{k: v for k, v in values.items() if k in fields})
    metadata.validate()
    return metadata


def scheduled_lr(config: TrainingConfig, epoch: int) -> float:
    """Return the learning rate of an epoch under ``config.lr_schedule``.

    Parameters
    ----------
    config : `TrainingConfig`
        Settings (``lr``, ``lr_schedule``, ``epochs``).
    epoch : `int`
        Epoch number, from 0.

    Returns
    -------
    lr : `float`
        ``config.lr`` for ``"constant"``; the cosine decay to 2 % of it for ``"cosine"``.
    """
    if config.lr_schedule == "constant":
        return float(config.lr)
    phase = min(max(epoch, 0), config.epochs) / config.epochs
    return float(config.lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * phase))))


def train_classifier(
    train: Any,
    val: Any,
    config: TrainingConfig,
    *,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    log: logging.Logger | None = None,
    stop_after_epoch: int | None = None,
) -> TrainingResult:
    """Train a real/bogus classifier.

    Parameters
    ----------
    train, val : `StampStore`, `ArrayStampSource` or `tuple` (stamps, labels)
        Training and validation data (tuples are taken to be in ``config.channels`` order; stores
        may hold more channels or another order, the model's channels are selected by name).  The
        validation set should have the natural real/bogus prevalence: the threshold is chosen on it.
    config : `TrainingConfig`
        Settings.
    checkpoint_dir : path-like, optional
        Where a checkpoint is written after every epoch (by rank 0).
    resume : `bool`, optional
        Resume from the checkpoint in ``checkpoint_dir`` if there is one.
    log : `logging.Logger`, optional
        Logger for progress; default ``lsst.meas.realbogus.training``.
    stop_after_epoch : `int`, optional
        Stop (without calibration) after this many epochs in total; for tests of resume.

    Returns
    -------
    result : `TrainingResult`
        The calibrated best module, its metadata, the history and the validation scores.

    Notes
    -----
    When ``torch.distributed`` is initialised (see `init_distributed`), the module is wrapped in
    ``DistributedDataParallel`` and ``config.batch_size`` is the global batch: each of the ``W``
    processes takes ``batch_size // W`` stamps of every global batch (`ValueError` if
    ``batch_size`` is not a multiple of ``W``).  All processes cut the same epoch order, with the
    same augmentations, into the same global batches, and the losses are weighted so that the
    averaged gradient is that of the mean loss over the global batch (a short last batch included),
    so the optimisation matches single-process training step for step.  Every process evaluates the
    full validation set (identical weights give identical early-stopping decisions).  Batch
    normalisation layers are converted to ``SyncBatchNorm`` on CUDA; on the CPU (where PyTorch has
    no ``SyncBatchNorm``) their batch statistics are per process.
    """
    config.validate()
    log = log or _LOG
    rank, world = _dist_info()
    device = _resolve_device(config.device)
    spec = _default_spec(config.normalization)
    arch_kwargs = effective_architecture_kwargs(config, spec)
    train_src = _as_source(train, config.channels, "train")
    val_src = _as_source(val, config.channels, "val")
    for name, src in (("train", train_src), ("val", val_src)):
        if src.size != config.cutout_size:
            raise ValueError(
                f"{name} stamps are {src.size} px but config.cutout_size is {config.cutout_size}."
            )
        if len(src) == 0:
            raise ValueError(f"{name} set is empty.")
    train_labels = np.asarray(train_src.labels).astype(np.int64)
    val_labels = np.asarray(val_src.labels).astype(np.int64)
    n_pos, n_neg = int(train_labels.sum()), int(train_labels.size - train_labels.sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"training set needs both classes; got {n_pos} real and {n_neg} bogus.")
    if val_labels.min() == val_labels.max():
        raise ValueError("validation set needs both real and bogus examples.")
    prior_ratio = n_neg / n_pos
    pos_weight = prior_ratio if config.class_balance == "weight" else 1.0
    shift = math.log(prior_ratio) if config.class_balance in ("weight", "sample") else 0.0

    local_batch = local_batch_size(config.batch_size, world)
    train_iter = StampBatchIterator(train_src, local_batch, config.channels, spec)
    val_iter = StampBatchIterator(val_src, max(config.batch_size, 256), config.channels, spec)

    old_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    try:
        if device.type == "cuda" and device.index is not None:
            torch.cuda.set_device(device)
        torch.manual_seed(config.seed)
        module = _build_module(config, arch_kwargs).to(device)
        model: nn.Module = module
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel

            has_bn = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())
            if has_bn and device.type == "cuda":
                module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
            elif has_bn and rank == 0:
                log.warning(
                    "Batch normalisation statistics are per process (%d stamps) in data-parallel "
                    "training on the CPU: results can differ from single-process training.",
                    local_batch,
                )
            model = DistributedDataParallel(
                module, device_ids=[device.index] if device.type == "cuda" else None
            )
        optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        pos_weight_t = torch.tensor(pos_weight, device=device)
        loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight_t)

        start_epoch = 0
        best_state = _state_to_cpu(module.state_dict())
        best_val_loss = math.inf
        best_epoch = -1
        stale = 0
        history: list[dict[str, Any]] = []
        ckpt_path = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if ckpt_path is not None and resume:
            loaded = _load_checkpoint(ckpt_path)
            if loaded is not None:
                tensors, state = loaded
                if state["seed"] != config.seed or state["world_size"] != world:
                    raise RuntimeError(
                        f"checkpoint in {ckpt_path} was written with seed {state['seed']} and "
                        f"{state['world_size']} processes; this run has seed {config.seed} and {world}."
                    )
                module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
                best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
                _optimizer_from_flat(optimizer, tensors, state["optimizer"])
                torch.set_rng_state(
                    tensors[f"rng.torch.{rank}"] if f"rng.torch.{rank}" in tensors else tensors["rng.torch.0"]
                )
                if device.type == "cuda" and "rng.cuda.0" in tensors:
                    torch.cuda.set_rng_state(tensors["rng.cuda.0"], device)
                start_epoch = int(state["epoch"]) + 1
                best_val_loss = float(state["best_val_loss"])
                best_epoch = int(state["best_epoch"])
                stale = int(state["stale"])
                history = list(state["history"])
                log.info("Resumed from %s after epoch %d.", ckpt_path, start_epoch - 1)

        last_epoch = config.epochs if stop_after_epoch is None else min(config.epochs, stop_after_epoch)
        stopped_early = stale > config.patience
        epoch = start_epoch
        while epoch < last_epoch and not stopped_early:
            t0 = time.perf_counter()
            lr = scheduled_lr(config, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            # The same global order and augmentations in every process (the trailing 0 of the
            # augmentation seed keeps the stream of single-process runs).
            order = _epoch_order(train_labels, config, epoch)
            aug_rng = np.random.default_rng([config.seed, epoch, 0]) if config.augment else None
            # Occlusions have a stream of their own: turning them on leaves the rotations unchanged.
            occ_rng = np.random.default_rng([config.seed, epoch, 1])
            # Kept on the training device: NCCL cannot all-reduce CPU tensors, and no per-batch sync.
            loss_sum = torch.zeros(2, dtype=torch.float64, device=device)
            for start in range(0, order.size, config.batch_size):
                step = order[start : start + config.batch_size]
                dihedral = aug_rng.integers(0, DIHEDRAL_COUNT, step.size) if aug_rng is not None else None
                occlusion = draw_occlusions(
                    occ_rng, step.size, config.cutout_size, config.occlusion_probability
                )
                real = None
                if world > 1:
                    positions, real = _local_positions(step.size, rank, world)
                    step = step[positions]
                    dihedral = dihedral[positions] if dihedral is not None else None
                    occlusion = occlusion[positions] if occlusion is not None else None
                xb = torch.from_numpy(train_iter.get_batch(step, dihedral, occlusion)).to(device)
                yb = torch.from_numpy(train_labels[step].astype(np.float32)).to(device)
                optimizer.zero_grad(set_to_none=True)
                logits = model(xb).reshape(-1)
                if real is None:
                    loss = loss_fn(logits, yb)
                    loss_sum[0] += loss.detach().double() * len(step)
                    loss_sum[1] += len(step)
                else:
                    # DDP averages the gradients over the processes: weighting each real stamp by
                    # world / (stamps in the global batch) makes that the global-batch mean.
                    per_stamp = functional.binary_cross_entropy_with_logits(
                        logits, yb, pos_weight=pos_weight_t, reduction="none"
                    )
                    real_t = torch.from_numpy(real).to(device=device, dtype=per_stamp.dtype)
                    n_real_step = int(min(config.batch_size, order.size - start))
                    loss = (per_stamp * real_t).sum() * (world / n_real_step)
                    loss_sum[0] += (per_stamp.detach().double() * real_t.double()).sum()
                    loss_sum[1] += int(real.sum())
                loss.backward()
                optimizer.step()
            if world > 1:
                import torch.distributed as dist

                dist.all_reduce(loss_sum)
            train_loss = float(loss_sum[0] / loss_sum[1])
            val_logits = _predict_logits(module, val_iter, len(val_src), device)
            val_loss = _bce(val_logits, val_labels, pos_weight)
            val_auc = metrics.roc_auc(val_logits, val_labels)
            seconds = time.perf_counter() - t0
            improved = val_loss < best_val_loss
            if improved:
                best_val_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = _state_to_cpu(module.state_dict())
            else:
                stale += 1
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_auc": val_auc,
                "lr": lr,
                "seconds": seconds,
            }
            history.append(record)
            log.info(
                "Epoch %d: train loss %.4f, val loss %.4f, val AUC %.4f, %.1f s%s",
                epoch,
                train_loss,
                val_loss,
                val_auc,
                seconds,
                " (best)" if improved else "",
            )
            stopped_early = stale > config.patience
            if ckpt_path is not None and rank == 0:
                tensors = {f"model.{k}": v for k, v in _state_to_cpu(module.state_dict()).items()}
                tensors.update({f"best.{k}": v for k, v in best_state.items()})
                opt_tensors, opt_info = _optimizer_to_flat(optimizer)
                tensors.update(opt_tensors)
                tensors["rng.torch.0"] = torch.get_rng_state()
                if device.type == "cuda":
                    tensors["rng.cuda.0"] = torch.cuda.get_rng_state(device)
                _save_checkpoint(
                    ckpt_path,
                    tensors,
                    {
                        "epoch": epoch,
                        "seed": config.seed,
                        "world_size": world,
                        "best_val_loss": best_val_loss,
                        "best_epoch": best_epoch,
                        "stale": stale,
                        "history": history,
                        "optimizer": opt_info,
                        "config": config.to_dict(),
                    },
                )
            epoch += 1
        if stopped_early:
            log.info("Early stopping after epoch %d; best epoch %d.", epoch - 1, best_epoch)

        module.load_state_dict(best_state)
        module.eval()
        val_logits = _predict_logits(module, val_iter, len(val_src), device)
        temperature = 1.0
        if config.calibrate and stop_after_epoch is None:
            temperature = fit_temperature(val_logits, val_labels, shift)
            if not math.exp(-3.99) < temperature < math.exp(3.99):
                log.warning(
                    "Fitted temperature %.3g is at its bound: the validation set is (nearly) perfectly "
                    "separated or too small to calibrate on; probabilities will be overconfident.",
                    temperature,
                )
            fold_calibration(module, temperature, shift)
            folded = _predict_logits(module, val_iter, len(val_src), device)
            expected = (val_logits.astype(np.float64) - shift) / temperature
            if not np.allclose(folded, expected, rtol=1e-3, atol=1e-3 * (1 + np.abs(expected).max())):
                raise RuntimeError(
                    f"architecture {config.architecture!r} is not linear after its final "
                    "nn.Linear: calibration cannot be folded into it."
                )
            val_logits = folded
        val_scores = expit(val_logits.astype(np.float64))
        choice = metrics.threshold_for_purity(val_scores, val_labels, config.target_purity)
        summary = metrics.summarize(
            val_scores, val_labels, threshold=choice.threshold, target_purity=config.target_purity
        )
        summary.pop("reliability", None)
        provenance = {
            "config": config.to_dict(),
            "n_train": int(train_labels.size),
            "n_train_real": n_pos,
            "n_val": int(val_labels.size),
            "n_val_real": int(val_labels.sum()),
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "temperature": temperature,
            "prior_shift": shift,
            "world_size": world,
            "torch_version": torch.__version__,
        }
        module = module.to("cpu").eval()
        metadata = _make_metadata(config, spec, arch_kwargs, choice, provenance, summary)
        log.info(
            "Validation: AUC %.4f, threshold %.4f gives purity %.4f, completeness %.4f, ECE %.4f.",
            summary["auc"],
            choice.threshold,
            choice.purity,
            choice.completeness,
            summary.get("ece", math.nan),
        )
        return TrainingResult(
            module=module,
            metadata=metadata,
            history=history,
            val_scores=val_scores.astype(np.float32),
            val_labels=val_labels,
        )
    finally:
        torch.set_num_threads(old_threads)
