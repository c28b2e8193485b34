"""Where a task's model comes from: shared config fields, checks and per-process cache.

`~lsst.meas.realbogus.tasks.RBTransiNetTask` and
`~lsst.meas.realbogus.tasks.transinet_detect.TransiNetDetectTask` both take their model from
one of three places, chosen by a ``modelSource`` config field:

``butler``
    A model package dataset found as a prerequisite input (its connection is removed for the
    other sources).
``package``
    The default model shipped in the Python package.
``file``
    A model package file named by the ``modelPath`` config field.

This module holds what they share: the two config fields (`model_source_field`,
`model_path_field`), the check that they agree (`validate_model_source`), the choice of file
(`model_file_path`) and a thread-safe per-process cache of built networks (`ModelCache`,
`pop_butler_model`), so that a process running many quanta builds each network once.
"""

from __future__ import annotations

__all__ = [
    "MODEL_SOURCES",
    "ModelCache",
    "dataset_cache_key",
    "model_file_path",
    "model_path_field",
    "model_source_field",
    "pop_butler_model",
    "validate_model_source",
]

import threading
from collections.abc import Callable, Hashable, Iterator, Mapping, MutableMapping
from typing import Any

from lsst.pex.config import ChoiceField, Config, Field

MODEL_SOURCES: tuple[str, ...] = ("butler", "package", "file")
"""Values of the ``modelSource`` field."""


def model_source_field(
    *,
    default: str,
    doc: str,
    butler_doc: str,
    package_doc: str,
) -> ChoiceField:
    """Make the ``modelSource`` config field.

    Parameters
    ----------
    default : `str`
        Default source, one of ``butler``, ``package`` and ``file``.
    doc : `str`
        Documentation of the field.
    butler_doc : `str`
        Documentation of the ``butler`` choice (which prerequisite input, which dataset type).
    package_doc : `str`
        Documentation of the ``package`` choice (which shipped file).

    Returns
    -------
    field : `lsst.pex.config.ChoiceField`
        The field, to be assigned to ``modelSource`` in a config class body.
    """
    if default not in MODEL_SOURCES:
        raise ValueError(f"modelSource default {default!r} is not one of {MODEL_SOURCES}")
    return ChoiceField[str](
        doc=doc,
        default=default,
        allowed={
            "butler": butler_doc,
            "package": package_doc,
            "file": "The model package file named by modelPath.",
        },
    )


def model_path_field(doc: str) -> Field:
    """Make the ``modelPath`` config field (optional, default None).

    Parameters
    ----------
    doc : `str`
        Documentation of the field.

    Returns
    -------
    field : `lsst.pex.config.Field`
        The field, to be assigned to ``modelPath`` in a config class body.
    """
    return Field[str](doc=doc, default=None, optional=True)


def validate_model_source(config: Config, name: str) -> None:
    """Check that ``config.modelSource`` and ``config.modelPath`` agree.

    Parameters
    ----------
    config : `lsst.pex.config.Config`
        Config with the `model_source_field` and `model_path_field` fields.
    name : `str`
        Name of the config class, for the messages.

    Raises
    ------
    ValueError
        Raised if ``modelSource`` is 'file' without ``modelPath``, or ``modelPath`` is set
        for another source.
    """
    if config.modelSource == "file" and not config.modelPath:
        raise ValueError(f"{name}: modelSource='file' needs modelPath (a model package file)")
    if config.modelSource != "file" and config.modelPath:
        raise ValueError(
            f"{name}: modelPath={config.modelPath!r} is only used with modelSource='file' "
            f"(modelSource is {config.modelSource!r}); unset one of them"
        )


