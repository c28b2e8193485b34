"""Batch Processing Service (BPS) support: Parsl site classes bound to loopback."""

from __future__ import annotations

from . import sites
from .sites import *

__all__ = list(sites.__all__)
