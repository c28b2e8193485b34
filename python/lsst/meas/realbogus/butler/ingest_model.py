"""Put real/bogus model packages into a Butler repository as ``realbogus_model`` datasets.

A model package file is stored in its own RUN collection ``models/<name>`` and that RUN is
prepended to a CHAINED collection (``pretrained_models`` by default), so that

.. code-block:: bash

    pipetask run -b REPO -i SimCam/sim,pretrained_models ...

finds the most recently ingested model through the ``pretrainedModel`` prerequisite input of
`lsst.meas.realbogus.tasks.RBTransiNetTask` (dataset type ``realbogus_model``, storage class
``RealBogusModelPackage``, no dimensions).

The repository must know the ``RealBogusModelPackage`` storage class and its formatter:
repositories made by `lsst.meas.realbogus.butler.create_sim_repo` have them in their
``butler.yaml`` (seed config); any other repository needs ``DAF_BUTLER_CONFIG_PATH`` to include
`lsst.meas.realbogus.butler.repo.config_directory` in every process that reads or writes the
models (or the repository re-created with `lsst.meas.realbogus.butler.make_seed_config` as
seed config).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_CHAIN",
    "MODEL_DATASET_TYPE",
    "MODEL_RUN_PREFIX",
    "MODEL_STORAGE_CLASS",
    "IngestedModel",
    "ingest_model_package",
    "model_run_name",
]

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lsst.daf.butler import Butler, CollectionType, DatasetRef, DatasetType, MissingCollectionError

MODEL_DATASET_TYPE = "realbogus_model"
"""Dataset type name of model packages."""

MODEL_STORAGE_CLASS = "RealBogusModelPackage"
"""Storage class of model packages (``configs/storageClasses.yaml``)."""

MODEL_RUN_PREFIX = "models/"
"""Prefix of the RUN collection of each model."""

DEFAULT_CHAIN = "pretrained_models"
"""CHAINED collection that pipelines use to find the current model."""

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class IngestedModel:
    """Result of `ingest_model_package`.

    Attributes
    ----------
    ref : `lsst.daf.butler.DatasetRef`
        The stored dataset.
    run : `str`
        Its RUN collection.
    chain : `str` or `None`
        The CHAINED collection it was prepended to.
    chain_members : `tuple` [`str`, ...]
        Members of ``chain`` after the update.
    version : `str`
        Model version from the package metadata.
    weights_sha256 : `str`
        Checksum of the weights.
    """

    ref: DatasetRef
    run: str
    chain: str | None
    chain_members: tuple[str, ...]
    version: str
    weights_sha256: str


def model_run_name(name: str) -> str:
    """Return the RUN collection of a model name (``models/<name>``).

    Parameters
    ----------
    name : `str`
        Model name: letters, digits and ``_ . + -``, starting with a letter or digit.

    Returns
    -------
    run : `str`
        RUN collection name.

    Raises
    ------
    ValueError
        Raised for an invalid name.
    """
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(
            f"Invalid model name {name!r}: use letters, digits and '_.+-', starting with a letter or digit"
        )
    return MODEL_RUN_PREFIX + name


def _missing_config_message() -> str:
    from .repo import config_directory

    return (
        f"This Butler repository has no {MODEL_STORAGE_CLASS!r} storage class or formatter in its "
        "configuration. Repositories made by lsst.meas.realbogus (create_sim_repo / "
        "realbogus_make_sim_repo.py) have them; for others set "
        f"DAF_BUTLER_CONFIG_PATH={config_directory()} in every process that uses the models"
    )


def _check_storage_class(butler: Butler) -> None:
    try:
        butler.storageClasses.getStorageClass(MODEL_STORAGE_CLASS)
    except KeyError:
        raise RuntimeError(_missing_config_message()) from None


def ingest_model_package(
    butler: Butler,
    model: str | os.PathLike[str] | Any,
    name: str | None = None,
    *,
    chain: str | None = DEFAULT_CHAIN,
    dataset_type: str = MODEL_DATASET_TYPE,
) -> IngestedModel:
    """Store a model package in ``models/<name>`` and prepend that RUN to ``chain``.

    Parameters
    ----------
    butler : `lsst.daf.butler.Butler`
        Writeable Butler.
    model : `str`, `os.PathLike` or `lsst.meas.realbogus.model_package.ModelPackage`
        Model package file, or a package already read.  Files are validated (metadata,
        architecture, weight checksum) before anything is written.
    name : `str`, optional
        Model name; the package's ``version`` by default.
    chain : `str` or `None`, optional
        CHAINED collection to prepend the RUN to (created if missing); `None` to leave
        collections alone.
    dataset_type : `str`, optional
        Dataset type name (registered with no dimensions if missing).

    Returns
    -------
    result : `IngestedModel`
        The stored dataset and the collections.

    Raises
    ------
    lsst.meas.realbogus.errors.ModelPackageError
        Raised if the file is missing or not a valid model package.
    RuntimeError
        Raised if the repository lacks the storage class, if ``models/<name>`` already holds a
        model, or if ``chain`` exists but is not a CHAINED collection.
    ValueError
        Raised for an invalid model name or an existing dataset type with other dimensions or
        storage class.
    """
    from ..model_package import ModelPackage, read_model_package

    if isinstance(model, ModelPackage):
        package = model
    else:
        path = Path(model)
        if not path.is_file():
            from ..errors import ModelPackageError

            raise ModelPackageError(f"Model package {path} does not exist or is not a file")
        package = read_model_package(path)
    name = package.metadata.version if name is None else name
    run = model_run_name(name)
    _check_storage_class(butler)

    wanted = DatasetType(dataset_type, (), MODEL_STORAGE_CLASS, universe=butler.dimensions)
    try:
        existing = butler.get_dataset_type(dataset_type)
    except KeyError:  # MissingDatasetTypeError is a KeyError
        butler.registry.registerDatasetType(wanted)
    else:
        if existing.dimensions != wanted.dimensions or existing.storageClass_name != MODEL_STORAGE_CLASS:
            raise ValueError(
                f"Dataset type {dataset_type!r} exists as {existing}; expected no dimensions and storage "
                f"class {MODEL_STORAGE_CLASS!r}"
            )

    if chain is not None:
        try:
            chain_type = butler.registry.getCollectionType(chain)
        except MissingCollectionError:
            chain_type = None
        if chain_type is not None and chain_type != CollectionType.CHAINED:
            raise RuntimeError(
                f"Collection {chain!r} exists and is a {chain_type.name}, not a CHAINED collection"
            )

    created = butler.registry.registerRun(run)
    if not created and butler.query_datasets(dataset_type, collections=run, explain=False):
        raise RuntimeError(
            f"{run!r} already holds a {dataset_type!r}; ingest under another name (models are never replaced)"
        )
    try:
        ref = butler.put(package, dataset_type, run=run)
    except Exception as err:
        if created:
            butler.registry.removeCollection(run)
        # The storage class is process-wide once any repository defined it, but the formatter
        # comes from this repository's datastore configuration.
        if "formatter" in str(err).lower():
            raise RuntimeError(_missing_config_message()) from err
        raise

    members: tuple[str, ...] = ()
    if chain is not None:
        butler.registry.registerCollection(chain, CollectionType.CHAINED)
        current = [c for c in butler.registry.getCollectionChain(chain) if c != run]
        butler.registry.setCollectionChain(chain, [run, *current])
        members = tuple(butler.registry.getCollectionChain(chain))
    return IngestedModel(ref=ref, run=run, chain=chain, chain_members=members,
                         version=package.metadata.version, weights_sha256=package.metadata.weights_sha256)
