"""Helpers shared by the test suite: a throw-away PostgreSQL server and a toy
visit × detector pipeline for workflow tests.

Importing this package needs neither PostgreSQL nor the simulator; the
functions that need them say so when they are missing.
"""

from __future__ import annotations

__all__: list[str] = []
