"""PipelineTask: detect and measure diaSources on a difference image."""

from __future__ import annotations

__all__ = [
    "CATALOG_STORAGE_CLASSES",
    "DetectDiaSourcesConfig",
    "DetectDiaSourcesConnections",
    "DetectDiaSourcesTask",
]

import dataclasses
from typing import Any

import numpy as np
from astropy.table import Table
from lsst.pex.config import ChoiceField, Field, ListField
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

from .. import mask_planes
from ..detection import DetectionConfig, detect_dia_sources

CATALOG_STORAGE_CLASSES: dict[str, str] = {
    "ArrowAstropy": "astropy Table in Parquet (default; no extra dependencies).",
    "ArrowTable": "pyarrow Table in Parquet.",
    "DataFrame": "pandas DataFrame in Parquet.",
    "ArrowNumpy": "numpy structured array in Parquet.",
    "SourceCatalog": "lsst.afw.table.SourceCatalog (FITS); needs lsst.afw.",
}
"""Allowed storage classes of the output diaSource catalogue."""


_DEFAULTS = DetectionConfig()
"""Defaults of the numerical configuration, used as the pex_config defaults."""


class DetectDiaSourcesConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    """Connections of `DetectDiaSourcesTask`.

    The storage class of ``dia_sources`` is set from ``config.catalog_storage_class``.
    """

    difference = cT.Input(
        doc="PSF-matched difference image (nJy).",
        name="difference_image",
        storageClass="DifferenceImage",
        dimensions=("instrument", "visit", "detector"),
    )
    dia_sources = cT.Output(
        doc="Positive and negative diaSources with PSF fluxes and pixel flags (DESIGN.md columns).",
        name="dia_source_unstandardized",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )

    def __init__(self, *, config: DetectDiaSourcesConfig | None = None) -> None:
        super().__init__(config=config)
        if config is not None and config.catalog_storage_class != self.dia_sources.storageClass:
            self.dia_sources = dataclasses.replace(
                self.dia_sources, storageClass=config.catalog_storage_class
            )


class DetectDiaSourcesConfig(PipelineTaskConfig, pipelineConnections=DetectDiaSourcesConnections):
    """Configuration of `DetectDiaSourcesTask`.

    The detection fields mirror `lsst.meas.realbogus.detection.DetectionConfig`; unusable
    pixels are named by mask plane.
    """

    catalog_storage_class = ChoiceField[str](
        doc="Storage class of the output diaSource catalogue.",
        default="ArrowAstropy",
        allowed=CATALOG_STORAGE_CLASSES,
    )
    threshold = Field[float](
        doc="Detection threshold on the PSF-filtered significance (sigma).", default=_DEFAULTS.threshold
    )
    polarity = ChoiceField[str](
        doc="Polarity of the detections.",
        default=_DEFAULTS.polarity,
        allowed={
            "both": "Positive and negative.",
            "positive": "Positive only.",
            "negative": "Negative only.",
        },
    )
    unusable_planes = ListField[str](
        doc="Mask planes whose pixels get zero weight in filtering and photometry.",
        default=[name for name, bit in mask_planes.MASK_PLANES.items() if _DEFAULTS.unusable_bits & bit],
    )
    min_coverage = Field[float](
        doc="Minimum fraction of sum(P^2) on usable pixels for a pixel to be detectable.",
        default=_DEFAULTS.min_coverage,
    )
    deblend = Field[bool](
        doc="Split footprints into several sources at well-separated peaks.", default=_DEFAULTS.deblend
    )
    min_peak_separation = Field[float](
        doc="Minimum distance between the peaks of one footprint (PSF sigmas).",
        default=_DEFAULTS.min_peak_separation,
    )
    min_peak_dip = Field[float](
        doc="Significance dip required between a secondary peak and every brighter peak.",
        default=_DEFAULTS.min_peak_dip,
    )
    flag_radius = Field[float](
        doc="Half size (PSF sigmas) of the box whose mask bits set the pixel flags.",
        default=_DEFAULTS.flag_radius,
    )
    rescale_noise = Field[bool](
        doc="Divide the PSF-filtered significance by its measured robust standard deviation (and "
        "multiply psf_flux_err by it): the variance plane ignores the pixel covariance from PSF "
        "matching and warping, so without this a 5 sigma threshold is really 3-4.6 sigma.",
        default=_DEFAULTS.rescale_noise,
    )
    min_noise_pixels = Field[int](
        doc="Fewest usable pixels needed to measure the noise for rescale_noise.",
        default=_DEFAULTS.min_noise_pixels,
    )

    def validate(self) -> None:
        """Check the plane names, the storage class and the numerical configuration."""
        super().validate()
        for plane in self.unusable_planes:
            if plane not in mask_planes.MASK_PLANES:
                raise ValueError(
                    f"unusable_planes: unknown mask plane {plane!r}; known {list(mask_planes.MASK_PLANES)}"
                )
        if self.catalog_storage_class == "SourceCatalog":
            try:
                import lsst.afw.table  # noqa: F401
            except ImportError:
                raise ValueError(
                    "catalog_storage_class='SourceCatalog' needs lsst.afw, which is not importable"
                ) from None
        self.to_detection_config().validate()

    def to_detection_config(self) -> DetectionConfig:
        """Return the equivalent `lsst.meas.realbogus.detection.DetectionConfig`.

        Returns
        -------
        config : `lsst.meas.realbogus.detection.DetectionConfig`
            Numerical configuration with the values of this config.
        """
        values: dict[str, Any] = {}
        for field in dataclasses.fields(DetectionConfig):
            if field.name == "unusable_bits":
                bits = 0
                for plane in self.unusable_planes:
                    bits |= mask_planes.mask_bit(plane)
                values[field.name] = bits
            else:
                values[field.name] = getattr(self, field.name)
        return DetectionConfig(**values)


