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


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """Run torch single-threaded for a test module: the test machines are small and shared.

    Use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``; the previous number
    of threads is restored after the module.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
