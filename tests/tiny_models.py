"""Tiny randomly initialised ``rb3_cnn`` classifiers for the tests.

This module holds no tests.  What the tests using it check is the preprocessing and bookkeeping
around the network (cutouts, normalisation, NaN handling, packaging, tasks), not its accuracy, so a
network of a few hundred weights is enough; the weights can be scaled up so that scores vary visibly
between stamps instead of all sitting near 0.5.
"""

from __future__ import annotations

__all__ = ["tiny_classifier", "write_tiny_classifier"]

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from lsst.meas.realbogus.architectures import build_architecture
from lsst.meas.realbogus.model_package import ModelMetadata, save_model_package
from lsst.meas.realbogus.normalization import NormalizationSpec

DEFAULT_CHANNELS: tuple[str, ...] = ("template", "science", "difference")
"""Channel order of the models unless a test asks for another."""


def tiny_classifier(
    *,
    channels: Sequence[str] = DEFAULT_CHANNELS,
    cutout_size: int = 21,
    version: str = "tiny",
    seed: int = 0,
    widths: Sequence[int] = (4, 6),
    hidden: int = 6,
    weight_scale: float | None = 1.5,
    architecture: str = "rb3_cnn",
    normalization: NormalizationSpec | None = None,
    **metadata: Any,
) -> tuple[torch.nn.Module, ModelMetadata]:
    """Build a small random classifier and its package metadata.

    Parameters
    ----------
    channels : sequence of `str`, optional
        Model channels.
    cutout_size : `int`, optional
        Stamp size.
    version : `str`, optional
        Model version.
    seed : `int`, optional
        ``torch.manual_seed`` set before the network is built.
    widths : sequence of `int`, optional
        Convolution widths of the architecture.
    hidden : `int`, optional
        Hidden units of the architecture.
    weight_scale : `float` or `None`, optional
        Factor applied to every weight after initialisation; None leaves the initialisation.
    architecture : `str`, optional
        Registry name of the architecture (it must take ``in_channels``, ``widths`` and
        ``hidden``).
    normalization : `lsst.meas.realbogus.normalization.NormalizationSpec`, optional
        Normalisation recorded in the metadata; it sets the number of network inputs.  The
        metadata's default (robust, with a mask channel) if None.
    **metadata
        Further `ModelMetadata` fields (e.g. ``threshold``).

    Returns
    -------
    net : `torch.nn.Module`
        The network.
    metadata : `lsst.meas.realbogus.model_package.ModelMetadata`
        Its metadata; ``architecture_kwargs`` records ``in_channels``, ``widths`` and ``hidden``.
    """
    channels = list(channels)
    if normalization is not None:
        metadata["normalization"] = normalization
    spec = normalization if normalization is not None else NormalizationSpec()
    kwargs = {"in_channels": len(spec.output_channels(channels)), "widths": list(widths), "hidden": hidden}
    torch.manual_seed(seed)
    net = build_architecture(architecture, **kwargs)
    if weight_scale is not None:
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(weight_scale)
    meta = ModelMetadata(
        architecture=architecture,
        architecture_kwargs=kwargs,
        channels=channels,
        cutout_size=cutout_size,
        version=version,
        **metadata,
    )
    return net, meta


def write_tiny_classifier(path: Path, **kwargs: Any) -> Path:
    """Write a `tiny_classifier` model package.

    Parameters
    ----------
    path : `pathlib.Path`
        Package file to write.
    **kwargs
        Arguments of `tiny_classifier`.

    Returns
    -------
    path : `pathlib.Path`
        The file written.
    """
    return save_model_package(path, *tiny_classifier(**kwargs))
