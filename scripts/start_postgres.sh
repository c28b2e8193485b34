#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 for trying a PostgreSQL
# Butler registry by hand; prints its SQLAlchemy URL and keeps it running
# until Ctrl-C (then stops it and deletes its data directory).
#
#   ./scripts/start_postgres.sh [DATABASE]
#   butler create --seed-config <(echo "registry: {db: URL}") REPO   # in another shell
#
# Installs Debian's postgresql package when missing (root only).  As root the
# server runs as the `postgres` user.  Uses $VENV or .venv for Python.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${VENV:-$here/.venv}/bin/python"
exec "$python" - "${1:-butler}" <<'PY'
import signal
import sys

from lsst.meas.realbogus.testing.postgres import postgres_server

def _interrupt(signum, frame):
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _interrupt)
with postgres_server(database=sys.argv[1]) as server:
    print(server.url, flush=True)
    print(f"data directory: {server.data_dir}; Ctrl-C to stop", file=sys.stderr, flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
PY
