"""Helpers shared by the test suite.

- `lsst.meas.realbogus.testing.postgres`: ``postgres_server()``, a throw-away
  PostgreSQL server on 127.0.0.1 (installed with apt-get when missing).
- `lsst.meas.realbogus.testing.sim_repo`: small simulated SimCam repositories
  (SQLite or PostgreSQL registry), an environment for ``pipetask``/``bps``
  subprocesses, and comparison of two runs' outputs.

Import the submodules directly; importing this package loads nothing else.
"""

from __future__ import annotations

__all__: list[str] = []
