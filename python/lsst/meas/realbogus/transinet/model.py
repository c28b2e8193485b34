"""TransiNet inference: per-pixel transient scores and detections for a whole detector."""

from __future__ import annotations

__all__ = ["TransiNetModel", "save_transinet_package", "DEFAULT_MODEL_FILE", "DEFAULT_MODEL_COMMAND"]

import os
from typing import Any

import numpy as np
import torch
from astropy.table import Table

from .architecture import ARCHITECTURE_NAME, TransiNetUNet
from .normalization import NormalizationSpec, normalize_pair, valid_mask
from .peaks import find_peaks
from .tiling import predict_full, predict_tiled

DEFAULT_MODEL_FILE = "transinet_default.safetensors"
"""Name of the default model in the package ``data`` directory."""

DEFAULT_MODEL_COMMAND = (
    "python -m lsst.meas.realbogus.transinet.train_cli --checkpoint-dir /tmp/tn_ckpt "
    "--n-train 32 --epochs 28 --patience 28 --lr-schedule cosine --target-core-radius 1.0 "
    "--artifact-weight 10 --version tn0.3 --thresholds 0.5 0.6 0.7 0.8 0.9 --threshold 0.8 "
    "--output python/lsst/meas/realbogus/data/transinet_default.safetensors --report transinet_report.json"
)
"""Command that reproduces the default model (resumable: re-run with the same checkpoint directory)."""


def _meta_get(metadata: Any, name: str, default: Any = None) -> Any:
    if isinstance(metadata, dict):
        return metadata.get(name, default)
    return getattr(metadata, name, default)


