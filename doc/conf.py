"""Sphinx configuration of meas_realbogus (LSST documenteer layout, plain Sphinx).

Build (from the repository root)::

    .venv/bin/sphinx-build -W -n --keep-going -b html doc doc/_build/html

``-W`` turns warnings into errors and ``-n`` (nitpicky) makes every cross-reference
resolve; references to external projects (numpy, torch, astropy, the LSST middleware)
are not resolved through intersphinx (the build must work offline) and are listed in
``nitpick_ignore_regex`` below.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOC_DIR = Path(__file__).resolve().parent
REPO_DIR = DOC_DIR.parent
sys.path.insert(0, str(DOC_DIR / "_ext"))
# Build from a source checkout even when the package is not installed.
sys.path.insert(0, str(REPO_DIR / "python"))

project = "meas_realbogus"
author = "Rubin Observatory"
copyright = "2026, Association of Universities for Research in Astronomy, Inc. (AURA)"

try:
    from lsst.meas.realbogus.version import __version__ as release
except Exception:  # pragma: no cover - documentation still builds
    release = "unknown"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx_automodapi.automodapi",
    "sphinx_automodapi.smart_resolver",
    "numpydoc",
    "sphinx.ext.mathjax",
    "realbogus_docs",
]

# LSST documenteer conventions: single backticks are Python object references.
default_role = "py:obj"
primary_domain = "py"

exclude_patterns = ["_build", "changes", "**/.ipynb_checkpoints"]
templates_path: list[str] = []
html_static_path: list[str] = []  # no custom static files
html_theme = "alabaster"
html_title = f"meas_realbogus {release}"
html_theme_options = {"description": "Deep-learning real/bogus reliability for Rubin Alert Production"}
html_show_sourcelink = False

# sphinx-automodapi / numpydoc: keep the API reference warning-free.
automodapi_toctreedirnm = "lsst.meas.realbogus/api"
automodapi_writereprocessed = False
automodsumm_inherited_members = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks: set[str] = set()
autodoc_typehints = "none"
autodoc_mock_imports: list[str] = []
suppress_warnings = [
    # Dataclass fields documented both as class attributes and in the "Parameters" section.
    "autosummary.import_cycle",
]

# External types: no intersphinx (offline build), so nitpicky references to other
# projects' objects are ignored here.
nitpick_ignore_regex = [
    (
        r"py:.*",
        r"(numpy|np|torch|nn|astropy|scipy|sklearn|matplotlib|pyarrow|pandas|galsim|safetensors|onnxruntime|parsl|hypothesis|pytest)(\..*)?",
    ),
    (r"py:.*", r"lsst\.(daf|pipe|pex|images|utils|afw|ctrl|resources|sphgeom|obs)(\..*)?"),
    (r"py:.*", r"(os|pathlib|collections|typing|dataclasses|logging|argparse|concurrent|enum|abc)\..*"),
    (r"py:class", r"(array-like|array_like|optional|callable|iterable|sequence|mapping|path-like)"),
    (r"py:class", r"(default|or|of|shape|dtype|int|float|bool|str|bytes|dict|list|tuple|None|object)"),
    (r"py:obj", r"(int|float|bool|str|bytes|dict|list|tuple|None|True|False|object|type|Any)"),
    (r"py:class", r"(Any|Path|Sequence|Mapping|Iterator|Iterable|Callable|PathLike|Tensor|Table|Module)"),
]

# Model cards: package data directory (plus REALBOGUS_DOC_MODEL_DIRS, os.pathsep-separated).
realbogus_model_dirs = [str(REPO_DIR / "python" / "lsst" / "meas" / "realbogus" / "data")] + [
    p for p in os.environ.get("REALBOGUS_DOC_MODEL_DIRS", "").split(os.pathsep) if p
]
realbogus_bench_json = str(DOC_DIR / "_data" / "bench_speed.json")
