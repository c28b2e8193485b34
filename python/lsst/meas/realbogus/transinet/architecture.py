"""TransiNet network: a small, fast U-Net-like fully convolutional encoder-decoder.

The network maps a normalised (template, science[, variances], valid) stack of
shape ``(N, C, H, W)`` to per-pixel logits ``(N, 1, H, W)`` on the input grid, for
any ``H, W`` (the input is zero-padded internally to a multiple of ``2**depth`` and
the output cropped back).  It has no normalisation layers whose output depends on
the batch or the tile, so tiled inference with enough overlap reproduces
full-image inference exactly (see `tiling`).

Design for speed on CPUs: one cheap full-resolution convolution, then stride-2
downsampling immediately; the expensive convolutions run at 1/2 resolution and
below, and the full-resolution head is 1x1 convolutions on bilinearly upsampled
features concatenated with the full-resolution stem features.
"""

from __future__ import annotations

__all__ = ["TransiNetUNet", "TransiNetInferenceNet", "build_transinet_unet", "ARCHITECTURE_NAME"]

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import nn

ARCHITECTURE_NAME = "transinet_unet"
"""Registry name of the TransiNet U-Net."""


def _register(name: str, **kwargs: Any) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register with `lsst.meas.realbogus.architectures` if it is available."""
    try:
        from ..architectures import register_architecture
    except ImportError:  # architectures.py not present (yet): registration is a no-op.
        def _identity(func: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
            return func
        return _identity
    return register_architecture(name, **kwargs)


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1)
    nn.init.kaiming_normal_(conv.weight, a=0.1, nonlinearity="leaky_relu")
    nn.init.zeros_(conv.bias)
    return conv


def _encode_decode(net: nn.Module, x: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Run the shared encoder and decoder of `TransiNetUNet` and `TransiNetInferenceNet`.

    Parameters
    ----------
    net : `torch.nn.Module`
        Either network (``in_channels``, ``multiple``, ``depth``, ``stem``, ``down``, ``enc``,
        ``dec``).
    x : `torch.Tensor`
        Input ``(N, C, H, W)``; padded at the high edges to a multiple of ``net.multiple``.
    name : `str`
        The network's name, for the error message.

    Returns
    -------
    h, f0 : `torch.Tensor`
        Decoder output at half resolution and the full-resolution stem features (padded size).

    Raises
    ------
    ValueError
        Raised if ``x`` is not 4-D with ``net.in_channels`` channels.
    """
    if x.ndim != 4 or x.shape[1] != net.in_channels:
        raise ValueError(f"{name} expects input (N, {net.in_channels}, H, W); got {tuple(x.shape)}.")
    height, width = x.shape[-2:]
    pad_h = (-height) % net.multiple
    pad_w = (-width) % net.multiple
    if pad_h or pad_w:
        x = nnf.pad(x, (0, pad_w, 0, pad_h))
    f0 = nnf.leaky_relu(net.stem(x), 0.1)
    skips = [f0]
    h = f0
    for down, enc in zip(net.down, net.enc):
        h = nnf.leaky_relu(down(h), 0.1)
        h = nnf.leaky_relu(enc(h), 0.1)
        skips.append(h)
    for lv in range(net.depth - 1, 0, -1):
        h = nnf.interpolate(h, scale_factor=2, mode="nearest")
        h = nnf.leaky_relu(net.dec[lv - 1](torch.cat([h, skips[lv]], dim=1)), 0.1)
    return h, f0


