#!/usr/bin/env bash
# Create the environment if missing, then run the main job: simulate a survey into a local
# SQLite Butler repo, run the Alert Production pipeline with `pipetask run`, print the summary.
# Extra arguments go to `realbogus-demo` (see `realbogus-demo --help`).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$("$here/scripts/setup_env.sh" | tail -n 1)"
cd "$here"
exec "$venv/bin/realbogus-demo" "$@"
