"""Exceptions raised by the real/bogus numerical core."""

from __future__ import annotations

__all__ = ["RealBogusError", "UnknownArchitectureError", "ModelPackageError"]


class RealBogusError(Exception):
    """Base class of the errors raised by ``lsst.meas.realbogus``."""


class UnknownArchitectureError(RealBogusError, KeyError):
    """Raised when an architecture name is not in the registry.

    The message lists the registered names.
    """

    def __str__(self) -> str:
        # KeyError quotes its argument; keep the message readable.
        return str(self.args[0]) if self.args else ""


class ModelPackageError(RealBogusError, ValueError):
    """Raised when a model package cannot be written, read or validated.

    Covers files that are not safetensors files (including pickles and Python
    source), truncated files, missing or invalid metadata, unknown format
    versions or architectures, checksum mismatches and weights that do not fit
    the declared architecture.
    """