class TransiNetUNet(nn.Module):
    """U-Net-like segmentation network returning per-pixel transient logits.

    Parameters
    ----------
    in_channels : `int`
        Number of input channels (e.g. 3 for template, science, valid).
    base_width : `int`
        Width of the full-resolution stem; level ``l`` has
        ``min(base_width * 2**l, 4 * base_width)`` channels.
    depth : `int`
        Number of stride-2 downsamplings (1 to 5).
    """

    def __init__(self, in_channels: int = 3, base_width: int = 8, depth: int = 3) -> None:
        super().__init__()
        if not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer; got {in_channels!r}.")
        if not isinstance(base_width, int) or base_width < 1:
            raise ValueError(f"base_width must be a positive integer; got {base_width!r}.")
        if not isinstance(depth, int) or not 1 <= depth <= 5:
            raise ValueError(f"depth must be an integer in [1, 5]; got {depth!r}.")
        self.in_channels = in_channels
        self.base_width = base_width
        self.depth = depth
        widths = [min(base_width * 2**level, 4 * base_width) for level in range(depth + 1)]
        self.widths = widths
        self.stem = _conv(in_channels, widths[0])
        self.down = nn.ModuleList(_conv(widths[lv], widths[lv + 1], stride=2) for lv in range(depth))
        self.enc = nn.ModuleList(_conv(widths[lv + 1], widths[lv + 1]) for lv in range(depth))
        # Decoder: from level l+1 up to level l (l = depth-1 .. 1), concat skip, conv.
        self.dec = nn.ModuleList(
            _conv(widths[lv + 1] + widths[lv], widths[lv]) for lv in range(1, depth)
        )
        head_in = widths[1] + widths[0]
        self.head_hidden = nn.Conv2d(head_in, widths[0], kernel_size=1)
        self.head_out = nn.Conv2d(widths[0], 1, kernel_size=1)
        nn.init.normal_(self.head_out.weight, std=0.01)
        nn.init.constant_(self.head_out.bias, -4.0)  # start near p = 0.02: positives are rare.

    @property
    def multiple(self) -> int:
        """Input sizes are padded internally to a multiple of this."""
        return 2**self.depth

    @property
    def receptive_radius(self) -> int:
        """Conservative upper bound (pixels) on the receptive-field radius.

        An output pixel depends only on inputs within this distance; tiles must
        overlap by at least this much for seamless tiled inference.
        """
        radius = 1  # stem
        for lv in range(self.depth):
            radius += 2**lv  # stride-2 conv on level-lv input
            radius += 2 ** (lv + 1)  # encoder conv at level lv+1
        for lv in range(self.depth - 1, 0, -1):
            radius += 2 ** (lv + 1)  # nearest upsampling misalignment
            radius += 2**lv  # decoder conv at level lv
        radius += 2 + 1  # bilinear head upsampling
        return radius

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, 1, H, W)`` for input ``(N, C, H, W)``."""
        height, width = x.shape[-2:]
        h, f0 = _encode_decode(self, x, "TransiNetUNet")
        h = nnf.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
        h = nnf.leaky_relu(self.head_hidden(torch.cat([h, f0], dim=1)), 0.1)
        logits = self.head_out(h)
        return logits[..., :height, :width]


class TransiNetInferenceNet(nn.Module):
    """Inference-only equivalent of a trained `TransiNetUNet` with a cheaper head.

    The head of `TransiNetUNet` applies a 1x1 convolution to the concatenation
    of the bilinearly upsampled half-resolution features ``h`` and the
    full-resolution stem features ``f0``.  Splitting its weight ``W = [W_h, W_f]``
    gives ``W_h up(h) + W_f f0 + b``, and because bilinear upsampling is linear per
    channel with weights summing to one it commutes with the 1x1 convolution:
    ``W_h up(h) = up(W_h h)``.  This module computes ``up(W_h h) + W_f f0 + b``,
    which upsamples ``widths[0]`` instead of ``widths[1]`` channels, runs part of
    the head at half resolution and builds no full-resolution concatenation.  The
    output equals the original network's to float32 rounding.

    Parameters
    ----------
    network : `TransiNetUNet`
        Trained network (deep-copied; the copy is in evaluation mode without
        gradients, the original is not modified).
    """

    def __init__(self, network: TransiNetUNet) -> None:
        super().__init__()
        if not isinstance(network, TransiNetUNet):
            raise TypeError(f"Expected a TransiNetUNet; got {type(network).__name__}.")
        net = copy.deepcopy(network).eval()
        self.in_channels = net.in_channels
        self.depth = net.depth
        self.multiple = net.multiple
        self.receptive_radius = net.receptive_radius
        self.stem, self.down, self.enc, self.dec = net.stem, net.down, net.enc, net.dec
        self.head_out = net.head_out
        weight = net.head_hidden.weight.detach()
        n_up = net.widths[1]
        n_hidden = weight.shape[0]
        self.head_up = nn.Conv2d(n_up, n_hidden, kernel_size=1, bias=False)
        self.head_skip = nn.Conv2d(weight.shape[1] - n_up, n_hidden, kernel_size=1)
        with torch.no_grad():
            self.head_up.weight.copy_(weight[:, :n_up])
            self.head_skip.weight.copy_(weight[:, n_up:])
            self.head_skip.bias.copy_(net.head_hidden.bias.detach())
        self.eval()
        for param in self.parameters():
            param.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, 1, H, W)`` for input ``(N, C, H, W)``."""
        height, width = x.shape[-2:]
        h, f0 = _encode_decode(self, x, "TransiNetInferenceNet")
        h = nnf.interpolate(self.head_up(h), scale_factor=2, mode="bilinear", align_corners=False)
        h = nnf.leaky_relu(h + self.head_skip(f0), 0.1)
        logits = self.head_out(h)
        return logits[..., :height, :width]


@_register(ARCHITECTURE_NAME, kind="segmentation")
def build_transinet_unet(in_channels: int = 3, base_width: int = 8, depth: int = 3) -> TransiNetUNet:
    """Build a `TransiNetUNet` (registered as ``"transinet_unet"``).

    Parameters
    ----------
    in_channels : `int`
        Number of input channels.
    base_width : `int`
        Width of the full-resolution stem.
    depth : `int`
        Number of stride-2 downsamplings.

    Returns
    -------
    module : `TransiNetUNet`
        Untrained network.
    """
    return TransiNetUNet(in_channels=in_channels, base_width=base_width, depth=depth)
