"""Registry of network architectures, by name.

Model packages name their architecture and its keyword arguments; the code
that builds the network lives here (or in a plug-in module of this package),
never in the data repository.  Register a factory with
`register_architecture`; build it with `build_architecture`.

Classifier architectures take ``(N, C, S, S)`` float32 normalised stamps and
return ``(N,)`` logits; the activation (declared by the package, normally a
sigmoid) is applied outside.  They contain no batch-dependent operations at
inference, so scores do not depend on the batch size.

Built-in classifiers
--------------------
``rb3_cnn``
    The default: a small, size-agnostic CNN on template/science/difference
    (+ validity mask) stamps.  Three 3×3 convolutions with stride 2 (widths
    16, 24, 32 by default; receptive field 15 pixels), ReLU, then global
    average *and* max pooling, a dense layer of 32 and one logit.  About
    2.6 MFLOP per 51×51 source (0.96 MFLOP on a central 31×31 crop, the
    recommended ``cutout_size``), versus 17.1 MFLOP for ``incumbent_cnn``.
``rb1_cnn``
    The same network on the difference (+ validity mask) only.
``incumbent_cnn``
    The current Rubin production design re-implemented from its published
    description: three valid 5×5 convolutions with 16/32/64 filters, each
    followed by ReLU and 2×2 max pooling, a dense layer of 32 and one output
    (~17 MFLOP per 51×51 source).  Its dense layer fixes the stamp size.
"""

from __future__ import annotations

__all__ = [
    "ArchitectureEntry",
    "register_architecture",
    "build_architecture",
    "list_architectures",
    "architecture_info",
    "flops_per_source",
    "RB3CNN",
    "IncumbentCNN",
]

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .errors import UnknownArchitectureError

ARCHITECTURE_KINDS: tuple[str, ...] = ("classifier", "segmentation")

_PLUGIN_MODULES: tuple[str, ...] = ("lsst.meas.realbogus.transinet.architecture",)
"""Modules of this package that register architectures when imported."""


@dataclass(frozen=True)
class ArchitectureEntry:
    """A registered architecture.

    Attributes
    ----------
    name : `str`
        Registry name.
    factory : `~collections.abc.Callable`
        Callable returning a `torch.nn.Module` from keyword arguments.
    kind : `str`
        ``"classifier"`` or ``"segmentation"``.
    doc : `str`
        First paragraph of the factory's docstring.
    """

    name: str
    factory: Callable[..., nn.Module]
    kind: str
    doc: str


_REGISTRY: dict[str, ArchitectureEntry] = {}
_plugins_loaded = False


