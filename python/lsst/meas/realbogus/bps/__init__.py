"""Batch Processing Service (BPS) support: Parsl site classes bound to loopback."""

from __future__ import annotations

__all__ = ("LOOPBACK_ADDRESS", "LoopbackLocal", "ThreadLocal", "environment_prefix")

from .sites import LOOPBACK_ADDRESS, LoopbackLocal, ThreadLocal, environment_prefix
