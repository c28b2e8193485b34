"""Create Butler repositories of simulated visits for the SimCam instrument.

A repository made by `create_sim_repo` carries this package's storage classes and formatters
(``RealBogusModelPackage``) in its own ``butler.yaml`` (a seed config, `make_seed_config`), so
it needs no ``DAF_BUTLER_CONFIG_PATH`` — also inside BPS workers.  An existing repository made
without the seed config picks them up from ``DAF_BUTLER_CONFIG_PATH`` pointing at
`config_directory` (``python -c "import lsst.meas.realbogus.butler.repo as r; print(r.config_directory())"``).
"""

from __future__ import annotations

__all__ = [
    "DATASET_TYPES",
    "DEFAULT_SIM_RUN",
    "config_directory",
    "create_sim_repo",
    "day_obs_from_mjd",
    "ingest_simulated_visits",
    "make_seed_config",
    "put_simulated_visit",
    "register_dataset_types",
    "register_visit",
]

import logging
import math
import multiprocessing
import shutil
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import astropy.time
import astropy.units as u
import numpy as np
from lsst.daf.butler import Butler, Config, DatasetType, Timespan
from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d

from .images import make_visit_image
from .instrument import SIM_FILTERS, SimCam

_LOG = logging.getLogger(__name__)

DEFAULT_SIM_RUN = "SimCam/sim"
"""Default RUN collection of the simulated inputs."""

_VISIT_DETECTOR = ("instrument", "visit", "detector")

DATASET_TYPES: dict[str, tuple[tuple[str, ...], str]] = {
    "preliminary_visit_image": (_VISIT_DETECTOR, "VisitImage"),
    "template_detector": (_VISIT_DETECTOR, "VisitImage"),
    "truth_transients": (_VISIT_DETECTOR, "ArrowAstropy"),
    "difference_image": (_VISIT_DETECTOR, "DifferenceImage"),
    "dia_source_unstandardized": (_VISIT_DETECTOR, "ArrowAstropy"),
    "dia_source_truth_match": (_VISIT_DETECTOR, "ArrowAstropy"),
    "dia_source_reliability": (_VISIT_DETECTOR, "ArrowAstropy"),
    "dia_source_high_reliability": (_VISIT_DETECTOR, "ArrowAstropy"),
    "dia_source_low_reliability": (_VISIT_DETECTOR, "ArrowAstropy"),
    "transinet_score_image": (_VISIT_DETECTOR, "ImageV2"),
    "dia_source_transinet": (_VISIT_DETECTOR, "ArrowAstropy"),
    "realbogus_model": ((), "RealBogusModelPackage"),
    "transinet_model": ((), "RealBogusModelPackage"),
    "realbogus_train_metrics": ((), "StructuredDataDict"),
}
"""Dataset type name → (dimensions, storage class), as in DESIGN.md."""

_INPUT_DATASET_TYPES = ("preliminary_visit_image", "template_detector", "truth_transients")


def config_directory() -> Path:
    """Return the directory holding this package's Butler config (for DAF_BUTLER_CONFIG_PATH).

    Returns
    -------
    path : `pathlib.Path`
        Directory with ``storageClasses.yaml`` and ``datastores/fileDatastore.yaml``.
    """
    return Path(str(resources.files("lsst.meas.realbogus") / "configs"))


def make_seed_config() -> Config:
    """Return a seed Butler config adding this package's storage classes and formatters.

    Returns
    -------
    config : `lsst.daf.butler.Config`
        Config with the ``storageClasses`` and ``datastore.formatters`` entries of the package's
        ``configs/storageClasses.yaml`` and ``configs/datastores/fileDatastore.yaml``.
    """
    directory = config_directory()
    seed = Config()
    seed.update(Config(str(directory / "storageClasses.yaml")))
    seed.update(Config(str(directory / "datastores" / "fileDatastore.yaml")))
    return seed


def register_dataset_types(butler: Butler, names: Iterable[str] | None = None) -> None:
    """Register dataset types of `DATASET_TYPES` (all of them by default).

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Writeable Butler.
    names : iterable of `str`, optional
        Dataset type names to register.
    """
    for name in DATASET_TYPES if names is None else names:
        try:
            dimensions, storage_class = DATASET_TYPES[name]
        except KeyError:
            raise KeyError(f"Unknown dataset type {name!r}; known: {sorted(DATASET_TYPES)}") from None
        butler.registry.registerDatasetType(
            DatasetType(name, dimensions, storage_class, universe=butler.dimensions)
        )