class TransiNetModel:
    """A trained TransiNet network with its input normalisation.

    Parameters
    ----------
    module : `TransiNetUNet`
        Network returning logits.
    spec : `NormalizationSpec`
        Input normalisation the network was trained with.
    version : `str`
        Model version string.
    tile_size : `int`
        Maximum tile side for whole-detector inference (bounds memory).
    batch_size : `int`
        Tiles per network call.
    threshold : `float`
        Default detection threshold of `detect` (from the package when loaded).
    """

    def __init__(self, module: TransiNetUNet, spec: NormalizationSpec, *, version: str = "",
                 tile_size: int = 1024, batch_size: int = 1, threshold: float = 0.5) -> None:
        if not isinstance(module, TransiNetUNet):
            raise TypeError(f"module must be a TransiNetUNet; got {type(module).__name__}.")
        if module.in_channels != spec.n_channels:
            raise ValueError(f"Network expects {module.in_channels} channels but the normalisation declares "
                             f"{spec.n_channels}: {list(spec.channels)}.")
        self.module = module.eval().to(memory_format=torch.channels_last)
        self.spec = spec
        self.version = version
        self.tile_size = int(tile_size)
        self.batch_size = int(batch_size)
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1]; got {threshold}.")
        self.threshold = float(threshold)

    @property
    def margin(self) -> int:
        """Tile overlap (receptive-field radius rounded up to the downsampling factor)."""
        m = self.module.multiple
        return -(-self.module.receptive_radius // m) * m

    @classmethod
    def from_package(cls, package: Any, **kwargs: Any) -> TransiNetModel:
        """Build from a model package (``model_package.ModelPackage``).

        The package must declare architecture ``"transinet_unet"`` and a TransiNet
        normalisation; ``kwargs`` go to the constructor.

        Raises
        ------
        ValueError
            Raised if the package is not a TransiNet package.
        """
        metadata = getattr(package, "metadata", None)
        if metadata is None:
            raise ValueError("Object has no 'metadata'; expected a model package.")
        arch = _meta_get(metadata, "architecture")
        if arch != ARCHITECTURE_NAME:
            raise ValueError(f"Package architecture is {arch!r}, not {ARCHITECTURE_NAME!r}.")
        training = _meta_get(metadata, "training", {}) or {}
        norm = training.get("transinet_normalization") if isinstance(training, dict) else None
        if not isinstance(norm, dict):
            raise ValueError("Package lacks training['transinet_normalization']; not a TransiNet package.")
        spec = NormalizationSpec.from_dict(norm)
        if hasattr(package, "build_module"):
            module = package.build_module()
        else:
            module = TransiNetUNet(**dict(_meta_get(metadata, "architecture_kwargs", {})))
            module.load_state_dict(package.state_dict)
        kwargs.setdefault("threshold", float(_meta_get(metadata, "threshold", 0.5)))
        return cls(module, spec, version=str(_meta_get(metadata, "version", "")), **kwargs)

    @classmethod
    def default(cls, **kwargs: Any) -> TransiNetModel:
        """Load the small default model shipped with the package.

        It is ``data/transinet_default.safetensors``, produced by the command in
        `DEFAULT_MODEL_COMMAND`.

        Raises
        ------
        FileNotFoundError
            Raised if the package data file is missing.
        """
        from importlib.resources import files

        from ..model_package import read_model_package

        resource = files("lsst.meas.realbogus").joinpath("data", DEFAULT_MODEL_FILE)
        if not resource.is_file():
            raise FileNotFoundError(f"Default TransiNet model {DEFAULT_MODEL_FILE} is not installed; "
                                    f"create it with: {DEFAULT_MODEL_COMMAND}")
        return cls.from_package(read_model_package(resource.read_bytes()), **kwargs)

    @classmethod
    def from_training_result(cls, result: Any, **kwargs: Any) -> TransiNetModel:
        """Build from a `~.training.TransiNetTrainingResult`."""
        return cls(result.module, result.config.spec(), version=result.config.version, **kwargs)

    def _inputs(self, template: np.ndarray, science: np.ndarray, template_variance: np.ndarray | None,
                science_variance: np.ndarray | None, mask: np.ndarray | None) -> np.ndarray:
        return normalize_pair(template, science, template_variance=template_variance,
                              science_variance=science_variance, mask=mask, spec=self.spec)

    def score_image(
        self,
        template: np.ndarray,
        science: np.ndarray,
        template_variance: np.ndarray | None = None,
        science_variance: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        *,
        tiled: bool = True,
    ) -> np.ndarray:
        """Return the per-pixel transient probability image.

        Parameters
        ----------
        template, science : `numpy.ndarray`
            Images on the same grid (same flux unit).
        template_variance, science_variance : `numpy.ndarray`, optional
            Variance planes (the science variance sets the noise scale if given).
        mask : `numpy.ndarray`, optional
            Integer mask; ``NO_DATA`` pixels are invalid.
        tiled : `bool`
            Use overlapping tiles (bounded memory); `False` runs one pass over the
            whole image (same result).

        Returns
        -------
        score : `numpy.ndarray`
            ``float32`` ``(H, W)`` in [0, 1]; 0 on invalid (NaN, ``NO_DATA``) pixels.
        """
        inputs = self._inputs(template, science, template_variance, science_variance, mask)
        if tiled:
            logits = predict_tiled(self.module, inputs, tile_size=self.tile_size, margin=self.margin,
                                   multiple=self.module.multiple, batch_size=self.batch_size)
        else:
            logits = predict_full(self.module, inputs, margin=self.margin, multiple=self.module.multiple)
        score = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
        valid = valid_mask(template, science, mask=mask, template_variance=template_variance,
                           science_variance=science_variance)
        return np.where(valid, score, 0.0).astype(np.float32)

    def detect(
        self,
        template: np.ndarray,
        science: np.ndarray,
        template_variance: np.ndarray | None = None,
        science_variance: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        *,
        threshold: float | None = None,
        min_separation: float = 3.0,
        wcs: Any = None,
        science_psf_sigma: float | None = None,
        template_psf_sigma: float | None = None,
        score: np.ndarray | None = None,
    ) -> Table:
        """Score the images and localise transients as score peaks.

        Parameters
        ----------
        template, science, template_variance, science_variance, mask
            As in `score_image`.
        threshold : `float`, optional
            Minimum peak score; default the model's ``threshold``.
        min_separation : `float`
            Minimum peak separation in pixels.
        wcs : `astropy.wcs.WCS`, optional
            Fills ``ra``/``dec`` when given.
        science_psf_sigma, template_psf_sigma : `float`, optional
            Gaussian PSF sigmas; when both are given a flux estimate is measured.
        score : `numpy.ndarray`, optional
            A score image already computed by `score_image` for these inputs.

        Returns
        -------
        detections : `astropy.table.Table`
            See `peaks.find_peaks`.
        """
        if score is None:
            score = self.score_image(template, science, template_variance, science_variance, mask)
        threshold = self.threshold if threshold is None else threshold
        with_flux = science_psf_sigma is not None and template_psf_sigma is not None
        return find_peaks(
            score, threshold=threshold, min_separation=min_separation,
            science=science if with_flux else None, template=template if with_flux else None,
            science_variance=science_variance, template_variance=template_variance,
            science_psf_sigma=science_psf_sigma, template_psf_sigma=template_psf_sigma,
            mask=mask, wcs=wcs,
        )


def save_transinet_package(
    result: Any,
    path: str | os.PathLike[str],
    *,
    threshold: float = 0.5,
    metrics: dict[str, Any] | None = None,
) -> None:
    """Save a trained TransiNet as a model package (``model_package.save_model_package``).

    Parameters
    ----------
    result : `~.training.TransiNetTrainingResult`
        Training result.
    path : path-like
        Output ``.safetensors`` file.
    threshold : `float`
        Recommended detection threshold stored in the package.
    metrics : `dict`, optional
        Evaluation numbers stored in the package.
    """
    from ..model_package import ModelMetadata, save_model_package

    metadata = ModelMetadata(**result.package_metadata(threshold=threshold, metrics=metrics))
    state = {k: v.detach().cpu().contiguous() for k, v in result.module.state_dict().items()}
    save_model_package(path, state, metadata)
