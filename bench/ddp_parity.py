"""Measure data-parallel parity: train the shipped model's settings on 1 and on 2 processes.

The same `~lsst.meas.realbogus.training.TrainingConfig` as the shipped default model
(``training_config(build_parser().parse_args([]))`` of `lsst.meas.realbogus.cli.train_default`)
is trained twice from an existing float16 `~lsst.meas.realbogus.stamp_dataset.StampStore`, split
by visit like ``realbogus_train_default.py`` (``DEFAULT_SPLIT``, `split_by_group`): once in this
process, and once data-parallel on ``--processes`` CPU processes joined by a gloo process group
(`lsst.meas.realbogus.testing.distributed.run_data_parallel`: file rendezvous, gloo on the
loopback interface, nothing listens on an external address).  ``batch_size`` is the global batch,
so both runs take the same optimiser steps.  A table gives, per run, the processes, the global and
per-process batch, the epochs run, the best epoch, the validation AUC of the returned (best-epoch)
model and the wall time, then the AUC difference with PASS/FAIL against ``--tolerance``.

Command (the numbers in ``doc/training.rst``)::

    nice -n 10 .venv/bin/python bench/ddp_parity.py work_data/store_v2/store --json ddp_parity.json

Shorter runs: ``--epochs 3 --max-candidates 5000``.  Each process uses ``--num-threads`` torch
threads (default 1, the shipped setting), so the 2-process run needs 2 cores to be faster.
"""

from __future__ import annotations

