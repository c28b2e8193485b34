"""PipelineTask: localise transients directly from (template, science) with TransiNet.

`TransiNetDetectTask` is a thin Butler layer over `lsst.meas.realbogus.transinet.model.TransiNetModel`:
it reads the science image and the template warped to its pixel grid, computes the per-pixel
transient score image (no image differencing), finds its peaks and writes

``transinet_score_image`` (``ImageV2``)
    The score in [0, 1] on the science pixel grid (0 on unusable pixels), with the science
    image's bounding box and sky projection.
``dia_source_transinet`` (``ArrowAstropy`` by default)
    One row per localised transient: ``id`` (unique int64, `lsst.meas.realbogus.ids`),
    ``visit``, ``detector``, ``x``, ``y``, ``ra``, ``dec``, ``peak_score``, ``flux``,
    ``flux_err``, ``snr``, ``flag_edge``, ``flag_nan``, ``flag_trail``, ``version``.

The model comes from one of three places (``config.modelSource``):

``butler``
    A ``transinet_model`` dataset (storage class ``RealBogusModelPackage``, no dimensions),
    found as a prerequisite input, e.g. after
    ``realbogus-ingest-model REPO model.safetensors --dataset-type transinet_model``.
``package``
    The default TransiNet shipped in the Python package (``data/transinet_default.safetensors``).
``file``
    A TransiNet model package named by ``config.modelPath``.

Models are cached at module level (keyed by dataset UUID or file SHA-256), so a process that
runs many quanta builds the network once.
"""

from __future__ import annotations

__all__ = [
    "TRANSINET_OUTPUT_STORAGE_CLASSES",
    "TransiNetDetectConfig",
    "TransiNetDetectConnections",
    "TransiNetDetectTask",
    "clear_transinet_model_cache",
    "make_transinet_catalog",
]

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.pex.config import ChoiceField, Field
from lsst.pipe.base import (
    InputQuantizedConnection,
    OutputQuantizedConnection,
    PipelineTask,
    PipelineTaskConfig,
    PipelineTaskConnections,
    QuantumContext,
    Struct,
)
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

from .model_source import (
    ModelCache,
    dataset_cache_key,
    model_file_path,
    model_path_field,
    model_source_field,
    pop_butler_model,
    validate_model_source,
)
from .output_tables import PARQUET_STORAGE_CLASSES, convert_parquet_table

TRANSINET_OUTPUT_STORAGE_CLASSES: dict[str, str] = dict(PARQUET_STORAGE_CLASSES)
"""Allowed storage classes of the output catalogue."""

_CATALOG_COLUMNS: dict[str, tuple[type | str, str]] = {
    "id": (np.int64, "Unique source id (lsst.meas.realbogus.ids.make_source_ids)"),
    "visit": (np.int64, "Visit id"),
    "detector": (np.int64, "Detector id"),
    "x": (np.float64, "x position, 0-based pixels on the science grid (the peak; a trail's centroid)"),
    "y": (np.float64, "y position, 0-based pixels on the science grid (the peak; a trail's centroid)"),
    "ra": (np.float64, "Right ascension in degrees (NaN without a WCS)"),
    "dec": (np.float64, "Declination in degrees (NaN without a WCS)"),
    "peak_score": (np.float32, "TransiNet score at the peak, in [0, 1]"),
    "flux": (np.float64, "Flux estimate in nJy: Gaussian-weighted flux on the fitted-kernel difference"),
    "flux_err": (np.float64, "Error of the flux estimate in nJy"),
    "snr": (np.float64, "flux / flux_err"),
    "flag_edge": (bool, "Peak within a few pixels of the detector edge or on EDGE pixels"),
    "flag_nan": (bool, "NaN / NO_DATA pixels near the peak"),
    "flag_trail": (bool, "Elongated score footprint (a trail, e.g. a moving object); x, y are its centroid"),
}
"""Output columns: dtype and description."""


class TransiNetDetectConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    """Connections of `TransiNetDetectTask`.

    The model prerequisite is removed unless ``config.modelSource == "butler"``, the score image
    unless ``config.writeScoreImage``; the catalogue storage class follows the config.
    """

    science = cT.Input(
        doc="Science image (calibrated visit image).",
        name="preliminary_visit_image",
        storageClass="VisitImage",
        dimensions=("instrument", "visit", "detector"),
    )
    template = cT.Input(
        doc="Template warped to the science image's pixel grid (not PSF-matched).",
        name="template_detector",
        storageClass="VisitImage",
        dimensions=("instrument", "visit", "detector"),
    )
    transinetModel = cT.PrerequisiteInput(
        doc="Trained TransiNet model package, found in the input collections.",
        name="transinet_model",
        storageClass="RealBogusModelPackage",
        dimensions=(),
        deferLoad=True,
    )
    scoreImage = cT.Output(
        doc="Per-pixel TransiNet transient score in [0, 1] on the science grid (0 on unusable pixels).",
        name="transinet_score_image",
        storageClass="ImageV2",
        dimensions=("instrument", "visit", "detector"),
    )
    diaSources = cT.Output(
        doc="Transients localised as score peaks: id, visit, detector, x, y, ra, dec, peak_score, "
        "flux, flux_err, snr, flag_edge, flag_nan, flag_trail.",
        name="dia_source_transinet",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )

    def __init__(self, *, config: TransiNetDetectConfig | None = None) -> None:
        super().__init__(config=config)
        if config is None:
            return
        if config.modelSource != "butler":
            del self.transinetModel
        if not config.writeScoreImage:
            del self.scoreImage
        if config.outputStorageClass != self.diaSources.storageClass:
            self.diaSources = dataclasses.replace(self.diaSources, storageClass=config.outputStorageClass)


class TransiNetDetectConfig(PipelineTaskConfig, pipelineConnections=TransiNetDetectConnections):
    """Configuration of `TransiNetDetectTask`."""

    modelSource = model_source_field(
        doc="Where the TransiNet model package comes from.",
        default="package",
        butler_doc="The 'transinetModel' prerequisite input (dataset type transinet_model).",
        package_doc="The default TransiNet shipped in lsst.meas.realbogus "
        "(data/transinet_default.safetensors).",
    )
    modelPath = model_path_field(doc="TransiNet model package file used when modelSource is 'file'.")
    threshold = Field[float](
        doc="Minimum peak score of a detection; None uses the model's recommended threshold.",
        default=None,
        optional=True,
        check=lambda t: 0.0 <= t <= 1.0,
    )
    minSeparation = Field[float](
        doc="Minimum distance between two detections, in pixels.",
        default=3.0,
        check=lambda d: d >= 0.0,
    )
    footprintLevel = Field[float](
        doc="Footprint level relative to a peak's score: a lower peak inside the connected region "
        "where the score is at least this fraction of a higher peak's score is the same source and "
        "dropped (one detection per trail or extended residual).  None keeps every peak.",
        default=0.5,
        optional=True,
        check=lambda v: 0.0 < v <= 1.0,
    )
    trailElongation = Field[float](
        doc="Axis ratio of a footprint (score-weighted second moments) above which it is a trail: "
        "flag_trail is set and x, y are the footprint's centroid instead of its peak (a trail's peak "
        "can lie anywhere along it).  Needs footprintLevel.",
        default=1.5,
        check=lambda v: v >= 1.0,
    )
    tileSize = Field[int](
        doc="Maximum tile side (pixels) for whole-detector inference; bounds memory, results "
        "do not depend on it.",
        default=1024,
        check=lambda n: n >= 64,
    )
    maxPsfSigma = Field[float](
        doc="Largest PSF sigma (pixels, the broader of science and template) scored as it is; a broader "
        "pair is summed in f x f blocks first and its score image interpolated back "
        "(TransiNetModel.max_psf_sigma; 4 is the top of the default model's training range).  None "
        "never bins.",
        default=4.0,
        optional=True,
        check=lambda v: v > 0.0,
    )
    numThreads = Field[int](
        doc="CPU threads: torch intra-op threads, and on ONNX Runtime the number of tiles scored at "
        "once (each holds about 0.3 GB for 1024x1024 tiles); 0 leaves torch's default (under "
        "pipetask the cores per quantum, else OMP_NUM_THREADS or all cores).",
        default=0,
        check=lambda n: n >= 0,
    )
    measureFlux = Field[bool](
        doc="Estimate each detection's flux (Gaussian-weighted, on the difference of science and template "
        "matched with one kernel fitted on template stars); otherwise flux, flux_err and snr are NaN.",
        default=True,
    )
    minFluxSnr = Field[float](
        doc="If set, keep only detections whose flux estimate is this significant, "
        "|flux / flux_err| >= minFluxSnr (5 mirrors the classic 5-sigma detection and removes noise "
        "peaks; see doc/transinet.rst); detections whose flux could not be measured (NaN) are kept. "
        "Needs measureFlux.  None keeps every peak above threshold.",
        default=None,
        optional=True,
        check=lambda v: v >= 0.0,
    )
    writeScoreImage = Field[bool](
        doc="Write the score image (transinet_score_image).",
        default=True,
    )
    outputStorageClass = ChoiceField[str](
        doc="Storage class of the output catalogue.",
        default="ArrowAstropy",
        allowed=TRANSINET_OUTPUT_STORAGE_CLASSES,
    )

    def validate(self) -> None:
        """Check that ``modelSource`` and ``modelPath`` agree.

        Raises
        ------
        ValueError
            Raised if ``modelSource`` is 'file' without ``modelPath``, or ``modelPath`` is set
            for another source, or ``minFluxSnr`` is set without ``measureFlux``.
        """
        super().validate()
        validate_model_source(self, "TransiNetDetectConfig")
        if self.minFluxSnr is not None and not self.measureFlux:
            raise ValueError("TransiNetDetectConfig.minFluxSnr needs measureFlux=True (the cut is on the "
                             "flux estimate).")


