"""Butler-free generation of labelled candidates from the simulated survey.

``simulate → subtract → detect → label → cut`` for one (visit, detector), with
the same functions and settings the PipelineTasks of ``pipelines/SimulatedAP.yaml``
use, so that a training set made here matches one gathered from a Butler repo by
the training task: the PSFs are the Gaussians of the stored images' noise-equivalent
widths (the Butler holds `lsst.images` Gaussian PSFs), and differencing uses the
broad halo basis term as that pipeline configures it.
"""

from __future__ import annotations

__all__ = ["PIPELINE_SUBTRACTION_CONFIG", "simulate_candidates", "simulate_candidate_sets"]

import logging
import math
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from .candidates import CandidateSet, make_candidates
from .detection import DetectionConfig, detect_dia_sources
from .diffim import SubtractionConfig, sampled_gaussian_kernel, subtract_images
from .simulation import SurveyConfig, classify_negatives, simulate_visit

_LOG = logging.getLogger("lsst.meas.realbogus.training_set")

PIPELINE_SUBTRACTION_CONFIG = SubtractionConfig(halo_basis=True)
"""Differencing settings of ``pipelines/SimulatedAP.yaml`` (``halo_basis: true``)."""


def _stored_psf(sigma: float) -> np.ndarray:
    """Kernel image of the Gaussian PSF the Butler layer stores for ``sigma``.

    ``lsst.images.psfs.GaussianPointSpreadFunction`` renders a Gaussian sampled at the pixel
    centres on a stamp of about ±5 sigma; the pipeline differences and detects with that kernel, so
    the Butler-free path does too (a pixel-integrated Gaussian differs by 10 % at the peak for
    undersampled PSFs, which made the Butler-free training and held-out candidates differ from the
    pipeline's).
    """
    return sampled_gaussian_kernel(sigma, max(3, int(math.ceil(5.0 * sigma))))


@dataclass(frozen=True)
class _Job:
    config: SurveyConfig
    visit: int
    detector: int
    seed: int
    cutout_size: int
    match_radius_arcsec: float
    subtraction: SubtractionConfig | None
    detection: DetectionConfig | None


def simulate_candidates(
    config: SurveyConfig,
    visit: int,
    detector: int,
    seed: int = 0,
    *,
    cutout_size: int = 51,
    match_radius_arcsec: float = 0.5,
    subtraction_config: SubtractionConfig | None = None,
    detection_config: DetectionConfig | None = None,
) -> CandidateSet:
    """Simulate one (visit, detector), difference it, detect and label its candidates.

    Parameters
    ----------
    config : `~lsst.meas.realbogus.simulation.SurveyConfig`
        Survey simulation parameters.
    visit, detector : `int`
        Visit and detector numbers.
    seed : `int`, optional
        Survey seed.
    cutout_size : `int`, optional
        Stamp size in pixels.
    match_radius_arcsec : `float`, optional
        Truth match radius in arcseconds.
    subtraction_config : `~lsst.meas.realbogus.diffim.SubtractionConfig`, optional
        Image-differencing parameters; `PIPELINE_SUBTRACTION_CONFIG` if None.
    detection_config : `~lsst.meas.realbogus.detection.DetectionConfig`, optional
        Detection parameters (defaults if None).

    Returns
    -------
    candidates : `~lsst.meas.realbogus.candidates.CandidateSet`
        Labelled candidates of this (visit, detector).
    """
    sim = simulate_visit(config, visit, detector, seed)
    science_psf = _stored_psf(sim.science_psf_sigma)
    sub = subtract_images(
        sim.science.image,
        sim.science.variance,
        sim.science.mask,
        sim.template.image,
        sim.template.variance,
        sim.template.mask,
        science_psf,
        _stored_psf(sim.template_psf_sigma),
        config=subtraction_config if subtraction_config is not None else PIPELINE_SUBTRACTION_CONFIG,
    )
    det = detect_dia_sources(
        sub.image, sub.variance, sub.mask, sub.psf, visit=visit, detector=detector, wcs=sim.wcs,
        config=detection_config,
    )
    return make_candidates(
        sim.science.image,
        sim.template.image,
        sub.image,
        det.catalog,
        truth=sim.truth,
        mask=sub.mask,
        cutout_size=cutout_size,
        match_radius_pix=match_radius_arcsec / config.pixel_scale,
        classify_negatives=classify_negatives,
    )


def _run_job(job: _Job) -> CandidateSet:
    return simulate_candidates(
        job.config, job.visit, job.detector, job.seed, cutout_size=job.cutout_size,
        match_radius_arcsec=job.match_radius_arcsec, subtraction_config=job.subtraction,
        detection_config=job.detection,
    )


def simulate_candidate_sets(
    config: SurveyConfig,
    visits: Sequence[int],
    detectors: Sequence[int],
    seed: int = 0,
    *,
    cutout_size: int = 51,
    match_radius_arcsec: float = 0.5,
    subtraction_config: SubtractionConfig | None = None,
    detection_config: DetectionConfig | None = None,
    processes: int = 1,
) -> Iterator[CandidateSet]:
    """Yield the labelled candidates of every (visit, detector), in order.

    Parameters
    ----------
    config, seed, cutout_size, match_radius_arcsec, subtraction_config, detection_config
        As for `simulate_candidates`.
    visits, detectors : `~collections.abc.Sequence` [`int`]
        Visits and detectors; all pairs are simulated.
    processes : `int`, optional
        Worker processes (1: in this process).  Results are identical for any
        value: every pair is seeded from (seed, visit, detector).

    Yields
    ------
    candidates : `~lsst.meas.realbogus.candidates.CandidateSet`
        One set per (visit, detector), visits outermost.
    """
    jobs = [
        _Job(config, int(v), int(d), seed, cutout_size, match_radius_arcsec, subtraction_config,
             detection_config)
        for v in visits
        for d in detectors
    ]
    start = time.monotonic()
    if processes <= 1:
        results: Iterator[CandidateSet] = map(_run_job, jobs)
    else:
        pool = ProcessPoolExecutor(max_workers=processes)
        results = pool.map(_run_job, jobs)
    try:
        for i, (job, cands) in enumerate(zip(jobs, results, strict=True), 1):
            _LOG.info(
                "Visit %d detector %d: %d candidates (%d real); %d/%d done, %.0f s elapsed",
                job.visit, job.detector, len(cands), int(cands.labels.sum()), i, len(jobs),
                time.monotonic() - start,
            )
            yield cands
    finally:
        if processes > 1:
            pool.shutdown(cancel_futures=True)
