r"""Reproducible TransiNet training and evaluation on simulated visits.

Example (the command of the shipped default model is
``lsst.meas.realbogus.transinet.model.DEFAULT_MODEL_COMMAND``)::

    python -m lsst.meas.realbogus.transinet.train_cli --checkpoint-dir /tmp/tn_ckpt \\
        --output transinet.safetensors --report transinet_report.json

Data (all survey seed ``--sim-seed``, default 0):

* training: ``--n-train`` visits of ``--size``\ :sup:`2` pixels (visit ids 0, 1, ...) spread over
  ``--n-fields`` sky fields (detectors ``TRAIN_FIRST_DETECTOR`` + 0, 1, ...: the simulated static
  sky depends on the detector); a fraction ``--mix-fraction`` of the fields is simulated with the
  members of ``TRAINING_SURVEY_MIX`` (other pixel scale and seeing, shallow templates), the rest with
  the main `~lsst.meas.realbogus.simulation.SurveyConfig`;
* validation (early stopping, best epoch): ``--n-val`` visits (ids 1000, 1001, ...) on fields of
  their own (detectors ``VAL_FIRST_DETECTOR`` + 0, 1, ...), with the same survey mix;
* test (the report, the recommended threshold): ``--n-test`` main-survey visits of
  ``--test-size``\ :sup:`2` pixels (ids 2000, 2001, ...) on the fields ``TEST_DETECTORS``.

Each visit is simulated and prepared (normalised, targets built) one at a time, so memory holds
only the prepared inputs.  The report gives completeness per truth SNR bin and false positives per
detector at ``--thresholds`` and the completeness of the transients with ``|SNR| >= 6`` at the
lowest threshold with at most ``--fp-budget`` false positives per 1024\ :sup:`2` detector (the
matched operating point of ``bench/compare_approaches.py``).  ``--threshold matched`` stores that
threshold in the package.

The run can be interrupted (or limited with ``--stop-after-epochs``) and resumed by
re-running the same command with the same ``--checkpoint-dir``.
"""

from __future__ import annotations

__all__ = ["EXTRA_MIX_MEMBERS", "TEST_DETECTORS", "TRAINING_SURVEY_MIX", "TRAIN_FIRST_DETECTOR",
           "VAL_FIRST_DETECTOR", "build_parser", "field_survey", "main", "prepare_visits", "simulate_visits"]

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

_LOG = logging.getLogger("lsst.meas.realbogus.transinet")

TRAIN_FIRST_DETECTOR = 100
"""Detector (sky field) of the first training field; training fields are consecutive from it."""

VAL_FIRST_DETECTOR = 40
"""Detector of the first validation field (one field per validation visit)."""

TEST_DETECTORS = (10, 11, 12)
"""Detectors (sky fields) of the test visits, cycled."""

TRAINING_SURVEY_MIX: tuple[tuple[str, dict[str, Any]], ...] = (
    ("coarse", {"pixel_scale": 0.5, "seeing_range": (1.0, 2.4), "template_seeing_range": (0.85, 1.0)}),
    ("shallow", {"seeing_range": (0.6, 2.0), "template_depth_range": (2.0, 5.0)}),
)
"""Survey variants mixed into training (``SurveyConfig`` overrides, the detector size aside): 0.5″
pixels with 1.0–2.4″ seeing (PSFs of 2–5 pixels FWHM), and shallow templates (2–5x the science
depth) with 0.6–2.0″ seeing.  They are the first two members of the classifier's default survey mix
(``lsst.meas.realbogus.cli.train_default.DEFAULT_SURVEY_MIX``), pinned here so that the default
TransiNet stays reproducible."""

EXTRA_MIX_MEMBERS: dict[str, dict[str, Any]] = {
    "sharp": {"seeing_range": (0.4, 0.7)},
    "undersampled": {"pixel_scale": 0.9, "seeing_range": (1.2, 2.8), "template_seeing_range": (1.0, 1.5)},
}
"""Further survey variants ``--extra-mix`` can add to `TRAINING_SURVEY_MIX`: ``sharp`` has a
science seeing of 0.4–0.7″, as sharp as the main survey's 0.45–0.55″ templates or sharper;
``undersampled`` is the third member of the classifier's default survey mix
(`lsst.meas.realbogus.cli.train_default.DEFAULT_SURVEY_MIX`): 0.9″ pixels, 1.2–2.8″ seeing and
1.0–1.5″ templates (PSFs of 1.3–3.1 pixels FWHM)."""


