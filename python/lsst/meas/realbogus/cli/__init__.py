"""Command-line entry points of ``lsst.meas.realbogus``."""

from __future__ import annotations

__all__: list[str] = []