def create_sim_repo(root: str | Path, *, n_detectors: int = 2, clobber: bool = False) -> Butler:
    """Create a SQLite Butler repository for simulated SimCam data.

    Parameters
    ----------
    root : `str` or `pathlib.Path`
        Directory of the new repository.
    n_detectors : `int`, optional
        Number of detectors to register.
    clobber : `bool`, optional
        Delete an existing directory at ``root`` first; otherwise an existing repository is an
        error.

    Returns
    -------
    butler : `lsst.daf.butler.Butler`
        Writeable Butler on the new repository, with the SimCam instrument, filters, detectors
        and the input dataset types registered.

    Raises
    ------
    FileExistsError
        Raised if ``root`` already holds a repository and ``clobber`` is false.
    """
    root = Path(root)
    if root.exists():
        if clobber:
            shutil.rmtree(root)
        elif (root / "butler.yaml").exists():
            raise FileExistsError(
                f"{root} already holds a Butler repository (use clobber=True to replace it)"
            )
    root.mkdir(parents=True, exist_ok=True)
    Butler.makeRepo(str(root), config=make_seed_config())
    butler = Butler.from_config(str(root), writeable=True)
    SimCam(n_detectors=n_detectors).register(butler.registry)
    register_dataset_types(butler, _INPUT_DATASET_TYPES)
    _LOG.info("Created Butler repository %s with %d SimCam detectors.", root, n_detectors)
    return butler


def day_obs_from_mjd(mjd: float) -> int:
    """Return the Rubin ``day_obs`` (YYYYMMDD, TAI − 12 h) of an MJD.

    Parameters
    ----------
    mjd : `float`
        Modified Julian date (TAI).

    Returns
    -------
    day_obs : `int`
        Observing day.
    """
    time = astropy.time.Time(float(mjd) - 0.5, format="mjd", scale="tai")
    return int(time.strftime("%Y%m%d"))


def _corners_region(wcs: Any, width: int, height: int) -> ConvexPolygon:
    """Sky polygon of the pixel-grid corners of a detector."""
    x = np.array([-0.5, width - 0.5, width - 0.5, -0.5])
    y = np.array([-0.5, -0.5, height - 0.5, height - 0.5])
    ra, dec = wcs.pixel_to_world_values(x, y)
    return ConvexPolygon([UnitVector3d(LonLat.fromDegrees(float(a), float(d))) for a, d in zip(ra, dec)])


def register_visit(
    butler: Butler,
    visit: int,
    metadata: Mapping[str, Any],
    detector_regions: Mapping[int, ConvexPolygon] | None = None,
) -> None:
    """Insert the ``day_obs``, ``visit`` and ``visit_detector_region`` records of one visit.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Writeable Butler.
    visit : `int`
        Visit id.
    metadata : `~collections.abc.Mapping`
        Visit metadata: ``physical_filter`` (required), ``mjd`` and ``exposure_time`` (s).
    detector_regions : `~collections.abc.Mapping` [`int`, `lsst.sphgeom.ConvexPolygon`], optional
        Sky region of each detector; the visit region is their convex hull.
    """
    instrument = SimCam.getName()
    physical_filter = metadata.get("physical_filter")
    if physical_filter not in SIM_FILTERS:
        raise ValueError(
            f"visit {visit}: physical_filter {physical_filter!r} is not one of {sorted(SIM_FILTERS)}"
        )
    mjd = float(metadata.get("mjd", 60000.0))
    exposure_time = float(metadata.get("exposure_time", 30.0))
    begin = astropy.time.Time(mjd, format="mjd", scale="tai")
    timespan = Timespan(begin, begin + exposure_time * u.s)
    day_obs = day_obs_from_mjd(mjd)
    day_begin = astropy.time.Time(math.floor(mjd - 0.5) + 0.5, format="mjd", scale="tai")
    registry = butler.registry
    registry.syncDimensionData(
        "day_obs",
        {"instrument": instrument, "id": day_obs, "timespan": Timespan(day_begin, day_begin + 1.0 * u.day)},
    )
    region = None
    if detector_regions:
        vertices = [v for polygon in detector_regions.values() for v in polygon.getVertices()]
        region = ConvexPolygon.convexHull(vertices)
    registry.syncDimensionData(
        "visit",
        {
            "instrument": instrument,
            "id": visit,
            "name": f"{instrument}_{visit}",
            "physical_filter": physical_filter,
            "day_obs": day_obs,
            "exposure_time": exposure_time,
            "timespan": timespan,
            "region": region,
            "science_program": "simulation",
            "observation_reason": "science",
        },
    )
    for detector, polygon in (detector_regions or {}).items():
        registry.syncDimensionData(
            "visit_detector_region",
            {"instrument": instrument, "visit": visit, "detector": detector, "region": polygon},
        )


def _band(metadata: Mapping[str, Any]) -> str:
    physical_filter = metadata["physical_filter"]
    return str(metadata.get("band", SIM_FILTERS[physical_filter]))


