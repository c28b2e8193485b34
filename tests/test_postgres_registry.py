"""End-to-end SimulatedAP with ``pipetask run`` on a PostgreSQL-backed Butler registry."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy
from lsst.daf.butler import Butler
from lsst.meas.realbogus.testing.postgres import postgres_server
from lsst.meas.realbogus.testing.sim_repo import (
    AP_OUTPUT_DATASET_TYPES,
    assert_same_outputs,
    make_small_sim_repo,
    venv_environment,
)

PIPELINE = Path(__file__).resolve().parents[1] / "pipelines" / "SimulatedAP.yaml"
VISITS = (1, 2)
DETECTORS = (0, 1)


def _pipetask_run(repo: Path, output: str) -> float:
    start = time.perf_counter()
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "pipetask"),
            "run",
            "-b",
            str(repo),
            "-i",
            "SimCam/sim",
            "-o",
            output,
            "-p",
            str(PIPELINE),
            "--register-dataset-types",
        ],
        capture_output=True,
        text=True,
        env=venv_environment(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return time.perf_counter() - start


def test_postgres_server_is_loopback_only(postgres):
    """The fixture server answers on 127.0.0.1 and listens nowhere else."""
    engine = sqlalchemy.create_engine(postgres.url)
    try:
        with engine.connect() as connection:
            listen = connection.execute(sqlalchemy.text("SHOW listen_addresses")).scalar()
            extensions = connection.execute(sqlalchemy.text("SELECT extname FROM pg_extension")).scalars()
            assert "btree_gist" in set(extensions)
            server_addr = connection.execute(sqlalchemy.text("SELECT inet_server_addr()")).scalar()
    finally:
        engine.dispose()
    assert listen == "127.0.0.1"
    assert str(server_addr) == "127.0.0.1"
    assert postgres.url.startswith("postgresql://") and "@127.0.0.1:" in postgres.url


def test_postgres_server_stops_and_cleans_up():
    """Leaving the context stops the server and deletes its directory."""
    with postgres_server(database="scratch") as server:
        data_dir = Path(server.data_dir)
        assert (data_dir / "postmaster.pid").exists()
    assert not data_dir.exists()
    engine = sqlalchemy.create_engine(server.url, connect_args={"connect_timeout": 2})
    try:
        with pytest.raises(sqlalchemy.exc.OperationalError):
            with engine.connect():
                pass
    finally:
        engine.dispose()


@pytest.mark.slow
def test_simulated_ap_on_postgres_registry(postgres, tmp_path):
    """Run SimulatedAP against a PostgreSQL registry; outputs must equal a SQLite run's."""
    pg_repo = tmp_path / "pg_repo"
    butler = make_small_sim_repo(pg_repo, visits=VISITS, detectors=DETECTORS, registry_db=postgres.url)
    # The registry really is PostgreSQL, not SQLite.
    assert butler._registry._db.dialect.name == "postgresql"
    assert "postgresql://" in (pg_repo / "butler.yaml").read_text()
    assert not list(pg_repo.glob("*.sqlite3"))

    sqlite_repo = tmp_path / "sqlite_repo"
    make_small_sim_repo(sqlite_repo, visits=VISITS, detectors=DETECTORS)

    wall_pg = _pipetask_run(pg_repo, "u/test/ap")
    wall_sqlite = _pipetask_run(sqlite_repo, "u/test/ap")
    print(f"pipetask run SimulatedAP: PostgreSQL {wall_pg:.1f} s, SQLite {wall_sqlite:.1f} s")

    pg_butler = Butler.from_config(str(pg_repo))
    expected = {(v, d) for v in VISITS for d in DETECTORS}
    counts = assert_same_outputs(
        pg_butler,
        "u/test/ap",
        Butler.from_config(str(sqlite_repo)),
        "u/test/ap",
        AP_OUTPUT_DATASET_TYPES,
        expected_data_ids=expected,
    )
    assert counts == {name: len(expected) for name in AP_OUTPUT_DATASET_TYPES}
    # Every quantum of the three tasks wrote its metadata, and some sources were detected.
    for label in ("subtractImages", "detectDiaSources", "matchTruth"):
        assert len(pg_butler.query_datasets(f"{label}_metadata", collections="u/test/ap")) == len(expected)
    n_sources = sum(
        len(pg_butler.get(ref))
        for ref in pg_butler.query_datasets("dia_source_unstandardized", collections="u/test/ap")
    )
    assert n_sources > 0