# -- model cache ------------------------------------------------------------------------------

_MODEL_CACHE = ModelCache()
"""TransiNet models, keyed by `dataset_cache_key` or ``"sha256:<file content hash>"``."""


def clear_transinet_model_cache() -> None:
    """Forget the TransiNet models cached by `TransiNetDetectTask`."""
    _MODEL_CACHE.clear()


def _model_from_handle(handle: Any) -> tuple[Any, bool]:
    """Return the model of a deferred ``transinetModel`` handle, cached by dataset id."""
    from ..transinet.model import TransiNetModel

    return _MODEL_CACHE.get_or_build(dataset_cache_key(handle),
                                     lambda: TransiNetModel.from_package(handle.get()))


def _model_from_file(path: str | None) -> tuple[Any, bool]:
    """Return the model in ``path`` (None: the packaged default), cached by content hash."""
    if path is None:
        from importlib.resources import files

        from ..transinet.model import DEFAULT_MODEL_COMMAND, DEFAULT_MODEL_FILE

        resource = files("lsst.meas.realbogus").joinpath("data", DEFAULT_MODEL_FILE)
        if not resource.is_file():
            raise FileNotFoundError(f"Default TransiNet model {DEFAULT_MODEL_FILE} is not installed; "
                                    f"create it with: {DEFAULT_MODEL_COMMAND}")
        data = resource.read_bytes()
    else:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"TransiNet model file {path!r} does not exist")
        data = file.read_bytes()
    from ..model_package import read_model_package
    from ..transinet.model import TransiNetModel

    return _MODEL_CACHE.get_or_build("sha256:" + hashlib.sha256(data).hexdigest(),
                                     lambda: TransiNetModel.from_package(read_model_package(data)))


# -- output -----------------------------------------------------------------------------------

