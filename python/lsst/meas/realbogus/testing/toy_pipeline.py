# This file is part of meas_realbogus.
"""A tiny two-step visit × detector pipeline for testing workflow infrastructure.

The tasks mimic the shape of the simulated Alert Production pipeline (one
image-like table in, a "difference" table, then a "source" table out, all with
``instrument, visit, detector`` dimensions) without needing the simulator, so
that BPS and registry back-ends can be tested quickly and independently of
the science code.  They only use the ``ArrowAstropy`` storage class, which
needs no configuration of the repository.
"""

from __future__ import annotations

__all__ = (
    "TOY_INPUT_RUN",
    "TOY_INSTRUMENT",
    "ToyDetectConfig",
    "ToyDetectConnections",
    "ToyDetectTask",
    "ToySubtractConfig",
    "ToySubtractConnections",
    "ToySubtractTask",
    "make_toy_repo",
    "write_toy_pipeline",
)

import os
from collections.abc import Sequence

import numpy as np
from astropy.table import Table

import lsst.pex.config as pex_config
import lsst.pipe.base as pipe_base
import lsst.pipe.base.connectionTypes as cT
from lsst.daf.butler import Butler, Config, DatasetType

TOY_INSTRUMENT = "ToyCam"
"""Name of the instrument registered by `make_toy_repo`."""

TOY_INPUT_RUN = "ToyCam/raw"
"""RUN collection holding the input ``toy_image`` datasets."""

_DIMENSIONS = ("instrument", "visit", "detector")


class ToySubtractConnections(pipe_base.PipelineTaskConnections, dimensions=_DIMENSIONS):
    """Connections for `ToySubtractTask`."""

    image = cT.Input(
        doc="Input pixel table (columns x, y, value).",
        name="toy_image",
        storageClass="ArrowAstropy",
        dimensions=_DIMENSIONS,
    )
    difference = cT.Output(
        doc="Background-subtracted pixel table.",
        name="toy_difference",
        storageClass="ArrowAstropy",
        dimensions=_DIMENSIONS,
    )


class ToySubtractConfig(pipe_base.PipelineTaskConfig, pipelineConnections=ToySubtractConnections):
    """Configuration for `ToySubtractTask`."""

    background = pex_config.Field[float](doc="Constant background to subtract.", default=10.0)


class ToySubtractTask(pipe_base.PipelineTask):
    """Subtract a constant background from a pixel table."""

    ConfigClass = ToySubtractConfig
    _DefaultName = "toySubtract"

    def run(self, image: Table) -> pipe_base.Struct:
        """Subtract the background.

        Parameters
        ----------
        image : `astropy.table.Table`
            Pixel table with ``x``, ``y`` and ``value`` columns.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``difference``: the table with ``value`` reduced by the background.
        """
        difference = image.copy()
        difference["value"] = image["value"] - self.config.background
        return pipe_base.Struct(difference=difference)


class ToyDetectConnections(pipe_base.PipelineTaskConnections, dimensions=_DIMENSIONS):
    """Connections for `ToyDetectTask`."""

    difference = cT.Input(
        doc="Background-subtracted pixel table.",
        name="toy_difference",
        storageClass="ArrowAstropy",
        dimensions=_DIMENSIONS,
    )
    sources = cT.Output(
        doc="Pixels above threshold, with unique ids.",
        name="toy_sources",
        storageClass="ArrowAstropy",
        dimensions=_DIMENSIONS,
    )


class ToyDetectConfig(pipe_base.PipelineTaskConfig, pipelineConnections=ToyDetectConnections):
    """Configuration for `ToyDetectTask`."""

    threshold = pex_config.Field[float](doc="Detection threshold on ``value``.", default=2.0)


class ToyDetectTask(pipe_base.PipelineTask):
    """Select pixels above a threshold and give them ids."""

    ConfigClass = ToyDetectConfig
    _DefaultName = "toyDetect"

    def runQuantum(
        self,
        butlerQC: pipe_base.QuantumContext,
        inputRefs: pipe_base.InputQuantizedConnection,
        outputRefs: pipe_base.OutputQuantizedConnection,
    ) -> None:
        inputs = butlerQC.get(inputRefs)
        data_id = butlerQC.quantum.dataId
        outputs = self.run(inputs["difference"], visit=int(data_id["visit"]), detector=int(data_id["detector"]))
        butlerQC.put(outputs, outputRefs)

    def run(self, difference: Table, visit: int, detector: int) -> pipe_base.Struct:
        """Detect pixels above threshold.

        Parameters
        ----------
        difference : `astropy.table.Table`
            Background-subtracted pixel table.
        visit, detector : `int`
            Data ID values, recorded in the output and used for the ids.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``sources``: table of selected pixels with ``id``, ``visit``,
            ``detector``, ``x``, ``y``, ``value``.
        """
        selected = difference[difference["value"] > self.config.threshold]
        sources = Table()
        sources["id"] = (np.int64(visit) << 20) + (np.int64(detector) << 12) + np.arange(len(selected))
        sources["visit"] = np.full(len(selected), visit, dtype=np.int64)
        sources["detector"] = np.full(len(selected), detector, dtype=np.int64)
        for name in ("x", "y", "value"):
            sources[name] = selected[name]
        return pipe_base.Struct(sources=sources)


