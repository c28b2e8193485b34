"""PipelineTasks: thin Butler layers over the numerical core of the package."""

from __future__ import annotations

__all__ = [
    "DetectDiaSourcesConfig",
    "DetectDiaSourcesTask",
    "FilterDiaSourceReliabilityConfig",
    "FilterDiaSourceReliabilityTask",
    "MatchTruthConfig",
    "MatchTruthTask",
    "RBTransiNetConfig",
    "RBTransiNetTask",
    "RealBogusTrainConfig",
    "RealBogusTrainTask",
    "SubtractImagesConfig",
    "SubtractImagesTask",
]

from .detect_dia_sources import DetectDiaSourcesConfig, DetectDiaSourcesTask
from .filter_reliability import FilterDiaSourceReliabilityConfig, FilterDiaSourceReliabilityTask
from .match_truth import MatchTruthConfig, MatchTruthTask
from .rb_transinet import RBTransiNetConfig, RBTransiNetTask
from .subtract_images import SubtractImagesConfig, SubtractImagesTask
from .train_realbogus import RealBogusTrainConfig, RealBogusTrainTask
