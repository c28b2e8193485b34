"""Helpers shared by the RBTransiNetTask tests: tiny model packages and a tiny simulated repo.

This module holds no tests; it is imported by the ``test_rb_task_*`` and
``test_ingest_model_*`` modules.
"""

from __future__ import annotations

__all__ = ["DATA_ID", "make_model_file", "make_processed_repo", "make_sim_only_repo"]

from collections.abc import Sequence
from pathlib import Path

from lsst.daf.butler import Butler
from tiny_models import write_tiny_classifier

DATA_ID = {"instrument": "SimCam", "visit": 4, "detector": 0}
"""The one (visit, detector) of `make_processed_repo`."""


def make_model_file(
    path: Path,
    channels: Sequence[str] = ("science", "template", "difference"),
    version: str = "t0.1",
    threshold: float = 0.4,
    seed: int = 0,
) -> Path:
    """Write a tiny randomly initialised model package (rb3_cnn) and return its path."""
    return write_tiny_classifier(path, channels=channels, widths=(4, 4), hidden=4, weight_scale=None,
                                 seed=seed, version=version, threshold=threshold)


def make_sim_only_repo(root: Path, size: int = 160) -> Butler:
    """Simulate one visit × detector (``DATA_ID``) into the ``SimCam/sim`` RUN of a new repo."""
    from lsst.meas.realbogus.butler import repo
    from lsst.meas.realbogus.simulation import small_test_config

    butler = repo.create_sim_repo(root, n_detectors=1)
    repo.ingest_simulated_visits(butler, small_test_config(size), [DATA_ID["visit"]], [0], seed=2)
    return butler


def make_processed_repo(root: Path, size: int = 160, run: str = "SimCam/sim") -> Butler:
    """Simulate ``DATA_ID`` and write its difference image and diaSources with the package's
    own tasks, in process, all into the one RUN ``run`` (as `lsst.pipe.base.testUtils` wants).

    Returns a writeable Butler whose default run is ``run``.
    """
    from lsst.meas.realbogus.butler import repo
    from lsst.meas.realbogus.tasks import DetectDiaSourcesTask, SubtractImagesTask

    make_sim_only_repo(root, size)
    butler = Butler.from_config(str(root), writeable=True, run=run, collections=[run])
    repo.register_dataset_types(butler, ["difference_image", "dia_source_unstandardized",
                                         "dia_source_reliability", "realbogus_model"])
    science = butler.get("preliminary_visit_image", DATA_ID)
    template = butler.get("template_detector", DATA_ID)
    difference = SubtractImagesTask().run(science, template).difference
    sources = DetectDiaSourcesTask().run(difference).dia_sources
    butler.put(difference, "difference_image", DATA_ID)
    butler.put(sources, "dia_source_unstandardized", DATA_ID)
    return butler
