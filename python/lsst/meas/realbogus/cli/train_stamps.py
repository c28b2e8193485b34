"""Train a real/bogus model from stamp files (no Butler).

Inputs are ``.npz`` files with keys ``stamps`` (N, 3, H, W) in the alert-stamp order science,
template, difference; ``labels`` (N,); and optionally ``groups`` or ``visit`` (used to split
train/validation/test so that no visit is in two splits), ``snr`` and ``type``.  A `StampStore`
directory may be given instead of npz files (for data sets larger than memory).

Outputs: the model package (``--output``), a metrics JSON (``--metrics``, default next to the
package) with validation and test summaries and the training history, and PNG plots in
``--plots-dir``.

Distributed data-parallel training: ``torchrun --nproc_per_node N realbogus_train_stamps.py
--distributed ...``; rank 0 writes the outputs.  ``--batch-size`` is the global batch (a multiple
of N; each process takes ``batch-size / N`` stamps per step), so N processes take the same
optimiser steps as one and train the same model.
"""

from __future__ import annotations

__all__ = ["ALERT_CHANNELS", "build_parser", "convert_npz_to_store", "load_inputs", "main"]

import argparse
import json
import logging
import os
import sys
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

ALERT_CHANNELS = ("science", "template", "difference")
"""Channel order of the stamps in the input npz files (the alert-stamp order)."""

_LOG = logging.getLogger("lsst.meas.realbogus.cli.train_stamps")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser.

    Returns
    -------
    parser : `argparse.ArgumentParser`
        The parser.
    """
    p = make_parser(__doc__)
    p.add_argument("inputs", nargs="+", help="npz stamp files, or one StampStore directory")
    add_output_arguments(p)
    p.add_argument("--plots-dir", default=None, help="directory for PNG plots (none if omitted)")
    p.add_argument(
        "--store-dir",
        default=None,
        help="first stream the npz inputs into a float16 StampStore here (for data sets larger "
        "than memory); train from its memory map",
    )
    p.add_argument("--no-resume", action="store_true", help="ignore an existing checkpoint")
    add_architecture_arguments(p, architecture="rb3_cnn", architecture_kwargs={})
    p.add_argument(
        "--channels", default="template,science,difference", help="comma-separated model channel order"
    )
    p.add_argument("--normalization", default=None, help="JSON dict of NormalizationSpec parameters")
    add_training_loop_arguments(
        p,
        epochs=20,
        batch_size=128,
        lr=1e-3,
        patience=5,
        batch_size_help="global training batch per optimiser step; with --distributed each of the N "
        "processes takes batch-size / N of it (a multiple of N)",
    )
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--class-balance", choices=("weight", "sample", "none"), default="weight")
    p.add_argument("--no-augment", action="store_true", help="disable the 8 rotations/flips")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=(0.7, 0.15, 0.15),
        metavar=("TRAIN", "VAL", "TEST"),
        help="fractions of groups (visits)",
    )
    p.add_argument("--target-purity", type=float, default=0.99)
    add_runtime_arguments(p, model_version="0.1.0")
    p.add_argument("--distributed", action="store_true", help="data-parallel training under torchrun")
    return p


def _read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check one npz stamp file; return stamps, labels and the optional arrays present."""
    out: dict[str, np.ndarray] = {}
    with np.load(path, allow_pickle=False) as data:
        for key in ("stamps", "labels"):
            if key not in data:
                raise ValueError(f"{path} has no {key!r} array (keys: {sorted(data.keys())}).")
        stamps = data["stamps"]
        if stamps.ndim != 4 or stamps.shape[1] != 3 or stamps.shape[2] != stamps.shape[3]:
            raise ValueError(
                f"{path}: stamps must have shape (N, 3, S, S) in the order "
                f"{ALERT_CHANNELS}; got {stamps.shape}."
            )
        n = stamps.shape[0]
        out["stamps"] = stamps
        out["labels"] = np.asarray(data["labels"]).reshape(n)
        group_key = "groups" if "groups" in data else ("visit" if "visit" in data else None)
        for name, key in (("groups", group_key), ("snr", "snr"), ("types", "type")):
            if key is not None and key in data:
                out[name] = np.asarray(data[key]).reshape(n)
    return out