def write_toy_pipeline(path: str | os.PathLike[str]) -> str:
    """Write the pipeline YAML of the toy pipeline.

    The labels are those of the simulated Alert Production pipeline
    (``subtractImages``, ``detectDiaSources``), so the same BPS clustering
    configuration applies.

    Parameters
    ----------
    path : `str` or `os.PathLike`
        File to write.

    Returns
    -------
    path : `str`
        The path written, as a string.
    """
    text = f"""\
description: Toy visit x detector pipeline for workflow tests.
tasks:
  subtractImages:
    class: {__name__}.ToySubtractTask
  detectDiaSources:
    class: {__name__}.ToyDetectTask
"""
    with open(path, "w") as stream:
        stream.write(text)
    return os.fspath(path)


def make_toy_repo(
    root: str | os.PathLike[str],
    visits: Sequence[int] = (1, 2, 3),
    detectors: Sequence[int] = (0, 1),
    *,
    n_pixels: int = 256,
    seed: int = 1,
    registry_db: str | None = None,
) -> Butler:
    """Create a Butler repository with toy inputs for `write_toy_pipeline`.

    Parameters
    ----------
    root : `str` or `os.PathLike`
        Directory of the new repository (datastore root).
    visits, detectors : `~collections.abc.Sequence` [`int`]
        Data IDs to create; one ``toy_image`` per visit × detector.
    n_pixels : `int`, optional
        Rows per input table.
    seed : `int`, optional
        Random seed of the input values.
    registry_db : `str`, optional
        SQLAlchemy URL of the registry database (e.g. a PostgreSQL URL);
        default: SQLite inside ``root``.

    Returns
    -------
    butler : `lsst.daf.butler.Butler`
        Writeable Butler on the new repository, with its default RUN set to
        `TOY_INPUT_RUN`.
    """
    config = Config()
    if registry_db is not None:
        config["registry", "db"] = registry_db
    Butler.makeRepo(os.fspath(root), config=config)
    butler = Butler.from_config(os.fspath(root), writeable=True, run=TOY_INPUT_RUN)
    registry = butler.registry
    registry.insertDimensionData(
        "instrument",
        {
            "name": TOY_INSTRUMENT,
            "visit_max": 1 << 20,
            "exposure_max": 1 << 20,
            "detector_max": 1 << 8,
            "class_name": "none",
        },
    )
    registry.insertDimensionData(
        "physical_filter", {"instrument": TOY_INSTRUMENT, "name": "toy-r", "band": "r"}
    )
    registry.insertDimensionData(
        "detector",
        *[
            {"instrument": TOY_INSTRUMENT, "id": d, "full_name": f"D{d:02d}", "purpose": "SCIENCE"}
            for d in detectors
        ],
    )
    day_obs = 20260101
    registry.insertDimensionData("day_obs", {"instrument": TOY_INSTRUMENT, "id": day_obs})
    registry.insertDimensionData(
        "visit",
        *[
            {
                "instrument": TOY_INSTRUMENT,
                "id": v,
                "name": f"visit{v}",
                "physical_filter": "toy-r",
                "day_obs": day_obs,
                "exposure_time": 30.0,
                "seq_num": v,
            }
            for v in visits
        ],
    )
    # Quantum-graph generation attaches visit_detector_region records to
    # every visit x detector data ID: they must exist (the region may be
    # null).
    registry.insertDimensionData(
        "visit_detector_region",
        *[{"instrument": TOY_INSTRUMENT, "visit": v, "detector": d} for v in visits for d in detectors],
    )
    dataset_type = DatasetType("toy_image", _DIMENSIONS, "ArrowAstropy", universe=butler.dimensions)
    registry.registerDatasetType(dataset_type)
    rng = np.random.default_rng(seed)
    for v in visits:
        for d in detectors:
            table = Table()
            table["x"] = rng.uniform(0, 100, n_pixels)
            table["y"] = rng.uniform(0, 100, n_pixels)
            table["value"] = rng.normal(10.0, 2.0, n_pixels)
            butler.put(table, dataset_type, instrument=TOY_INSTRUMENT, visit=v, detector=d)
    return butler