def make_transinet_catalog(peaks: Table, visit: int, detector: int, version: str) -> Table:
    """Build the ``dia_source_transinet`` catalogue from `TransiNetModel.detect` peaks.

    Parameters
    ----------
    peaks : `astropy.table.Table`
        Output of `~lsst.meas.realbogus.transinet.model.TransiNetModel.detect`.
    visit, detector : `int`
        Data ID values (ids are made from them).
    version : `str`
        Model version, recorded in ``meta["model_version"]``.

    Returns
    -------
    catalog : `astropy.table.Table`
        Columns of ``_CATALOG_COLUMNS`` with fixed dtypes (also when empty), sorted by
        decreasing ``peak_score``.
    """
    from ..ids import make_source_ids

    n = len(peaks)
    flux = np.asarray(peaks["flux"], dtype=np.float64) if n else np.zeros(0)
    flux_err = np.asarray(peaks["flux_err"], dtype=np.float64) if n else np.zeros(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(flux_err > 0, flux / flux_err, np.nan)
    values: dict[str, Any] = {
        "id": make_source_ids(int(visit), int(detector), n),
        "visit": np.full(n, visit),
        "detector": np.full(n, detector),
        "snr": snr,
    }
    table = Table()
    for name, (dtype, description) in _CATALOG_COLUMNS.items():
        column = values[name] if name in values else (peaks[name] if n else np.zeros(0))
        table[name] = np.asarray(column, dtype=dtype)
        table[name].description = description
    table.meta["model_version"] = version
    return table


class TransiNetDetectTask(PipelineTask):
    """Localise transients on a (template, science) pair with TransiNet, without differencing.

    The network sees the template and the science image (normalised together) and, if the model
    declares one, a PSF-matched difference channel computed from the images and their own PSF
    sigmas (a fixed Gaussian kernel or one spatially constant kernel fitted on template stars;
    see `lsst.meas.realbogus.transinet.normalization`), and returns a per-pixel score; there is
    no detection step: detections are the score's local maxima above ``config.threshold``
    at least ``config.minSeparation`` pixels apart, with sub-pixel positions, sky coordinates
    and an (approximate) flux.  NaN and ``NO_DATA`` pixels get score 0 and never make
    detections; peaks near them are flagged ``flag_nan``.
    """

    ConfigClass = TransiNetDetectConfig
    _DefaultName = "transiNetDetect"

    config: TransiNetDetectConfig

    def runQuantum(
        self,
        butlerQC: QuantumContext,
        inputRefs: InputQuantizedConnection,
        outputRefs: OutputQuantizedConnection,
    ) -> None:
        """Read the inputs (and the Butler model, cached), run, and write the outputs."""
        inputs = butlerQC.get(inputRefs)
        model = pop_butler_model(inputs, "transinetModel", _model_from_handle, self.log, "TransiNet")
        data_id = butlerQC.quantum.dataId
        outputs = self.run(model=model, visit=int(data_id["visit"]), detector=int(data_id["detector"]),
                           **inputs)
        butlerQC.put(outputs, outputRefs)

    def load_model(self) -> Any:
        """Return the model named by the config for ``modelSource`` 'package' or 'file' (cached).

        Returns
        -------
        model : `lsst.meas.realbogus.transinet.model.TransiNetModel`
            The model.

        Raises
        ------
        ValueError
            Raised for ``modelSource == 'butler'`` (that model is a task input).
        FileNotFoundError
            Raised if the model file is missing.
        """
        path = model_file_path(self.config, "TransiNetDetectTask", "transinetModel", "transinet_model")
        return _model_from_file(path)[0]

    @timeMethod
    def run(
        self,
        science: Any,
        template: Any,
        model: Any = None,
        visit: int | None = None,
        detector: int | None = None,
    ) -> Struct:
        """Score a (template, science) pair and localise its transients.

        Parameters
        ----------
        science, template : `lsst.images.VisitImage`
            Science image and template on the same pixel grid.
        model : `TransiNetModel` or `ModelPackage`, optional
            Model to use; by default the one ``config.modelSource`` names ('package' or 'file').
        visit, detector : `int`, optional
            Data ID values for the ids; default from the science image.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``diaSources``: catalogue (see `make_transinet_catalog`) as
            ``config.outputStorageClass`` expects; ``scoreImage``: `lsst.images.Image` score
            (None unless ``config.writeScoreImage``); ``model``: the model used.

        Raises
        ------
        ValueError
            Raised if the images are missing or not on the same grid, or the model is not a
            TransiNet model.
        """
        from lsst.images import Image

        from ..butler.images import exposure_to_arrays
        from ..model_package import ModelPackage
        from ..transinet.model import TransiNetModel
        from ..transinet.normalization import valid_mask

        if self.config.numThreads:
            import torch

            torch.set_num_threads(self.config.numThreads)
        if model is None:
            model = self.load_model()
        elif isinstance(model, ModelPackage):
            model = TransiNetModel.from_package(model)
        if not isinstance(model, TransiNetModel):
            raise ValueError(f"TransiNetDetectTask needs a TransiNetModel; got {type(model).__name__}")
        if science is None or template is None:
            raise ValueError("TransiNetDetectTask.run needs both a science and a template image")
        if science.bbox != template.bbox:
            raise ValueError(f"Template bbox {template.bbox} differs from the science bbox {science.bbox}; "
                             "the template must be warped to the science grid")
        sci = exposure_to_arrays(science)
        tmpl = exposure_to_arrays(template)
        visit = sci.visit if visit is None else visit
        detector = sci.detector if detector is None else detector
        if visit is None:
            raise ValueError("No visit id: pass visit= or use a science image with a visit")
        mask = sci.mask | tmpl.mask
        model.tile_size = self.config.tileSize
        model.max_psf_sigma = self.config.maxPsfSigma
        valid = valid_mask(tmpl.image, sci.image, mask=mask, template_variance=tmpl.variance,
                           science_variance=sci.variance)
        measure = self.config.measureFlux
        difference = None
        if valid.any():
            if measure and tmpl.variance is not None and sci.variance is not None:
                # One kernel fit serves the flux measurement and a fitted 'difference' input channel.
                difference = model.difference_image(tmpl.image, sci.image, tmpl.variance, sci.variance, mask,
                                                    science_psf_sigma=sci.psf_sigma,
                                                    template_psf_sigma=tmpl.psf_sigma)
            # The PSF sigmas are used by models with a PSF-matched 'difference' input channel.
            score = model.score_image(tmpl.image, sci.image, tmpl.variance, sci.variance, mask,
                                      science_psf_sigma=sci.psf_sigma, template_psf_sigma=tmpl.psf_sigma,
                                      difference=difference)
        else:
            # Nothing usable (e.g. a dead amplifier everywhere): a zero score finds nothing.
            self.log.warning("No usable pixel in the (template, science) pair; writing an empty result.")
            score = np.zeros(sci.image.shape, dtype=np.float32)
        threshold = model.threshold if self.config.threshold is None else self.config.threshold
        peaks = model.detect(
            tmpl.image, sci.image, tmpl.variance, sci.variance, mask, threshold=threshold,
            min_separation=self.config.minSeparation, wcs=sci.wcs, score=score,
            footprint_level=self.config.footprintLevel, trail_elongation=self.config.trailElongation,
            difference=difference,
            science_psf_sigma=sci.psf_sigma if measure else None,
            template_psf_sigma=tmpl.psf_sigma if measure else None,
        )
        catalog = make_transinet_catalog(peaks, int(visit), int(detector), model.version)
        if self.config.minFluxSnr is not None:
            snr = np.asarray(catalog["snr"], dtype=np.float64)
            keep = ~(np.abs(snr) < self.config.minFluxSnr)  # NaN (unmeasured) is kept
            self.log.info("Keeping %d of %d detection(s) with |flux / flux_err| >= %g (or no flux).",
                          int(keep.sum()), len(catalog), self.config.minFluxSnr)
            catalog = catalog[keep]
            catalog.meta["min_flux_snr"] = float(self.config.minFluxSnr)
        catalog.meta["threshold"] = float(threshold)
        self.log.info("TransiNet %r found %d transient(s) at score >= %.3f (%d flagged edge, %d near NaN).",
                      model.version, len(catalog), threshold, int(catalog["flag_edge"].sum()),
                      int(catalog["flag_nan"].sum()))
        score_image = None
        if self.config.writeScoreImage:
            score_image = Image(score, bbox=science.bbox, sky_projection=science.sky_projection,
                                metadata={"TN_VERSION": str(model.version), "TN_THRESHOLD": float(threshold)})
        return Struct(diaSources=convert_parquet_table(catalog, self.config.outputStorageClass),
                      scoreImage=score_image, model=model)
