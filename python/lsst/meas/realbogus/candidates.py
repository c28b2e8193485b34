"""Labelled candidates: cutouts, truth labels and bookkeeping for one or many detectors.

This is the single place where a diaSource catalogue and its images become
training or evaluation examples.  The Butler training task and the Butler-free
training-set command both call `make_candidates`, and inference cuts its stamps
with the same `~lsst.meas.realbogus.cutouts.extract_cutouts`, so that a model
sees identically prepared pixels in training and in production.
"""

from __future__ import annotations

__all__ = ["ALERT_CHANNELS", "CandidateSet", "make_candidates"]

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
from astropy.table import Table

from .cutouts import extract_cutouts
from .labels import label_candidates

ALERT_CHANNELS: tuple[str, ...] = ("science", "template", "difference")
"""Channel order of stored candidate stamps (the order of alert cutouts)."""


@dataclass
class CandidateSet:
    """Cutouts of candidates with their truth labels.

    Attributes
    ----------
    stamps : `numpy.ndarray`
        ``(N, 3, S, S)`` float32 raw stamps in `ALERT_CHANNELS` order, NaN
        where a pixel is outside the image or unusable.
    ids : `numpy.ndarray`
        ``(N,)`` int64 diaSource ids.
    visit, detector : `numpy.ndarray`
        ``(N,)`` int64 visit and detector of each candidate.
    x, y : `numpy.ndarray`
        ``(N,)`` float64 pixel positions.
    snr : `numpy.ndarray`
        ``(N,)`` float64 detection signal-to-noise (``psf_flux / psf_flux_err``).
    labels : `numpy.ndarray`
        ``(N,)`` bool, True iff the candidate matches a truth transient.
    truth_snr : `numpy.ndarray`
        ``(N,)`` float64 expected SNR of the matched transient (NaN if none).
    types : `numpy.ndarray`
        ``(N,)`` str: the matched transient's type for positives, the
        artefact the candidate falls on for negatives (``"other"`` if none).
    edge_fraction, bad_fraction : `numpy.ndarray`
        ``(N,)`` float32 fractions of stamp pixels outside the image /
        unusable (see `~lsst.meas.realbogus.cutouts.CutoutBatch`).
    """

    stamps: np.ndarray
    ids: np.ndarray
    visit: np.ndarray
    detector: np.ndarray
    x: np.ndarray
    y: np.ndarray
    snr: np.ndarray
    labels: np.ndarray
    truth_snr: np.ndarray
    types: np.ndarray
    edge_fraction: np.ndarray
    bad_fraction: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.stamps)
        for f in fields(self):
            value = getattr(self, f.name)
            if len(value) != n:
                raise ValueError(f"CandidateSet.{f.name} has {len(value)} rows, stamps have {n}")

    def __len__(self) -> int:
        return len(self.stamps)

    @property
    def channels(self) -> tuple[str, ...]:
        """Channel names of ``stamps``."""
        return ALERT_CHANNELS

    def subset(self, index: np.ndarray | slice) -> CandidateSet:
        """Return the candidates selected by ``index``."""
        return CandidateSet(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @classmethod
    def concatenate(cls, sets: Sequence[CandidateSet]) -> CandidateSet:
        """Concatenate candidate sets (all with the same stamp size).

        Raises
        ------
        ValueError
            Raised if ``sets`` is empty or stamp sizes differ.
        """
        if not sets:
            raise ValueError("Cannot concatenate an empty list of candidate sets")
        sizes = {s.stamps.shape[1:] for s in sets}
        if len(sizes) != 1:
            raise ValueError(f"Candidate sets have different stamp shapes: {sorted(sizes)}")
        return cls(**{f.name: np.concatenate([getattr(s, f.name) for s in sets]) for f in fields(cls)})

    def to_npz(self, path: str | Path) -> None:
        """Write the candidates to a compressed ``.npz`` file.

        The file holds ``stamps`` (science, template, difference), ``labels``,
        ``groups`` (the visit, for splitting by visit), ``snr`` (the absolute
        truth SNR of positives, the detection SNR of negatives), ``type`` and the other
        columns: the format read by ``realbogus-train-stamps``.  No pickles.
        """
        arrays = {f.name: getattr(self, f.name) for f in fields(self)}
        arrays["types"] = np.asarray(self.types, dtype="U32")
        arrays["type"] = arrays["types"]
        arrays["groups"] = self.visit
        arrays["detection_snr"] = self.snr
        # The truth SNR is signed (negative for fading sources); completeness is binned in |SNR|.
        arrays["snr"] = np.where(self.labels, np.abs(self.truth_snr), self.snr)
        np.savez_compressed(path, **arrays)

    @classmethod
    def from_npz(cls, path: str | Path) -> CandidateSet:
        """Read candidates written by `to_npz` (never unpickles)."""
        with np.load(path, allow_pickle=False) as data:
            missing = [f.name for f in fields(cls) if f.name not in data.files and f.name != "snr"]
            if missing:
                raise ValueError(f"{path} is not a candidate file: it lacks {missing}")
            values = {f.name: data[f.name] for f in fields(cls) if f.name != "snr"}
            values["snr"] = data["detection_snr"]
        return cls(**values)


def make_candidates(
    science: np.ndarray,
    template: np.ndarray,
    difference: np.ndarray,
    catalog: Table,
    *,
    truth: Table | None = None,
    mask: np.ndarray | None = None,
    cutout_size: int = 51,
    match_radius_pix: float = 2.5,
    classify_negatives: Callable[[Table, np.ndarray, np.ndarray, float], np.ndarray] | None = None,
) -> CandidateSet:
    """Cut and label the candidates of one (visit, detector).

    Parameters
    ----------
    science, template, difference : `numpy.ndarray`
        2-D images on one pixel grid.
    catalog : `astropy.table.Table`
        diaSources with at least ``id``, ``x``, ``y``, ``psf_flux``,
        ``psf_flux_err``; ``visit`` and ``detector`` columns are used if
        present (0 otherwise).
    truth : `astropy.table.Table`, optional
        Truth catalogue (``x``, ``y``, ``category``, ``type``, ``snr``).
        Without it every label is False and every type ``"unknown"``.
    mask : `numpy.ndarray`, optional
        Integer mask; unusable pixels become NaN in the stamps.
    cutout_size : `int`, optional
        Stamp size in pixels.
    match_radius_pix : `float`, optional
        Match radius in pixels: a candidate is positive iff it matches a
        ``category == "transient"`` truth row within it (one-to-one, nearest
        first, `~lsst.meas.realbogus.labels.label_candidates`).
    classify_negatives : callable, optional
        ``f(truth, x, y, radius_pix) -> types`` naming the artefact an
        unmatched candidate falls on (e.g.
        `lsst.meas.realbogus.simulation.classify_negatives`).

    Returns
    -------
    candidates : `CandidateSet`
        One row per catalogue row, in catalogue order.

    Raises
    ------
    ValueError
        Raised if a required catalogue column is missing.
    """
    missing = [c for c in ("id", "x", "y", "psf_flux", "psf_flux_err") if c not in catalog.colnames]
    if missing:
        raise ValueError(f"diaSource catalogue lacks columns {missing}; it has {catalog.colnames}")
    n = len(catalog)
    x = np.asarray(catalog["x"], dtype=np.float64)
    y = np.asarray(catalog["y"], dtype=np.float64)
    planes = {"science": science, "template": template, "difference": difference}
    batch = extract_cutouts(planes, x, y, cutout_size, mask=mask)
    flux = np.asarray(catalog["psf_flux"], dtype=np.float64)
    err = np.asarray(catalog["psf_flux_err"], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.abs(flux) / err
    labels = np.zeros(n, dtype=bool)
    truth_snr = np.full(n, np.nan)
    types = np.full(n, "unknown", dtype="U32")
    if truth is not None:
        labels, truth_index = label_candidates(x, y, truth, match_radius_pix)
        if labels.any():
            matched = truth_index[labels]
            if "snr" in truth.colnames:
                truth_snr[labels] = np.asarray(truth["snr"], dtype=np.float64)[matched]
            if "type" in truth.colnames:
                types[labels] = np.asarray(truth["type"]).astype(str)[matched]
        neg = ~labels
        if neg.any():
            if classify_negatives is not None:
                types[neg] = classify_negatives(truth, x[neg], y[neg], match_radius_pix)
            else:
                types[neg] = "other"

    def column(name: str) -> np.ndarray:
        if name in catalog.colnames:
            return np.asarray(catalog[name], dtype=np.int64)
        return np.zeros(n, dtype=np.int64)

    return CandidateSet(
        stamps=batch.stamps,
        ids=np.asarray(catalog["id"], dtype=np.int64),
        visit=column("visit"),
        detector=column("detector"),
        x=x,
        y=y,
        snr=snr,
        labels=labels,
        truth_snr=truth_snr,
        types=types,
        edge_fraction=batch.edge_fraction.astype(np.float32),
        bad_fraction=batch.bad_fraction.astype(np.float32),
    )
