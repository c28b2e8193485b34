#!/usr/bin/env bash
# Create the environment if missing, then run the whole test suite (2 workers).
# Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$here/scripts/setup_env.sh" | tail -n 1)"
cd "$here"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
export MPLBACKEND=Agg
exec "$venv/bin/python" -m pytest -n "${PYTEST_WORKERS:-2}" --durations=15 "$@" tests
