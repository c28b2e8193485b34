"""Reproduce the default real/bogus model shipped with the package, in one command.

Two modes, with the same simulation, candidate cutting and labelling
(`lsst.meas.realbogus.candidates.make_candidates`) and the same training settings
(`lsst.meas.realbogus.training.train_classifier`):

default (no Butler)
    Simulate ``--visits`` x ``--detectors`` visits, difference, detect and label them with
    `lsst.meas.realbogus.training_set.simulate_candidate_sets` (``--processes`` workers), stream
    the candidates into a float16 stamp store, split train / validation by visit and train.
``--butler REPO``
    Create a simulated SimCam Butler repository with the same visits (the main survey and the
    ``DEFAULT_SURVEY_MIX`` members, on their own detectors and visit ids), run
    ``pipetask run -p TrainRealBogus.yaml`` (differencing, detection, truth matching,
    `~lsst.meas.realbogus.tasks.train_realbogus.RealBogusTrainTask`) and export the registered
    ``realbogus_model``.

Either way the model package is written to ``--output`` and evaluated on held-out visits
simulated with a different seed (``--heldout-seed``); the metrics table (AUC, completeness of
SNR >= 6 transients at the threshold giving purity 0.99, ECE) and the training time are printed
and written as JSON next to the package.

The defaults below (``DEFAULT_*``) are the settings of the shipped model; edit them here.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "DEFAULT_ARCHITECTURE_KWARGS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CUTOUT_SIZE",
    "DEFAULT_DETECTORS",
    "DEFAULT_EPOCHS",
    "DEFAULT_HELDOUT_SEED",
    "DEFAULT_HELDOUT_VISITS",
    "DEFAULT_LR",
    "DEFAULT_LR_SCHEDULE",
    "DEFAULT_MATCH_RADIUS_ARCSEC",
    "DEFAULT_MIN_SNR",
    "DEFAULT_NORMALIZATION",
    "DEFAULT_OCCLUSION",
    "DEFAULT_SURVEY_MIX",
    "DEFAULT_PATIENCE",
    "DEFAULT_SEED",
    "DEFAULT_SIZE",
    "DEFAULT_SPLIT",
    "DEFAULT_TARGET_PURITY",
    "DEFAULT_VERSION",
    "DEFAULT_VISITS",
    "HELDOUT_VISIT_OFFSET",
    "build_parser",
    "evaluate_heldout",
    "format_metrics_table",
    "heldout_surveys",
    "main",
    "simulate_to_store",
    "survey_mix",
    "training_config",
]

import argparse
import dataclasses
import json
import logging
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ._common import (
    add_architecture_arguments,
    add_output_arguments,
    add_runtime_arguments,
    add_training_loop_arguments,
    make_parser,
    metrics_path,
    parse_json_object,
    setup_logging,
)

# --- Settings of the shipped default model (edit these). ---
DEFAULT_VISITS = 16
"""Number of simulated training visits of the main survey."""
DEFAULT_DETECTORS = 8
"""Detectors per visit.  The simulated static sky depends on (seed, detector), so this is also the
number of distinct sky fields seen in training: with one field the model over-fits its sky
(validation AUC 0.94 but 0.67-0.85 on other fields in a 16-visit test); prefer more detectors."""
DEFAULT_SIZE = 2048
"""Detector width and height in pixels of the main survey (the survey rates scale with the area)."""
DEFAULT_SURVEY_MIX: tuple[dict[str, Any], ...] = (
    {
        "name": "coarse",
        "doc": "0.5 arcsec pixels and 1.0-2.4 arcsec seeing: PSFs of 2-5 pixels FWHM, as in "
        "ZTF-like or DECam-like data",
        "first_visit": 1000,
        "visits": 10,
        "detectors": 6,
        "overrides": {
            "width": 1024,
            "height": 1024,
            "pixel_scale": 0.5,
            "seeing_range": (1.0, 2.4),
            "template_seeing_range": (0.85, 1.0),
        },
    },
    {
        "name": "shallow",
        "doc": "shallow templates (2-5x the science depth) and 0.6-2.0 arcsec seeing: noisier differences",
        "first_visit": 2000,
        "visits": 10,
        "detectors": 6,
        "overrides": {
            "width": 1024,
            "height": 1024,
            "seeing_range": (0.6, 2.0),
            "template_depth_range": (2.0, 5.0),
        },
    },
    {
        "name": "undersampled",
        "doc": "0.9 arcsec pixels and 1.2-2.8 arcsec seeing (templates 1.0-1.5 arcsec): PSFs of 1.3-3.1 "
        "pixels FWHM, undersampled as in ZTF-like wide-field surveys, where point sources, cosmic rays "
        "and hot pixels look much alike",
        "first_visit": 3000,
        "visits": 20,
        "detectors": 8,
        "overrides": {
            "width": 1024,
            "height": 1024,
            "pixel_scale": 0.9,
            "seeing_range": (1.2, 2.8),
            "template_seeing_range": (1.0, 1.5),
        },
    },
)
"""Extra simulated surveys mixed into the training set, for robustness beyond the main survey's pixel
scale, seeing and template depth.  Each member has its own detectors (its own sky fields, numbered
after the main survey's) and its own visit ids (from ``first_visit``; held-out visits are offset the
same way), so that all members fit in one Butler repository; ``--no-mix`` trains on the main survey
only."""
DEFAULT_HELDOUT_VISITS = 4
"""Number of held-out evaluation visits (simulated with ``DEFAULT_HELDOUT_SEED``)."""
DEFAULT_SEED = 0
"""Seed of the training simulation and of the training itself."""
DEFAULT_HELDOUT_SEED = 20261125
"""Seed of the held-out simulation (must differ from ``DEFAULT_SEED``)."""
DEFAULT_ARCHITECTURE = "rb3_cnn"
"""Architecture registry name."""
DEFAULT_ARCHITECTURE_KWARGS: dict[str, Any] = {"widths": [16, 32, 48, 64], "hidden": 64, "stem": 16}
"""Architecture keyword arguments (``in_channels``/``size`` are filled in from the data)."""
DEFAULT_CUTOUT_SIZE = 31
"""Stamp side length in pixels (alert stamps of other sizes are centre-cropped or padded)."""
DEFAULT_NORMALIZATION: dict[str, Any] = {
    "method": "robust",
    "asinh_a": 10.0,
    "use_variance": False,
    "mask_channel": True,
    "per_channel_noise": True,
}
"""Stamp normalisation: every image by its own robust noise, no variance plane needed (so alert
stamps without variance are scored exactly like pipeline cutouts)."""
DEFAULT_OCCLUSION = 0.25
"""Fraction of training stamps given a random block or line of missing pixels away from the centre
(`lsst.meas.realbogus.stamp_dataset.draw_occlusions`): missing data beside a source should not read
as an artefact, whatever shape it has in a survey we did not simulate."""
DEFAULT_EPOCHS = 30
"""Maximum number of epochs (early stopping on the validation loss)."""
DEFAULT_BATCH_SIZE = 128
"""Training batch size."""
DEFAULT_LR = 1e-3
"""AdamW learning rate (of the first epoch)."""
DEFAULT_LR_SCHEDULE = "cosine"
"""Learning-rate schedule: cosine decay over ``DEFAULT_EPOCHS`` (the validation loss of the last
epochs is much steadier than with a constant rate, so early stopping picks a better model)."""
DEFAULT_PATIENCE = 10
"""Early-stopping patience in epochs."""
DEFAULT_VERSION = "sim1.2"
"""Model version (at most 7 characters)."""
DEFAULT_MATCH_RADIUS_ARCSEC = 0.5
"""Truth match radius defining a real candidate."""
DEFAULT_TARGET_PURITY = 0.99
"""Purity the model threshold is chosen for."""
DEFAULT_MIN_SNR = 6.0
"""Transients with truth SNR at least this enter the headline completeness."""
DEFAULT_SPLIT = (0.85, 0.15, 0.0)
"""Train / validation / test fractions by visit, in both modes (the held-out visits are the test set;
the Butler mode's training task then draws its diagnostics from the validation visits)."""
HELDOUT_VISIT_OFFSET = 900000
"""Held-out visit ids start here, so they never coincide with training visits."""

_LOG = logging.getLogger("lsst.meas.realbogus.cli.train_default")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser.

    Returns
    -------
    parser : `argparse.ArgumentParser`
        The parser.
    """
    p = make_parser(__doc__)
    add_output_arguments(p, default="default_model.safetensors")
    p.add_argument(
        "--butler",
        default=None,
        metavar="REPO",
        help="train through the Butler: create this simulated repo and run TrainRealBogus.yaml",
    )
    p.add_argument("--clobber", action="store_true", help="replace an existing --butler repo")
    p.add_argument("--collection", default="realbogus/train_default", help="output collection (--butler)")
    p.add_argument("--visits", type=int, default=DEFAULT_VISITS)
    p.add_argument("--detectors", type=int, default=DEFAULT_DETECTORS)
    p.add_argument("--size", type=int, default=DEFAULT_SIZE, help="detector width and height (pixels)")
    p.add_argument("--heldout-visits", type=int, default=DEFAULT_HELDOUT_VISITS)
    p.add_argument("--seed", type=int, default=DEFAULT_SEED)
    p.add_argument("--no-mix", action="store_true", help="main survey only (no DEFAULT_SURVEY_MIX)")
    p.add_argument("--heldout-seed", type=int, default=DEFAULT_HELDOUT_SEED)
    add_architecture_arguments(
        p, architecture=DEFAULT_ARCHITECTURE, architecture_kwargs=DEFAULT_ARCHITECTURE_KWARGS
    )
    p.add_argument("--cutout-size", type=int, default=DEFAULT_CUTOUT_SIZE)
    add_training_loop_arguments(
        p,
        epochs=DEFAULT_EPOCHS,
        batch_size=DEFAULT_BATCH_SIZE,
        lr=DEFAULT_LR,
        patience=DEFAULT_PATIENCE,
        batch_size_help="global training batch size",
        lr_schedule=DEFAULT_LR_SCHEDULE,
        occlusion_probability=DEFAULT_OCCLUSION,
    )
    p.add_argument("--processes", type=int, default=1, help="simulation worker processes (pipetask -j)")
    add_runtime_arguments(p, model_version=DEFAULT_VERSION)
    p.add_argument("--work-dir", default=None, help="directory for the stamp stores (default: temporary)")
    p.add_argument(
        "--keep-stores",
        action="store_true",
        help="keep the float16 stamp stores in WORK_DIR/stores/{train,heldout}/store (needs --work-dir; "
        "the training store only without --butler), e.g. for bench/ddp_parity.py",
    )
    return p


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("visits", "detectors", "heldout_visits", "epochs", "batch_size", "processes", "num_threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.size < 2 * args.cutout_size or args.size < 64:
        parser.error(f"--size {args.size} is too small (at least 64 and twice --cutout-size)")
    if args.keep_stores and not args.work_dir:
        parser.error("--keep-stores needs --work-dir")
    if args.seed == args.heldout_seed:
        parser.error("--heldout-seed must differ from --seed")
    if len(args.model_version) > 7:
        parser.error("--model-version must be at most 7 characters")
    if args.visits < 2:
        parser.error("--visits must be at least 2 (the split is by visit)")
    first_member_visit = min(int(m["first_visit"]) for m in DEFAULT_SURVEY_MIX)
    if not args.no_mix and max(args.visits, args.heldout_visits) > first_member_visit:
        parser.error(
            f"--visits and --heldout-visits must be at most {first_member_visit} (the visit ids of the "
            "survey mix start there), or use --no-mix"
        )
    try:
        parse_json_object(args.architecture_kwargs, "--architecture-kwargs")
    except ValueError as err:
        parser.error(str(err))


def training_config(args: argparse.Namespace) -> Any:
    """Return the `~lsst.meas.realbogus.training.TrainingConfig` of the command-line settings.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed arguments.

    Returns
    -------
    config : `lsst.meas.realbogus.training.TrainingConfig`
        The training configuration (also mirrored into the Butler task's config).
    """
    from ..normalization import NormalizationSpec
    from ..training import TrainingConfig

    config = TrainingConfig(
        normalization=NormalizationSpec.from_dict(dict(DEFAULT_NORMALIZATION)),
        architecture=args.architecture,
        architecture_kwargs=json.loads(args.architecture_kwargs),
        cutout_size=args.cutout_size,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        lr_schedule=args.lr_schedule,
        occlusion_probability=args.occlusion,
        patience=args.patience,
        seed=args.seed,
        target_purity=DEFAULT_TARGET_PURITY,
        num_threads=args.num_threads,
        device=args.device,
        version=args.model_version,
    )
    config.validate()
    return config


def simulate_to_store(
    survey: Any,
    visits: Sequence[int],
    detectors: Sequence[int],
    seed: int,
    directory: Path,
    *,
    cutout_size: int,
    processes: int = 1,
    extra: Sequence[tuple[Any, Sequence[int], Sequence[int]]] = (),
) -> Any:
    """Simulate and label candidates and stream them into a float16 stamp store.

    Each (visit, detector) is written to a compressed npz file as it arrives, then the files are
    streamed into the store, so memory holds one detector's candidates at a time.

    Parameters
    ----------
    survey : `lsst.meas.realbogus.simulation.SurveyConfig`
        Survey parameters.
    visits, detectors : sequence of `int`
        Visits and detectors to simulate.
    seed : `int`
        Simulation seed.
    directory : `pathlib.Path`
        Work directory (``npz/`` and ``store/`` are made in it).
    cutout_size : `int`
        Stamp size.
    processes : `int`, optional
        Simulation worker processes.
    extra : sequence of (`SurveyConfig`, visits, detectors), optional
        Further surveys simulated with the same seed into the same store.

    Returns
    -------
    store : `lsst.meas.realbogus.stamp_dataset.StampStore`
        The store (alert channel order), opened read-only.
    """
    from ..training_set import simulate_candidate_sets
    from .train_stamps import convert_npz_to_store

    npz_dir = directory / "npz"
    npz_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    n_total = n_real = 0
    jobs = [(survey, visits, detectors), *extra]
    streams = (
        simulate_candidate_sets(
            job_survey,
            job_visits,
            job_detectors,
            seed,
            cutout_size=cutout_size,
            match_radius_arcsec=DEFAULT_MATCH_RADIUS_ARCSEC,
            processes=processes,
        )
        for job_survey, job_visits, job_detectors in jobs
    )
    for cands in (c for stream in streams for c in stream):
        if len(cands) == 0:
            continue
        path = npz_dir / f"{len(paths):06d}.npz"
        cands.to_npz(path)
        paths.append(str(path))
        n_total += len(cands)
        n_real += int(cands.labels.sum())
    if not paths:
        raise RuntimeError(f"The simulation of {len(visits)} visits produced no candidates.")
    _LOG.info("Simulated %d candidates (%d real) in %d (visit, detector) pairs.", n_total, n_real, len(paths))
    store = convert_npz_to_store(paths, directory / "store")
    shutil.rmtree(npz_dir)
    return store


def survey_mix(args: argparse.Namespace, survey: Any, visits: Sequence[int] | None = None) -> list[Any]:
    """Return the extra (survey, visits, detectors) jobs of `DEFAULT_SURVEY_MIX`.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed arguments (``no_mix``, ``detectors``).
    survey : `lsst.meas.realbogus.simulation.SurveyConfig`
        The main survey; the mix members are replacements of it.
    visits : sequence of `int`, optional
        Visits of the main survey to mirror (e.g. the held-out ones): each member gets these plus
        its ``first_visit``.  Default: each member's own count, from its ``first_visit``.

    Returns
    -------
    jobs : `list` of (`SurveyConfig`, `list` [`int`], `list` [`int`])
        Empty with ``--no-mix``.  Detectors follow the main survey's, so each member has sky fields
        of its own, and visit ids are disjoint from the main survey's and from each other.
    """
    if args.no_mix:
        return []
    jobs = []
    first = args.detectors
    for member in DEFAULT_SURVEY_MIX:
        member_survey = dataclasses.replace(survey, **member["overrides"])
        offset = int(member["first_visit"])
        if visits is not None:
            member_visits = [offset + int(v) for v in visits]
        else:
            member_visits = list(range(offset, offset + member["visits"]))
        detectors = list(range(first, first + member["detectors"]))
        first += member["detectors"]
        jobs.append((member_survey, member_visits, detectors))
    return jobs


def heldout_surveys(args: argparse.Namespace, heldout_visits: Sequence[int]) -> dict[int, str]:
    """Return the survey name of every held-out visit (``"main"`` and the mix members' names).

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed arguments (``no_mix``).
    heldout_visits : sequence of `int`
        Held-out visits of the main survey (the members' are offset by their ``first_visit``).

    Returns
    -------
    surveys : `dict` [`int`, `str`]
        Visit id to survey name.
    """
    surveys = {int(v): "main" for v in heldout_visits}
    if not args.no_mix:
        for member in DEFAULT_SURVEY_MIX:
            surveys.update({int(member["first_visit"]) + int(v): str(member["name"]) for v in heldout_visits})
    return surveys


def _train_butler_free(args: argparse.Namespace, survey: Any, work: Path) -> tuple[Any, Any, float]:
    from ..stamp_dataset import IndexedStampSource
    from ..training import split_by_group, train_classifier

    store = simulate_to_store(
        survey,
        list(range(args.visits)),
        list(range(args.detectors)),
        args.seed,
        work / "train",
        cutout_size=args.cutout_size,
        processes=args.processes,
        extra=survey_mix(args, survey),
    )
    train_idx, val_idx, _ = split_by_group(store.groups, DEFAULT_SPLIT, seed=args.seed)
    _LOG.info("Training on %d candidates, validating on %d (split by visit).", len(train_idx), len(val_idx))
    t0 = time.monotonic()
    result = train_classifier(
        IndexedStampSource(store, train_idx),
        IndexedStampSource(store, val_idx),
        training_config(args),
        checkpoint_dir=args.checkpoint_dir,
    )
    return result.module, result.metadata, time.monotonic() - t0


def _train_in_butler(args: argparse.Namespace, survey: Any) -> tuple[Any, Any, float]:
    from lsst.daf.butler import Butler

    from ..butler import repo
    from .demo import run_pipetask

    jobs = [(survey, list(range(args.visits)), list(range(args.detectors))), *survey_mix(args, survey)]
    n_detectors = max(max(detectors) for _, _, detectors in jobs) + 1
    butler = repo.create_sim_repo(args.butler, n_detectors=n_detectors, clobber=args.clobber)
    for job_survey, job_visits, job_detectors in jobs:
        repo.ingest_simulated_visits(
            butler, job_survey, job_visits, job_detectors, args.seed, processes=args.processes
        )
    del butler
    settings: dict[str, Any] = {
        "architecture": args.architecture,
        "architecture_kwargs": args.architecture_kwargs,
        "cutout_size": args.cutout_size,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "lr_schedule": args.lr_schedule,
        "patience": args.patience,
        "seed": args.seed,
        "target_purity": DEFAULT_TARGET_PURITY,
        "num_threads": args.num_threads,
        "device": args.device,
        "version": args.model_version,
        "match_radius_arcsec": DEFAULT_MATCH_RADIUS_ARCSEC,
        "split_fractions": "[" + ",".join(str(f) for f in DEFAULT_SPLIT) + "]",
        "normalization": json.dumps(DEFAULT_NORMALIZATION),
        "class_balance": "weight",
        "augment": True,
        "occlusion_probability": args.occlusion,
    }
    if args.checkpoint_dir:
        settings["checkpoint_dir"] = args.checkpoint_dir
    if args.work_dir:
        settings["stamp_store_dir"] = args.work_dir
    # pipetask evaluates override values as Python literals: quote the strings.
    extra = [
        arg
        for key, value in settings.items()
        for arg in (
            "-c",
            f"trainRealBogus:{key}={value!r}"
            if isinstance(value, str) and key != "split_fractions"
            else f"trainRealBogus:{key}={value}",
        )
    ]
    pipeline = "resource://lsst.meas.realbogus/pipelines/TrainRealBogus.yaml"
    run_pipetask(args.butler, pipeline, args.collection, processes=args.processes, extra=extra)
    butler = Butler.from_config(args.butler, collections=[args.collection])
    package = butler.get("realbogus_model")
    train_seconds = float(butler.get("realbogus_train_metrics")["training_seconds"])
    return package.state_dict, package.metadata, train_seconds


def evaluate_heldout(
    model_path: str | Path,
    store: Any,
    *,
    target_purity: float = DEFAULT_TARGET_PURITY,
    min_snr: float = DEFAULT_MIN_SNR,
    batch_size: int = 4096,
    surveys: dict[int, str] | None = None,
) -> dict[str, Any]:
    """Score held-out candidates with a model package (the inference code path) and summarise.

    Parameters
    ----------
    model_path : `str` or `pathlib.Path`
        Model package file.
    store : `lsst.meas.realbogus.stamp_dataset.StampStore`
        Held-out candidates (alert channel order; ``snr`` is the truth SNR of real candidates).
    target_purity : `float`, optional
        Purity defining the operating threshold on the held-out set.
    min_snr : `float`, optional
        Truth SNR limit of the headline completeness.
    batch_size : `int`, optional
        Stamps read and scored at a time.
    surveys : `dict` [`int`, `str`], optional
        Survey name of every held-out visit (the store's groups); with it the result has a
        ``per_survey`` breakdown.

    Returns
    -------
    metrics : `dict`
        ``n``, ``n_real``, ``n_unscorable``, ``auc``, ``ece``, the model threshold with its
        held-out purity and completeness (all and SNR >= ``min_snr``), the held-out threshold for
        ``target_purity`` with its completeness (all and SNR >= ``min_snr``), and the full
        `~lsst.meas.realbogus.metrics.summarize` output under ``summary``.  ``per_survey`` (with
        ``surveys``) gives, for each survey: ``n``, ``n_real``, ``auc``, the completeness
        (SNR >= ``min_snr``) at the pooled threshold for ``target_purity`` and the purity there,
        the survey's own threshold for ``target_purity`` and the completeness at it, and the
        completeness and purity at the model threshold.
    """
    from .. import metrics
    from ..scoring import load_model

    model = load_model(model_path)
    n = len(store)
    scores = np.empty(n, dtype=np.float64)
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(n, start + batch_size))
        scores[rows] = model.score_stamps(store.read(rows), channels=store.channels)
    labels = np.asarray(store.labels).astype(np.int64)
    snr = np.asarray(store.snr, dtype=np.float64)
    types = np.asarray(store.types).astype(str)
    groups = np.asarray(store.groups).astype(np.int64)
    ok = np.isfinite(scores)
    scores, labels, snr, types, groups = scores[ok], labels[ok], snr[ok], types[ok], groups[ok]
    threshold = float(model.metadata.threshold)
    bright = (labels == 1) & (snr >= min_snr)

    def completeness(mask: np.ndarray, thr: float | None) -> float:
        if thr is None or not mask.any():
            return float("nan")
        return float((scores[mask] >= thr).mean())

    def purity(mask: np.ndarray, thr: float) -> float:
        kept = mask & (scores >= thr)
        return float(labels[kept].mean()) if kept.any() else float("nan")

    everything = np.ones(labels.size, dtype=bool)
    choice = metrics.threshold_for_purity(scores, labels, target_purity)
    summary = metrics.summarize(
        scores, labels, snr=np.nan_to_num(snr), types=types, threshold=threshold, target_purity=target_purity
    )
    per_survey: dict[str, dict[str, Any]] = {}
    if surveys is not None:
        unique_groups, inverse = np.unique(groups, return_inverse=True)
        names = np.array([surveys.get(int(g), "unknown") for g in unique_groups])[inverse]
        for name in dict.fromkeys(surveys.values()):
            m = names == name
            if not m.any():
                continue
            lab, sc = labels[m], scores[m]
            both = 0 < lab.sum() < lab.size
            own = metrics.threshold_for_purity(sc, lab, target_purity) if both else None
            per_survey[name] = {
                "n": int(m.sum()),
                "n_real": int(lab.sum()),
                "auc": float(metrics.roc_auc(sc, lab)) if both else float("nan"),
                f"completeness_snr_ge_{min_snr:g}_at_pooled_purity_threshold": completeness(
                    bright & m, choice.threshold
                ),
                "purity_at_pooled_purity_threshold": purity(m, choice.threshold),
                "own_threshold_for_purity": own.threshold if own else float("nan"),
                "own_purity_reached": bool(own.reached) if own else False,
                f"completeness_snr_ge_{min_snr:g}_at_own_purity_threshold": completeness(
                    bright & m, own.threshold if own else None
                ),
                f"completeness_snr_ge_{min_snr:g}_at_model_threshold": completeness(bright & m, threshold),
                "purity_at_model_threshold": purity(m, threshold),
            }
    return metrics.to_jsonable(
        {
            "n": int(labels.size),
            "n_real": int(labels.sum()),
            "n_unscorable": int((~ok).sum()),
            "auc": summary["auc"],
            "ece": summary.get("ece"),
            "model_threshold": threshold,
            "purity_at_model_threshold": purity(everything, threshold),
            "completeness_at_model_threshold": completeness(labels == 1, threshold),
            f"completeness_snr_ge_{min_snr:g}_at_model_threshold": completeness(bright, threshold),
            "heldout_threshold_for_purity": choice.threshold,
            "heldout_purity_reached": choice.reached,
            "target_purity": target_purity,
            f"completeness_snr_ge_{min_snr:g}_at_purity": completeness(bright, choice.threshold),
            "completeness_at_purity": choice.completeness,
            "min_snr": min_snr,
            "summary": summary,
            "per_survey": per_survey,
        }
    )


def format_metrics_table(result: dict[str, Any]) -> str:
    """Format the headline held-out metrics as a text table.

    Parameters
    ----------
    result : `dict`
        Output of `evaluate_heldout`, plus ``mode``, ``training_seconds`` (the training loop) and
        ``simulation_and_training_seconds`` (everything before the held-out evaluation).

    Returns
    -------
    table : `str`
        The table.
    """
    snr = f"{result['min_snr']:g}"
    purity = result["target_purity"]

    def fmt(value: Any) -> str:
        return "n/a" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))

    rows = [
        ("mode", result.get("mode", "")),
        ("held-out candidates (real)", f"{result['n']} ({result['n_real']})"),
        ("AUC", fmt(result["auc"])),
        (
            f"completeness SNR>={snr} at purity {purity:g} (held-out threshold "
            f"{fmt(result['heldout_threshold_for_purity'])}"
            f"{'' if result['heldout_purity_reached'] else ', purity not reached'})",
            fmt(result[f"completeness_snr_ge_{snr}_at_purity"]),
        ),
        (
            f"completeness SNR>={snr} at the model threshold {fmt(result['model_threshold'])}",
            fmt(result[f"completeness_snr_ge_{snr}_at_model_threshold"]),
        ),
        ("purity at the model threshold", fmt(result["purity_at_model_threshold"])),
        ("ECE", fmt(result["ece"])),
        ("training time (s)", f"{result.get('training_seconds', float('nan')):.1f}"),
        (
            "simulation + training time (s)",
            f"{result.get('simulation_and_training_seconds', float('nan')):.1f}",
        ),
    ]
    for name, row in result.get("per_survey", {}).items():
        rows.append(
            (
                f"  {name}: completeness SNR>={snr} at purity {purity:g} (own threshold "
                f"{fmt(row['own_threshold_for_purity'])}) / at the pooled threshold (purity "
                f"{fmt(row['purity_at_pooled_purity_threshold'])}), AUC",
                f"{fmt(row[f'completeness_snr_ge_{snr}_at_own_purity_threshold'])} / "
                f"{fmt(row[f'completeness_snr_ge_{snr}_at_pooled_purity_threshold'])}, {fmt(row['auc'])}",
            )
        )
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    rule = "-" * max(len(line) for line in lines)
    return "\n".join([rule, *lines, rule])


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of `str`, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    status : `int`
        0 on success.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    setup_logging(args.log_level)
    from ..model_package import save_model_package
    from ..simulation import SurveyConfig

    survey = dataclasses.replace(SurveyConfig(), width=args.size, height=args.size)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if args.work_dir:
        Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="realbogus_default_", dir=args.work_dir) as tmp:
        work = Path(tmp)
        if args.keep_stores:
            work = Path(args.work_dir) / "stores"
            for name in ("train", "heldout"):
                if (work / name).exists():
                    parser.error(f"{work / name} exists: remove it or use another --work-dir")
        t0 = time.monotonic()
        if args.butler:
            weights, metadata, training_seconds = _train_in_butler(args, survey)
        else:
            weights, metadata, training_seconds = _train_butler_free(args, survey, work)
        total_seconds = time.monotonic() - t0
        save_model_package(output, weights, metadata)
        _LOG.info("Wrote %s (version %s) after %.1f s.", output, metadata.version, total_seconds)
        heldout_visits = [HELDOUT_VISIT_OFFSET + i for i in range(args.heldout_visits)]
        heldout = simulate_to_store(
            survey,
            heldout_visits,
            list(range(args.detectors)),
            args.heldout_seed,
            work / "heldout",
            cutout_size=args.cutout_size,
            processes=args.processes,
            extra=survey_mix(args, survey, heldout_visits),
        )
        result = evaluate_heldout(output, heldout, surveys=heldout_surveys(args, heldout_visits))
        del heldout
    result.update(
        {
            "mode": "butler" if args.butler else "butler-free",
            "training_seconds": training_seconds,
            "simulation_and_training_seconds": total_seconds,
            "model": str(output),
            "model_version": metadata.version,
            "settings": {k: v for k, v in vars(args).items() if k not in ("log_level",)},
            "heldout_visits": heldout_visits,
            "heldout_seed": args.heldout_seed,
        }
    )
    metrics_file = metrics_path(args.metrics, output)
    metrics_file.write_text(json.dumps(result, indent=1, allow_nan=False))
    print(format_metrics_table(result))
    print(f"model: {output}  metrics: {metrics_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
