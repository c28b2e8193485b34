"""Unique 64-bit identifiers for diaSources and truth entries."""

from __future__ import annotations

__all__ = ["MAX_DETECTOR", "MAX_PER_DETECTOR", "MAX_VISIT", "make_source_ids", "unpack_source_id"]

import numpy as np

MAX_DETECTOR = 1000
"""Detector numbers must be below this value."""
MAX_PER_DETECTOR = 1 << 22
"""At most this many sources per (visit, detector)."""
MAX_VISIT = (1 << 62) // (MAX_DETECTOR * MAX_PER_DETECTOR)
"""Visit numbers must be below this value (about 1.1e12)."""


def make_source_ids(visit: int, detector: int, n: int, start: int = 0) -> np.ndarray:
    """Make ``n`` unique, positive int64 ids for sources of one (visit, detector).

    The id packs ``((visit * MAX_DETECTOR) + detector) * MAX_PER_DETECTOR + index``, so ids of
    different (visit, detector) pairs never collide and sort by visit, then detector.

    Parameters
    ----------
    visit : `int`
        Visit number, ``0 <= visit < MAX_VISIT``.
    detector : `int`
        Detector number, ``0 <= detector < MAX_DETECTOR``.
    n : `int`
        Number of ids.
    start : `int`, optional
        First running index.

    Returns
    -------
    ids : `numpy.ndarray` of `numpy.int64`
        The ids.

    Raises
    ------
    ValueError
        Raised if an argument is out of range.
    """
    if not 0 <= visit < MAX_VISIT:
        raise ValueError(f"visit={visit} outside [0, {MAX_VISIT})")
    if not 0 <= detector < MAX_DETECTOR:
        raise ValueError(f"detector={detector} outside [0, {MAX_DETECTOR})")
    if n < 0 or start < 0 or start + n > MAX_PER_DETECTOR:
        raise ValueError(f"cannot make {n} ids from index {start}: at most {MAX_PER_DETECTOR} per detector")
    base = (int(visit) * MAX_DETECTOR + int(detector)) * MAX_PER_DETECTOR
    return base + np.arange(start, start + n, dtype=np.int64)


def unpack_source_id(ids: np.ndarray | int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split ids made by `make_source_ids` into (visit, detector, index)."""
    ids = np.asarray(ids, dtype=np.int64)
    index = ids % MAX_PER_DETECTOR
    rest = ids // MAX_PER_DETECTOR
    return rest // MAX_DETECTOR, rest % MAX_DETECTOR, index
