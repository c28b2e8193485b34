"""Mask-plane bits shared by the simulator, differencing, detection and cutouts.

The bit values follow the usual LSST plane names.  Everything in this package that
builds or reads an integer mask array uses these constants, so that the Butler
layer can translate them to and from the ``lsst.images`` mask schema in one place.
"""

from __future__ import annotations

__all__ = ["MASK_PLANES", "BAD", "SAT", "INTRP", "CR", "EDGE", "DETECTED", "DETECTED_NEGATIVE",
           "SUSPECT", "NO_DATA", "mask_bit", "UNUSABLE"]

BAD = 1 << 0
"""Known bad pixel (bad column, hot pixel)."""
SAT = 1 << 1
"""Saturated pixel (including bleed trails)."""
INTRP = 1 << 2
"""Pixel value was interpolated."""
CR = 1 << 3
"""Pixel flagged as a cosmic ray."""
EDGE = 1 << 4
"""Pixel near the edge of the detector or of valid data."""
DETECTED = 1 << 5
"""Pixel belongs to a positive detection footprint."""
DETECTED_NEGATIVE = 1 << 6
"""Pixel belongs to a negative detection footprint."""
SUSPECT = 1 << 7
"""Pixel value is suspect (e.g. near saturation, non-linear)."""
NO_DATA = 1 << 8
"""No data (NaN region, unilluminated)."""

MASK_PLANES: dict[str, int] = {
    "BAD": BAD,
    "SAT": SAT,
    "INTRP": INTRP,
    "CR": CR,
    "EDGE": EDGE,
    "DETECTED": DETECTED,
    "DETECTED_NEGATIVE": DETECTED_NEGATIVE,
    "SUSPECT": SUSPECT,
    "NO_DATA": NO_DATA,
}
"""Plane name to bit value, in bit order."""

UNUSABLE = BAD | SAT | NO_DATA
"""Bits whose pixels carry no usable flux measurement."""


def mask_bit(name: str) -> int:
    """Return the bit value of a mask plane.

    Parameters
    ----------
    name : `str`
        Plane name, e.g. ``"SAT"``.

    Returns
    -------
    bit : `int`
        The plane's bit value.

    Raises
    ------
    KeyError
        Raised with the list of known planes if ``name`` is unknown.
    """
    try:
        return MASK_PLANES[name]
    except KeyError:
        raise KeyError(f"Unknown mask plane {name!r}; known planes: {sorted(MASK_PLANES)}") from None
