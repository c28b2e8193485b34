"""Training loop for the TransiNet segmentation network.

Training data are (template, science) pairs with truth catalogues (e.g.
``SimulatedVisit`` objects, or anything with the same attributes).  Each pair is
normalised once as a whole (`normalization.normalize_pair`, exactly as at
inference), and its per-pixel targets and loss weights are built
(`targets.build_targets`).  Every epoch draws random square crops (a fraction of
them centred near a transient), applies one of the 8 dihedral transforms to each,
and minimises a weighted binary cross-entropy (or focal) loss with Adam.  Validation computes the
same weighted loss on the whole held-out images (no augmentation); the best
epoch is kept and training stops early after ``patience`` epochs without
improvement.

Determinism: the network is initialised from ``seed`` and every epoch's crops and
augmentations come from a generator seeded by ``(seed, epoch)``, so a run resumed
from a checkpoint reproduces an uninterrupted run.  Checkpoints hold tensors
(weights, best weights, Adam state) in a safetensors file and everything else in
JSON; no pickle.  Progress is logged to ``lsst.meas.realbogus.transinet``.
"""

from __future__ import annotations

__all__ = ["TransiNetTrainingConfig", "TransiNetTrainingResult", "PreparedExample", "prepare_example",
           "train_transinet", "initial_state_from_package", "weighted_loss", "dihedral"]

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as nnf

from .architecture import ARCHITECTURE_NAME, TransiNetUNet
from .normalization import NormalizationSpec, normalize_pair, valid_mask
from .targets import build_targets

_LOG = logging.getLogger("lsst.meas.realbogus.transinet")

_CHECKPOINT_STEM = "transinet_checkpoint"
CHECKPOINT_TENSORS = f"{_CHECKPOINT_STEM}.safetensors"
CHECKPOINT_JSON = f"{_CHECKPOINT_STEM}.json"