def _threshold_arg(value: str) -> float | str:
    if value == "matched":
        return value
    try:
        threshold = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"threshold must be a number in [0, 1] or 'matched'; got {value!r}")
    if not 0.0 <= threshold <= 1.0:
        raise argparse.ArgumentTypeError(f"threshold must be in [0, 1]; got {value!r}")
    return threshold


def _type_weight_arg(value: str) -> tuple[str, float]:
    name, sep, weight = value.partition("=")
    try:
        number = float(weight)
    except ValueError:
        number = float("nan")
    if not sep or not name or not (np.isfinite(number) and number >= 0):
        raise argparse.ArgumentTypeError(f"expected TYPE=WEIGHT with a weight >= 0; got {value!r}")
    return name, number


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    p = argparse.ArgumentParser(prog="python -m lsst.meas.realbogus.transinet.train_cli",
                                description="Train and evaluate TransiNet on simulated visits.")
    p.add_argument("--size", type=int, default=512,
                   help="Simulated training/validation detector size (pixels).")
    p.add_argument("--n-train", type=int, default=16, help="Training visits.")
    p.add_argument("--n-fields", type=int, default=4,
                   help="Distinct sky fields (detectors) the training visits are spread over.")
    p.add_argument("--mix-fraction", type=float, default=0.0,
                   help="Fraction of the training and validation fields simulated with the survey mix "
                   "(TRAINING_SURVEY_MIX, members alternating).")
    p.add_argument("--extra-mix", nargs="*", default=[], choices=sorted(EXTRA_MIX_MEMBERS),
                   help="Further survey mix members (EXTRA_MIX_MEMBERS) after TRAINING_SURVEY_MIX's.")
    p.add_argument("--bright-neighbours", type=float, default=0.0,
                   help="Extra transients next to bright stars per 2048^2 of training and validation "
                        "visits (SurveyConfig.n_bright_neighbour_per_detector); test visits get none.")
    p.add_argument("--n-val", type=int, default=4, help="Validation visits (early stopping).")
    p.add_argument("--n-test", type=int, default=6, help="Held-out test visits (evaluation).")
    p.add_argument("--test-size", type=int, default=None, help="Test detector size (default: --size).")
    p.add_argument("--sim-seed", type=int, default=0, help="Survey simulation seed.")
    p.add_argument("--seed", type=int, default=0, help="Training seed.")
    p.add_argument("--channels", nargs="+", default=["template", "science", "valid"],
                   help="Network input channels (see transinet.normalization.KNOWN_CHANNELS); "
                   "'difference' adds the PSF-matched difference (see --difference-kernel).")
    p.add_argument("--difference-noise", choices=("mad", "variance"), default="mad",
                   help="Scale of the 'difference' channel: its robust scatter, or per-pixel noise from "
                   "the variance planes.")
    p.add_argument("--difference-kernel", choices=("gaussian", "fitted"), default="gaussian",
                   help="Matching kernel of the 'difference' channel: a fixed Gaussian from the PSF sigmas, "
                   "or a spatially constant kernel fitted on template stars.")
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--crops-per-epoch", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop-size", type=int, default=128)
    p.add_argument("--positive-fraction", type=float, default=0.5,
                   help="Fraction of crops centred near a transient.")
    p.add_argument("--positive-type-weights", nargs="*", type=_type_weight_arg, default=[],
                   metavar="TYPE=WEIGHT",
                   help="Relative probability by truth type of a transient centring a positive crop "
                   "(e.g. variable_brighten=4 variable_fade=4; unlisted types weigh 1).")
    p.add_argument("--base-width", type=int, default=8)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="Learning-rate schedule over --epochs.")
    p.add_argument("--min-snr", type=float, default=3.0, help="Ignore fainter transients in the loss.")
    p.add_argument("--target-core-radius", type=float, default=0.0,
                   help="Flat-top radius (pixels) of the training target blobs.")
    p.add_argument("--positive-weight", type=float, default=20.0,
                   help="Extra loss weight on transient blobs.")
    p.add_argument("--artifact-weight", type=float, default=5.0, help="Loss weight near artefacts.")
    p.add_argument("--version", default="tn0.1")
    p.add_argument("--init-from", default=None, metavar="PACKAGE",
                   help="Fine-tune: start from this TransiNet package's weights ('default': the shipped "
                        "model); its network size and normalisation must match the other options.")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--stop-after-epochs", type=int, default=None,
                   help="Stop after this many epochs in total (resume later with the same command).")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    p.add_argument("--fp-budget", type=float, default=0.5,
                   help="False positives per 1024x1024 detector of the matched operating point.")
    p.add_argument("--threshold", type=_threshold_arg, default=0.5,
                   help="Threshold stored in the package: a number, or 'matched' (the matched operating "
                   "point's threshold on the test visits).")
    p.add_argument("--output", default=None, help="Model package to write (.safetensors).")
    p.add_argument("--report", default=None, help="JSON evaluation report to write.")
    return p


