r"""Reproducible TransiNet training and evaluation on simulated visits.

Example (the command that produced the numbers in the package report)::

    python -m lsst.meas.realbogus.transinet.train_cli --checkpoint-dir /tmp/tn_ckpt \\
        --output transinet.safetensors --report transinet_report.json

The run can be interrupted (or limited with ``--stop-after-epochs``) and resumed by
re-running the same command with the same ``--checkpoint-dir``.
"""

from __future__ import annotations

__all__ = ["build_parser", "main", "simulate_visits"]

import argparse
import dataclasses
import json
import logging
import time
from collections.abc import Sequence
from typing import Any

_LOG = logging.getLogger("lsst.meas.realbogus.transinet")


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    p = argparse.ArgumentParser(prog="python -m lsst.meas.realbogus.transinet.train_cli",
                                description="Train and evaluate TransiNet on simulated visits.")
    p.add_argument("--size", type=int, default=512, help="Simulated detector size in pixels.")
    p.add_argument("--n-train", type=int, default=16, help="Training visits.")
    p.add_argument("--n-val", type=int, default=4, help="Validation visits (early stopping).")
    p.add_argument("--n-test", type=int, default=6, help="Held-out test visits (evaluation).")
    p.add_argument("--sim-seed", type=int, default=0, help="Survey simulation seed.")
    p.add_argument("--seed", type=int, default=0, help="Training seed.")
    p.add_argument("--epochs", type=int, default=24)
    p.add_argument("--patience", type=int, default=6)
    p.add_argument("--crops-per-epoch", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--crop-size", type=int, default=128)
    p.add_argument("--base-width", type=int, default=8)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default="constant",
                   help="Learning-rate schedule over --epochs.")
    p.add_argument("--min-snr", type=float, default=3.0, help="Ignore fainter transients in the loss.")
    p.add_argument("--target-core-radius", type=float, default=0.0,
                   help="Flat-top radius (pixels) of the training target blobs.")
    p.add_argument("--artifact-weight", type=float, default=5.0, help="Loss weight near artefacts.")
    p.add_argument("--version", default="tn0.1")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads.")
    p.add_argument("--checkpoint-dir", default=None)
    p.add_argument("--stop-after-epochs", type=int, default=None,
                   help="Stop after this many epochs in total (resume later with the same command).")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    p.add_argument("--threshold", type=float, default=0.5, help="Threshold stored in the package.")
    p.add_argument("--output", default=None, help="Model package to write (.safetensors).")
    p.add_argument("--report", default=None, help="JSON evaluation report to write.")
    return p


def simulate_visits(size: int, visits: Sequence[int], detectors: Sequence[int], seed: int) -> list[Any]:
    """Simulate ``(visit, detector)`` pairs with a scaled-down `SurveyConfig`."""
    from ..simulation import SurveyConfig, simulate_visit

    config = dataclasses.replace(SurveyConfig(), width=size, height=size)
    return [simulate_visit(config, v, d, seed=seed) for v, d in zip(visits, detectors)]


def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Run the command line; return the evaluation summary (None if stopped early by request)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    from .evaluate import evaluate_detections
    from .model import TransiNetModel, save_transinet_package
    from .training import TransiNetTrainingConfig, train_transinet

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    train = simulate_visits(args.size, range(args.n_train), [v % 4 for v in range(args.n_train)],
                            args.sim_seed)
    val = simulate_visits(args.size, range(1000, 1000 + args.n_val), [v % 4 for v in range(args.n_val)],
                          args.sim_seed)
    _LOG.info("Simulated %d training and %d validation visits in %.1f s.", len(train), len(val),
              time.perf_counter() - t0)
    config = TransiNetTrainingConfig(
        base_width=args.base_width, depth=args.depth, crop_size=args.crop_size,
        crops_per_epoch=args.crops_per_epoch, batch_size=args.batch_size, max_epochs=args.epochs,
        patience=args.patience, learning_rate=args.learning_rate,
        lr_schedule=args.lr_schedule, min_snr=args.min_snr, seed=args.seed,
        target_core_radius=args.target_core_radius, artifact_weight=args.artifact_weight,
        version=args.version,
    )
    t1 = time.perf_counter()
    result = train_transinet(train, val, config, checkpoint_dir=args.checkpoint_dir,
                             stop_after_epochs=args.stop_after_epochs)
    train_seconds = time.perf_counter() - t1
    done = len(result.history)
    if not result.stopped_early and done < args.epochs:
        _LOG.info("Stopped after %d epochs as requested; re-run to resume.", done)
        return None
    # Held-out visits on sky fields (detectors) not used for training.
    test = simulate_visits(args.size, range(2000, 2000 + args.n_test),
                           [10 + v % 3 for v in range(args.n_test)],
                           args.sim_seed)
    model = TransiNetModel.from_training_result(result)
    t2 = time.perf_counter()
    scores = [model.score_image(v.template.image, v.science.image, v.template.variance, v.science.variance,
                                v.science.mask | v.template.mask) for v in test]
    score_seconds = (time.perf_counter() - t2) / max(len(test), 1)
    summary: dict[str, Any] = {"train_seconds_this_run": train_seconds, "epochs": done,
                               "best_epoch": result.best_epoch, "score_seconds_per_visit": score_seconds,
                               "history": result.history, "thresholds": {}}
    for thr in args.thresholds:
        dets = [model.detect(v.template.image, v.science.image, v.template.variance, v.science.variance,
                             v.science.mask | v.template.mask, threshold=thr, wcs=v.wcs,
                             science_psf_sigma=v.science_psf_sigma, template_psf_sigma=v.template_psf_sigma,
                             score=s) for v, s in zip(test, scores)]
        summary["thresholds"][str(thr)] = evaluate_detections(dets, [v.truth for v in test])
        ev = summary["thresholds"][str(thr)]
        _LOG.info("threshold %.2f: %d/%d transients found, %.2f false positives per detector "
                  "(%.2f at artefacts); completeness by |SNR| bin: %s", thr, ev["n_true_positives"],
                  ev["n_true"], ev["false_positives_per_detector"],
                  ev["false_positives_at_artifacts_per_detector"],
                  ", ".join(f"[{b['lo']:g},{b['hi']:g}): {b['n_found']}/{b['n_true']}"
                            for b in ev["completeness"]))
    if args.output:
        ev = summary["thresholds"].get(str(args.threshold))
        metrics = {}
        if ev is not None:
            metrics = {"n_true": ev["n_true"], "n_true_positives": ev["n_true_positives"],
                       "false_positives_per_detector": ev["false_positives_per_detector"]}
        save_transinet_package(result, args.output, threshold=args.threshold, metrics=metrics)
        _LOG.info("Wrote %s", args.output)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(summary, f, indent=1, default=float)
    return summary


if __name__ == "__main__":
    main()
