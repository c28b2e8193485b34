"""TransiNet inference: per-pixel transient scores and detections for a whole detector."""

from __future__ import annotations

__all__ = ["TransiNetModel", "read_default_package", "save_transinet_package",
           "BACKENDS", "DEFAULT_MAX_PSF_SIGMA",
           "DEFAULT_MODEL_FILE", "DEFAULT_MODEL_COMMAND"]

import logging
import os
import threading
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from astropy.table import Table

from .architecture import ARCHITECTURE_NAME, TransiNetInferenceNet, TransiNetUNet
from .normalization import NormalizationSpec, fitted_pair_difference, normalize_pair, valid_mask
from .peaks import find_peaks
from .rebin import bin_image, bin_mask, binning_factor, upsample_score
from .tiling import predict_full, predict_tiled

BACKENDS: tuple[str, ...] = ("auto", "onnx", "torch")
"""Inference backends of `TransiNetModel`."""

DEFAULT_MODEL_FILE = "transinet_default.safetensors"

DEFAULT_MAX_PSF_SIGMA = 4.0
"""Default `TransiNetModel.max_psf_sigma` (pixels): the default model's training visits have
science PSF sigmas of about 1.3–4 pixels; broader pairs are scored binned (`~.rebin`)."""
"""Name of the default model in the package ``data`` directory."""

DEFAULT_MODEL_COMMAND = (
    "python -m lsst.meas.realbogus.transinet.train_cli --checkpoint-dir /tmp/tn_ckpt "
    "--n-train 400 --n-fields 200 --mix-fraction 0.33 --n-val 8 --n-test 12 --test-size 1024 "
    "--channels template science difference valid --difference-noise variance "
    "--difference-kernel fitted --base-width 12 "
    "--epochs 45 --patience 45 --crops-per-epoch 1024 --lr-schedule cosine --target-core-radius 1.0 "
    "--artifact-weight 10 --min-snr 5 --positive-type-weights variable_brighten=4 variable_fade=4 "
    "--version tn0.6 --threads 1 --threshold matched "
    "--output python/lsst/meas/realbogus/data/transinet_default.safetensors --report transinet_report.json"
)
"""Command that reproduces the default model (resumable: re-run with the same checkpoint directory)."""


_LOG = logging.getLogger(__name__)


class _OnnxNetwork:
    """Callable running a `TransiNetInferenceNet` exported to ONNX Runtime.

    It maps a ``(N, C, H, W)`` float tensor to ``(N, 1, H, W)`` logits like the
    module, via `~lsst.meas.realbogus.backends.OnnxBackend.predict_outputs`.
    Inputs whose sides are not multiples of ``multiple`` are zero-padded at the
    bottom and right and the output cropped, as the module does internally.
    """

    def __init__(self, backend: Any, multiple: int) -> None:
        self.backend = backend
        self.multiple = multiple

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)
        height, width = arr.shape[-2:]
        pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
        if pad_h or pad_w:
            arr = np.pad(arr, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)))
        return torch.from_numpy(self.backend.predict_outputs(arr)[..., :height, :width])


def _meta_get(metadata: Any, name: str, default: Any = None) -> Any:
    if isinstance(metadata, dict):
        return metadata.get(name, default)
    return getattr(metadata, name, default)


