"""Reader for real alert-stamp files (science, template, difference triplets from public alerts).

The files are compressed NumPy archives (read with ``allow_pickle=False``) holding ``stamps``
``(N, 3, H, W)`` in the alert order science, template, difference, and per-stamp metadata (``id``,
the survey's own scores ``rb``/``drb``, ``isdiffpos``, ``time``, ``band``, ``orig_shape``,
``source``).  See ``/work/shared/realdata/README.md`` (or ``shared/realdata`` beside a clone).

They are for **evaluation only**: never train, tune or choose thresholds on them.  The scores they
carry come from other surveys' models, not from human vetting.

`AlertStamps.score` passes the stamps to `~lsst.meas.realbogus.scoring.RealBogusModel.score_stamps`
unchanged: stamp size (cropped or NaN-padded to the model's), flux unit (DN or nJy; the
normalisation is unit-free) and NaN padding are all handled there.

One survey quirk is handled here: some ZTF template cutouts mark missing pixels with the sentinel
``-3.4028235e38`` (``-FLT_MAX``) instead of NaN.  Left in, such a pixel is an enormous finite value
that dominates the normalised stamp and makes the score depend on the flux unit (``× 1e3``
overflows it to ``-inf``, which counts as missing).  `read_alert_stamps` replaces every pixel with
``|value| >= SENTINEL_ABS`` by NaN unless ``keep_sentinels=True``.
"""

from __future__ import annotations

__all__ = [
    "REQUIRED_KEYS",
    "SENTINEL_ABS",
    "SURVEY_PIXEL_SCALES",
    "AlertStamps",
    "list_alert_stamp_files",
    "read_alert_stamps",
    "survey_of",
]

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REQUIRED_KEYS: tuple[str, ...] = ("stamps", "id", "rb", "drb", "isdiffpos")
"""Keys every alert-stamp file must hold."""

SENTINEL_ABS: float = 1e38
"""Pixels at least this large in absolute value are bad-pixel sentinels (``±FLT_MAX``), not data."""

SURVEY_PIXEL_SCALES: dict[str, float] = {
    "lsstcam": 0.2,
    "hsc_lsstpipe": 0.17,
    "ztf": 1.0,
    "decat": 0.263,
}
"""Pixel scale (arcsec) by survey prefix of the file name."""

_POSITIVE = {"t", "true", "1", "+"}
_NEGATIVE = {"f", "false", "0", "-"}


def survey_of(path: str | os.PathLike[str]) -> str:
    """Return the survey name of a stamp file: its name up to ``_triplets``.

    Parameters
    ----------
    path : `str` or `os.PathLike`
        File path, e.g. ``.../ztf_triplets_63.npz``.

    Returns
    -------
    survey : `str`
        E.g. ``"ztf"``; the file stem if it has no ``_triplets`` part.
    """
    stem = Path(path).name.removesuffix(".npz")
    return stem.split("_triplets")[0]


@dataclass
class AlertStamps:
    """The stamps and metadata of one alert-stamp file.

    Attributes
    ----------
    survey : `str`
        Survey name (see `survey_of`).
    path : `pathlib.Path`
        The file.
    stamps : `numpy.ndarray`
        ``(N, 3, H, W)`` float32 science, template, difference; NaN where missing.
    ids : `numpy.ndarray`
        ``(N,)`` int64 alert/source ids.
    rb, drb : `numpy.ndarray`
        ``(N,)`` float64 scores of the survey's own models (NaN if absent).
    polarity : `numpy.ndarray`
        ``(N,)`` int8: +1 positive subtraction, -1 negative, 0 unknown.
    extra : `dict` [`str`, `numpy.ndarray`]
        Other per-stamp arrays of the file (``time``, ``band``, ...).
    pixel_scale : `float`
        Pixel scale in arcsec (NaN if the survey is not known).
    n_sentinel_pixels : `int`
        Number of ``±FLT_MAX`` sentinel pixels replaced by NaN when reading.
    """

    survey: str
    path: Path
    stamps: np.ndarray
    ids: np.ndarray
    rb: np.ndarray
    drb: np.ndarray
    polarity: np.ndarray
    extra: dict[str, np.ndarray]
    pixel_scale: float
    n_sentinel_pixels: int = 0

    def __len__(self) -> int:
        return int(self.stamps.shape[0])

    @property
    def has_finite_difference(self) -> np.ndarray:
        """``(N,)`` bool, True where the difference stamp has at least one finite pixel."""
        diff = self.stamps[:, 2].reshape(len(self), -1)
        return np.isfinite(diff).any(axis=1)

    def score(self, model: Any, batch_size: int = 1024) -> np.ndarray:
        """Score every stamp with ``model.score_stamps``.

        Parameters
        ----------
        model : `~lsst.meas.realbogus.scoring.RealBogusModel`
            The model.
        batch_size : `int`, optional
            Stamps per batch.

        Returns
        -------
        scores : `numpy.ndarray`
            ``(N,)`` float32 in [0, 1]; NaN where a stamp cannot be scored.
        """
        return model.score_stamps(self.stamps, batch_size=batch_size)