def put_simulated_visit(
    butler: Butler, simulated: Any, visit: int, detector: int, run: str = DEFAULT_SIM_RUN
) -> None:
    """Write one simulated (visit, detector) to the Butler.

    The ``visit`` record must exist (`register_visit`).

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Writeable Butler.
    simulated : `lsst.meas.realbogus.simulation.SimulatedVisit`
        Simulated data: ``science`` / ``template`` plane sets (``image``, ``variance``,
        ``mask``), ``science_psf_sigma`` / ``template_psf_sigma``, ``wcs``, ``truth``,
        ``metadata``.
    visit, detector : `int`
        Data ID values.
    run : `str`, optional
        RUN collection to write to.
    """
    instrument = SimCam.getName()
    metadata = dict(simulated.metadata)
    band = _band(metadata)
    data_id = {"instrument": instrument, "visit": visit, "detector": detector}
    for name, planes, sigma in (
        ("preliminary_visit_image", simulated.science, simulated.science_psf_sigma),
        ("template_detector", simulated.template, simulated.template_psf_sigma),
    ):
        image = make_visit_image(
            planes.image,
            planes.variance,
            planes.mask,
            wcs=simulated.wcs,
            psf_sigma=float(sigma),
            instrument=instrument,
            visit=visit,
            detector=detector,
            physical_filter=metadata["physical_filter"],
            band=band,
            metadata=metadata,
        )
        butler.put(image, name, data_id, run=run)
    butler.put(simulated.truth, "truth_transients", data_id, run=run)


def _simulate(config: Any, visit: int, detector: int, seed: int) -> Any:
    """Simulate one (visit, detector); a module-level function so that worker processes can run it."""
    from ..simulation import simulate_visit

    return simulate_visit(config, visit, detector, seed)


def ingest_simulated_visits(
    butler: Butler,
    config: Any,
    visits: Sequence[int],
    detectors: Sequence[int],
    seed: int,
    run: str = DEFAULT_SIM_RUN,
    processes: int = 1,
) -> int:
    """Simulate visits and write ``preliminary_visit_image``, ``template_detector`` and
    ``truth_transients`` for every (visit, detector).

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Writeable Butler on a repository made by `create_sim_repo`.
    config : `lsst.meas.realbogus.simulation.SurveyConfig`
        Survey configuration (image size, pixel scale, ...).
    visits : sequence of `int`
        Visit ids.
    detectors : sequence of `int`
        Detector ids (registered as needed).
    seed : `int`
        Random seed passed to ``simulate_visit``.
    run : `str`, optional
        RUN collection to write to.
    processes : `int`, optional
        Worker processes for the simulation (the Butler writes stay in this process).  With more
        than one, the next visit is simulated while the current one is written.  The result does
        not depend on this number.

    Returns
    -------
    n_written : `int`
        Number of (visit, detector) pairs written.
    """
    if not visits or not detectors:
        raise ValueError("need at least one visit and one detector")
    if processes < 1:
        raise ValueError(f"processes must be at least 1, got {processes}")
    SimCam(n_detectors=max(detectors) + 1).register(butler.registry)
    register_dataset_types(butler, _INPUT_DATASET_TYPES)
    butler.registry.registerRun(run)
    n_written = 0
    if processes == 1:
        for visit in visits:
            simulated = {detector: _simulate(config, visit, detector, seed) for detector in detectors}
            n_written += _write_visit(butler, visit, simulated, run)
        return n_written
    # A fork server (single-threaded, with the simulator preloaded) forks the workers cheaply and
    # safely even if this process already runs threads (pyarrow, SQLite); spawn elsewhere.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["lsst.meas.realbogus.simulation"])
    else:
        context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=processes, mp_context=context) as pool:

        def submit(visit: int) -> dict[int, Future]:
            return {detector: pool.submit(_simulate, config, visit, detector, seed) for detector in detectors}

        pending = submit(visits[0])
        for index, visit in enumerate(visits):
            current = pending
            if index + 1 < len(visits):
                pending = submit(visits[index + 1])
            simulated = {detector: future.result() for detector, future in current.items()}
            n_written += _write_visit(butler, visit, simulated, run)
    return n_written


def _write_visit(butler: Butler, visit: int, simulated: Mapping[int, Any], run: str) -> int:
    """Register one visit's records and write all its detectors; return the number written."""
    regions = {}
    for detector, sim in simulated.items():
        height, width = sim.science.image.shape
        regions[detector] = _corners_region(sim.wcs, width, height)
    register_visit(butler, visit, next(iter(simulated.values())).metadata, regions)
    for detector, sim in simulated.items():
        put_simulated_visit(butler, sim, visit, detector, run=run)
        _LOG.info("Wrote visit %d detector %d (%d truth rows) to %s.", visit, detector, len(sim.truth), run)
    return len(simulated)