def read_default_package() -> Any:
    """Read the default TransiNet model package shipped with the package.

    Returns
    -------
    package : `~lsst.meas.realbogus.model_package.ModelPackage`
        ``data/transinet_default.safetensors`` (see `DEFAULT_MODEL_COMMAND`).

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
    return read_model_package(resource.read_bytes())


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
    backend : `str`
        ``"auto"`` (ONNX Runtime if the network can be exported and run, else
        PyTorch, with a warning), ``"onnx"`` (ONNX Runtime; an error if it
        cannot be built) or ``"torch"`` (eager PyTorch, channels-last).  Both run
        the same `TransiNetInferenceNet` and agree to float32 rounding (about
        1e-5 in the logits); ONNX Runtime is about 1.6x faster on CPUs.
    threads : `int`, optional
        CPU threads of `score_image`; `None` (default) follows
        `torch.get_num_threads` at each call, so ``torch.set_num_threads`` (e.g.
        ``TransiNetDetectTask``'s ``numThreads``) controls both backends.  ONNX
        Runtime runs this many tiles at once, each on one thread (memory grows
        with the number of tiles in flight, roughly 0.3 GB per 1024² tile);
        PyTorch runs one tile at a time on this many intra-op threads (an
        explicit value sets PyTorch's process-wide thread count).
    max_psf_sigma : `float`, optional
        Largest PSF sigma (pixels, the broader of the two images) scored as it is;
        a broader pair is summed in ``f x f`` blocks first (``f`` the smallest
        integer bringing it under this value) and its score image interpolated
        back (`~.rebin`).  The default 4.0 is the top of the default model's
        training range; `None` never bins.

    Notes
    -----
    The network weights are copied into the inference network at construction;
    later changes to ``module`` are not seen by `score_image`.
    """

    def __init__(self, module: TransiNetUNet, spec: NormalizationSpec, *, version: str = "",
                 tile_size: int = 1024, batch_size: int = 1, threshold: float = 0.5,
                 backend: str = "auto", threads: int | None = None,
                 max_psf_sigma: float | None = DEFAULT_MAX_PSF_SIGMA) -> None:
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
        if backend not in BACKENDS:
            raise ValueError(f"Unknown TransiNet backend {backend!r}; choose one of {BACKENDS}.")
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive integer or None; got {threads!r}.")
        self.backend = backend
        self.threads = threads
        binning_factor(1.0, max_psf_sigma)  # validates max_psf_sigma
        self.max_psf_sigma = max_psf_sigma
        self._inference = TransiNetInferenceNet(module).to(memory_format=torch.channels_last)
        self._onnx: _OnnxNetwork | None = None
        self._onnx_error: str | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        # The ONNX Runtime session and the lock cannot be pickled; the session is rebuilt on use.
        state = self.__dict__.copy()
        state["_onnx"] = None
        state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def backend_name(self) -> str:
        """Backend `score_image` runs on: ``"onnx"`` or ``"torch"`` (`str`)."""
        return "torch" if self._network() is self._inference else "onnx"

    def _threads(self) -> int:
        return self.threads if self.threads is not None else torch.get_num_threads()

    def _network(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """Return the network callable: an ONNX Runtime session or the torch module.

        The ONNX model is exported and its session (one intra-op thread; it is
        run from several threads at once) built on first use.

        Raises
        ------
        RuntimeError
            Raised if ``backend="onnx"`` and ONNX Runtime cannot be used.
        """
        if self.backend == "torch" or (self.backend == "auto" and self._onnx_error is not None):
            return self._inference
        with self._lock:
            if self._onnx is None:
                try:
                    from ..backends import OnnxBackend, export_onnx

                    multiple = self._inference.multiple
                    with warnings.catch_warnings():
                        # The shape checks and padding branch are traced as constants: the
                        # session is only given sides that are multiples of `multiple`.
                        warnings.simplefilter("ignore", torch.jit.TracerWarning)
                        onnx_model = export_onnx(self._inference, self._inference.in_channels, 8 * multiple,
                                                 dynamic_size=True)
                    backend = OnnxBackend(None, self._inference.in_channels, 8 * multiple, threads=1,
                                          chunk_size=max(self.batch_size, 1), onnx_model=onnx_model)
                    self._onnx = _OnnxNetwork(backend, multiple)
                except Exception as err:  # noqa: BLE001 - any export/runtime failure falls back to torch.
                    if self.backend == "onnx":
                        raise RuntimeError(f"Cannot build the ONNX Runtime backend: {err}") from err
                    self._onnx_error = f"{type(err).__name__}: {err}"
                    _LOG.warning("ONNX Runtime backend unavailable (%s); TransiNet runs on PyTorch.",
                                 self._onnx_error)
                    return self._inference
        return self._onnx

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
            Raised if the package is not a TransiNet package or its channel lists
            disagree.
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
        declared = _meta_get(metadata, "channels")
        if declared is not None and list(declared) != [c for c in spec.channels if c != "valid"]:
            raise ValueError(f"Package channels {list(declared)} disagree with its TransiNet normalisation "
                             f"channels {list(spec.channels)}.")
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
        return cls.from_package(read_default_package(), **kwargs)

    @classmethod
    def from_training_result(cls, result: Any, **kwargs: Any) -> TransiNetModel:
        """Build from a `~.training.TransiNetTrainingResult`."""
        return cls(result.module, result.config.spec(), version=result.config.version, **kwargs)

    @property
    def needs_psf_sigmas(self) -> bool:
        """Whether scoring needs the science and template PSF sigmas (`bool`).

        True for models whose inputs include the PSF-matched ``"difference"``
        channel (see `~.normalization.NormalizationSpec`).
        """
        return self.spec.needs_psf_sigmas

    def difference_image(
        self,
        template: np.ndarray,
        science: np.ndarray,
        template_variance: np.ndarray,
        science_variance: np.ndarray,
        mask: np.ndarray | None = None,
        *,
        science_psf_sigma: float,
        template_psf_sigma: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return the pair's fitted-kernel difference, its variance and flux variance (image units).

        `~.normalization.fitted_pair_difference` with this model's normalisation: one
        spatially constant kernel fitted on template stars.  Passed to `score_image`
        and `detect` (``difference=``) it serves both the network's difference channel
        (for models that read one, unbinned) and the flux measurement, fitted once.

        Returns
        -------
        difference, variance, flux_variance : `numpy.ndarray`
            ``float32`` ``(H, W)``, NaN on invalid pixels (see
            `~.normalization.fitted_pair_difference`).
        """
        return fitted_pair_difference(template, science, template_variance=template_variance,
                                      science_variance=science_variance, science_psf_sigma=science_psf_sigma,
                                      template_psf_sigma=template_psf_sigma, mask=mask, spec=self.spec)

    def _inputs(self, template: np.ndarray, science: np.ndarray, template_variance: np.ndarray | None,
                science_variance: np.ndarray | None, mask: np.ndarray | None,
                science_psf_sigma: float | None = None, template_psf_sigma: float | None = None,
                difference: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
        if self.needs_psf_sigmas and (science_psf_sigma is None or template_psf_sigma is None):
            raise ValueError(f"TransiNet model {self.version!r} has input channels "
                             f"{list(self.spec.channels)}, "
                             "including a PSF-matched 'difference': pass science_psf_sigma and "
                             "template_psf_sigma (Gaussian-equivalent PSF sigmas in pixels) to score_image "
                             "or detect.")
        return normalize_pair(template, science, template_variance=template_variance,
                              science_variance=science_variance, mask=mask, spec=self.spec,
                              science_psf_sigma=science_psf_sigma, template_psf_sigma=template_psf_sigma,
                              difference=difference)

    def score_image(
        self,
        template: np.ndarray,
        science: np.ndarray,
        template_variance: np.ndarray | None = None,
        science_variance: np.ndarray | None = None,
        mask: np.ndarray | None = None,
        *,
        science_psf_sigma: float | None = None,
        template_psf_sigma: float | None = None,
        tiled: bool = True,
        difference: tuple[np.ndarray, ...] | None = None,
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
        science_psf_sigma, template_psf_sigma : `float`, optional
            Gaussian-equivalent PSF sigmas in pixels; required when the model
            has a ``"difference"`` input channel (`needs_psf_sigmas`), ignored
            otherwise.
        tiled : `bool`
            Use overlapping tiles (bounded memory); `False` runs one pass over the
            whole image (same result).
        difference : `tuple` [`numpy.ndarray`, ...], optional
            This pair's `difference_image`, reused for a fitted-kernel difference
            channel instead of fitting it again (not for a binned pair).

        Notes
        -----
        A pair whose broader PSF sigma exceeds ``max_psf_sigma`` is scored on
        ``f x f`` block sums and the score interpolated back (`~.rebin`).

        Returns
        -------
        score : `numpy.ndarray`
            ``float32`` ``(H, W)`` in [0, 1]; 0 on invalid (NaN, ``NO_DATA``) pixels.

        Raises
        ------
        ValueError
            Raised for mismatched shapes, unmeasurable noise, or missing PSF
            sigmas for a model that needs them.
        """
        broader = (None if science_psf_sigma is None or template_psf_sigma is None
                   else max(float(science_psf_sigma), float(template_psf_sigma)))
        factor = binning_factor(broader, self.max_psf_sigma)
        if factor > 1:
            _LOG.info("PSF sigma %.2f px > max_psf_sigma %.2f: scoring the pair binned %dx%d.",
                      broader, self.max_psf_sigma, factor, factor)
            binned = self._score_grid(
                bin_image(template, factor), bin_image(science, factor),
                None if template_variance is None else bin_image(template_variance, factor),
                None if science_variance is None else bin_image(science_variance, factor),
                None if mask is None else bin_mask(mask, factor),
                science_psf_sigma / factor, template_psf_sigma / factor, tiled)
            score = upsample_score(binned, factor, np.shape(science))
        else:
            score = self._score_grid(template, science, template_variance, science_variance, mask,
                                     science_psf_sigma, template_psf_sigma, tiled, difference)
        valid = valid_mask(template, science, mask=mask, template_variance=template_variance,
                           science_variance=science_variance)
        score[~valid] = 0.0
        return score

    def _score_grid(self, template: np.ndarray, science: np.ndarray, template_variance: np.ndarray | None,
                    science_variance: np.ndarray | None, mask: np.ndarray | None,
                    science_psf_sigma: float | None, template_psf_sigma: float | None, tiled: bool,
                    difference: tuple[np.ndarray, ...] | None = None) -> np.ndarray:
        """Score one pair on its own pixel grid (`score_image` without the binning)."""
        inputs = self._inputs(template, science, template_variance, science_variance, mask,
                              science_psf_sigma, template_psf_sigma, difference)
        network = self._network()
        on_torch = network is self._inference
        if on_torch and self.threads not in (None, torch.get_num_threads()):
            torch.set_num_threads(self.threads)
        if tiled:
            # ONNX Runtime: one single-threaded session run on `threads` tiles at once (scales
            # better than intra-op threads for these thin layers, and never spins); PyTorch:
            # one tile at a time on its intra-op threads.
            logits = predict_tiled(network, inputs, tile_size=self.tile_size, margin=self.margin,
                                   multiple=self.module.multiple, batch_size=self.batch_size,
                                   channels_last=on_torch, workers=1 if on_torch else self._threads())
        else:
            logits = predict_full(network, inputs, margin=self.margin, multiple=self.module.multiple)
        with torch.inference_mode():
            return torch.sigmoid(torch.from_numpy(logits)).numpy()

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
        footprint_level: float | None = 0.5,
        trail_elongation: float = 1.5,
        difference: tuple[np.ndarray, ...] | None = None,
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
            Gaussian PSF sigmas; when both are given a flux estimate is measured:
            on the fitted-kernel `difference_image` if both variances are given
            (computed here unless ``difference`` is), else on a Gaussian-matched
            difference.  Required to compute the score of a model that
            `needs_psf_sigmas`.
        score : `numpy.ndarray`, optional
            A score image already computed by `score_image` for these inputs.
        footprint_level, trail_elongation : `float`
            Peak grouping into footprints and trail localisation (`peaks.find_peaks`).
        difference : `tuple` [`numpy.ndarray`, ...], optional
            This pair's `difference_image`, if already computed.

        Returns
        -------
        detections : `astropy.table.Table`
            See `peaks.find_peaks`.
        """
        threshold = self.threshold if threshold is None else threshold
        with_flux = science_psf_sigma is not None and template_psf_sigma is not None
        on_difference = with_flux and template_variance is not None and science_variance is not None
        if score is None:
            if on_difference and difference is None:
                difference = self.difference_image(template, science, template_variance, science_variance,
                                                   mask, science_psf_sigma=science_psf_sigma,
                                                   template_psf_sigma=template_psf_sigma)
            score = self.score_image(template, science, template_variance, science_variance, mask,
                                     science_psf_sigma=science_psf_sigma,
                                     template_psf_sigma=template_psf_sigma, difference=difference)
        if on_difference and difference is None and np.any(score >= threshold):
            difference = self.difference_image(template, science, template_variance, science_variance, mask,
                                               science_psf_sigma=science_psf_sigma,
                                               template_psf_sigma=template_psf_sigma)
        return find_peaks(
            score, threshold=threshold, min_separation=min_separation,
            science=science if with_flux else None, template=template if with_flux else None,
            science_variance=science_variance, template_variance=template_variance,
            science_psf_sigma=science_psf_sigma, template_psf_sigma=template_psf_sigma,
            mask=mask, wcs=wcs, footprint_level=footprint_level, trail_elongation=trail_elongation,
            difference=difference if on_difference else None,
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
