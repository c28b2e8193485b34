#!/usr/bin/env bash
# Create (if missing) the Python 3.12 virtual environment with every dependency, and install
# meas_realbogus into it in editable mode.  Idempotent: a second call only checks the stamp.
#
# Usage: source-free; prints the venv path on the last line.
#   VENV=... (default: <repo>/.venv) to choose another location.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${VENV:-$here/.venv}"
stamp="$venv/.meas_realbogus_stamp"
want="$(cat "$here/pyproject.toml" "$here/scripts/setup_env.sh" | sha256sum | cut -c1-16)"

find_python312() {
    for cand in python3.12 "$(pyenv root 2>/dev/null)/versions/"3.12*/bin/python3.12 /root/.pyenv/versions/3.12*/bin/python3.12; do
        if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
            command -v "$cand"; return 0
        fi
    done
    echo "ERROR: Python 3.12 not found (looked for python3.12 and pyenv versions 3.12.*)" >&2
    return 1
}

installed_here() {
    # The editable install must point at this checkout (not at a moved or other clone).
    [ "$("$venv/bin/python" -c 'import lsst.meas.realbogus as m, os; print(os.path.realpath(m.__file__))' 2>/dev/null)" \
        = "$(realpath "$here/python/lsst/meas/realbogus/__init__.py")" ]
}

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ] && installed_here; then
    echo "$venv"; exit 0
fi

py="$(find_python312)"
if [ ! -x "$venv/bin/python" ]; then
    echo "Creating virtual environment $venv with $py" >&2
    "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2
echo "Installing dependencies (first time: several minutes, PyTorch is a few GB)" >&2
"$venv/bin/python" -m pip install --quiet -e "$here[test,bps,doc,postgres]" >&2
echo "$want" > "$stamp"
echo "$venv"
