"""The demo main job (console script ``realbogus-demo``).

1. Simulate a small LSST-like survey into a local SQLite Butler repository (``--repo``).
2. Run the SimulatedAP pipeline with ``pipetask run`` as a real subprocess.
3. Read the outputs back through the Butler and print a summary: visits, detectors,
   diaSources, how many match truth, detection completeness vs truth SNR, and (when the
   pipeline produced ``dia_source_reliability``) the reliability of real and bogus sources,
   with purity and completeness at the model's threshold by diaSource SNR.

The reliability step uses the default model shipped in the package, or the model package given
with ``--model``, which is stored in the repository (``realbogus-ingest-model``) and found by
collection (``-i SimCam/sim,pretrained_models``).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_OUTPUT",
    "build_parser",
    "find_pipetask",
    "ingest_demo_model",
    "main",
    "reliability_by_snr",
    "run_pipetask",
    "summarize_outputs",
]

import argparse
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .make_sim_repo import add_simulation_arguments, make_repo_from_args

_LOG = logging.getLogger("lsst.meas.realbogus.cli.demo")

DEFAULT_OUTPUT = "demo/run"
"""Default output CHAINED collection of the demo."""

SIM_RUN = "SimCam/sim"
SNR_BINS = (3.0, 5.0, 7.0, 10.0, 15.0, 20.0, 50.0, 100.0, np.inf)
RELIABILITY_SNR_BINS = (0.0, 5.0, 7.0, 10.0, 15.0, 20.0, 50.0, 100.0, np.inf)
"""Bins of the diaSources' measured |SNR| for purity and completeness at the model threshold."""