def field_survey(field: int, n_fields: int, mix_fraction: float, extra: Sequence[str] = ()
                 ) -> tuple[str, dict[str, Any]]:
    """Return the survey variant of training or validation field ``field`` of ``n_fields``.

    The last ``round(mix_fraction * n_fields)`` fields belong to the `TRAINING_SURVEY_MIX`
    members followed by the ``extra`` members of `EXTRA_MIX_MEMBERS`, alternating; the others
    to the main survey (name ``"main"``, no overrides).

    Raises
    ------
    ValueError
        Raised if ``mix_fraction`` is not in [0, 1], ``field`` not in ``[0, n_fields)`` or an
        extra member is unknown.
    """
    unknown = [name for name in extra if name not in EXTRA_MIX_MEMBERS]
    if unknown:
        raise ValueError(f"Unknown extra survey mix member(s) {unknown}; known: {list(EXTRA_MIX_MEMBERS)}.")
    members = TRAINING_SURVEY_MIX + tuple((name, EXTRA_MIX_MEMBERS[name]) for name in extra)
    if not 0.0 <= mix_fraction <= 1.0:
        raise ValueError(f"mix_fraction must be in [0, 1]; got {mix_fraction}.")
    if not 0 <= field < n_fields:
        raise ValueError(f"field must be in [0, {n_fields}); got {field}.")
    n_main = n_fields - int(round(mix_fraction * n_fields))
    if field < n_main:
        return "main", {}
    return members[(field - n_main) % len(members)]


def _survey(size: int, overrides: dict[str, Any]) -> Any:
    from ..simulation import SurveyConfig

    return dataclasses.replace(SurveyConfig(), **overrides, width=size, height=size)


def simulate_visits(size: int, visits: Sequence[int], detectors: Sequence[int], seed: int,
                    overrides: dict[str, Any] | None = None) -> list[Any]:
    """Simulate ``(visit, detector)`` pairs with a scaled-down `SurveyConfig` (plus ``overrides``).

    Each truth table gets ``meta["area"]``, the detector area in pixels.
    """
    from ..simulation import simulate_visit

    config = _survey(size, overrides or {})
    out = []
    for v, d in zip(visits, detectors):
        sim = simulate_visit(config, v, d, seed=seed)
        sim.truth.meta["area"] = size * size
        out.append(sim)
    return out


def _jobs(n_visits: int, first_visit: int, first_detector: int, n_fields: int,
          mix_fraction: float, extra: Sequence[str] = (), bright_neighbours: float = 0.0
          ) -> list[tuple[int, int, str, dict[str, Any]]]:
    jobs = []
    for i in range(n_visits):
        field = i % n_fields
        name, overrides = field_survey(field, n_fields, mix_fraction, extra)
        if bright_neighbours:
            overrides = {**overrides, "n_bright_neighbour_per_detector": bright_neighbours}
        jobs.append((first_visit + i, first_detector + field, name, overrides))
    return jobs