@dataclasses.dataclass
class TransiNetTrainingConfig:
    """Configuration of `train_transinet`.

    Parameters
    ----------
    base_width, depth : `int`
        Network size (see `TransiNetUNet`).
    channels : `tuple` [`str`, ...]
        Network input channels (see `NormalizationSpec`).
    asinh_softening : `float`
        Stretch of the input normalisation.
    difference_noise : `str`
        Scale of the ``"difference"`` channel, ``"mad"`` or ``"variance"``
        (see `NormalizationSpec`).
    difference_kernel : `str`
        Matching kernel of the ``"difference"`` channel, ``"gaussian"`` or
        ``"fitted"`` (see `NormalizationSpec`).
    crop_size : `int`
        Side of the square training crops (multiple of ``2**depth``).
    crops_per_epoch, batch_size : `int`
        Crops drawn per epoch and per optimiser step.
    positive_fraction : `float`
        Fraction of crops centred (with jitter) on a random transient.
    positive_type_weights : `dict` [`str`, `float`]
        Relative probability, by truth ``type``, that a transient is the centre
        of a positive crop (types not listed weigh 1; empty, or all weights of
        the drawn image 0: every transient of that image equally likely).
        Up-weighting under-represented hard positives, e.g.
        ``{"variable_brighten": 4, "variable_fade": 4}``, shows them more often
        without changing the per-pixel loss.
    max_epochs, patience : `int`
        Epoch limit and early-stopping patience (epochs without a better
        validation loss).
    learning_rate, weight_decay : `float`
        Adam parameters.
    lr_schedule : `str`
        ``"constant"`` or ``"cosine"`` (learning rate decayed from
        ``learning_rate`` to ``learning_rate / 20`` over ``max_epochs``; set from
        the epoch index, so a resumed run is identical to an uninterrupted one).
    loss : `str`
        ``"bce"`` or ``"focal"`` (both per-pixel weighted, soft targets).  In
        our small experiments the focal loss stalled at the all-negative
        solution while weighted BCE learned, hence the default.
    focal_gamma : `float`
        Focal-loss exponent.
    positive_weight, artifact_weight : `float`
        Loss up-weighting on transient blobs and around artefacts.
    min_snr : `float`, optional
        Transients fainter than this are ignored in the loss.
    target_core_radius : `float`
        Flat-top radius (pixels) of the target blobs (see `targets.build_targets`).
    augment : `bool`
        Apply random dihedral transforms.
    seed : `int`
        Random seed.
    version : `str`
        Model version (at most 7 characters).
    initialized_from : `str`
        Version of the model package whose weights training starts from
        (fine-tuning, see `initial_state_from_package`); empty: the network is
        initialised at random from ``seed``.  Kept in the package's training
        config as provenance.
    """

    base_width: int = 8
    depth: int = 3
    channels: tuple[str, ...] = ("template", "science", "valid")
    asinh_softening: float = 3.0
    difference_noise: str = "mad"
    difference_kernel: str = "gaussian"
    crop_size: int = 128
    crops_per_epoch: int = 64
    batch_size: int = 8
    positive_fraction: float = 0.5
    positive_type_weights: dict[str, float] = dataclasses.field(default_factory=dict)
    max_epochs: int = 20
    patience: int = 5
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    loss: str = "bce"
    focal_gamma: float = 2.0
    positive_weight: float = 20.0
    artifact_weight: float = 5.0
    min_snr: float | None = None
    target_core_radius: float = 0.0
    augment: bool = True
    seed: int = 0
    version: str = "0.1"
    initialized_from: str = ""

    def validate(self) -> None:
        """Raise `ValueError` naming the first invalid field."""
        multiple = 2**self.depth
        if self.crop_size < multiple or self.crop_size % multiple:
            raise ValueError(f"crop_size={self.crop_size} must be a positive multiple of "
                             f"2**depth={multiple}.")
        for name in ("crops_per_epoch", "batch_size", "max_epochs", "base_width"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1; got {getattr(self, name)}.")
        if self.patience < 0:
            raise ValueError(f"patience must be >= 0; got {self.patience}.")
        if not 0 <= self.positive_fraction <= 1:
            raise ValueError(f"positive_fraction must be in [0, 1]; got {self.positive_fraction}.")
        for name, value in self.positive_type_weights.items():
            if not (isinstance(name, str) and np.isfinite(value) and value >= 0):
                raise ValueError(f"positive_type_weights must map type names to finite weights >= 0; "
                                 f"got {name!r}: {value!r}.")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"lr_schedule must be 'constant' or 'cosine'; got {self.lr_schedule!r}.")
        if self.loss not in ("focal", "bce"):
            raise ValueError(f"loss must be 'focal' or 'bce'; got {self.loss!r}.")
        if not (self.learning_rate > 0):
            raise ValueError(f"learning_rate must be > 0; got {self.learning_rate}.")
        if not (isinstance(self.version, str) and 1 <= len(self.version) <= 7):
            raise ValueError(f"version must be a string of 1 to 7 characters; got {self.version!r}.")
        self.spec()

    def learning_rate_at(self, epoch: int) -> float:
        """Return the learning rate of ``epoch`` (0-based) under ``lr_schedule``."""
        if self.lr_schedule == "constant" or self.max_epochs <= 1:
            return float(self.learning_rate)
        floor = self.learning_rate / 20.0
        frac = min(max(epoch / (self.max_epochs - 1), 0.0), 1.0)
        return float(floor + 0.5 * (self.learning_rate - floor) * (1.0 + np.cos(np.pi * frac)))

    def spec(self) -> NormalizationSpec:
        """Return the input normalisation spec."""
        return NormalizationSpec(channels=tuple(self.channels), asinh_softening=self.asinh_softening,
                                 difference_noise=self.difference_noise,
                                 difference_kernel=self.difference_kernel)

    def architecture_kwargs(self) -> dict[str, int]:
        """Keyword arguments of ``build_architecture("transinet_unet", ...)``."""
        return {"in_channels": len(self.channels), "base_width": self.base_width, "depth": self.depth}

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable copy."""
        out = dataclasses.asdict(self)
        out["channels"] = list(self.channels)
        out["positive_type_weights"] = {str(k): float(v) for k, v in self.positive_type_weights.items()}
        return out


@dataclasses.dataclass
class PreparedExample:
    """One normalised training image with its targets."""

    inputs: np.ndarray
    target: np.ndarray
    weight: np.ndarray
    positives: np.ndarray
    positive_types: np.ndarray | None = None


@dataclasses.dataclass
class TransiNetTrainingResult:
    """Outcome of `train_transinet`.

    Attributes
    ----------
    module : `TransiNetUNet`
        Network with the best (lowest validation loss) weights, in eval mode.
    config : `TransiNetTrainingConfig`
        The configuration used.
    history : `list` [`dict`]
        Per-epoch ``epoch``, ``train_loss``, ``val_loss``, ``seconds``.
    best_epoch : `int`
        Epoch of the kept weights.
    stopped_early : `bool`
        Whether early stopping ended training.
    """

    module: TransiNetUNet
    config: TransiNetTrainingConfig
    history: list[dict[str, float]]
    best_epoch: int
    stopped_early: bool

    def package_metadata(self, *, threshold: float = 0.5, metrics: dict[str, Any] | None = None
                         ) -> dict[str, Any]:
        """Return the `~lsst.meas.realbogus.model_package.ModelMetadata` fields for this network.

        The package-level ``normalization`` is the stamp normalisation ``"none"``
        (with a ``valid`` channel if used); the TransiNet input normalisation is
        stored in ``training["transinet_normalization"]``, and ``cutout_size`` is
        the training crop size.
        """
        spec = self.config.spec()
        channels = [c for c in spec.channels if c != "valid"]
        if "valid" in spec.channels and spec.channels[-1] != "valid":
            raise ValueError(f"The 'valid' channel must be last to be packaged; got {list(spec.channels)}.")
        return {
            "architecture": ARCHITECTURE_NAME,
            "architecture_kwargs": self.config.architecture_kwargs(),
            "channels": channels,
            "cutout_size": int(self.config.crop_size),
            "normalization": {"method": "none", "asinh_a": None, "use_variance": False,
                              "mask_channel": "valid" in spec.channels},
            "output_activation": "sigmoid",
            "version": self.config.version,
            "kind": "segmentation",
            "threshold": float(threshold),
            "training": {"transinet_normalization": spec.to_dict(), "config": self.config.to_dict(),
                         "best_epoch": self.best_epoch, "history": self.history},
            "metrics": dict(metrics or {}),
        }


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """Apply dihedral transform ``k`` in 0..7 to the last two axes (rotations, then a flip for k >= 4)."""
    if not 0 <= k < 8:
        raise ValueError(f"Dihedral index must be in 0..7; got {k}.")
    out = np.rot90(array, k % 4, axes=(-2, -1))
    if k >= 4:
        out = out[..., ::-1]
    return np.ascontiguousarray(out)


def weighted_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    *,
    kind: str = "bce",
    gamma: float = 2.0,
) -> torch.Tensor:
    """Per-pixel weighted focal or binary cross-entropy loss with soft targets.

    Returns ``sum(weight * loss) / sum(weight)`` (0 if all weights are 0).
    """
    bce = nnf.binary_cross_entropy_with_logits(logits, target, reduction="none")
    if kind == "focal":
        prob = torch.sigmoid(logits)
        bce = bce * (prob - target).abs().pow(gamma)
    elif kind != "bce":
        raise ValueError(f"Unknown loss {kind!r}; use 'focal' or 'bce'.")
    total = weight.sum()
    return (weight * bce).sum() / total.clamp_min(1e-12)


def prepare_example(visit: Any, config: TransiNetTrainingConfig) -> PreparedExample:
    """Normalise one (template, science) pair and build its targets.

    Parameters
    ----------
    visit : object
        Has ``science`` and ``template`` (each with ``image``, ``variance``,
        ``mask``), ``science_psf_sigma`` and ``truth`` (e.g. a ``SimulatedVisit``),
        and ``template_psf_sigma`` if the channels include ``"difference"``.
    config : `TransiNetTrainingConfig`
        Training configuration.

    Returns
    -------
    example : `PreparedExample`
        Inputs ``(C, H, W)``, target, weight and transient positions.
    """
    spec = config.spec()
    required = ("science", "template", "science_psf_sigma", "truth")
    if spec.needs_psf_sigmas:
        required += ("template_psf_sigma",)
    for attr in required:
        if not hasattr(visit, attr):
            raise TypeError(f"Training visit {type(visit).__name__} lacks attribute {attr!r}.")
    sci, tmpl = visit.science, visit.template
    mask = np.asarray(sci.mask).astype(np.int64) | np.asarray(tmpl.mask).astype(np.int64)
    inputs = normalize_pair(tmpl.image, sci.image, template_variance=tmpl.variance,
                            science_variance=sci.variance, mask=mask, spec=spec,
                            science_psf_sigma=float(visit.science_psf_sigma),
                            template_psf_sigma=getattr(visit, "template_psf_sigma", None))
    invalid = ~valid_mask(tmpl.image, sci.image, mask=mask)
    targets = build_targets(visit.truth, sci.image.shape, float(visit.science_psf_sigma), invalid=invalid,
                            positive_weight=config.positive_weight, artifact_weight=config.artifact_weight,
                            min_snr=config.min_snr, core_radius=config.target_core_radius)
    truth = visit.truth
    is_tr = np.asarray(truth["category"]).astype(str) == "transient"
    positives = np.column_stack([np.asarray(truth["x"], float)[is_tr], np.asarray(truth["y"], float)[is_tr]])
    types = (np.asarray(truth["type"]).astype(str)[is_tr] if "type" in truth.colnames
             else np.full(int(is_tr.sum()), "", dtype=str))
    return PreparedExample(inputs, targets.target, targets.weight, positives.reshape(-1, 2), types)


def _positive_probabilities(example: PreparedExample, type_weights: dict[str, float]) -> np.ndarray | None:
    """Return the probabilities of ``example``'s transients to centre a crop (`None`: uniform)."""
    if not type_weights or example.positive_types is None:
        return None
    w = np.array([type_weights.get(str(t), 1.0) for t in example.positive_types], dtype=float)
    return w / w.sum() if w.sum() > 0 else None


