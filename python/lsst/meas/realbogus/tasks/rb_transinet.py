"""PipelineTask: real/bogus reliability of every diaSource of a visit × detector.

`RBTransiNetTask` is a thin Butler layer over `lsst.meas.realbogus.scoring`: it reads the
science, template and difference images and the diaSource catalogue, scores every diaSource
with a packaged model and writes one row per diaSource (same order, same ids).

The model comes from one of three places (``config.modelSource``):

``butler``
    A ``realbogus_model`` dataset (storage class ``RealBogusModelPackage``, no dimensions),
    found as a prerequisite input in the input collections, e.g.
    ``pipetask run -i SimCam/sim,pretrained_models ...`` after ``realbogus-ingest-model``.
``package``
    The default model shipped in the Python package.
``file``
    A model package file named by ``config.modelPath``.

A task is constructed once per quantum by ``pipetask``, so the network is cached at module
level (keyed by the model dataset's UUID or the package file's SHA-256, and the device) and is
built once per process however many quanta the process runs.
"""

from __future__ import annotations

__all__ = [
    "CATALOG_INPUT_STORAGE_CLASSES",
    "RELIABILITY_OUTPUT_STORAGE_CLASSES",
    "RBTransiNetConfig",
    "RBTransiNetConnections",
    "RBTransiNetTask",
    "clear_task_model_cache",
    "make_reliability_table",
]

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.pex.config import ChoiceField, Field, ListField
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

IMAGE_PLANES: tuple[str, ...] = ("science", "template", "difference")
"""Image planes a model can be fed from (the connection names of the images)."""

CATALOG_INPUT_STORAGE_CLASSES: dict[str, str] = {
    "ArrowAstropy": "astropy Table in Parquet (what DetectDiaSourcesTask writes here).",
    "ArrowTable": "pyarrow Table in Parquet.",
    "DataFrame": "pandas DataFrame in Parquet.",
    "ArrowNumpy": "numpy structured array in Parquet.",
    "SourceCatalog": "lsst.afw.table.SourceCatalog (production Alert Production); needs lsst.afw.",
}
"""Allowed storage classes of the input diaSource catalogue."""

RELIABILITY_OUTPUT_STORAGE_CLASSES: dict[str, str] = {
    **PARQUET_STORAGE_CLASSES,
    "Catalog": "lsst.afw.table.BaseCatalog (what production consumers of the reliability read); "
    "needs lsst.afw.",
}
"""Allowed storage classes of the output reliability catalogue."""

_AFW_STORAGE_CLASSES = frozenset({"SourceCatalog", "Catalog"})

_FLAG_COLUMNS: tuple[str, ...] = ("flag_edge", "flag_bad", "flag_nan_center")
"""Flag columns copied from `lsst.meas.realbogus.scoring.ScoreResult`."""


class RBTransiNetConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    """Connections of `RBTransiNetTask`.

    The connection names (``science``, ``template``, ``difference``, ``diaSources``,
    ``pretrainedModel``, ``classifications``) are those of ``lsst.meas.transiNet``'s task, so
    that Alert Production pipeline contracts written for it apply unchanged.  Image connections
    the model does not use (``config.modelChannels``) and the model prerequisite (unless
    ``config.modelSource == "butler"``) are removed; the catalogue storage classes follow the
    config.
    """

    science = cT.Input(
        doc="Science image (calibrated visit image) the diaSources were found on.",
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
    difference = cT.Input(
        doc="PSF-matched difference image (science - template); its mask and variance are used.",
        name="difference_image",
        storageClass="DifferenceImage",
        dimensions=("instrument", "visit", "detector"),
    )
    diaSources = cT.Input(
        doc="diaSources detected on the difference image, to be scored.",
        name="dia_source_unstandardized",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )
    pretrainedModel = cT.PrerequisiteInput(
        doc="Trained real/bogus model package, found in the input collections "
        "(e.g. the 'pretrained_models' CHAINED collection made by realbogus-ingest-model).",
        name="realbogus_model",
        storageClass="RealBogusModelPackage",
        dimensions=(),
        deferLoad=True,
    )
    classifications = cT.Output(
        doc="Reliability of each diaSource, row-aligned with the input catalogue: id, score, "
        "version, threshold, flag_edge, flag_bad, flag_nan_center, reason.",
        name="dia_source_reliability",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )

    def __init__(self, *, config: RBTransiNetConfig | None = None) -> None:
        super().__init__(config=config)
        if config is None:
            return
        if config.modelSource != "butler":
            del self.pretrainedModel
        for plane in ("science", "template"):
            if plane not in config.modelChannels:
                delattr(self, plane)
        if config.catalogStorageClass != self.diaSources.storageClass:
            self.diaSources = dataclasses.replace(self.diaSources, storageClass=config.catalogStorageClass)
        if config.outputStorageClass != self.classifications.storageClass:
            self.classifications = dataclasses.replace(
                self.classifications, storageClass=config.outputStorageClass
            )


class RBTransiNetConfig(PipelineTaskConfig, pipelineConnections=RBTransiNetConnections):
    """Configuration of `RBTransiNetTask`."""

    modelSource = model_source_field(
        doc="Where the model package comes from.",
        default="butler",
        butler_doc="The 'pretrainedModel' prerequisite input (dataset type realbogus_model), "
        "found in the input collections.",
        package_doc="The default model shipped in lsst.meas.realbogus (data/default_model.safetensors).",
    )
    modelPath = model_path_field(doc="Model package file (safetensors) used when modelSource is 'file'.")
    modelChannels = ListField[str](
        doc="Image planes the model reads (any of science, template, difference; difference is "
        "required).  Connections of unused planes are removed, so a difference-only model needs "
        "no science or template image.  Checked against the loaded model's channels at run time.",
        default=["science", "template", "difference"],
    )
    batchSize = Field[int](
        doc="diaSources cut out and scored together (bounds memory; scores do not depend on it).",
        default=1024,
        check=lambda n: n > 0,
    )
    numThreads = Field[int](
        doc="torch intra-op threads; 0 leaves torch's default (OMP_NUM_THREADS or all cores).",
        default=0,
        check=lambda n: n >= 0,
    )
    device = ChoiceField[str](
        doc="Device the network runs on.",
        default="cpu",
        allowed={"cpu": "CPU.", "cuda": "The current CUDA GPU (error if none).",
                 "auto": "CUDA if available, else CPU."},
    )
    catalogStorageClass = ChoiceField[str](
        doc="Storage class of the input diaSource catalogue.",
        default="ArrowAstropy",
        allowed=CATALOG_INPUT_STORAGE_CLASSES,
    )
    outputStorageClass = ChoiceField[str](
        doc="Storage class of the output reliability catalogue.",
        default="ArrowAstropy",
        allowed=RELIABILITY_OUTPUT_STORAGE_CLASSES,
    )
    idColumn = Field[str](doc="diaSource id column of the input catalogue.", default="id")
    xColumn = Field[str](
        doc="Column of the 0-based x pixel position ('slot_Centroid_x' for afw catalogues).", default="x"
    )
    yColumn = Field[str](
        doc="Column of the 0-based y pixel position ('slot_Centroid_y' for afw catalogues).", default="y"
    )
    useMask = Field[bool](
        doc="Pass the difference image's mask to the scorer (masked pixels are treated as missing).",
        default=True,
    )
    useVariance = Field[bool](
        doc="Pass the difference image's variance to the scorer (used if the model's normalisation "
        "asks for it).",
        default=True,
    )

    def validate(self) -> None:
        """Check the consistency of the settings.

        Raises
        ------
        ValueError
            Raised with a message naming the inconsistent fields.
        """
        super().validate()
        validate_model_source(self, "RBTransiNetConfig")
        channels = list(self.modelChannels)
        unknown = sorted(set(channels) - set(IMAGE_PLANES))
        if unknown:
            raise ValueError(
                f"RBTransiNetConfig.modelChannels: unknown planes {unknown}; allowed {IMAGE_PLANES}"
            )
        if len(set(channels)) != len(channels):
            raise ValueError(f"RBTransiNetConfig.modelChannels has duplicates: {channels}")
        if "difference" not in channels:
            raise ValueError("RBTransiNetConfig.modelChannels must include 'difference'")
        for name in ("idColumn", "xColumn", "yColumn"):
            if not getattr(self, name):
                raise ValueError(f"RBTransiNetConfig.{name} must be a non-empty column name")
        # The afw storage classes are not checked here: a pipeline using them can be built and
        # inspected without lsst.afw; run() says clearly when afw is needed and missing.


def _afw_available() -> bool:
    try:
        import lsst.afw.table  # noqa: F401
    except ImportError:
        return False
    return True


# -- model cache ------------------------------------------------------------------------------

_MODEL_CACHE = ModelCache()
"""Models of Butler datasets, keyed by (`dataset_cache_key`, device)."""


def clear_task_model_cache() -> None:
    """Forget the models cached by `RBTransiNetTask` for Butler datasets."""
    _MODEL_CACHE.clear()


def _model_from_handle(handle: Any, device: str) -> tuple[Any, bool]:
    """Return the model of a deferred ``pretrainedModel`` handle, cached by dataset id.

    Returns the model and whether it came from the cache.
    """
    from ..scoring import RealBogusModel

    return _MODEL_CACHE.get_or_build(
        (dataset_cache_key(handle), device), lambda: RealBogusModel.from_package(handle.get(), device)
    )


# -- catalogue access -------------------------------------------------------------------------

def _column_names(catalog: Any) -> list[str]:
    if hasattr(catalog, "colnames"):  # astropy
        return list(catalog.colnames)
    if hasattr(catalog, "column_names"):  # pyarrow
        return list(catalog.column_names)
    if hasattr(catalog, "columns") and hasattr(catalog, "iloc"):  # pandas
        return [str(c) for c in catalog.columns]
    if hasattr(catalog, "schema") and hasattr(catalog.schema, "getNames"):  # afw
        return sorted(catalog.schema.getNames())
    dtype = getattr(catalog, "dtype", None)
    if dtype is not None and dtype.names:  # numpy structured array
        return list(dtype.names)
    raise TypeError(f"Do not know how to read columns of a {type(catalog).__name__}")


def _has_column(catalog: Any, name: str) -> bool:
    if hasattr(catalog, "schema") and hasattr(catalog.schema, "find"):  # afw: resolves slot aliases
        try:
            catalog.schema.find(name)
        except KeyError:
            return False
        return True
    return name in _column_names(catalog)


def _column(catalog: Any, name: str) -> np.ndarray | np.ma.MaskedArray:
    """Return a column as an array; masked (missing) values stay masked."""
    if hasattr(catalog, "column_names"):  # pyarrow
        column = catalog.column(name)
        if column.null_count:
            return np.ma.masked_invalid(np.asarray(column.to_numpy(zero_copy_only=False), dtype=float))
        return np.asarray(column.to_numpy())
    if hasattr(catalog, "schema") and hasattr(catalog.schema, "getNames"):  # afw
        return np.asarray(catalog[name]).copy()
    values = catalog[name]
    if isinstance(values, np.ma.MaskedArray) and np.ma.getmaskarray(values).any():  # astropy MaskedColumn
        return np.ma.MaskedArray(np.asarray(values.data), mask=np.ma.getmaskarray(values))
    return np.asarray(values)


def _positions(values: np.ndarray | np.ma.MaskedArray) -> np.ndarray:
    """Return float64 positions with masked (missing) values as NaN (scored as unscorable)."""
    if isinstance(values, np.ma.MaskedArray):
        return values.astype(np.float64).filled(np.nan)
    return np.asarray(values, dtype=np.float64)


def _as_int64_ids(ids: np.ndarray | np.ma.MaskedArray, column: str) -> np.ndarray:
    if isinstance(ids, np.ma.MaskedArray):
        missing = np.flatnonzero(np.ma.getmaskarray(ids))
        raise ValueError(f"diaSource id column {column!r} has {missing.size} missing (masked) ids, "
                         f"e.g. at rows {missing[:5].tolist()}; every diaSource needs an id")
    if ids.dtype.kind not in "iu":
        raise ValueError(f"diaSource id column {column!r} must be integer, got dtype {ids.dtype}")
    if ids.dtype.kind == "u" and ids.size and ids.max() > np.iinfo(np.int64).max:
        raise ValueError(f"diaSource id column {column!r} has ids beyond the int64 range")
    return ids.astype(np.int64, copy=False)


def make_reliability_table(
    ids: np.ndarray,
    scores: np.ndarray,
    flags: Mapping[str, np.ndarray],
    reason: np.ndarray,
    version: str,
    threshold: float,
) -> Table:
    """Build the reliability table written by `RBTransiNetTask`.

    Parameters
    ----------
    ids : `numpy.ndarray`
        ``(N,)`` int64 diaSource ids.
    scores : `numpy.ndarray`
        ``(N,)`` reliabilities in [0, 1] (NaN where unscorable).
    flags : `~collections.abc.Mapping` [`str`, `numpy.ndarray`]
        ``(N,)`` bool flag columns, by name.
    reason : `numpy.ndarray`
        ``(N,)`` str, why a score is flagged or missing (``""`` if clean).
    version : `str`
        Model version (≤ 7 characters).
    threshold : `float`
        The model's recommended operating threshold.

    Returns
    -------
    table : `astropy.table.Table`
        Columns ``id`` (int64), ``score`` (float32), ``version`` (str), ``threshold``
        (float32), the flag columns (bool) and ``reason`` (str); ``meta`` holds
        ``model_version`` and ``model_threshold``.
    """
    n = len(ids)
    table = Table()
    table["id"] = np.asarray(ids, dtype=np.int64)
    table["score"] = np.asarray(scores, dtype=np.float32)
    table["version"] = np.full(n, version, dtype=f"<U{max(len(version), 1)}")
    table["threshold"] = np.full(n, threshold, dtype=np.float32)
    for name, values in flags.items():
        table[name] = np.asarray(values, dtype=bool)
    reason = np.asarray(reason).astype(str)
    table["reason"] = reason if n else np.zeros(0, dtype="<U1")
    table["id"].description = "diaSource id (equal to the input catalogue's id)"
    table["score"].description = "Reliability: probability that the diaSource is real (NaN: unscorable)"
    table["version"].description = "Model version (alert reliabilityVersion)"
    table["threshold"].description = "The model's recommended operating threshold on score"
    table.meta["model_version"] = version
    table.meta["model_threshold"] = float(threshold)
    return table


def _convert_output(table: Table, storage_class: str) -> Any:
    if storage_class == "Catalog":
        if not _afw_available():
            raise RuntimeError("outputStorageClass='Catalog' needs lsst.afw, which is not importable here")
        import lsst.afw.table as afw_table

        schema = afw_table.Schema()
        keys = {
            "id": schema.addField("id", type="L", doc="diaSource id"),
            "score": schema.addField("score", type="F", doc="reliability of this diaSource"),
        }
        for name in _FLAG_COLUMNS:
            keys[name] = schema.addField(name, type="Flag", doc=f"scoring flag {name}")
        catalog = afw_table.BaseCatalog(schema)
        catalog.resize(len(table))
        for name in ("id", "score"):
            catalog[name] = np.asarray(table[name])
        for i, row in enumerate(table):
            for name in _FLAG_COLUMNS:
                catalog[i].set(keys[name], bool(row[name]))
        catalog.getMetadata().set("MODEL_VERSION", str(table.meta["model_version"]))
        return catalog
    return convert_parquet_table(table, storage_class)


class RBTransiNetTask(PipelineTask):
    """Score every diaSource of a difference image with a real/bogus model.

    Thin Butler layer over `lsst.meas.realbogus.scoring.RealBogusModel.score`: stamps are cut
    from the planes the model declares, normalised as the model package declares and scored in
    batches of ``config.batchSize``.  The output has one row per input diaSource, in the same
    order, with the same ids; sources that cannot be scored (non-finite position, entirely off
    the image, no usable difference pixel) get a NaN score and a ``reason``.
    """

    ConfigClass = RBTransiNetConfig
    _DefaultName = "rbTransiNet"

    config: RBTransiNetConfig

    def runQuantum(
        self,
        butlerQC: QuantumContext,
        inputRefs: InputQuantizedConnection,
        outputRefs: OutputQuantizedConnection,
    ) -> None:
        """Read the inputs, resolve the model (cached per process) and write the reliabilities.

        Parameters
        ----------
        butlerQC : `lsst.pipe.base.QuantumContext`
            Butler access for this quantum.
        inputRefs : `lsst.pipe.base.InputQuantizedConnection`
            Input dataset references.
        outputRefs : `lsst.pipe.base.OutputQuantizedConnection`
            Output dataset references.
        """
        inputs = butlerQC.get(inputRefs)
        model = pop_butler_model(inputs, "pretrainedModel", lambda h: _model_from_handle(h, self._device()),
                                 self.log, "model")
        outputs = self.run(model=model, **inputs)
        butlerQC.put(outputs, outputRefs)

    def _device(self) -> str:
        from ..scoring import _resolve_device

        return str(_resolve_device(self.config.device))

    def load_model(self) -> Any:
        """Return the model named by the config for ``modelSource`` 'package' or 'file'.

        The model is shared by all tasks of the process that use the same file content and
        device (`lsst.meas.realbogus.scoring.load_model_cached`).

        Returns
        -------
        model : `lsst.meas.realbogus.scoring.RealBogusModel`
            The model.

        Raises
        ------
        lsst.meas.realbogus.errors.ModelPackageError
            Raised if the file is missing (including the default model before it is installed)
            or invalid.
        ValueError
            Raised for ``modelSource == 'butler'``: that model is a task input.
        """
        from ..scoring import load_model_cached

        path = model_file_path(self.config, "RBTransiNetTask", "pretrainedModel", "realbogus_model")
        return load_model_cached(path, device=self.config.device)

    def _check_model(self, model: Any) -> None:
        needed = tuple(model.channels)
        configured = tuple(self.config.modelChannels)
        unsupported = [c for c in needed if c not in IMAGE_PLANES]
        if unsupported:
            raise ValueError(
                f"Model {model.version!r} needs channels {needed}; this task can only supply {IMAGE_PLANES}"
            )
        if set(needed) != set(configured):
            raise ValueError(
                f"Model {model.version!r} reads channels {list(needed)} but config.modelChannels is "
                f"{list(configured)}; set modelChannels to {list(needed)} (connections follow it)"
            )

    @timeMethod
    def run(
        self,
        diaSources: Any,
        difference: Any,
        science: Any = None,
        template: Any = None,
        model: Any = None,
    ) -> Struct:
        """Score the diaSources.

        Parameters
        ----------
        diaSources : `astropy.table.Table` or other catalogue
            diaSources with the ``config.idColumn``, ``xColumn`` and ``yColumn`` columns (any
            type of ``config.catalogStorageClass``).
        difference : `lsst.images.DifferenceImage`
            Difference image (its mask and variance are used).
        science, template : `lsst.images.VisitImage`, optional
            Science and template images; required if the model reads them.
        model : `lsst.meas.realbogus.scoring.RealBogusModel` or `ModelPackage`, optional
            Model to use; by default the one ``config.modelSource`` names ('package' or
            'file').

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``classifications``: reliability catalogue (see `make_reliability_table`) as
            ``config.outputStorageClass`` expects; ``model``: the model used.

        Raises
        ------
        ValueError
            Raised for duplicate or non-integer ids, missing columns, a missing image the model
            needs, or a model whose channels do not match ``config.modelChannels``.
        """
        from ..butler.images import exposure_to_arrays, image_array
        from ..model_package import ModelPackage
        from ..scoring import RealBogusModel

        if self.config.numThreads:
            import torch

            torch.set_num_threads(self.config.numThreads)
        if model is None:
            model = self.load_model()
        elif isinstance(model, ModelPackage):
            model = RealBogusModel.from_package(model, self.config.device)
        self._check_model(model)

        missing = [c for c in (self.config.idColumn, self.config.xColumn, self.config.yColumn)
                   if not _has_column(diaSources, c)]
        if missing:
            raise ValueError(f"diaSource catalogue lacks columns {missing} "
                             f"(has {_column_names(diaSources)}); set idColumn/xColumn/yColumn")
        ids = _as_int64_ids(_column(diaSources, self.config.idColumn), self.config.idColumn)
        unique, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            dup = unique[counts > 1]
            raise ValueError(f"diaSource catalogue has {dup.size} duplicated ids (e.g. {dup[:5].tolist()}); "
                             "ids must be unique to align reliabilities with diaSources")
        x = _positions(_column(diaSources, self.config.xColumn))
        y = _positions(_column(diaSources, self.config.yColumn))

        if difference is None:
            raise ValueError("RBTransiNetTask.run needs a difference image")
        planes: dict[str, np.ndarray | None] = {"science": None, "template": None}
        for name, image in (("science", science), ("template", template)):
            if name in model.channels:
                if image is None:
                    raise ValueError(f"Model {model.version!r} needs the {name} image, got None")
                planes[name] = image_array(image)
        diff = exposure_to_arrays(difference)
        for name, array in planes.items():
            if array is not None and array.shape != diff.image.shape:
                raise ValueError(f"{name} image shape {array.shape} differs from the difference "
                                 f"image shape {diff.image.shape}")
        result = model.score(
            planes["science"], planes["template"], diff.image, x, y,
            variance=diff.variance if self.config.useVariance else None,
            mask=diff.mask if self.config.useMask else None,
            batch_size=self.config.batchSize,
        )
        flags = {name: getattr(result, name) for name in _FLAG_COLUMNS}
        table = make_reliability_table(ids, result.scores, flags, result.reason, model.version,
                                       model.threshold)
        n_scored = int(np.isfinite(result.scores).sum())
        n_real = int((result.scores >= model.threshold).sum())
        self.log.info("Scored %d of %d diaSources with model %r; %d at or above its threshold %.3f.",
                      n_scored, len(ids), model.version, n_real, model.threshold)
        return Struct(classifications=_convert_output(table, self.config.outputStorageClass), model=model)