def prepare_visits(jobs: Sequence[tuple[int, int, str, dict[str, Any]]], size: int, seed: int,
                   config: Any, label: str) -> list[Any]:
    """Simulate and prepare (`~.training.prepare_example`) visits one at a time.

    Parameters
    ----------
    jobs : `~collections.abc.Sequence`
        ``(visit, detector, survey name, SurveyConfig overrides)`` per visit.
    size : `int`
        Detector side in pixels.
    seed : `int`
        Survey seed.
    config : `~.training.TransiNetTrainingConfig`
        Training configuration (channels, targets).
    label : `str`
        Name for the progress log.

    Returns
    -------
    examples : `list` [`~.training.PreparedExample`]
        One per job; the simulated images are not kept.
    """
    from .training import prepare_example

    examples = []
    t0 = time.perf_counter()
    counts: dict[str, int] = {}
    n_transients = 0
    for k, (visit, detector, name, overrides) in enumerate(jobs):
        sim = simulate_visits(size, [visit], [detector], seed, overrides)[0]
        examples.append(prepare_example(sim, config))
        counts[name] = counts.get(name, 0) + 1
        n_transients += len(examples[-1].positives)
        if (k + 1) % 50 == 0:
            _LOG.info("Prepared %d/%d %s visits (%.0f s).", k + 1, len(jobs), label, time.perf_counter() - t0)
    _LOG.info("Prepared %d %s visits (%s) with %d transients in %.0f s.", len(examples), label,
              ", ".join(f"{n} {name}" for name, n in counts.items()), n_transients, time.perf_counter() - t0)
    return examples


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Run the command line; return the evaluation summary (None if stopped early by request)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from .evaluate import evaluate_detections, matched_operating_point, threshold_scan
    from .model import TransiNetModel, save_transinet_package
    from .training import TransiNetTrainingConfig, train_transinet

    if args.n_fields < 1:
        raise ValueError(f"--n-fields must be >= 1; got {args.n_fields}.")
    if TRAIN_FIRST_DETECTOR + args.n_fields > 1000:
        raise ValueError(f"--n-fields {args.n_fields} exceeds the detector ids (at most "
                         f"{1000 - TRAIN_FIRST_DETECTOR}).")
    torch.set_num_threads(args.threads)
    config = TransiNetTrainingConfig(
        base_width=args.base_width, depth=args.depth, channels=tuple(args.channels),
        difference_noise=args.difference_noise, difference_kernel=args.difference_kernel,
        crop_size=args.crop_size,
        crops_per_epoch=args.crops_per_epoch, batch_size=args.batch_size,
        positive_fraction=args.positive_fraction, positive_type_weights=dict(args.positive_type_weights),
        max_epochs=args.epochs,
        patience=args.patience, learning_rate=args.learning_rate,
        lr_schedule=args.lr_schedule, min_snr=args.min_snr, seed=args.seed,
        target_core_radius=args.target_core_radius, positive_weight=args.positive_weight,
        artifact_weight=args.artifact_weight, version=args.version,
    )
    initial_state = None
    if args.init_from:
        from pathlib import Path

        from ..model_package import read_model_package
        from .model import read_default_package
        from .training import initial_state_from_package

        if args.init_from == "default":
            package = read_default_package()
        else:
            source = Path(args.init_from)
            if not source.is_file():
                raise FileNotFoundError(f"--init-from: no model package at {source}.")
            package = read_model_package(source.read_bytes())
        config.initialized_from = str(package.metadata.version)
        initial_state = initial_state_from_package(package, config)
    config.validate()
    train = prepare_visits(_jobs(args.n_train, 0, TRAIN_FIRST_DETECTOR, args.n_fields, args.mix_fraction,
                                 args.extra_mix, args.bright_neighbours),
                           args.size, args.sim_seed, config, "training")
    val = prepare_visits(_jobs(args.n_val, 1000, VAL_FIRST_DETECTOR, args.n_val, args.mix_fraction,
                               args.extra_mix, args.bright_neighbours),
                         args.size, args.sim_seed, config, "validation")
    t1 = time.perf_counter()
    result = train_transinet(train, val, config, checkpoint_dir=args.checkpoint_dir,
                             stop_after_epochs=args.stop_after_epochs, initial_state=initial_state)
    train_seconds = time.perf_counter() - t1
    del train, val
    done = len(result.history)
    if not result.stopped_early and done < args.epochs:
        _LOG.info("Stopped after %d epochs as requested; re-run to resume.", done)
        return None
    # Held-out visits on sky fields (detectors) not used for training or validation.
    test_size = args.test_size or args.size
    test = simulate_visits(test_size, range(2000, 2000 + args.n_test),
                           [TEST_DETECTORS[v % len(TEST_DETECTORS)] for v in range(args.n_test)],
                           args.sim_seed)
    model = TransiNetModel.from_training_result(result)
    t2 = time.perf_counter()
    scores = [model.score_image(v.template.image, v.science.image, v.template.variance, v.science.variance,
                                v.science.mask | v.template.mask, science_psf_sigma=v.science_psf_sigma,
                                template_psf_sigma=v.template_psf_sigma) for v in test]
    score_seconds = (time.perf_counter() - t2) / max(len(test), 1)

    def detect(v: Any, s: np.ndarray, thr: float) -> Any:
        return model.detect(v.template.image, v.science.image, v.template.variance, v.science.variance,
                            v.science.mask | v.template.mask, threshold=thr, wcs=v.wcs,
                            science_psf_sigma=v.science_psf_sigma, template_psf_sigma=v.template_psf_sigma,
                            score=s)

    summary: dict[str, Any] = {"train_seconds_this_run": train_seconds, "epochs": done,
                               "best_epoch": result.best_epoch, "score_seconds_per_visit": score_seconds,
                               "test": {"n_visits": len(test), "size": test_size,
                                        "detectors": list(TEST_DETECTORS)},
                               "history": result.history, "thresholds": {}}
    low = [detect(v, s, 0.05) for v, s in zip(test, scores)]
    grid = np.round(np.arange(0.05, 1.0, 0.01), 2)
    scan = threshold_scan(low, [v.truth for v in test], grid, match_radius=2.5, min_snr=6.0)
    matched = matched_operating_point(scan, args.fp_budget)
    summary["matched"] = dict(matched, fp_budget=args.fp_budget)
    summary["scan"] = scan
    _LOG.info("Matched point (<= %.2f FP per 1024^2 detector): threshold %.2f, completeness |SNR| >= 6 "
              "%.3f (%d/%d), %.2f FP per 1024^2 detector.", args.fp_budget, matched["threshold"],
              matched["completeness"], matched["n_found"], matched["n_true"], matched["fp_per_detector"])
    for thr in args.thresholds:
        dets = [d[np.asarray(d["peak_score"]) >= thr] for d in low] if thr >= 0.05 else [
            detect(v, s, thr) for v, s in zip(test, scores)]
        summary["thresholds"][str(thr)] = evaluate_detections(dets, [v.truth for v in test], match_radius=2.5)
        ev = summary["thresholds"][str(thr)]
        _LOG.info("threshold %.2f: %d/%d transients found, %.2f false positives per detector "
                  "(%.2f at artefacts); completeness by |SNR| bin: %s", thr, ev["n_true_positives"],
                  ev["n_true"], ev["false_positives_per_detector"],
                  ev["false_positives_at_artifacts_per_detector"],
                  ", ".join(f"[{b['lo']:g},{b['hi']:g}): {b['n_found']}/{b['n_true']}"
                            for b in ev["completeness"]))
    threshold = matched["threshold"] if args.threshold == "matched" else float(args.threshold)
    summary["stored_threshold"] = threshold
    if args.output:
        entry = min(scan, key=lambda e: abs(e["threshold"] - threshold))
        metrics = {"test_completeness_snr_ge_6": entry["completeness"],
                   "test_fp_per_1024sq_detector": entry["fp_per_detector"],
                   "test_n_snr_ge_6": entry["n_true"], "test_threshold": entry["threshold"]}
        save_transinet_package(result, args.output, threshold=threshold, metrics=metrics)
        _LOG.info("Wrote %s (threshold %.2f)", args.output, threshold)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(summary, f, indent=1, default=float)
    return summary


if __name__ == "__main__":
    main()