def _draw_crops(
    examples: Sequence[PreparedExample], config: TransiNetTrainingConfig, epoch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng([config.seed, epoch])
    size = config.crop_size
    n_ch = examples[0].inputs.shape[0]
    x_out = np.zeros((config.crops_per_epoch, n_ch, size, size), dtype=np.float32)
    t_out = np.zeros((config.crops_per_epoch, 1, size, size), dtype=np.float32)
    w_out = np.zeros((config.crops_per_epoch, 1, size, size), dtype=np.float32)
    areas = np.array([ex.target.size for ex in examples], dtype=float)
    area_prob = areas / areas.sum()
    # Crop-centre probabilities per image, computed once (None: uniform).
    probs = [_positive_probabilities(ex, config.positive_type_weights) for ex in examples]
    for i in range(config.crops_per_epoch):
        index = int(rng.choice(len(examples), p=area_prob))
        ex = examples[index]
        height, width = ex.target.shape
        if rng.uniform() < config.positive_fraction and len(ex.positives):
            prob = probs[index]
            pick = (int(rng.integers(len(ex.positives))) if prob is None
                    else int(rng.choice(len(ex.positives), p=prob)))
            cx, cy = ex.positives[pick]
            y0 = int(round(cy)) - size // 2 + int(rng.integers(-size // 3, size // 3 + 1))
            x0 = int(round(cx)) - size // 2 + int(rng.integers(-size // 3, size // 3 + 1))
        else:
            y0 = int(rng.integers(-size // 8, max(height - size + size // 8, 1 - size // 8) + 1))
            x0 = int(rng.integers(-size // 8, max(width - size + size // 8, 1 - size // 8) + 1))
        # Crops may overhang the image: the overhang is zero input with zero weight (like the tiler's canvas).
        sy = slice(max(y0, 0), min(y0 + size, height))
        sx = slice(max(x0, 0), min(x0 + size, width))
        dy = slice(sy.start - y0, sy.stop - y0)
        dx = slice(sx.start - x0, sx.stop - x0)
        x_out[i, :, dy, dx] = ex.inputs[:, sy, sx]
        t_out[i, 0, dy, dx] = ex.target[sy, sx]
        w_out[i, 0, dy, dx] = ex.weight[sy, sx]
        if config.augment:
            k = int(rng.integers(8))
            x_out[i], t_out[i], w_out[i] = dihedral(x_out[i], k), dihedral(t_out[i], k), dihedral(w_out[i], k)
    return x_out, t_out, w_out


def _validation_loss(module: TransiNetUNet, examples: Sequence[PreparedExample],
                     config: TransiNetTrainingConfig) -> float:
    module.eval()
    num = 0.0
    den = 0.0
    with torch.inference_mode():
        for ex in examples:
            logits = module(torch.from_numpy(ex.inputs[None]).contiguous(memory_format=torch.channels_last))
            w = torch.from_numpy(ex.weight[None, None])
            loss = weighted_loss(logits, torch.from_numpy(ex.target[None, None]), w, kind=config.loss,
                                 gamma=config.focal_gamma)
            num += float(loss) * float(w.sum())
            den += float(w.sum())
    return num / den if den > 0 else float("nan")


def _flatten_optimizer(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for idx, pstate in sd["state"].items():
        for name, value in pstate.items():
            if not torch.is_tensor(value):
                raise TypeError(f"Unexpected non-tensor optimiser state {name!r}.")
            tensors[f"optim.{idx}.{name}"] = value.detach().clone().contiguous()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                       info: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            state.setdefault(int(idx), {})[name] = value
    groups = [dict(g, betas=tuple(g["betas"])) if "betas" in g else dict(g) for g in info["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _save_checkpoint(directory: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
    from ..training import _save_checkpoint as save

    save(directory, tensors, state, stem=_CHECKPOINT_STEM)


def _load_checkpoint(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    from ..training import _load_checkpoint as load

    return load(directory, stem=_CHECKPOINT_STEM)


def initial_state_from_package(package: Any, config: TransiNetTrainingConfig) -> dict[str, torch.Tensor]:
    """Return a TransiNet package's weights to fine-tune with ``config``.

    Parameters
    ----------
    package : `~lsst.meas.realbogus.model_package.ModelPackage`
        A TransiNet model package (e.g. the shipped default).
    config : `TransiNetTrainingConfig`
        The fine-tuning configuration: its network size and input normalisation
        must be the package's, since the weights only mean something on the
        inputs they were trained on.

    Returns
    -------
    state : `dict` [`str`, `torch.Tensor`]
        Copies of the package's weights, for ``train_transinet(initial_state=...)``.

    Raises
    ------
    ValueError
        Raised if the package is not a TransiNet package or its architecture or
        normalisation differ from ``config``'s (the differing entries are named).
    """
    from .model import TransiNetModel

    model = TransiNetModel.from_package(package)  # checks architecture, normalisation and channels
    problems = []
    kwargs = {k: int(v) for k, v in dict(package.metadata.architecture_kwargs).items()}
    if kwargs != config.architecture_kwargs():
        problems.append(f"architecture_kwargs {kwargs} != config's {config.architecture_kwargs()}")
    have, wanted = model.spec.to_dict(), config.spec().to_dict()
    for key in sorted(set(have) | set(wanted)):
        if have.get(key) != wanted.get(key):
            problems.append(f"normalisation {key!r} {have.get(key)!r} != config's {wanted.get(key)!r}")
    if problems:
        raise ValueError(f"Package {package.metadata.version!r} cannot be fine-tuned with this config: "
                         + "; ".join(problems) + ".")
    return {k: v.detach().clone() for k, v in package.state_dict.items()}


def train_transinet(
    train_visits: Sequence[Any],
    val_visits: Sequence[Any],
    config: TransiNetTrainingConfig,
    *,
    checkpoint_dir: str | os.PathLike[str] | None = None,
    resume: bool = True,
    stop_after_epochs: int | None = None,
    initial_state: dict[str, torch.Tensor] | None = None,
) -> TransiNetTrainingResult:
    """Train a TransiNet U-Net on (template, science) pairs with truth.

    Parameters
    ----------
    train_visits, val_visits : `~collections.abc.Sequence`
        Training and held-out pairs (see `prepare_example`), or
        `PreparedExample` objects already prepared with this ``config`` (e.g.
        to simulate and prepare many visits one at a time without keeping the
        images); validate on different visits than you train on.
    config : `TransiNetTrainingConfig`
        Training configuration.
    checkpoint_dir : path-like, optional
        Directory for per-epoch checkpoints; with ``resume`` an existing
        checkpoint there is continued from (it must come from the same config).
    resume : `bool`
        Continue from an existing checkpoint in ``checkpoint_dir``.
    stop_after_epochs : `int`, optional
        Stop (as if interrupted) after this many epochs have completed in total;
        used to test resuming.
    initial_state : `dict` [`str`, `torch.Tensor`], optional
        Weights to start from instead of a random initialisation (fine-tuning;
        see `initial_state_from_package`); needs ``config.initialized_from``.
        A checkpoint being resumed takes precedence.

    Returns
    -------
    result : `TransiNetTrainingResult`
        Best network, history and metadata.

    Raises
    ------
    ValueError
        Raised for an invalid config, empty inputs, a checkpoint from a
        different configuration, or an ``initial_state`` that does not fit the
        network or comes without ``config.initialized_from``.
    """
    config.validate()
    if (initial_state is None) != (not config.initialized_from):
        raise ValueError("initial_state and config.initialized_from go together: give both (fine-tuning) "
                         "or neither.")
    if len(train_visits) == 0 or len(val_visits) == 0:
        raise ValueError("train_transinet needs at least one training and one validation visit.")
    train = [v if isinstance(v, PreparedExample) else prepare_example(v, config) for v in train_visits]
    val = [v if isinstance(v, PreparedExample) else prepare_example(v, config) for v in val_visits]
    n_channels = config.spec().n_channels
    for ex in train + val:
        if ex.inputs.shape[0] != n_channels:
            raise ValueError(f"A prepared example has {ex.inputs.shape[0]} input channels; the config's "
                             f"channels {list(config.channels)} need {n_channels}.")
    torch.manual_seed(config.seed)
    module = TransiNetUNet(**config.architecture_kwargs())
    if initial_state is not None:
        own = module.state_dict()
        bad = sorted(k for k in set(own) | set(initial_state)
                     if k not in own or k not in initial_state or own[k].shape != initial_state[k].shape)
        if bad:
            raise ValueError(f"initial_state does not fit the network: {len(bad)} missing, unexpected or "
                             f"differently shaped tensors, e.g. {bad[:3]}.")
        module.load_state_dict(initial_state)
        _LOG.info("Fine-tuning from %s.", config.initialized_from)
    # Channels-last convolutions are about twice as fast on CPUs (oneDNN); same numbers up to rounding.
    module = module.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(module.parameters(), lr=config.learning_rate,
                                 weight_decay=config.weight_decay)
    history: list[dict[str, float]] = []
    best_val = float("inf")
    best_epoch = -1
    bad_epochs = 0
    start_epoch = 0
    best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
    ckpt_path = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckpt_path is not None and resume:
        loaded = _load_checkpoint(ckpt_path)
        if loaded is not None:
            tensors, state = loaded
            if state["config"] != config.to_dict():
                raise ValueError(f"Checkpoint in {ckpt_path} was written with a different configuration; "
                                 "use another checkpoint_dir or resume=False.")
            module.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
            best_state = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
            _restore_optimizer(optimizer, tensors, state["optimizer"])
            history, best_val, best_epoch = state["history"], state["best_val"], state["best_epoch"]
            bad_epochs, start_epoch = state["bad_epochs"], state["epoch"] + 1
            _LOG.info("Resuming TransiNet training from %s at epoch %d.", ckpt_path, start_epoch)
    stopped_early = bool(history) and bad_epochs > config.patience
    epoch = start_epoch
    while epoch < config.max_epochs and not stopped_early:
        if stop_after_epochs is not None and epoch >= stop_after_epochs:
            break
        t0 = time.perf_counter()
        module.train()
        for group in optimizer.param_groups:
            group["lr"] = config.learning_rate_at(epoch)
        xs, ts, ws = _draw_crops(train, config, epoch)
        losses = []
        for b in range(0, len(xs), config.batch_size):
            batch = torch.from_numpy(xs[b:b + config.batch_size])
            batch = batch.contiguous(memory_format=torch.channels_last)
            logits = module(batch)
            loss = weighted_loss(logits, torch.from_numpy(ts[b:b + config.batch_size]),
                                 torch.from_numpy(ws[b:b + config.batch_size]), kind=config.loss,
                                 gamma=config.focal_gamma)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        val_loss = _validation_loss(module, val, config)
        record = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                  "seconds": time.perf_counter() - t0}
        history.append(record)
        if val_loss < best_val:
            best_val, best_epoch, bad_epochs = val_loss, epoch, 0
            best_state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        else:
            bad_epochs += 1
        stopped_early = bad_epochs > config.patience
        _LOG.info("TransiNet epoch %d: train loss %.5f, val loss %.5f (best %.5f @ %d), %.1f s", epoch,
                  record["train_loss"], val_loss, best_val, best_epoch, record["seconds"])
        if ckpt_path is not None:
            opt_tensors, opt_info = _flatten_optimizer(optimizer)
            tensors = {f"model.{k}": v.detach().clone().contiguous() for k, v in module.state_dict().items()}
            tensors.update({f"best.{k}": v.contiguous() for k, v in best_state.items()})
            tensors.update(opt_tensors)
            _save_checkpoint(ckpt_path, tensors, {
                "epoch": epoch, "config": config.to_dict(), "history": history, "best_val": best_val,
                "best_epoch": best_epoch, "bad_epochs": bad_epochs, "optimizer": opt_info,
            })
        epoch += 1
    if stopped_early:
        _LOG.info("TransiNet early stopping after epoch %d (best epoch %d).", epoch - 1, best_epoch)
    module.load_state_dict(best_state)
    module = module.to(memory_format=torch.contiguous_format).eval()
    return TransiNetTrainingResult(module=module, config=config, history=history, best_epoch=best_epoch,
                                   stopped_early=stopped_early)
