# This file is part of meas_realbogus.
"""A throw-away PostgreSQL server for tests of PostgreSQL-backed Butler registries.

`postgres_server` finds the PostgreSQL server binaries (installing Debian's
``postgresql`` package with ``apt-get`` when they are missing and we are
root), creates a cluster in a temporary directory, starts it listening on
``127.0.0.1`` only (plus a Unix socket inside the temporary directory), creates
a database with the ``btree_gist`` extension that the Butler's PostgreSQL
backend requires, and yields its SQLAlchemy URL.  The server is stopped and
its directory removed on exit.

PostgreSQL refuses to run as root: when the current user is root, the server
runs as the ``postgres`` operating-system user (created by the Debian
package).
"""

from __future__ import annotations

__all__ = (
    "PostgresServer",
    "PostgresUnavailableError",
    "find_postgres_bindir",
    "postgres_server",
)

import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

_HOST = "127.0.0.1"


class PostgresUnavailableError(RuntimeError):
    """Raised when no PostgreSQL server can be found, installed or started."""


@dataclass(frozen=True)
class PostgresServer:
    """A running throw-away PostgreSQL server.

    Attributes
    ----------
    url : `str`
        SQLAlchemy URL of the test database
        (``postgresql://USER:PASSWORD@127.0.0.1:PORT/DB``).
    host : `str`
        Address the server listens on (always ``127.0.0.1``).
    port : `int`
        TCP port.
    user, password, database : `str`
        Credentials and database name in ``url``.
    data_dir : `str`
        Cluster data directory (removed when the server stops).
    """

    url: str
    host: str
    port: int
    user: str
    password: str
    database: str
    data_dir: str

    def url_for(self, database: str) -> str:
        """Return the URL of another database of this server.

        Parameters
        ----------
        database : `str`
            Database name.

        Returns
        -------
        url : `str`
            SQLAlchemy URL.
        """
        return f"postgresql://{self.user}:{self.password}@{self.host}:{self.port}/{database}"


def _bindir_candidates() -> list[str]:
    candidates = []
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(os.path.dirname(os.path.realpath(initdb)))
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(out.stdout.strip())
    # Debian/Ubuntu keep the server binaries off PATH; newest version first.
    candidates.extend(
        sorted(
            glob.glob("/usr/lib/postgresql/*/bin"),
            key=lambda p: int(p.split("/")[-2]) if p.split("/")[-2].isdigit() else 0,
            reverse=True,
        )
    )
    return candidates