__all__ = ["build_parser", "format_table", "main", "train_once"]

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser.

    Returns
    -------
    parser : `argparse.ArgumentParser`
        The parser.
    """
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    p.add_argument("store", help="StampStore directory (e.g. the training store of the shipped model)")
    p.add_argument("--processes", type=int, default=2, help="processes of the data-parallel run")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (default: the shipped setting)")
    p.add_argument("--batch-size", type=int, default=None, help="global batch (default: the shipped setting)")
    p.add_argument("--num-threads", type=int, default=1, help="torch threads per process")
    p.add_argument(
        "--max-candidates",
        type=int,
        default=None,
        help="use a random subset of at most this many candidates (after the split by visit)",
    )
    p.add_argument("--tolerance", type=float, default=0.002, help="allowed |AUC difference|")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--log-level", default="WARNING", help="log level of the training loop")
    return p


def _config(args: argparse.Namespace) -> Any:
    from lsst.meas.realbogus.cli import train_default

    config = train_default.training_config(train_default.build_parser().parse_args([]))
    changes: dict[str, Any] = {"num_threads": args.num_threads, "device": "cpu"}
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size
    return dataclasses.replace(config, **changes)


def _splits(store: Any, seed: int, max_candidates: int | None) -> tuple[np.ndarray, np.ndarray]:
    from lsst.meas.realbogus.cli.train_default import DEFAULT_SPLIT
    from lsst.meas.realbogus.training import split_by_group

    train_idx, val_idx, _ = split_by_group(store.groups, DEFAULT_SPLIT, seed=seed)
    total = train_idx.size + val_idx.size
    if max_candidates is not None and max_candidates < total:
        rng = np.random.default_rng(seed)
        keep = max_candidates / total
        train_idx = np.sort(rng.choice(train_idx, max(1, round(keep * train_idx.size)), replace=False))
        val_idx = np.sort(rng.choice(val_idx, max(1, round(keep * val_idx.size)), replace=False))
    return train_idx, val_idx


def train_once(rank: int, world_size: int, store_dir: str, args_dict: dict[str, Any]) -> dict[str, Any]:
    """Train the configuration once in this process (one rank of a data-parallel run, or alone).

    Parameters
    ----------
    rank, world_size : `int`
        This process's rank and the number of processes (``torch.distributed`` is initialised
        when ``world_size > 1``).
    store_dir : `str`
        The StampStore directory.
    args_dict : `dict`
        The parsed command-line arguments.

    Returns
    -------
    result : `dict`
        JSON-serialisable results: sizes, history, AUC, wall time, validation scores.
    """
    from lsst.meas.realbogus.stamp_dataset import IndexedStampSource, StampStore
    from lsst.meas.realbogus.training import local_batch_size, train_classifier

    args = argparse.Namespace(**args_dict)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s rank %(process)d %(message)s")
    config = _config(args)
    store = StampStore.open(store_dir)
    train_idx, val_idx = _splits(store, config.seed, args.max_candidates)
    t0 = time.perf_counter()
    result = train_classifier(
        IndexedStampSource(store, train_idx), IndexedStampSource(store, val_idx), config
    )
    seconds = time.perf_counter() - t0
    return {
        "processes": world_size,
        "global_batch": config.batch_size,
        "local_batch": local_batch_size(config.batch_size, world_size),
        "n_train": int(train_idx.size),
        "n_val": int(val_idx.size),
        "epochs_run": len(result.history),
        "best_epoch": int(result.metadata.training["best_epoch"]),
        "auc": float(result.metadata.metrics["auc"]),
        "max_epoch_auc": max(float(h["val_auc"]) for h in result.history),
        "seconds": seconds,
        "history": result.history,
        "val_scores": result.val_scores.astype(float).tolist() if rank == 0 else [],
    }


def format_table(runs: Sequence[dict[str, Any]], tolerance: float) -> str:
    """Format the results as a text table with the AUC difference and its verdict.

    Parameters
    ----------
    runs : sequence of `dict`
        `train_once` results: single-process first, then the data-parallel run.
    tolerance : `float`
        Allowed absolute AUC difference.

    Returns
    -------
    table : `str`
        The table.
    """
    head = (
        f"{'mode':<15} {'processes':>9} {'global batch':>12} {'per process':>11} {'epochs run':>10} "
        f"{'best epoch':>10} {'best val AUC':>12} {'wall s':>8}"
    )
    lines = [head, "-" * len(head)]
    for run, name in zip(runs, ("single-process", "data-parallel"), strict=True):
        lines.append(
            f"{name:<15} {run['processes']:>9d} {run['global_batch']:>12d} {run['local_batch']:>11d} "
            f"{run['epochs_run']:>10d} {run['best_epoch']:>10d} {run['auc']:>12.4f} {run['seconds']:>8.0f}"
        )
    diff = runs[1]["auc"] - runs[0]["auc"]
    verdict = "PASS" if abs(diff) <= tolerance else "FAIL"
    lines.append(f"AUC difference (data-parallel - single): {diff:+.4f}  |diff| <= {tolerance:g}: {verdict}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark.

    Parameters
    ----------
    argv : sequence of `str`, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    status : `int`
        0 if the AUC difference is within the tolerance, 1 otherwise.
    """
    import torch
    from lsst.meas.realbogus.testing.distributed import run_data_parallel

    args = build_parser().parse_args(argv)
    if args.processes < 2:
        raise SystemExit("--processes must be at least 2")
    config = _config(args)
    config.validate()
    args_dict = vars(args)
    load_before = os.getloadavg()
    print(
        f"Store {args.store}; {config.architecture} {config.architecture_kwargs}, batch {config.batch_size}, "
        f"at most {config.epochs} epochs, patience {config.patience}, lr {config.lr:g}, "
        f"{args.num_threads} thread(s) per process; {os.cpu_count()} CPUs, load average "
        f"{load_before[0]:.1f}",
        flush=True,
    )
    single = train_once(0, 1, args.store, args_dict)
    print(f"single-process run done in {single['seconds']:.0f} s", flush=True)
    ranks = run_data_parallel(
        train_once, args.processes, (args.store, args_dict), env={"OMP_NUM_THREADS": str(args.num_threads)}
    )
    ddp = ranks[0]
    load_after = os.getloadavg()
    table = format_table([single, ddp], args.tolerance)
    scores_a, scores_b = np.asarray(single["val_scores"]), np.asarray(ddp["val_scores"])
    max_score_diff = float(np.abs(scores_a - scores_b).max()) if scores_a.shape == scores_b.shape else None
    print(table)
    score_diff = "n/a" if max_score_diff is None else f"{max_score_diff:.2g}"
    print(
        f"max |validation score difference| {score_diff}; load average (1 min) "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; {single['n_train']} training and "
        f"{single['n_val']} validation candidates"
    )
    passed = abs(ddp["auc"] - single["auc"]) <= args.tolerance
    if args.json:
        for run in (single, ddp):
            run.pop("val_scores")
        report = {
            "command": sys.argv,
            "config": config.to_dict(),
            "single": single,
            "data_parallel": ddp,
            "auc_difference": ddp["auc"] - single["auc"],
            "max_val_score_difference": max_score_diff,
            "tolerance": args.tolerance,
            "passed": passed,
            "load_average": {"before": load_before, "after": load_after},
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
