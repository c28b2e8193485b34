"""Deep-learning real/bogus reliability scores for difference-image sources.

The public scoring API is importable from the package itself::

    import lsst.meas.realbogus as rb
    model = rb.load_model()
    scores = model.score(science, template, difference, x, y)

Heavy dependencies (PyTorch) are imported on first use, so that importing a
sub-module such as `lsst.meas.realbogus.mask_planes` stays cheap.
"""

from __future__ import annotations

__all__ = [
    "__version__",
    "load_model",
    "RealBogusModel",
    "ScoreResult",
    "read_model_package",
    "save_model_package",
    "ModelPackage",
    "ModelMetadata",
    "ModelPackageError",
    "extract_cutouts",
    "normalize_stamps",
    "match_candidates",
]

from importlib import import_module
from typing import Any

from .version import __version__

_LAZY = {
    "load_model": "scoring",
    "RealBogusModel": "scoring",
    "ScoreResult": "scoring",
    "read_model_package": "model_package",
    "save_model_package": "model_package",
    "ModelPackage": "model_package",
    "ModelMetadata": "model_package",
    "ModelPackageError": "errors",
    "extract_cutouts": "cutouts",
    "normalize_stamps": "normalization",
    "match_candidates": "labels",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
