"""PipelineTasks: thin Butler layers over the numerical core of the package."""

from __future__ import annotations

__all__ = [
    "DetectDiaSourcesConfig",
    "DetectDiaSourcesTask",
    "MatchTruthConfig",
    "MatchTruthTask",
    "SubtractImagesConfig",
    "SubtractImagesTask",
]

from .detect_dia_sources import DetectDiaSourcesConfig, DetectDiaSourcesTask
from .match_truth import MatchTruthConfig, MatchTruthTask
from .subtract_images import SubtractImagesConfig, SubtractImagesTask
