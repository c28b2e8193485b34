"""Pytest fixtures shared by the test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from lsst.meas.realbogus.testing.postgres import PostgresServer, postgres_server


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """Run a throw-away PostgreSQL server on 127.0.0.1 for the test session.

    Installed with apt-get when missing (root only); stopped and deleted at
    the end of the session (one server per pytest-xdist worker).
    """
    with postgres_server() as server:
        yield server
