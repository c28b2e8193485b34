"""PipelineTask: label diaSources against the simulation's truth catalogue."""

from __future__ import annotations

__all__ = ["MatchTruthConfig", "MatchTruthConnections", "MatchTruthTask"]

from typing import Any

import numpy as np
from astropy.table import Table
from lsst.pex.config import Field
from lsst.pipe.base import PipelineTask, PipelineTaskConfig, PipelineTaskConnections, Struct
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

_REQUIRED_SOURCE_COLUMNS = ("id", "x", "y", "ra", "dec")
_REQUIRED_TRUTH_COLUMNS = ("id", "x", "y", "x1", "y1", "ra", "dec", "category", "type", "snr")


class MatchTruthConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    """Connections of `MatchTruthTask`."""

    dia_sources = cT.Input(
        doc="diaSources detected on the difference image.",
        name="dia_source_unstandardized",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )
    truth = cT.Input(
        doc="Truth catalogue of the simulated transients and artefacts.",
        name="truth_transients",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )
    sky_projection = cT.Input(
        doc="Sky projection of the difference image, for the match radius in pixels.",
        name="difference_image.sky_projection",
        storageClass="SkyProjection",
        dimensions=("instrument", "visit", "detector"),
    )
    matches = cT.Output(
        doc="Per-diaSource truth label: id, is_real, truth_id, truth_type, truth_snr, separation_arcsec.",
        name="dia_source_truth_match",
        storageClass="ArrowAstropy",
        dimensions=("instrument", "visit", "detector"),
    )


class MatchTruthConfig(PipelineTaskConfig, pipelineConnections=MatchTruthConnections):
    """Configuration of `MatchTruthTask`."""

    match_radius_arcsec = Field[float](
        doc="Match radius between a diaSource and a truth entry (arcsec).",
        default=0.5,
        check=lambda r: r > 0,
    )
    artifact_radius_arcsec = Field[float](
        doc="Radius used to attribute an unmatched diaSource to an artefact (arcsec); "
        "None uses match_radius_arcsec.",
        default=None,
        optional=True,
    )


class MatchTruthTask(PipelineTask):
    """Label each diaSource real or bogus by matching it to the truth catalogue.

    A diaSource is real if and only if it matches a ``category == "transient"`` truth entry
    within ``match_radius_arcsec``, one-to-one and nearest first
    (`lsst.meas.realbogus.labels.label_candidates`).  Bogus diaSources get the type of the
    artefact they fall on (`lsst.meas.realbogus.simulation.classify_negatives`; ``"other"`` if
    none).
    """

    ConfigClass = MatchTruthConfig
    _DefaultName = "matchTruth"

    config: MatchTruthConfig

    @timeMethod
    def run(
        self, dia_sources: Table, truth: Table, sky_projection: Any = None, pixel_scale: float | None = None
    ) -> Struct:
        """Match diaSources to truth.

        Parameters
        ----------
        dia_sources : `astropy.table.Table`
            diaSource catalogue with at least ``id``, ``x``, ``y``, ``ra``, ``dec``.
        truth : `astropy.table.Table`
            Truth catalogue (DESIGN.md columns).
        sky_projection : `lsst.images.SkyProjection`, optional
            Sky projection of the image, used to convert the radius to pixels.
        pixel_scale : `float`, optional
            Pixel scale in arcsec; used if ``sky_projection`` is not given.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``matches``: `astropy.table.Table` with ``id``, ``is_real``, ``truth_id``,
            ``truth_type``, ``truth_snr``, ``separation_arcsec`` (one row per diaSource, same
            order; ``truth_id`` −1, ``truth_snr`` 0 and ``separation_arcsec`` NaN when unmatched).
        """
        from ..labels import label_candidates
        from ..simulation import classify_negatives

        _check_columns(dia_sources, _REQUIRED_SOURCE_COLUMNS, "dia_source_unstandardized")
        _check_columns(truth, _REQUIRED_TRUTH_COLUMNS, "truth_transients")
        if sky_projection is not None:
            from ..butler.images import sky_projection_pixel_scale

            pixel_scale = sky_projection_pixel_scale(sky_projection)
        if pixel_scale is None or not pixel_scale > 0:
            raise ValueError("MatchTruthTask.run needs a sky_projection or a positive pixel_scale")
        radius_pix = self.config.match_radius_arcsec / pixel_scale
        artifact_radius = self.config.artifact_radius_arcsec or self.config.match_radius_arcsec
        n = len(dia_sources)
        x = np.asarray(dia_sources["x"], dtype=np.float64)
        y = np.asarray(dia_sources["y"], dtype=np.float64)
        labels, truth_index = label_candidates(x, y, truth, radius_pix)
        labels = np.asarray(labels, dtype=bool)
        truth_index = np.asarray(truth_index, dtype=np.int64)
        matched = truth_index >= 0
        truth_id = np.full(n, -1, dtype=np.int64)
        truth_type = np.full(n, "other", dtype=object)
        truth_snr = np.zeros(n, dtype=np.float64)
        separation = np.full(n, np.nan, dtype=np.float64)
        if matched.any():
            rows = truth_index[matched]
            truth_id[matched] = np.asarray(truth["id"], dtype=np.int64)[rows]
            truth_type[matched] = np.asarray(truth["type"]).astype(str)[rows]
            truth_snr[matched] = np.asarray(truth["snr"], dtype=np.float64)[rows]
            separation[matched] = _separation_arcsec(
                np.asarray(dia_sources["ra"], dtype=np.float64)[matched],
                np.asarray(dia_sources["dec"], dtype=np.float64)[matched],
                np.asarray(truth["ra"], dtype=np.float64)[rows],
                np.asarray(truth["dec"], dtype=np.float64)[rows],
            )
        # label_candidates only matches transients: every bogus candidate is unmatched and gets
        # the type of the artefact it falls on ("other" if none).
        bogus = ~labels
        if bogus.any():
            truth_type[bogus] = np.asarray(
                classify_negatives(truth, x[bogus], y[bogus], artifact_radius / pixel_scale)
            ).astype(str)
        truth_type = truth_type.astype(str) if n else np.zeros(0, dtype="U16")
        matches = Table(
            {
                "id": np.asarray(dia_sources["id"], dtype=np.int64),
                "is_real": labels,
                "truth_id": truth_id,
                "truth_type": truth_type,
                "truth_snr": truth_snr,
                "separation_arcsec": separation,
            }
        )
        self.log.info(
            "Matched %d diaSources to %d truth entries: %d real, %d bogus (radius %.2f arcsec = %.2f px).",
            n,
            len(truth),
            int(labels.sum()),
            int(n - labels.sum()),
            self.config.match_radius_arcsec,
            radius_pix,
        )
        return Struct(matches=matches)


def _check_columns(table: Table, required: tuple[str, ...], what: str) -> None:
    missing = [c for c in required if c not in table.colnames]
    if missing:
        raise ValueError(f"{what} lacks columns {missing}; it has {table.colnames}")


def _separation_arcsec(ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray) -> np.ndarray:
    """Great-circle separation (haversine) in arcsec between positions in degrees."""
    ra1, dec1, ra2, dec2 = (np.deg2rad(a) for a in (ra1, dec1, ra2, dec2))
    s = np.sin(0.5 * (dec2 - dec1)) ** 2 + np.cos(dec1) * np.cos(dec2) * np.sin(0.5 * (ra2 - ra1)) ** 2
    return np.rad2deg(2.0 * np.arcsin(np.sqrt(np.clip(s, 0.0, 1.0)))) * 3600.0
