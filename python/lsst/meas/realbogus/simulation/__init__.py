"""LSST-like survey simulator: science and template images, artefacts and truth (no Butler).

Typical use::

    from lsst.meas.realbogus.simulation import SurveyConfig, simulate_visit, small_test_config

    sv = simulate_visit(SurveyConfig(), visit=12, detector=3, seed=0)  # 2048 x 2048
    diff = sv.science.image - sv.template.image  # before PSF matching
    positives = sv.truth[sv.truth["category"] == "transient"]

Everything is a deterministic function of ``(config, visit, detector, seed)``.  The static
scene and the template depend on ``(config, detector, seed, band)`` only and are cached in
the process.  The exact local science PSF is available as
``PsfModel.from_metadata(sv.metadata).kernel_at(x, y, width, height, pixel_scale)``.
"""

from __future__ import annotations

__all__ = [
    "ARTIFACT_TYPES",
    "TRANSIENT_TYPES",
    "TRUTH_COLUMNS",
    "PlaneSet",
    "PSF_KINDS",
    "PsfModel",
    "SimulatedVisit",
    "StaticScene",
    "SurveyConfig",
    "classify_negatives",
    "make_static_scene",
    "make_wcs",
    "simulate_survey",
    "simulate_visit",
    "small_test_config",
]

from .config import SurveyConfig, small_test_config
from .psf import PSF_KINDS, PsfModel
from .scene import StaticScene, make_static_scene
from .truth import classify_negatives
from .visit import (
    ARTIFACT_TYPES,
    TRANSIENT_TYPES,
    TRUTH_COLUMNS,
    PlaneSet,
    SimulatedVisit,
    make_wcs,
    simulate_survey,
    simulate_visit,
)
