r"""Command line: store a real/bogus model package in a Butler repository (``realbogus-ingest-model``).

Example::

    realbogus-ingest-model demo_repo model.safetensors --name rb3-v1
    pipetask run -b demo_repo -i SimCam/sim,pretrained_models -o u/me/rb \\
        -p $MEAS_REALBOGUS_DIR/pipelines/RealBogus.yaml ...

The model goes to the RUN collection ``models/<name>`` (dataset type ``realbogus_model``) and
that RUN is prepended to the CHAINED collection ``pretrained_models`` (``--chain``), so the
newest ingested model is the one pipelines find.
"""

from __future__ import annotations

__all__ = ["build_parser", "main"]

import argparse
import logging
from collections.abc import Sequence

_LOG = logging.getLogger("lsst.meas.realbogus.cli.ingest_model")


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of `main`.

    Returns
    -------
    parser : `argparse.ArgumentParser`
        The parser.
    """
    from ..butler.ingest_model import DEFAULT_CHAIN, MODEL_DATASET_TYPE

    parser = argparse.ArgumentParser(
        prog="realbogus-ingest-model",
        description="Store a model package (safetensors) as a realbogus_model dataset in RUN models/<name> "
        "and prepend that RUN to a CHAINED collection.",
    )
    parser.add_argument("repo", help="Butler repository (path or URI)")
    parser.add_argument("model", help="model package file (.safetensors)")
    parser.add_argument("--name", default=None,
                        help="model name; RUN collection models/<name> (default: the package's version)")
    parser.add_argument("--chain", default=DEFAULT_CHAIN,
                        help="CHAINED collection to prepend the RUN to (default %(default)s)")
    parser.add_argument("--no-chain", action="store_true", help="do not touch any CHAINED collection")
    parser.add_argument("--dataset-type", default=MODEL_DATASET_TYPE,
                        help="dataset type name (default %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command.

    Parameters
    ----------
    argv : sequence of `str`, optional
        Arguments (default ``sys.argv[1:]``).

    Returns
    -------
    status : `int`
        0 on success, 1 on an expected failure (message on stderr).
    """
    import sys

    from lsst.daf.butler import Butler

    from ..butler.ingest_model import ingest_model_package
    from ..errors import ModelPackageError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        butler = Butler.from_config(args.repo, writeable=True)
        result = ingest_model_package(butler, args.model, args.name,
                                      chain=None if args.no_chain else args.chain,
                                      dataset_type=args.dataset_type)
    except (ModelPackageError, RuntimeError, ValueError, FileNotFoundError) as err:
        print(f"realbogus-ingest-model: error: {err}", file=sys.stderr)
        return 1
    print(f"Stored model {result.version!r} (weights sha256 {result.weights_sha256[:12]}...) as "
          f"{result.ref.datasetType.name} {result.ref.id} in RUN {result.run}.")
    if result.chain is not None:
        print(f"{result.chain} -> {', '.join(result.chain_members)}")
    return 0