def _polarity(values: np.ndarray) -> np.ndarray:
    text = np.char.lower(np.char.strip(np.asarray(values).astype(str)))
    out = np.zeros(text.shape, dtype=np.int8)
    out[np.isin(text, list(_POSITIVE))] = 1
    out[np.isin(text, list(_NEGATIVE))] = -1
    return out


def read_alert_stamps(path: str | os.PathLike[str], *, keep_sentinels: bool = False) -> AlertStamps:
    """Read one alert-stamp file (never unpickles).

    Parameters
    ----------
    path : `str` or `os.PathLike`
        A ``*_triplets_*.npz`` file.
    keep_sentinels : `bool`, optional
        Keep ``±FLT_MAX`` bad-pixel sentinels (``|value| >= SENTINEL_ABS``) instead of replacing
        them by NaN.

    Returns
    -------
    stamps : `AlertStamps`
        The stamps and their metadata.

    Raises
    ------
    ValueError
        Raised if the file lacks a required key, the stamps are not ``(N, 3, H, W)`` or the
        per-stamp arrays do not have ``N`` rows.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as data:
        missing = [k for k in REQUIRED_KEYS if k not in data.files]
        if missing:
            raise ValueError(f"{path} is not an alert-stamp file: it lacks {missing} (has {data.files})")
        arrays = {k: data[k] for k in data.files}
    stamps = np.asarray(arrays.pop("stamps"), dtype=np.float32)
    if stamps.ndim != 4 or stamps.shape[1] != 3:
        raise ValueError(f"{path}: stamps must have shape (N, 3, H, W), got {stamps.shape}")
    n_sentinel = 0
    if not keep_sentinels:
        sentinel = np.abs(stamps) >= SENTINEL_ABS
        n_sentinel = int(sentinel.sum())
        if n_sentinel:
            stamps[sentinel] = np.nan
    n = stamps.shape[0]
    for key, value in arrays.items():
        if value.shape[:1] != (n,):
            raise ValueError(f"{path}: {key!r} has shape {value.shape}, expected {n} rows")
    survey = survey_of(path)
    return AlertStamps(
        survey=survey,
        path=path,
        stamps=stamps,
        ids=np.asarray(arrays.pop("id"), dtype=np.int64),
        rb=np.asarray(arrays.pop("rb"), dtype=np.float64),
        drb=np.asarray(arrays.pop("drb"), dtype=np.float64),
        polarity=_polarity(arrays.pop("isdiffpos")),
        extra=arrays,
        pixel_scale=SURVEY_PIXEL_SCALES.get(survey, float("nan")),
        n_sentinel_pixels=n_sentinel,
    )


def list_alert_stamp_files(directory: str | os.PathLike[str]) -> list[Path]:
    """Return the alert-stamp files of a directory, sorted by name.

    Parameters
    ----------
    directory : `str` or `os.PathLike`
        E.g. ``shared/realdata``.

    Returns
    -------
    paths : `list` [`pathlib.Path`]
        The ``*_triplets_*.npz`` files.

    Raises
    ------
    FileNotFoundError
        Raised if the directory does not exist or holds no stamp file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"Alert-stamp directory {directory} does not exist")
    paths = sorted(directory.glob("*_triplets_*.npz"))
    if not paths:
        raise FileNotFoundError(f"No *_triplets_*.npz alert-stamp files in {directory}")
    return paths
