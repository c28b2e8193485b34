"""The simulated camera ``SimCam`` as an `lsst.pipe.base.Instrument`, without obs_base."""

from __future__ import annotations

__all__ = ["SIM_FILTERS", "SimCam"]

from typing import TYPE_CHECKING

from lsst.pipe.base import Instrument

if TYPE_CHECKING:
    from lsst.daf.butler import DataId, FormatterV2, Registry

SIM_FILTERS: dict[str, str] = {"g_sim": "g", "r_sim": "r", "i_sim": "i"}
"""Physical filter name → band of the simulated camera."""


class SimCam(Instrument):
    """The simulated LSST-like camera used by the simulator and the demo.

    Parameters
    ----------
    n_detectors : `int`, optional
        Number of detectors to register (ids ``0 .. n_detectors - 1``).
    collection_prefix : `str`, optional
        Prefix of the instrument's default collections (default ``"SimCam"``).

    Notes
    -----
    `register` inserts the ``instrument``, ``physical_filter`` (with its ``band``) and
    ``detector`` records.  Visits are registered by
    `lsst.meas.realbogus.butler.repo.ingest_simulated_visits`.  Registering again with more
    detectors adds the missing ones.
    """

    DETECTOR_MAX = 1000
    """Exclusive upper bound of detector ids (matches `lsst.meas.realbogus.ids.MAX_DETECTOR`)."""
    VISIT_MAX = 1 << 30
    """Exclusive upper bound of visit ids."""

    def __init__(self, n_detectors: int = 4, collection_prefix: str | None = None) -> None:
        super().__init__(collection_prefix=collection_prefix)
        if not 0 < n_detectors <= self.DETECTOR_MAX:
            raise ValueError(f"n_detectors must be in [1, {self.DETECTOR_MAX}], got {n_detectors}")
        self.n_detectors = int(n_detectors)

    @classmethod
    def getName(cls) -> str:
        """Return the instrument (dimension) name, ``"SimCam"``."""
        return "SimCam"

    def register(self, registry: Registry, *, update: bool = False) -> None:
        """Insert the instrument, physical filter and detector records.

        Parameters
        ----------
        registry : `lsst.daf.butler.Registry`
            Registry to modify.
        update : `bool`, optional
            Update existing records that differ instead of raising.
        """
        name = self.getName()
        with registry.transaction():
            registry.syncDimensionData(
                "instrument",
                {
                    "name": name,
                    "detector_max": self.DETECTOR_MAX,
                    "visit_max": self.VISIT_MAX,
                    "exposure_max": self.VISIT_MAX,
                    "class_name": f"{type(self).__module__}.{type(self).__qualname__}",
                },
                update=update,
            )
            for physical_filter, band in SIM_FILTERS.items():
                registry.syncDimensionData(
                    "physical_filter",
                    {"instrument": name, "name": physical_filter, "band": band},
                    update=update,
                )
            for detector in range(self.n_detectors):
                registry.syncDimensionData(
                    "detector",
                    {
                        "instrument": name,
                        "id": detector,
                        "full_name": f"S{detector:02d}",
                        "purpose": "SCIENCE",
                    },
                    update=update,
                )

    def getRawFormatter(self, dataId: DataId) -> type[FormatterV2]:
        """Raise: the simulated camera has no raw files.

        Raises
        ------
        NotImplementedError
            Always; SimCam data are ingested as calibrated images.
        """
        raise NotImplementedError("SimCam has no raw data; simulated visits are written as VisitImage.")
