"""Butler layer: the SimCam instrument, repository creation, `lsst.images` conversion and the
model-package formatter.

The numerical core of the package never imports this subpackage.
"""

from __future__ import annotations

__all__ = ["SimCam", "create_sim_repo", "ingest_simulated_visits", "make_seed_config"]

from .instrument import SimCam
from .repo import create_sim_repo, ingest_simulated_visits, make_seed_config