def default_pipeline() -> str:
    """Return the path of the installed ``SimulatedAP.yaml``."""
    return str(resources.files("lsst.meas.realbogus") / "pipelines" / "SimulatedAP.yaml")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `main`."""
    parser = argparse.ArgumentParser(
        prog="realbogus-demo",
        description="Simulate visits into a local Butler repo, run the SimulatedAP pipeline with "
        "pipetask, and summarise diaSources against truth.",
    )
    parser.add_argument("--repo", default="demo_repo", help="repository directory (default %(default)s)")
    add_simulation_arguments(parser)
    parser.add_argument(
        "--pipeline", default=None, help="pipeline YAML (default: the package's pipelines/SimulatedAP.yaml)"
    )
    parser.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        help="output CHAINED collection (default %(default)s); each run adds a new RUN",
    )
    parser.add_argument(
        "--model",
        default=None,
        help="model package (.safetensors) for the reliability step: stored in the repository "
        "(RUN models/<version>-<sha>, chain pretrained_models) and found by collection; "
        "default: the model shipped in the package",
    )
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="reuse an existing repository's simulated inputs instead of simulating",
    )
    return parser


def find_pipetask() -> list[str]:
    """Return the command that starts ``pipetask`` for this interpreter.

    Returns
    -------
    command : `list` [`str`]
        The ``pipetask`` script next to `sys.executable` (the virtual environment's), else the
        one on ``PATH``.

    Raises
    ------
    FileNotFoundError
        Raised if no ``pipetask`` can be found.
    """
    candidate = Path(sys.executable).parent / "pipetask"
    if candidate.exists():
        return [str(candidate)]
    found = shutil.which("pipetask")
    if found:
        return [found]
    raise FileNotFoundError(f"no pipetask next to {sys.executable} or on PATH; install lsst-ctrl-mpexec")


def run_pipetask(
    repo: str,
    pipeline: str,
    output: str,
    processes: int = 1,
    inputs: str = SIM_RUN,
    extra: Sequence[str] = (),
) -> None:
    """Run ``pipetask run`` on the repository as a subprocess.

    Parameters
    ----------
    repo : `str`
        Repository root.
    pipeline : `str`
        Pipeline YAML path or URI.
    output : `str`
        Output CHAINED collection.
    processes : `int`, optional
        ``-j`` value.
    inputs : `str`, optional
        Input collection.
    extra : sequence of `str`, optional
        Further pipetask arguments.

    Raises
    ------
    RuntimeError
        Raised if pipetask fails (its exit status is in the message).
    """
    command = [
        *find_pipetask(),
        "run",
        "-b",
        repo,
        "-i",
        inputs,
        "-o",
        output,
        "-p",
        pipeline,
        "--register-dataset-types",
        "-j",
        str(processes),
        *extra,
    ]
    _LOG.info("Running: %s", " ".join(command))
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    result = subprocess.run(command, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"pipetask failed with exit status {result.returncode}: {' '.join(command)}")


def _has_datasets(butler: Any, name: str, collection: str) -> bool:
    """Return whether ``collection`` holds any dataset of type ``name``."""
    from lsst.daf.butler import MissingCollectionError, MissingDatasetTypeError

    try:
        return bool(butler.query_datasets(name, collections=collection, explain=False, limit=1))
    except (MissingDatasetTypeError, MissingCollectionError):
        return False


def summarize_outputs(repo: str, output: str) -> dict[str, Any]:
    """Read the pipeline outputs and compare them with truth.

    Parameters
    ----------
    repo : `str`
        Repository root.
    output : `str`
        Output collection of the pipeline run.

    Returns
    -------
    summary : `dict`
        ``visits``, ``detectors``, ``n_dia_sources``, ``n_positive``, ``n_negative``, ``n_real``,
        ``n_transients``, ``n_transients_detected``, ``completeness`` (from
        `lsst.meas.realbogus.metrics.completeness_vs_snr`, by truth SNR) and, if present,
        ``reliability`` (median reliability of real and bogus diaSources).
    """
    from lsst.daf.butler import Butler

    from ..metrics import completeness_vs_snr, roc_auc

    butler = Butler.from_config(repo, collections=[output])
    refs = butler.query_datasets("dia_source_unstandardized", collections=output, explain=False, limit=None)
    if not refs:
        raise RuntimeError(f"no dia_source_unstandardized datasets in {output!r}")
    has_matches = _has_datasets(butler, "dia_source_truth_match", output)
    has_reliability = _has_datasets(butler, "dia_source_reliability", output)
    visits, detectors = set(), set()
    n_sources = n_negative = n_real = 0
    truth_snr, truth_found = [], []
    real_scores, bogus_scores = [], []
    real_snr, bogus_snr = [], []
    thresholds: set[float] = set()
    for ref in refs:
        data_id = ref.dataId
        visits.add(int(data_id["visit"]))
        detectors.add(int(data_id["detector"]))
        sources = butler.get(ref)
        n_sources += len(sources)
        n_negative += int(np.count_nonzero(sources["is_negative"])) if len(sources) else 0
        truth = butler.get("truth_transients", data_id)
        transient = np.asarray(truth["category"]).astype(str) == "transient"
        found = np.zeros(len(truth), dtype=bool)
        if has_matches:
            matches = butler.get("dia_source_truth_match", data_id)
            real = np.asarray(matches["is_real"], dtype=bool)
            n_real += int(real.sum())
            found = np.isin(np.asarray(truth["id"]), np.asarray(matches["truth_id"])[real])
            if has_reliability:
                scored = butler.get("dia_source_reliability", data_id)
                # RBTransiNetTask writes id, score (reliability), threshold, ... per diaSource.
                score_by_id = dict(zip(np.asarray(scored["id"]).tolist(), np.asarray(scored["score"])))
                if len(scored) and "threshold" in scored.colnames:
                    thresholds.add(float(scored["threshold"][0]))
                score = np.array([score_by_id.get(i, np.nan) for i in np.asarray(matches["id"]).tolist()])
                real_scores.extend(score[real])
                bogus_scores.extend(score[~real])
                snr_by_id = dict(zip(np.asarray(sources["id"]).tolist(), np.abs(np.asarray(sources["snr"]))))
                snr = np.array([snr_by_id.get(i, np.nan) for i in np.asarray(matches["id"]).tolist()])
                real_snr.extend(snr[real])
                bogus_snr.extend(snr[~real])
        truth_snr.extend(np.abs(np.asarray(truth["snr"], dtype=np.float64)[transient]))
        truth_found.extend(found[transient])
    truth_snr_arr = np.asarray(truth_snr, dtype=np.float64)
    truth_found_arr = np.asarray(truth_found, dtype=bool)
    summary: dict[str, Any] = {
        "visits": sorted(visits),
        "detectors": sorted(detectors),
        "n_dia_sources": n_sources,
        "n_positive": n_sources - n_negative,
        "n_negative": n_negative,
        "n_real": n_real if has_matches else None,
        "n_transients": int(len(truth_snr_arr)),
        "n_transients_detected": int(truth_found_arr.sum()),
    }
    if len(truth_snr_arr):
        summary["completeness"] = completeness_vs_snr(
            truth_found_arr.astype(np.float64),
            np.ones(len(truth_snr_arr), dtype=int),
            truth_snr_arr,
            threshold=0.5,
            bins=SNR_BINS,
        )
    if has_reliability:
        real_arr = np.asarray(real_scores, dtype=np.float64)
        bogus_arr = np.asarray(bogus_scores, dtype=np.float64)
        reliability: dict[str, Any] = {
            "real_median": float(np.nanmedian(real_arr)) if np.isfinite(real_arr).any() else float("nan"),
            "bogus_median": float(np.nanmedian(bogus_arr)) if np.isfinite(bogus_arr).any() else float("nan"),
            "n_unscored": int(
                np.count_nonzero(~np.isfinite(real_arr)) + np.count_nonzero(~np.isfinite(bogus_arr))
            ),
        }
        if len(thresholds) == 1:
            threshold = thresholds.pop()
            n_real_kept = int(np.count_nonzero(real_arr >= threshold))
            n_kept = n_real_kept + int(np.count_nonzero(bogus_arr >= threshold))
            reliability["threshold"] = threshold
            reliability["completeness"] = n_real_kept / len(real_arr) if len(real_arr) else float("nan")
            reliability["purity"] = n_real_kept / n_kept if n_kept else float("nan")
            reliability["by_snr"] = reliability_by_snr(
                real_arr,
                bogus_arr,
                np.asarray(real_snr, dtype=np.float64),
                np.asarray(bogus_snr, dtype=np.float64),
                threshold,
            )
        scores = np.concatenate([real_arr, bogus_arr])
        labels = np.concatenate([np.ones(len(real_arr), int), np.zeros(len(bogus_arr), int)])
        finite = np.isfinite(scores)
        if len(np.unique(labels[finite])) == 2:
            reliability["roc_auc"] = roc_auc(scores[finite], labels[finite])
        summary["reliability"] = reliability
    return summary


def reliability_by_snr(
    real_scores: np.ndarray,
    bogus_scores: np.ndarray,
    real_snr: np.ndarray,
    bogus_snr: np.ndarray,
    threshold: float,
    bins: Sequence[float] = RELIABILITY_SNR_BINS,
) -> dict[str, list[float]]:
    """Purity and completeness of the reliability cut in bins of diaSource SNR.

    Parameters
    ----------
    real_scores, bogus_scores : `numpy.ndarray`
        Reliabilities of the diaSources matched to a truth transient (real) and of the others.
        Unscored (NaN) sources count as rejected.
    real_snr, bogus_snr : `numpy.ndarray`
        Measured |SNR| of the same diaSources.
    threshold : `float`
        Reliability cut (sources with score >= threshold are kept).
    bins : sequence of `float`, optional
        SNR bin edges.

    Returns
    -------
    table : `dict` [`str`, `list`]
        Per bin: ``bin_low``, ``bin_high``, ``n_real``, ``n_bogus``, ``n_real_kept``,
        ``n_bogus_kept``, ``completeness`` (real kept / real) and ``purity`` (real kept / kept),
        NaN where undefined.
    """
    edges = np.asarray(bins, dtype=np.float64)
    real_kept = np.asarray(real_scores, dtype=np.float64) >= threshold
    bogus_kept = np.asarray(bogus_scores, dtype=np.float64) >= threshold
    table: dict[str, list[float]] = {
        k: []
        for k in (
            "bin_low",
            "bin_high",
            "n_real",
            "n_bogus",
            "n_real_kept",
            "n_bogus_kept",
            "completeness",
            "purity",
        )
    }
    for low, high in zip(edges[:-1], edges[1:]):
        in_real = (real_snr >= low) & (real_snr < high)
        in_bogus = (bogus_snr >= low) & (bogus_snr < high)
        n_real, n_bogus = int(in_real.sum()), int(in_bogus.sum())
        n_real_kept, n_bogus_kept = int((in_real & real_kept).sum()), int((in_bogus & bogus_kept).sum())
        table["bin_low"].append(float(low))
        table["bin_high"].append(float(high))
        table["n_real"].append(n_real)
        table["n_bogus"].append(n_bogus)
        table["n_real_kept"].append(n_real_kept)
        table["n_bogus_kept"].append(n_bogus_kept)
        table["completeness"].append(n_real_kept / n_real if n_real else float("nan"))
        kept = n_real_kept + n_bogus_kept
        table["purity"].append(n_real_kept / kept if kept else float("nan"))
    return table


def ingest_demo_model(repo: str, path: str | os.PathLike[str]) -> str:
    """Store a model package in the demo repository (once) and put it at the head of
    ``pretrained_models``.

    Parameters
    ----------
    repo : `str`
        Repository root.
    path : `str` or `os.PathLike`
        Model package file.

    Returns
    -------
    run : `str`
        The model's RUN collection, ``models/<version>-<first 8 hex digits of the weights sha256>``.
    """
    from lsst.daf.butler import Butler, CollectionType

    from ..butler.ingest_model import DEFAULT_CHAIN, MODEL_DATASET_TYPE, ingest_model_package, model_run_name
    from ..model_package import read_model_package

    package = read_model_package(path)
    name = f"{package.metadata.version}-{package.metadata.weights_sha256[:8]}"
    run = model_run_name(name)
    butler = Butler.from_config(repo, writeable=True)
    if _has_datasets(butler, MODEL_DATASET_TYPE, run):
        butler.registry.registerCollection(DEFAULT_CHAIN, CollectionType.CHAINED)
        members = [c for c in butler.registry.getCollectionChain(DEFAULT_CHAIN) if c != run]
        butler.registry.setCollectionChain(DEFAULT_CHAIN, [run, *members])
        _LOG.info("Model %r is already in %s; using it.", package.metadata.version, run)
    else:
        ingest_model_package(butler, package, name)
        _LOG.info("Stored model %r from %s in %s.", package.metadata.version, path, run)
    return run


def print_summary(summary: dict[str, Any], timings: dict[str, float]) -> None:
    """Print the demo summary table to standard output."""
    print()
    print("meas_realbogus demo summary")
    print("===========================")
    print(f"visits                : {len(summary['visits'])} {summary['visits']}")
    print(f"detectors             : {len(summary['detectors'])} {summary['detectors']}")
    print(
        f"diaSources            : {summary['n_dia_sources']} "
        f"({summary['n_positive']} positive, {summary['n_negative']} negative)"
    )
    if summary["n_real"] is not None:
        n = max(summary["n_dia_sources"], 1)
        n_bogus = summary["n_dia_sources"] - summary["n_real"]
        print(
            f"matched to transients : {summary['n_real']} real, {n_bogus} bogus "
            f"({summary['n_real'] / n:.1%} real)"
        )
    print(f"truth transients      : {summary['n_transients']}, detected {summary['n_transients_detected']}")
    completeness = summary.get("completeness")
    if completeness:
        print()
        print("detection completeness vs truth SNR")
        print(f"  {'SNR bin':>14}  {'n':>5}  {'found':>5}  completeness")
        for low, high, n, found, c, err in zip(
            completeness["bin_low"],
            completeness["bin_high"],
            completeness["n"],
            completeness["n_selected"],
            completeness["completeness"],
            completeness["completeness_err"],
        ):
            label = f"[{low:g}, {high:g})"
            value = "   -" if not n else f"{c:6.1%} ± {err:.1%}"
            print(f"  {label:>14}  {int(n):5d}  {int(found):5d}  {value}")
    reliability = summary.get("reliability")
    if reliability:
        print()
        print(
            f"median reliability    : real {reliability['real_median']:.3f}, "
            f"bogus {reliability['bogus_median']:.3f} ({reliability['n_unscored']} unscorable)"
        )
        if "roc_auc" in reliability:
            print(f"ROC AUC               : {reliability['roc_auc']:.4f}")
        if "threshold" in reliability:
            print(
                f"at threshold {reliability['threshold']:.3f}    : completeness "
                f"{reliability['completeness']:.1%}, purity {reliability['purity']:.1%}"
            )
        by_snr = reliability.get("by_snr")
        if by_snr:
            print()
            print(
                f"reliability >= {reliability['threshold']:.3f} vs diaSource |SNR| "
                "(real: matched to a truth transient)"
            )
            print(f"  {'SNR bin':>14}  {'real':>5}  {'bogus':>5}  {'kept':>5}  completeness  purity")
            for i in range(len(by_snr["bin_low"])):
                n_real, n_bogus = by_snr["n_real"][i], by_snr["n_bogus"][i]
                if not n_real and not n_bogus:
                    continue
                label = f"[{by_snr['bin_low'][i]:g}, {by_snr['bin_high'][i]:g})"
                kept = by_snr["n_real_kept"][i] + by_snr["n_bogus_kept"][i]
                completeness = "     -" if not n_real else f"{by_snr['completeness'][i]:6.1%}"
                purity = "     -" if not kept else f"{by_snr['purity'][i]:6.1%}"
                print(f"  {label:>14}  {n_real:5d}  {n_bogus:5d}  {kept:5d}  {completeness:>12}  {purity:>6}")
    print()
    print("timings               : " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo.

    Parameters
    ----------
    argv : sequence of `str`, optional
        Command-line arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    status : `int`
        Exit status (0 on success).
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lsst.meas.realbogus").setLevel(logging.INFO)
    if args.processes < 1:
        raise SystemExit("-j must be at least 1")  # used by the simulation and by pipetask
    repo = str(Path(args.repo).resolve())
    pipeline = args.pipeline or default_pipeline()
    timings: dict[str, float] = {}
    start = time.perf_counter()
    if args.reuse:
        if not (Path(repo) / "butler.yaml").exists():
            raise SystemExit(f"--reuse: {repo} is not a Butler repository")
        _LOG.info("Reusing the simulated inputs of %s.", repo)
    else:
        if (Path(repo) / "butler.yaml").exists() and not args.clobber:
            raise SystemExit(
                f"{repo} already exists: use --clobber to replace it or --reuse to keep its inputs"
            )
        _LOG.info(
            "Simulating %d visits x %d detectors of %d x %d pixels into %s.",
            args.visits,
            args.detectors,
            args.size,
            args.size,
            repo,
        )
        make_repo_from_args(args, repo, run=SIM_RUN)
        timings["simulation"] = time.perf_counter() - start
    inputs, extra = SIM_RUN, []
    if args.model is not None:
        # The model is a Butler dataset found by collection, as in production.
        ingest_demo_model(repo, args.model)
        inputs = f"{SIM_RUN},pretrained_models"
        extra = ["-c", "rbTransiNet:modelSource=butler"]
    elif args.pipeline is None:
        from ..scoring import DEFAULT_MODEL_PATH

        if not DEFAULT_MODEL_PATH.exists():
            _LOG.warning(
                "The default real/bogus model %s is not installed and no --model was given: running "
                "without the reliability step.",
                DEFAULT_MODEL_PATH,
            )
            pipeline = f"{pipeline}#diffim,truth"
    step = time.perf_counter()
    run_pipetask(repo, pipeline, args.output, processes=args.processes, inputs=inputs, extra=extra)
    timings["pipetask"] = time.perf_counter() - step
    step = time.perf_counter()
    summary = summarize_outputs(repo, args.output)
    timings["summary"] = time.perf_counter() - step
    timings["total"] = time.perf_counter() - start
    print_summary(summary, timings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
