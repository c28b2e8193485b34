"""Command line: create a Butler repository of simulated SimCam visits.

Example::

    python -m lsst.meas.realbogus.cli.make_sim_repo REPO --visits 4 --detectors 2 --size 1024
"""

from __future__ import annotations

__all__ = ["add_simulation_arguments", "build_parser", "main", "make_repo_from_args"]

import argparse
import dataclasses
import logging
import time
from collections.abc import Sequence

_LOG = logging.getLogger("lsst.meas.realbogus.cli.make_sim_repo")


def add_simulation_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the survey-size options shared with ``realbogus-demo``.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        Parser to extend.
    """
    parser.add_argument("--visits", type=int, default=4, help="number of visits (default %(default)s)")
    parser.add_argument("--detectors", type=int, default=2, help="detectors per visit (default %(default)s)")
    parser.add_argument(
        "--size", type=int, default=2048, help="detector width = height in pixels (default %(default)s)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="random seed of the simulation (default %(default)s)"
    )
    parser.add_argument(
        "--first-visit", type=int, default=1, help="id of the first visit (default %(default)s)"
    )
    parser.add_argument("--clobber", action="store_true", help="delete an existing repository first")
    parser.add_argument(
        "-j",
        "--processes",
        type=int,
        default=1,
        help="worker processes of the simulation (and pipetask -j in realbogus-demo; default %(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `main`."""
    parser = argparse.ArgumentParser(
        prog="realbogus_make_sim_repo.py",
        description="Create a SQLite Butler repository of simulated SimCam visits "
        "(preliminary_visit_image, template_detector, truth_transients in collection SimCam/sim).",
    )
    parser.add_argument("repo", help="directory of the new repository")
    add_simulation_arguments(parser)
    parser.add_argument("--run", default="SimCam/sim", help="RUN collection to write (default %(default)s)")
    return parser


def make_repo_from_args(args: argparse.Namespace, repo_root: str, run: str = "SimCam/sim") -> int:
    """Create and fill a repository as requested by parsed arguments.

    Parameters
    ----------
    args : `argparse.Namespace`
        Parsed options of `add_simulation_arguments`.
    repo_root : `str`
        Repository directory.
    run : `str`, optional
        RUN collection of the simulated inputs.

    Returns
    -------
    n_written : `int`
        Number of (visit, detector) pairs written.
    """
    from ..butler.repo import create_sim_repo, ingest_simulated_visits
    from ..simulation import SurveyConfig

    if args.visits < 1 or args.detectors < 1 or args.processes < 1:
        raise SystemExit("--visits, --detectors and -j must be at least 1")
    if args.size < 64:
        raise SystemExit(f"--size must be at least 64 pixels, got {args.size}")
    config = dataclasses.replace(SurveyConfig(), width=args.size, height=args.size)
    start = time.perf_counter()
    butler = create_sim_repo(repo_root, n_detectors=args.detectors, clobber=args.clobber)
    visits = list(range(args.first_visit, args.first_visit + args.visits))
    n_written = ingest_simulated_visits(
        butler, config, visits, list(range(args.detectors)), seed=args.seed, run=run, processes=args.processes
    )
    _LOG.info(
        "Simulated %d visits x %d detectors of %dx%d pixels into %s (%s) in %.1f s.",
        args.visits,
        args.detectors,
        args.size,
        args.size,
        repo_root,
        run,
        time.perf_counter() - start,
    )
    return n_written


def main(argv: Sequence[str] | None = None) -> int:
    """Create a repository of simulated visits.

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
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    make_repo_from_args(args, args.repo, run=args.run)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