def convert_npz_to_store(paths: Sequence[str], directory: str | Path) -> Any:
    """Stream npz stamp files into a new float16 `StampStore`, one file in memory at a time.

    Parameters
    ----------
    paths : sequence of `str`
        npz files (see the module docstring).
    directory : `str` or `pathlib.Path`
        Directory of the new store.

    Returns
    -------
    store : ``StampStore``
        The store, opened read-only, channels in the alert order.
    """
    from ..stamp_dataset import StampStore

    total, size = 0, None
    for path in paths:
        with np.load(path, allow_pickle=False) as data:
            if "stamps" not in data:
                raise ValueError(f"{path} has no 'stamps' array.")
            shape = data["stamps"].shape
        if len(shape) != 4 or (size is not None and shape[2] != size):
            raise ValueError(f"{path}: stamps of shape {shape} do not match the other inputs.")
        size = shape[2]
        total += shape[0]
    if size is None:
        raise ValueError("no input files given.")
    store = StampStore.create(directory, total, ALERT_CHANNELS, int(size))
    for path in paths:
        part = _read_npz(path)
        store.append(
            part["stamps"],
            part["labels"],
            snr=part.get("snr"),
            groups=part.get("groups"),
            types=part.get("types"),
        )
    return StampStore.open(directory)


def load_inputs(paths: Sequence[str]) -> Any:
    """Load npz stamp files (concatenated) or open one StampStore directory.

    Parameters
    ----------
    paths : sequence of `str`
        npz files or a single store directory.

    Returns
    -------
    source : ``ArrayStampSource`` or ``StampStore``
        The stamps in the alert channel order (npz) or the store's order.
    """
    from ..stamp_dataset import ArrayStampSource, StampStore

    if len(paths) == 1 and Path(paths[0]).is_dir():
        return StampStore.open(paths[0])
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("stamps", "labels", "groups", "snr", "types")}
    has = {"groups": True, "snr": True, "types": True}
    for path in paths:
        if Path(path).is_dir():
            raise ValueError(f"{path} is a directory: give either one StampStore directory or npz files.")
        part = _read_npz(path)
        for name in parts:
            if name in part:
                parts[name].append(part[name])
            else:
                has[name] = False
    sizes = {s.shape[2] for s in parts["stamps"]}
    if len(sizes) != 1:
        raise ValueError(f"input files have different stamp sizes {sorted(sizes)}.")
    cat = {k: np.concatenate(v) for k, v in parts.items() if v and has.get(k, True)}
    return ArrayStampSource(
        cat["stamps"],
        cat["labels"],
        ALERT_CHANNELS,
        snr=cat.get("snr"),
        groups=cat.get("groups"),
        types=cat.get("types"),
    )


def _known_snr(source: Any) -> np.ndarray | None:
    snr = np.asarray(getattr(source, "snr", []), dtype=np.float64)
    return snr if snr.size and np.any(np.isfinite(snr)) else None


def _known_types(source: Any) -> np.ndarray | None:
    types = np.asarray(getattr(source, "types", []))
    return types if types.size and np.any(types.astype(str) != "") else None