def register_architecture(
    name: str, *, kind: str = "classifier"
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Return a decorator registering a module class or factory under a name.

    Parameters
    ----------
    name : `str`
        Registry name (must be new, unless the same factory is registered
        again, e.g. on module reload).
    kind : `str`, optional
        ``"classifier"`` (outputs ``(N,)`` logits) or ``"segmentation"``.

    Returns
    -------
    decorator : `~collections.abc.Callable`
        Decorator returning its argument unchanged.

    Raises
    ------
    ValueError
        Raised for an empty name, an unknown kind or a name already taken by
        a different factory.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Architecture name must be a non-empty string, got {name!r}")
    if kind not in ARCHITECTURE_KINDS:
        raise ValueError(f"Unknown architecture kind {kind!r}; known kinds: {ARCHITECTURE_KINDS}")

    def decorator(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        existing = _REGISTRY.get(name)
        if existing is not None and getattr(existing.factory, "__qualname__", None) != getattr(
            factory, "__qualname__", None
        ):
            raise ValueError(f"Architecture {name!r} is already registered to {existing.factory!r}")
        doc = (factory.__doc__ or "").strip().split("\n\n")[0]
        _REGISTRY[name] = ArchitectureEntry(name=name, factory=factory, kind=kind, doc=" ".join(doc.split()))
        return factory

    return decorator


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for module in _PLUGIN_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as err:
            # Only tolerate the plug-in (or its package) not existing yet.
            if err.name is None or not module.startswith(err.name):
                raise


def _entry(name: str) -> ArchitectureEntry:
    _load_plugins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownArchitectureError(
            f"Unknown architecture {name!r}; registered architectures: {sorted(_REGISTRY)}"
        ) from None


def list_architectures(kind: str | None = None) -> list[str]:
    """Return the sorted names of the registered architectures.

    Parameters
    ----------
    kind : `str`, optional
        Only list architectures of this kind.

    Returns
    -------
    names : `list` [`str`]
        Registered names.
    """
    _load_plugins()
    return sorted(n for n, e in _REGISTRY.items() if kind is None or e.kind == kind)


def architecture_info(name: str) -> dict[str, str]:
    """Return metadata of a registered architecture.

    Parameters
    ----------
    name : `str`
        Registry name.

    Returns
    -------
    info : `dict` [`str`, `str`]
        ``name``, ``kind``, ``doc`` and ``factory`` (qualified name).

    Raises
    ------
    UnknownArchitectureError
        Raised if the name is not registered.
    """
    entry = _entry(name)
    factory = f"{getattr(entry.factory, '__module__', '?')}.{getattr(entry.factory, '__qualname__', '?')}"
    return {"name": entry.name, "kind": entry.kind, "doc": entry.doc, "factory": factory}


def build_architecture(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered architecture.

    Parameters
    ----------
    name : `str`
        Registry name.
    **kwargs
        Keyword arguments of the architecture's factory.

    Returns
    -------
    module : `torch.nn.Module`
        The freshly initialised network (training mode, as PyTorch creates
        it).

    Raises
    ------
    UnknownArchitectureError
        Raised if the name is not registered.
    TypeError
        Raised, naming the architecture, if the keyword arguments do not fit.
    ValueError
        Raised by the factory for invalid argument values.
    """
    entry = _entry(name)
    try:
        return entry.factory(**kwargs)
    except TypeError as err:
        raise TypeError(f"Invalid arguments {kwargs} for architecture {name!r}: {err}") from err


def _check_positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class RB3CNN(nn.Module):
    """Small size-agnostic real/bogus CNN (stride-2 convolutions, global pooling).

    Parameters
    ----------
    in_channels : `int`, optional
        Number of input channels (4: template, science, difference, valid).
    widths : `tuple` [`int`, ...], optional
        Output channels of the 3×3 stride-2 convolutions.
    hidden : `int`, optional
        Width of the dense layer.
    stem : `int`, optional
        Output channels of a 3×3 stride-1 convolution applied before the strided ones, so that the
        first layer sees every pixel at full resolution (sharp cosmic rays and hot pixels against
        PSF-wide sources); 0 (the default) for none.
    """

    def __init__(
        self,
        in_channels: int = 4,
        widths: tuple[int, ...] = (16, 24, 32),
        hidden: int = 32,
        stem: int = 0,
    ):
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("hidden", hidden)
        if isinstance(stem, bool) or not isinstance(stem, int) or stem < 0:
            raise ValueError(f"stem must be a non-negative integer, got {stem!r}")
        widths = tuple(widths)
        if not widths:
            raise ValueError("widths must list at least one convolution width")
        for w in widths:
            _check_positive_int("widths entry", w)
        layers: list[nn.Module] = []
        previous = in_channels
        if stem:
            layers += [nn.Conv2d(previous, stem, kernel_size=3, stride=1, padding=1), nn.ReLU(inplace=True)]
            previous = stem
        for w in widths:
            layers += [nn.Conv2d(previous, w, kernel_size=3, stride=2, padding=1), nn.ReLU(inplace=True)]
            previous = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Linear(2 * previous, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(N,)`` logits for ``(N, C, S, S)`` stamps."""
        f = self.features(x)
        pooled = torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)
        return self.head(pooled)[:, 0]


@register_architecture("rb3_cnn", kind="classifier")
def _rb3_cnn(
    in_channels: int = 4, widths: tuple[int, ...] = (16, 24, 32), hidden: int = 32, stem: int = 0
) -> nn.Module:
    """Default classifier on template/science/difference (+ valid mask) stamps.

    Any stamp size; see `RB3CNN`.
    """
    return RB3CNN(in_channels=in_channels, widths=tuple(widths), hidden=hidden, stem=stem)


@register_architecture("rb1_cnn", kind="classifier")
def _rb1_cnn(
    in_channels: int = 2, widths: tuple[int, ...] = (16, 24, 32), hidden: int = 32, stem: int = 0
) -> nn.Module:
    """Classifier on the difference (+ valid mask) only.

    Any stamp size; see `RB3CNN`.
    """
    return RB3CNN(in_channels=in_channels, widths=tuple(widths), hidden=hidden, stem=stem)


class IncumbentCNN(nn.Module):
    """Re-implementation of the production Rubin real/bogus CNN design.

    Parameters
    ----------
    in_channels : `int`, optional
        Number of input channels.
    size : `int`, optional
        Stamp size; fixes the input of the dense layer.
    """

    def __init__(self, in_channels: int = 3, size: int = 51):
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("size", size)
        side = size
        for _ in range(3):
            side = (side - 4) // 2
        if side < 1:
            raise ValueError(f"Stamp size {size} is too small for incumbent_cnn (needs at least 40)")
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 32), nn.ReLU(inplace=True), nn.Linear(32, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``(N,)`` logits for ``(N, C, size, size)`` stamps."""
        return self.head(self.features(x))[:, 0]


@register_architecture("incumbent_cnn", kind="classifier")
def _incumbent_cnn(in_channels: int = 3, size: int = 51) -> nn.Module:
    """Production Rubin design: 3 valid 5×5 convs (16/32/64) + 2×2 max-pool, dense 32.

    Fixed stamp size; see `IncumbentCNN`.
    """
    return IncumbentCNN(in_channels=in_channels, size=size)


def flops_per_source(model: nn.Module, in_channels: int, size: int) -> int:
    """Count the floating-point operations of one forward pass per source.

    Multiply–accumulates of `torch.nn.Conv2d` and `torch.nn.Linear` layers are
    counted with forward hooks on a ``(1, in_channels, size, size)`` input
    and doubled; activations, pooling and biases are ignored.

    Parameters
    ----------
    model : `torch.nn.Module`
        The network.
    in_channels : `int`
        Number of input channels.
    size : `int`
        Stamp side length.

    Returns
    -------
    flops : `int`
        ``2 × MACs`` per source.
    """
    macs = 0

    def conv_hook(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        kh, kw = module.kernel_size
        macs += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        macs += output.numel() * module.in_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    try:
        was_training = model.training
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(1, in_channels, size, size))
        model.train(was_training)
    finally:
        for h in handles:
            h.remove()
    return 2 * macs
