"""Command-line pieces shared by the training commands.

The training commands (``realbogus_train_stamps.py``, ``realbogus_train_default.py``) take the
same output, architecture, training-loop and runtime options; the functions here add them to a
parser with the defaults of each command, so that names, types and help texts agree.
"""

from __future__ import annotations

__all__ = [
    "add_architecture_arguments",
    "add_output_arguments",
    "add_runtime_arguments",
    "add_training_loop_arguments",
    "make_parser",
    "metrics_path",
    "parse_json_object",
    "setup_logging",
]

import argparse
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def make_parser(doc: str) -> argparse.ArgumentParser:
    """Return a parser described by the first paragraph of a module docstring.

    Parameters
    ----------
    doc : `str`
        The command's module docstring.

    Returns
    -------
    parser : `argparse.ArgumentParser`
        The parser; its help shows the defaults.
    """
    return argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )


def add_output_arguments(parser: argparse.ArgumentParser, *, default: str | None = None) -> None:
    """Add ``--output`` (the model package) and ``--metrics`` (the metrics JSON).

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The parser.
    default : `str`, optional
        Default of ``--output``; without one the option is required.
    """
    help_text = "model package to write (.safetensors)"
    if default is None:
        parser.add_argument("--output", required=True, help=help_text)
    else:
        parser.add_argument("--output", default=default, help=help_text)
    parser.add_argument("--metrics", default=None, help="metrics JSON to write (default: OUTPUT with .json)")


def add_architecture_arguments(
    parser: argparse.ArgumentParser, *, architecture: str, architecture_kwargs: Mapping[str, Any]
) -> None:
    """Add ``--architecture`` and ``--architecture-kwargs`` (a JSON object).

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The parser.
    architecture : `str`
        Default architecture registry name.
    architecture_kwargs : `~collections.abc.Mapping`
        Default architecture arguments (the option's default is their JSON text).
    """
    parser.add_argument("--architecture", default=architecture, help="architecture registry name")
    parser.add_argument(
        "--architecture-kwargs",
        default=json.dumps(dict(architecture_kwargs)),
        help="JSON object of architecture arguments",
    )


def add_training_loop_arguments(
    parser: argparse.ArgumentParser,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    patience: int,
    batch_size_help: str = "training batch size",
    lr_schedule: str = "constant",
    occlusion_probability: float = 0.0,
) -> None:
    """Add ``--epochs``, ``--batch-size``, ``--lr``, ``--lr-schedule``, ``--patience`` and ``--occlusion``.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The parser.
    epochs, batch_size, lr, patience : `int` or `float`
        Defaults: maximum epochs, batch size, AdamW learning rate, early-stopping patience.
    batch_size_help : `str`, optional
        Help of ``--batch-size`` (e.g. whether it is per process).
    lr_schedule : `str`, optional
        Default learning-rate schedule (``constant`` or ``cosine``).
    occlusion_probability : `float`, optional
        Default fraction of training stamps given random missing-pixel blocks or lines.
    """
    parser.add_argument("--epochs", type=int, default=epochs, help="maximum training epochs")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=batch_size_help)
    parser.add_argument("--lr", type=float, default=lr, help="AdamW learning rate")
    parser.add_argument(
        "--lr-schedule",
        choices=("constant", "cosine"),
        default=lr_schedule,
        help="learning-rate schedule (cosine: decay over --epochs to 2%% of --lr)",
    )
    parser.add_argument("--patience", type=int, default=patience, help="early-stopping patience in epochs")
    parser.add_argument(
        "--occlusion",
        type=float,
        default=occlusion_probability,
        metavar="P",
        help="fraction of training stamps given a random block or line of missing pixels away from the "
        "centre (0 turns it off)",
    )


def add_runtime_arguments(parser: argparse.ArgumentParser, *, model_version: str) -> None:
    """Add ``--model-version``, ``--num-threads``, ``--device``, ``--checkpoint-dir`` and ``--log-level``.

    Parameters
    ----------
    parser : `argparse.ArgumentParser`
        The parser.
    model_version : `str`
        Default version string of the model written.
    """
    parser.add_argument("--model-version", default=model_version,
                        help="version string of the model (at most 7 characters)")
    parser.add_argument("--num-threads", type=int, default=1, help="torch intra-op threads for training")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--checkpoint-dir", default=None, help="per-epoch checkpoints; resumes if present")
    parser.add_argument("--log-level", default="INFO")


def parse_json_object(text: str, option: str) -> dict[str, Any]:
    """Parse an option's value as a JSON object.

    Parameters
    ----------
    text : `str`
        The value.
    option : `str`
        The option's name, for the message (e.g. ``"--architecture-kwargs"``).

    Returns
    -------
    value : `dict`
        The object.

    Raises
    ------
    ValueError
        Raised if ``text`` is not JSON (`json.JSONDecodeError`) or not a JSON object.
    """
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"{option} must be a JSON object.")
    return value


def setup_logging(level: str) -> None:
    """Configure the root logger of a command (time, logger name, level, message).

    Parameters
    ----------
    level : `str`
        Level name (any case), e.g. the ``--log-level`` value.
    """
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")


def metrics_path(metrics: str | None, output: Path) -> Path:
    """Return where the metrics JSON goes: ``metrics``, or ``output`` with the suffix ``.json``.

    Parameters
    ----------
    metrics : `str` or `None`
        The ``--metrics`` value.
    output : `pathlib.Path`
        The model package written.

    Returns
    -------
    path : `pathlib.Path`
        The metrics file.
    """
    return Path(metrics) if metrics else output.with_suffix(".json")