def _write_plots(
    plots_dir: Path, source: Any, scores: np.ndarray, labels: np.ndarray, threshold: float, prefix: str
) -> list[str]:
    from .. import plots

    plots_dir.mkdir(parents=True, exist_ok=True)
    figures = {
        "roc": plots.plot_roc(scores, labels),
        "roc_logfpr": plots.plot_roc(scores, labels, log_fpr=True),
        "score_hist": plots.plot_score_histograms(scores, labels, threshold=threshold),
        "reliability": plots.plot_reliability_diagram(scores, labels),
    }
    snr = np.asarray(getattr(source, "snr", np.full(labels.size, np.nan)), dtype=np.float64)
    if np.any(np.isfinite(snr) & (labels == 1)):
        ok = np.isfinite(snr)
        figures["completeness_snr"] = plots.plot_completeness_vs_snr(
            scores[ok], labels[ok], snr[ok], threshold
        )
    n_show = 5
    worst = np.r_[
        np.nonzero(labels == 0)[0][np.argsort(-scores[labels == 0])][:n_show],
        np.nonzero(labels == 1)[0][np.argsort(scores[labels == 1])][:n_show],
    ]
    figures["worst"] = plots.plot_worst_examples(
        source.read(worst), scores[worst], labels[worst], channels=source.channels, n=n_show
    )
    written = []
    for name, fig in figures.items():
        path = plots_dir / f"{prefix}{name}.png"
        path.write_bytes(plots.figure_to_png_bytes(fig))
        written.append(str(path))
    return written


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
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    from .. import metrics
    from ..model_package import save_model_package
    from ..normalization import NormalizationSpec
    from ..stamp_dataset import IndexedStampSource
    from ..training import TrainingConfig, init_distributed, predict_scores, split_by_group, train_classifier

    rank, world = (0, 1)
    if args.distributed:
        rank, world = init_distributed(args.device)
        if args.device.startswith("cuda") and args.device == "cuda":
            args.device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    try:
        arch_kwargs = parse_json_object(args.architecture_kwargs, "--architecture-kwargs")
        spec = NormalizationSpec.from_dict(json.loads(args.normalization)) if args.normalization else None
        channels = tuple(c.strip() for c in args.channels.split(",") if c.strip())
        if args.store_dir and not (len(args.inputs) == 1 and Path(args.inputs[0]).is_dir()):
            if rank == 0 and not (Path(args.store_dir) / "store.json").exists():
                convert_npz_to_store(args.inputs, args.store_dir)
            if world > 1:
                import torch.distributed as dist

                dist.barrier()
            source = load_inputs([args.store_dir])
        else:
            source = load_inputs(args.inputs)
        missing = [c for c in channels if c not in source.channels]
        if missing:
            raise ValueError(f"model channels {missing} are not among the input channels {source.channels}.")
        groups = np.asarray(source.groups)
        if np.all(groups == -1):
            _LOG.warning("No groups/visit in the inputs: splitting candidates individually.")
            groups = np.arange(len(source))
        train_idx, val_idx, test_idx = split_by_group(groups, args.split, seed=args.seed)
        config = TrainingConfig(
            architecture=args.architecture,
            architecture_kwargs=arch_kwargs,
            channels=channels,
            cutout_size=int(source.size),
            normalization=spec,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            lr_schedule=args.lr_schedule,
            weight_decay=args.weight_decay,
            class_balance=args.class_balance,
            augment=not args.no_augment,
            occlusion_probability=args.occlusion,
            patience=args.patience,
            seed=args.seed,
            target_purity=args.target_purity,
            num_threads=args.num_threads,
            device=args.device,
            version=args.model_version,
        )
        train_src = IndexedStampSource(source, train_idx)
        val_src = IndexedStampSource(source, val_idx)
        _LOG.info(
            "Training on %d candidates, validating on %d, testing on %d (%d processes).",
            len(train_idx),
            len(val_idx),
            len(test_idx),
            world,
        )
        result = train_classifier(
            train_src, val_src, config, checkpoint_dir=args.checkpoint_dir, resume=not args.no_resume
        )
        if rank != 0:
            return 0
        meta = result.metadata
        report: dict[str, Any] = {
            "inputs": [str(p) for p in args.inputs],
            "n_train": int(len(train_idx)),
            "n_val": int(len(val_idx)),
            "n_test": int(len(test_idx)),
            "validation": metrics.summarize(
                result.val_scores,
                result.val_labels,
                snr=_known_snr(val_src),
                types=_known_types(val_src),
                threshold=meta.threshold,
                target_purity=args.target_purity,
            ),
            "history": result.history,
        }
        plots_dir = Path(args.plots_dir) if args.plots_dir else None
        test_labels = np.asarray(source.labels)[test_idx].astype(int) if len(test_idx) else np.zeros(0, int)
        if len(test_idx) and 0 < test_labels.sum() < test_labels.size:
            test_src = IndexedStampSource(source, test_idx)
            test_scores = predict_scores(
                result.module,
                test_src,
                channels,
                config.normalization if config.normalization is not None else NormalizationSpec(),
                device=args.device,
            )
            report["test"] = metrics.summarize(
                test_scores,
                test_labels,
                snr=_known_snr(test_src),
                types=_known_types(test_src),
                threshold=meta.threshold,
                target_purity=args.target_purity,
            )
            if plots_dir is not None:
                report["plots"] = _write_plots(
                    plots_dir, test_src, test_scores, test_labels, meta.threshold, "test_"
                )
        elif plots_dir is not None:
            _LOG.warning("Test split lacks one class; plotting the validation set instead.")
            report["plots"] = _write_plots(
                plots_dir,
                val_src,
                result.val_scores.astype(np.float64),
                result.val_labels,
                meta.threshold,
                "val_",
            )
        output = Path(args.output)
        output.parent.mkdir(parents=True, exist_ok=True)
        save_model_package(output, result.module, meta)
        metrics_file = metrics_path(args.metrics, output)
        metrics_file.write_text(json.dumps(metrics.to_jsonable(report), indent=1, allow_nan=False))
        _LOG.info("Wrote %s and %s.", output, metrics_file)
        return 0
    finally:
        if args.distributed:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
