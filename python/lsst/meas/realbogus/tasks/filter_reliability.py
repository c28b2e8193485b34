"""PipelineTask: split diaSources into high- and low-reliability catalogues."""

from __future__ import annotations

__all__ = [
    "FilterDiaSourceReliabilityConfig",
    "FilterDiaSourceReliabilityConnections",
    "FilterDiaSourceReliabilityTask",
]

import numpy as np
from astropy.table import Table
from lsst.pex.config import ChoiceField, Field
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod


class FilterDiaSourceReliabilityConnections(
    PipelineTaskConnections, dimensions=("instrument", "visit", "detector")
):
    """Connections of `FilterDiaSourceReliabilityTask` (names as in Alert Production)."""

    diaSourceCat = cT.Input(
        doc="diaSources that were scored.",
        name="dia_source_unstandardized",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )
    reliability = cT.Input(
        doc="Reliability of each diaSource (RBTransiNetTask output).",
        name="dia_source_reliability",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )
    filteredDiaSources = cT.Output(
        doc="diaSources at or above the reliability threshold, with their reliability columns.",
        name="dia_source_high_reliability",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )
    rejectedDiaSources = cT.Output(
        doc="diaSources below the reliability threshold (or unscored), with their reliability columns.",
        name="dia_source_low_reliability",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )


class FilterDiaSourceReliabilityConfig(
    PipelineTaskConfig, pipelineConnections=FilterDiaSourceReliabilityConnections
):
    """Configuration of `FilterDiaSourceReliabilityTask`."""

    threshold = Field[float](
        doc="Minimum reliability kept in dia_source_high_reliability; None uses the model's recommended "
        "threshold (the 'threshold' column written by RBTransiNetTask).",
        default=None,
        optional=True,
        check=lambda t: 0.0 <= t <= 1.0,
    )
    unscoredDestination = ChoiceField[str](
        doc="Where diaSources with a NaN reliability (unscorable: off the image, no usable pixels) go.",
        default="low",
        allowed={"low": "dia_source_low_reliability.", "high": "dia_source_high_reliability."},
    )
    reliabilityColumns = Field[str](
        doc="Comma-separated reliability columns copied onto the output catalogues (as 'reliability' "
        "for 'score').",
        default="score,version",
    )


class FilterDiaSourceReliabilityTask(PipelineTask):
    """Split diaSources by reliability at a threshold.

    Rows are matched by ``id`` (every diaSource must have exactly one reliability row), keep the
    input order, and carry ``reliability`` (the score) and ``reliability_version``.
    """

    ConfigClass = FilterDiaSourceReliabilityConfig
    _DefaultName = "filterDiaSourceReliability"

    config: FilterDiaSourceReliabilityConfig

    @timeMethod
    def run(self, diaSourceCat: Table, reliability: Table) -> Struct:
        """Split the diaSources.

        Parameters
        ----------
        diaSourceCat : `astropy.table.Table`
            diaSources with an int64 ``id`` column.
        reliability : `astropy.table.Table`
            Reliability table with ``id``, ``score`` and (unless ``config.threshold`` is set)
            ``threshold`` columns.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``filteredDiaSources`` and ``rejectedDiaSources`` (`astropy.table.Table`), and
            ``threshold`` (`float`), the threshold applied.

        Raises
        ------
        ValueError
            Raised if the ids of the two catalogues do not correspond one to one, or if no
            threshold is configured and the reliability table has none.
        """
        for name, table, columns in (("diaSourceCat", diaSourceCat, ("id",)),
                                     ("reliability", reliability, ("id", "score"))):
            missing = [c for c in columns if c not in table.colnames]
            if missing:
                raise ValueError(f"{name} lacks columns {missing}")
        ids = np.asarray(diaSourceCat["id"], dtype=np.int64)
        rel_ids = np.asarray(reliability["id"], dtype=np.int64)
        if len(np.unique(rel_ids)) != len(rel_ids) or len(np.unique(ids)) != len(ids):
            raise ValueError("diaSource and reliability ids must be unique")
        if len(ids) != len(rel_ids):
            raise ValueError(f"{len(ids)} diaSources but {len(rel_ids)} reliability rows: were they scored "
                             "from this catalogue?")
        order = np.argsort(rel_ids, kind="stable")
        rows = order[np.clip(np.searchsorted(rel_ids[order], ids), 0, max(len(ids) - 1, 0))]
        unmatched = int(np.count_nonzero(rel_ids[rows] != ids)) if len(ids) else 0
        if unmatched:
            raise ValueError(f"{unmatched} diaSources have no reliability row with their id")
        scores = np.asarray(reliability["score"], dtype=np.float32)[rows]
        threshold = self._threshold(reliability)
        keep = scores >= threshold
        if self.config.unscoredDestination == "high":
            keep |= np.isnan(scores)
        out = diaSourceCat.copy(copy_data=True)
        for column in (c.strip() for c in self.config.reliabilityColumns.split(",") if c.strip()):
            if column not in reliability.colnames:
                raise ValueError(f"reliabilityColumns: {column!r} is not a reliability column")
            name = "reliability" if column == "score" else f"reliability_{column}"
            out[name] = np.asarray(reliability[column])[rows]
        high, low = out[keep], out[~keep]
        self.log.info("Kept %d of %d diaSources at reliability >= %.3f (%d unscored).", len(high), len(out),
                      threshold, int(np.isnan(scores).sum()))
        return Struct(filteredDiaSources=high, rejectedDiaSources=low, threshold=threshold)

    def _threshold(self, reliability: Table) -> float:
        if self.config.threshold is not None:
            return float(self.config.threshold)
        if "threshold" not in reliability.colnames:
            raise ValueError("No threshold configured and the reliability table has no 'threshold' column; "
                             "set config.threshold")
        values = np.unique(np.asarray(reliability["threshold"], dtype=np.float64))
        if len(values) > 1:
            raise ValueError(f"Reliability rows carry several model thresholds {values.tolist()}")
        if len(values) == 0:
            return 0.5  # no rows: nothing to split, any value gives the same (empty) outputs
        return float(values[0])