class DetectDiaSourcesTask(PipelineTask):
    """Detect positive and negative sources on a difference image and measure them.

    Thin Butler layer over `lsst.meas.realbogus.detection.detect_dia_sources`, using the
    difference image's PSF (evaluated at the detector centre) and WCS.
    """

    ConfigClass = DetectDiaSourcesConfig
    _DefaultName = "detectDiaSources"

    config: DetectDiaSourcesConfig

    def runQuantum(self, butlerQC: Any, inputRefs: Any, outputRefs: Any) -> None:
        """Read the difference image, run with the quantum's visit and detector, write."""
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        outputs = self.run(visit=int(data_id["visit"]), detector=int(data_id["detector"]), **inputs)
        butlerQC.put(outputs, outputRefs)

    @timeMethod
    def run(self, difference: Any, visit: int | None = None, detector: int | None = None) -> Struct:
        """Detect diaSources.

        Parameters
        ----------
        difference : `lsst.images.DifferenceImage`
            Difference image.
        visit, detector : `int`, optional
            Data ID values for the ids and columns; default to the image's own.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``dia_sources``: the catalogue, as ``config.catalog_storage_class`` expects (an
            `astropy.table.Table` except for ``SourceCatalog``); ``mask``: the difference mask
            with the detection planes set (`numpy.ndarray`).
        """
        from ..butler.images import exposure_to_arrays

        arrays = exposure_to_arrays(difference)
        visit = arrays.visit if visit is None else visit
        detector = arrays.detector if detector is None else detector
        if visit is None:
            raise ValueError("the difference image has no visit id; pass visit=")
        result = detect_dia_sources(
            arrays.image,
            arrays.variance,
            arrays.mask,
            arrays.psf,
            visit=visit,
            detector=detector,
            wcs=arrays.wcs,
            config=self.config.to_detection_config(),
        )
        catalog = result.catalog
        n_negative = int(np.count_nonzero(catalog["is_negative"])) if len(catalog) else 0
        self.log.info(
            "Detected %d diaSources (%d positive, %d negative) at %.1f sigma (filtered noise %.3f x "
            "the variance plane's%s).",
            len(catalog),
            len(catalog) - n_negative,
            n_negative,
            self.config.threshold,
            result.noise_scale,
            "" if self.config.rescale_noise else ", not rescaled",
        )
        if self.config.catalog_storage_class == "SourceCatalog":
            catalog = _to_source_catalog(catalog)
        return Struct(dia_sources=catalog, mask=result.mask)


def _to_source_catalog(table: Table) -> Any:
    """Convert the diaSource table to an `lsst.afw.table.SourceCatalog` (needs afw)."""
    import lsst.afw.table as afw_table
    import lsst.geom

    schema = afw_table.SourceTable.makeMinimalSchema()
    keys = {}
    for name in table.colnames:
        if name in ("id", "ra", "dec"):
            continue
        kind = table[name].dtype.kind
        type_name = "Flag" if kind == "b" else ("L" if kind in "iu" else "D")
        keys[name] = schema.addField(name, type=type_name, doc=f"diaSource {name}")
    catalog = afw_table.SourceCatalog(schema)
    catalog.reserve(len(table))
    for row in table:
        record = catalog.addNew()
        record.setId(int(row["id"]))
        record.setCoord(lsst.geom.SpherePoint(float(row["ra"]), float(row["dec"]), lsst.geom.degrees))
        for name, key in keys.items():
            value = row[name]
            record.set(key, bool(value) if isinstance(value, np.bool_) else value.item())
    return catalog