def model_file_path(config: Config, task: str, connection: str, dataset_type: str) -> str | None:
    """Return the model file a task loads itself: ``modelPath``, or None for the package default.

    Parameters
    ----------
    config : `lsst.pex.config.Config`
        Config with the `model_source_field` and `model_path_field` fields.
    task : `str`
        Name of the task, for the message.
    connection, dataset_type : `str`
        Prerequisite input connection and dataset type of the ``butler`` source, for the
        message.

    Returns
    -------
    path : `str` or `None`
        ``config.modelPath`` for ``modelSource == 'file'``; None (the model shipped in the
        package) for ``'package'``.

    Raises
    ------
    ValueError
        Raised for ``modelSource == 'butler'``: that model is a task input.
    """
    if config.modelSource == "butler":
        raise ValueError(
            f"{task}: modelSource='butler' takes the model from the {connection!r} input "
            f"(dataset type {dataset_type}); pass model= to run() or use modelSource 'package'/'file'"
        )
    return config.modelPath if config.modelSource == "file" else None


class ModelCache(Mapping[Hashable, Any]):
    """Thread-safe per-process cache of built models.

    A task is constructed once per quantum, so a model kept on the task would be rebuilt for
    every quantum; a module-level `ModelCache` keeps it for the process.  Reading it as a
    `~collections.abc.Mapping` (``key in cache``, ``cache[key]``, ``len(cache)``) is meant for
    tests.
    """

    def __init__(self) -> None:
        self._models: MutableMapping[Hashable, Any] = {}
        self._lock = threading.Lock()

    def __getitem__(self, key: Hashable) -> Any:
        with self._lock:
            return self._models[key]

    def __iter__(self) -> Iterator[Hashable]:
        with self._lock:
            return iter(list(self._models))

    def __len__(self) -> int:
        with self._lock:
            return len(self._models)

    def get_or_build(self, key: Hashable, build: Callable[[], Any]) -> tuple[Any, bool]:
        """Return the model cached under ``key``, building and caching it if absent.

        Parameters
        ----------
        key : `~collections.abc.Hashable`
            Cache key (e.g. `dataset_cache_key` or a file's content hash, plus the device).
        build : `~collections.abc.Callable`
            Called without arguments (under the cache lock, so once per key) to build the
            model when it is not cached.

        Returns
        -------
        model : `typing.Any`
            The model.
        cached : `bool`
            Whether it came from the cache.
        """
        with self._lock:
            model = self._models.get(key)
            if model is not None:
                return model, True
            model = build()
            self._models[key] = model
        return model, False

    def clear(self) -> None:
        """Forget all cached models."""
        with self._lock:
            self._models.clear()


def dataset_cache_key(handle: Any) -> str:
    """Return the cache key of the model dataset behind a deferred handle.

    Parameters
    ----------
    handle : `lsst.daf.butler.DeferredDatasetHandle`
        Handle of a model package dataset.

    Returns
    -------
    key : `str`
        ``"dataset:<UUID>"``: datasets are immutable, so their id names their content.
    """
    return f"dataset:{handle.ref.id}"


def pop_butler_model(
    inputs: dict[str, Any],
    connection: str,
    load: Callable[[Any], tuple[Any, bool]],
    log: Any,
    label: str,
) -> Any:
    """Remove the model handle from a quantum's inputs and return its (cached) model.

    Parameters
    ----------
    inputs : `dict` [`str`, `typing.Any`]
        Inputs of ``butlerQC.get(inputRefs)``; the ``connection`` entry is removed.
    connection : `str`
        Name of the model's prerequisite input connection.
    load : `~collections.abc.Callable`
        Takes the deferred handle and returns the model and whether it came from the cache.
    log : `logging.Logger`
        The task's log; the model used is logged at INFO level.
    label : `str`
        What the model is called in the log message (e.g. ``"model"``).

    Returns
    -------
    model : `typing.Any` or `None`
        The model, or None if the quantum has no such input (``modelSource`` is not
        ``butler``).
    """
    handle = inputs.pop(connection, None)
    if handle is None:
        return None
    model, cached = load(handle)
    log.info("Using %s %r (dataset %s%s).", label, model.version, handle.ref.id, ", cached" if cached else "")
    return model
