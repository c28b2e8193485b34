"""LSST-like survey simulator: science and template images, artefacts and truth (no Butler)."""

from __future__ import annotations

__all__ = [
    "ARTIFACT_TYPES",
    "TRANSIENT_TYPES",
    "TRUTH_COLUMNS",
    "PlaneSet",
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
from .psf import PsfModel
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
