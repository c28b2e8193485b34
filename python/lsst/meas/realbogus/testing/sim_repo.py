# This file is part of meas_realbogus.
"""Small simulated SimCam repositories and output comparisons for end-to-end tests."""

from __future__ import annotations

__all__ = (
    "AP_OUTPUT_DATASET_TYPES",
    "assert_same_outputs",
    "make_small_sim_repo",
    "venv_environment",
)

import dataclasses
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from lsst.daf.butler import Butler

AP_OUTPUT_DATASET_TYPES = ("difference_image", "dia_source_unstandardized", "dia_source_truth_match")
"""Output dataset types of ``pipelines/SimulatedAP.yaml``."""


def make_small_sim_repo(
    root: str | os.PathLike[str],
    *,
    visits: Sequence[int] = (1, 2, 3),
    detectors: Sequence[int] = (0, 1),
    size: int = 256,
    seed: int = 3,
    registry_db: str | None = None,
) -> Butler:
    """Create a SimCam repository holding a few small simulated visits.

    Parameters
    ----------
    root : `str` or `os.PathLike`
        Directory of the new repository (must not exist or be empty).
    visits, detectors : `~collections.abc.Sequence` [`int`]
        Data IDs to simulate.
    size : `int`, optional
        Width and height of the detectors in pixels.
    seed : `int`, optional
        Simulation seed.
    registry_db : `str`, optional
        SQLAlchemy URL of the registry database, e.g.
        ``postgresql://user:password@127.0.0.1:5432/butler``; default SQLite
        in ``root``.

    Returns
    -------
    butler : `lsst.daf.butler.Butler`
        Writeable Butler; inputs are in the ``SimCam/sim`` collection.
    """
    from ..butler import SimCam, repo
    from ..simulation import SurveyConfig

    config = repo.make_seed_config()
    if registry_db is not None:
        config["registry", "db"] = registry_db
    Butler.makeRepo(os.fspath(root), config=config)
    butler = Butler.from_config(os.fspath(root), writeable=True)
    SimCam(n_detectors=max(detectors) + 1).register(butler.registry)
    survey = dataclasses.replace(SurveyConfig(), width=size, height=size)
    repo.ingest_simulated_visits(butler, survey, list(visits), list(detectors), seed=seed)
    return butler


def venv_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return an environment in which BPS and pipetask use this interpreter.

    Parameters
    ----------
    base : `~collections.abc.Mapping` [`str`, `str`], optional
        Starting environment (default `os.environ`).

    Returns
    -------
    env : `dict` [`str`, `str`]
        ``base`` with the interpreter's ``bin`` directory first on ``PATH``,
        ``CTRL_MPEXEC_DIR`` and ``DAF_BUTLER_DIR`` set to `sys.prefix` (as
        the submit YAML of ``bps/`` expects without EUPS) and
        ``OMP_NUM_THREADS`` defaulting to 1.
    """
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).absolute().parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    env["CTRL_MPEXEC_DIR"] = sys.prefix
    env["DAF_BUTLER_DIR"] = sys.prefix
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def _data_id_key(ref: Any) -> tuple[int, int]:
    return int(ref.dataId["visit"]), int(ref.dataId["detector"])


def _assert_same_object(a: Any, b: Any, what: str) -> None:
    if hasattr(a, "colnames"):
        assert a.colnames == b.colnames, f"{what}: columns differ: {a.colnames} != {b.colnames}"
        assert len(a) == len(b), f"{what}: {len(a)} != {len(b)} rows"
        for name in a.colnames:
            np.testing.assert_array_equal(np.asarray(a[name]), np.asarray(b[name]), err_msg=f"{what}.{name}")
        return
    checked = False
    for plane in ("image", "variance", "mask"):
        if hasattr(a, plane):
            np.testing.assert_array_equal(
                getattr(a, plane).array, getattr(b, plane).array, err_msg=f"{what}.{plane}"
            )
            checked = True
    assert checked, f"{what}: do not know how to compare {type(a).__name__}"


def assert_same_outputs(
    butler_a: Butler,
    collection_a: str,
    butler_b: Butler,
    collection_b: str,
    dataset_types: Iterable[str] = AP_OUTPUT_DATASET_TYPES,
    expected_data_ids: set[tuple[int, int]] | None = None,
) -> dict[str, int]:
    """Assert that two collections hold the same visit × detector outputs.

    Tables must be identical column by column; images identical plane by
    plane (image, variance, mask).

    Parameters
    ----------
    butler_a, butler_b : `lsst.daf.butler.Butler`
        Butlers to read from (may be the same).
    collection_a, collection_b : `str`
        Collections to compare.
    dataset_types : `~collections.abc.Iterable` [`str`], optional
        Dataset types to compare.
    expected_data_ids : `set` [`tuple` [`int`, `int`]], optional
        (visit, detector) pairs each dataset type must have in both.

    Returns
    -------
    counts : `dict` [`str`, `int`]
        Number of datasets compared per dataset type.
    """
    counts = {}
    for name in dataset_types:
        refs_a = {_data_id_key(r): r for r in butler_a.query_datasets(name, collections=collection_a)}
        refs_b = {_data_id_key(r): r for r in butler_b.query_datasets(name, collections=collection_b)}
        assert refs_a.keys() == refs_b.keys(), (
            f"{name}: data IDs differ: {sorted(refs_a)} != {sorted(refs_b)}"
        )
        if expected_data_ids is not None:
            assert set(refs_a) == expected_data_ids, (
                f"{name}: {sorted(refs_a)} != {sorted(expected_data_ids)}"
            )
        for key, ref_a in refs_a.items():
            _assert_same_object(butler_a.get(ref_a), butler_b.get(refs_b[key]), f"{name}{key}")
        counts[name] = len(refs_a)
    return counts