def find_postgres_bindir(install: bool = True) -> str:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    Parameters
    ----------
    install : `bool`, optional
        When no server is found, install Debian's ``postgresql`` package with
        ``apt-get`` (only possible as root).

    Returns
    -------
    bindir : `str`
        Directory of the server binaries.

    Raises
    ------
    PostgresUnavailableError
        Raised if no server is found and it cannot be installed.
    """
    for bindir in _bindir_candidates():
        if all(os.access(os.path.join(bindir, name), os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return bindir
    if not install:
        raise PostgresUnavailableError("No PostgreSQL server binaries (initdb, pg_ctl, postgres) found.")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PostgresUnavailableError(
            "No PostgreSQL server binaries found, and they cannot be installed here "
            "(installing needs root and apt-get); install the 'postgresql' package."
        )
    import fcntl

    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Several test processes (pytest-xdist workers) may get here at once: install once, in turn.
    with open(os.path.join(tempfile.gettempdir(), "meas_realbogus_postgres_install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return find_postgres_bindir(install=False)
        except PostgresUnavailableError:
            pass
        for command in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
        ):
            result = subprocess.run(command, env=env, capture_output=True, text=True)
            if result.returncode != 0:
                raise PostgresUnavailableError(
                    f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
                )
        return find_postgres_bindir(install=False)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_HOST, 0))
        return sock.getsockname()[1]


def _server_user() -> tuple[str | None, int, int]:
    """Return the OS user to run the server as (`None`: the current user)."""
    if os.geteuid() != 0:
        return None, os.geteuid(), os.getegid()
    try:
        entry = pwd.getpwnam("postgres")
    except KeyError:
        raise PostgresUnavailableError(
            "PostgreSQL cannot run as root and there is no 'postgres' user; "
            "install the 'postgresql' package or run as another user."
        ) from None
    return "postgres", entry.pw_uid, entry.pw_gid


def _run(command: list[str], user: str | None, gid: int, what: str, timeout: float = 120) -> None:
    kwargs: dict = {}
    if user is not None:
        kwargs = {"user": user, "group": gid, "extra_groups": []}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "LANG": "C"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, **kwargs)
    if result.returncode != 0:
        raise PostgresUnavailableError(
            f"{what} failed ({result.returncode}): {' '.join(command)}\n"
            f"{result.stdout.strip()[-2000:]}\n{result.stderr.strip()[-2000:]}"
        )


@contextlib.contextmanager
def postgres_server(
    database: str = "butler",
    *,
    install: bool = True,
    base_dir: str | None = None,
) -> Iterator[PostgresServer]:
    """Run a temporary PostgreSQL server on 127.0.0.1.

    Parameters
    ----------
    database : `str`, optional
        Name of the database to create (with the ``btree_gist`` extension).
    install : `bool`, optional
        Install the server with ``apt-get`` when it is missing (root only).
    base_dir : `str`, optional
        Parent of the temporary cluster directory (default: the system
        temporary directory).  It must be traversable by the ``postgres`` user
        when running as root.

    Yields
    ------
    server : `PostgresServer`
        The running server; ``server.url`` is the SQLAlchemy URL of
        ``database``.

    Raises
    ------
    PostgresUnavailableError
        Raised if the server cannot be found, installed, initialised or
        started.
    """
    import sqlalchemy

    bindir = find_postgres_bindir(install=install)
    user, uid, gid = _server_user()
    superuser = "postgres"
    password = secrets.token_hex(16)
    root = tempfile.mkdtemp(prefix="realbogus_pg_", dir=base_dir)
    data_dir = os.path.join(root, "data")
    socket_dir = os.path.join(root, "socket")
    log_file = os.path.join(root, "server.log")
    started = False
    try:
        os.mkdir(socket_dir)
        pwfile = os.path.join(root, "pwfile")
        with open(pwfile, "w") as stream:
            stream.write(password + "\n")
        if user is not None:
            for path in (root, socket_dir, pwfile):
                os.chown(path, uid, gid)
        _run(
            [
                os.path.join(bindir, "initdb"),
                "-D",
                data_dir,
                "-U",
                superuser,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            user,
            gid,
            "initdb",
        )
        os.remove(pwfile)
        port = _free_port()
        options = (
            f"-c listen_addresses={_HOST} -p {port} -k {socket_dir} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=50 -c shared_buffers=32MB"
        )
        _run(
            [
                os.path.join(bindir, "pg_ctl"),
                "-D",
                data_dir,
                "-l",
                log_file,
                "-o",
                options,
                "-w",
                "-t",
                "60",
                "start",
            ],
            user,
            gid,
            "pg_ctl start",
        )
        started = True
        admin = sqlalchemy.create_engine(
            f"postgresql://{superuser}:{password}@{_HOST}:{port}/postgres", isolation_level="AUTOCOMMIT"
        )
        try:
            with admin.connect() as connection:
                connection.execute(sqlalchemy.text(f'CREATE DATABASE "{database}"'))
        finally:
            admin.dispose()
        server = PostgresServer(
            url=f"postgresql://{superuser}:{password}@{_HOST}:{port}/{database}",
            host=_HOST,
            port=port,
            user=superuser,
            password=password,
            database=database,
            data_dir=data_dir,
        )
        engine = sqlalchemy.create_engine(server.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.execute(sqlalchemy.text("CREATE EXTENSION IF NOT EXISTS btree_gist"))
        finally:
            engine.dispose()
        yield server
    finally:
        if started:
            with contextlib.suppress(PostgresUnavailableError, subprocess.TimeoutExpired):
                _run(
                    [os.path.join(bindir, "pg_ctl"), "-D", data_dir, "-m", "fast", "-w", "-t", "60", "stop"],
                    user,
                    gid,
                    "pg_ctl stop",
                )
        shutil.rmtree(root, ignore_errors=True)
