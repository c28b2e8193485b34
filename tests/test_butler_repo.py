"""Repository creation, SimCam records and the package's Butler configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from lsst.daf.butler import Butler
from lsst.meas.realbogus.butler import SimCam, repo
from lsst.meas.realbogus.butler.instrument import SIM_FILTERS
from lsst.meas.realbogus.butler.toy_data import make_toy_visit
from lsst.meas.realbogus.simulation import small_test_config


def test_create_sim_repo_records(tmp_path):
    butler = repo.create_sim_repo(tmp_path / "repo", n_detectors=3)
    registry = butler.registry
    (instrument,) = registry.queryDimensionRecords("instrument")
    assert instrument.name == "SimCam"
    assert instrument.class_name == "lsst.meas.realbogus.butler.instrument.SimCam"
    assert sorted(r.id for r in registry.queryDimensionRecords("detector")) == [0, 1, 2]
    filters = {r.name: r.band for r in registry.queryDimensionRecords("physical_filter")}
    assert filters == SIM_FILTERS
    assert {dt.name for dt in registry.queryDatasetTypes()} >= {
        "preliminary_visit_image",
        "template_detector",
        "truth_transients",
    }
    # The seed config put our storage class and formatter into the repo's own butler.yaml.
    text = (tmp_path / "repo" / "butler.yaml").read_text()
    assert "RealBogusModelPackage" in text and "ModelPackageFormatter" in text
    assert butler.storageClasses.getStorageClass("RealBogusModelPackage").name == "RealBogusModelPackage"
    with pytest.raises(FileExistsError, match="already holds"):
        repo.create_sim_repo(tmp_path / "repo")
    repo.create_sim_repo(tmp_path / "repo", n_detectors=1, clobber=True)


def test_register_visit_and_put(tmp_path):
    butler = repo.create_sim_repo(tmp_path / "repo", n_detectors=2)
    toys = {d: make_toy_visit(11, d, size=48) for d in (0, 1)}
    regions = {d: repo._corners_region(t.wcs, 48, 48) for d, t in toys.items()}
    repo.register_visit(butler, 11, toys[0].metadata, regions)
    butler.registry.registerRun("SimCam/sim")
    for d, toy in toys.items():
        repo.put_simulated_visit(butler, toy, 11, d)
    (visit,) = butler.registry.queryDimensionRecords("visit")
    assert visit.physical_filter == "r_sim" and visit.exposure_time == 30.0
    assert visit.day_obs == repo.day_obs_from_mjd(toys[0].metadata["mjd"])
    assert visit.region is not None and visit.timespan is not None
    for d, region in regions.items():
        assert visit.region.contains(region.getCentroid())
    assert len(list(butler.registry.queryDimensionRecords("visit_detector_region"))) == 2
    refs = butler.query_datasets("preliminary_visit_image", collections="SimCam/sim")
    assert sorted(ref.dataId["detector"] for ref in refs) == [0, 1]
    bad = dict(toys[0].metadata, physical_filter="z_sim")
    with pytest.raises(ValueError, match="physical_filter"):
        repo.register_visit(butler, 12, bad)


def test_day_obs_from_mjd():
    # MJD 60000.0 is 2023-02-25T00:00 TAI; day_obs rolls over at 12:00 TAI.
    assert repo.day_obs_from_mjd(60000.0) == 20230224
    assert repo.day_obs_from_mjd(60000.6) == 20230225


def test_instrument_rejects_bad_detector_count():
    with pytest.raises(ValueError, match="n_detectors"):
        SimCam(n_detectors=0)


def test_existing_repo_picks_up_config_from_env(tmp_path):
    # A repo made without the seed config knows RealBogusModelPackage only through
    # DAF_BUTLER_CONFIG_PATH pointing at the package's config directory.
    root = tmp_path / "plain"
    Butler.makeRepo(str(root))
    script = textwrap.dedent(f"""
        from lsst.daf.butler import Butler
        b = Butler.from_config({str(root)!r})
        print(b.storageClasses.getStorageClass("RealBogusModelPackage").name)
    """)
    env = dict(os.environ)
    env.pop("DAF_BUTLER_CONFIG_PATH", None)
    without = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert without.returncode != 0
    env["DAF_BUTLER_CONFIG_PATH"] = str(repo.config_directory())
    with_path = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert with_path.returncode == 0, with_path.stderr
    assert with_path.stdout.strip() == "RealBogusModelPackage"


def test_parallel_ingest_matches_serial(tmp_path):
    """Simulating in worker processes writes exactly what the serial path writes."""
    config = small_test_config(96)
    results = {}
    for processes in (1, 2):
        butler = repo.create_sim_repo(tmp_path / f"repo{processes}", n_detectors=1)
        assert repo.ingest_simulated_visits(butler, config, [1, 2], [0], seed=9, processes=processes) == 2
        results[processes] = {
            visit: (
                butler.get(
                    "preliminary_visit_image",
                    instrument="SimCam",
                    visit=visit,
                    detector=0,
                    collections="SimCam/sim",
                ).image.array,
                butler.get(
                    "truth_transients", instrument="SimCam", visit=visit, detector=0, collections="SimCam/sim"
                ),
            )
            for visit in (1, 2)
        }
    for visit in (1, 2):
        np.testing.assert_array_equal(results[1][visit][0], results[2][visit][0])
        assert list(results[1][visit][1]["id"]) == list(results[2][visit][1]["id"])
    with pytest.raises(ValueError, match="processes"):
        repo.ingest_simulated_visits(butler, config, [3], [0], seed=9, processes=0)
