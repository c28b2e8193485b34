"""Real/bogus classification metrics: ROC, purity/completeness, thresholds, calibration.

All functions take a 1-D array of scores (higher means "more likely real") and a 1-D array of
binary labels (1 = real, 0 = bogus).  A candidate is classified real when ``score >= threshold``.
"""

from __future__ import annotations

__all__ = [
    "ThresholdChoice",
    "completeness_vs_snr",
    "expected_calibration_error",
    "per_type_rates",
    "precision_recall",
    "purity_completeness",
    "reliability_diagram",
    "roc_auc",
    "roc_curve",
    "summarize",
    "threshold_for_purity",
    "to_jsonable",
]

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as sk_metrics


def _check_scores_labels(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert scores and labels to 1-D float64 / int arrays."""
    scores = np.asarray(scores, dtype=np.float64)
    labels_in = np.asarray(labels)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}.")
    if labels_in.shape != scores.shape:
        raise ValueError(f"labels shape {labels_in.shape} does not match scores shape {scores.shape}.")
    if scores.size == 0:
        raise ValueError("scores and labels are empty.")
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"scores contain {np.count_nonzero(~np.isfinite(scores))} non-finite values.")
    if labels_in.dtype == bool:
        labels_int = labels_in.astype(np.int64)
    else:
        labels_f = labels_in.astype(np.float64)
        if not np.all(np.isin(labels_f, (0.0, 1.0))):
            raise ValueError("labels must be binary (0 = bogus, 1 = real).")
        labels_int = labels_f.astype(np.int64)
    return scores, labels_int


def _require_both_classes(labels: np.ndarray, what: str) -> None:
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == labels.size:
        raise ValueError(f"{what} needs both real and bogus examples; got {n_pos} real of {labels.size}.")


def roc_curve(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Receiver operating characteristic curve.

    Parameters
    ----------
    scores : array-like, shape (N,)
        Classifier scores, higher means more likely real.
    labels : array-like, shape (N,)
        Binary labels, 1 = real.

    Returns
    -------
    fpr, tpr, thresholds : `numpy.ndarray`
        False- and true-positive rates at each threshold (decreasing thresholds).
    """
    scores, labels = _check_scores_labels(scores, labels)
    _require_both_classes(labels, "roc_curve")
    fpr, tpr, thresholds = sk_metrics.roc_curve(labels, scores, drop_intermediate=False)
    return fpr, tpr, thresholds


def roc_auc(scores: Any, labels: Any) -> float:
    """Area under the ROC curve (1 for a perfect classifier, 0 for a reversed one).

    Parameters
    ----------
    scores : array-like, shape (N,)
        Classifier scores.
    labels : array-like, shape (N,)
        Binary labels, 1 = real.

    Returns
    -------
    auc : `float`
        The area under the curve.
    """
    scores, labels = _check_scores_labels(scores, labels)
    _require_both_classes(labels, "roc_auc")
    return float(sk_metrics.roc_auc_score(labels, scores))


def precision_recall(scores: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Precision–recall curve and average precision.

    Parameters
    ----------
    scores : array-like, shape (N,)
        Classifier scores.
    labels : array-like, shape (N,)
        Binary labels, 1 = real.

    Returns
    -------
    precision, recall, thresholds : `numpy.ndarray`
        As returned by `sklearn.metrics.precision_recall_curve`.
    average_precision : `float`
        Area under the precision–recall curve (step-wise).
    """
    scores, labels = _check_scores_labels(scores, labels)
    _require_both_classes(labels, "precision_recall")
    precision, recall, thresholds = sk_metrics.precision_recall_curve(labels, scores)
    ap = float(sk_metrics.average_precision_score(labels, scores))
    return precision, recall, thresholds, ap


def purity_completeness(scores: Any, labels: Any) -> dict[str, np.ndarray]:
    """Purity and completeness at every distinct score used as a threshold.

    Parameters
    ----------
    scores : array-like, shape (N,)
        Classifier scores.
    labels : array-like, shape (N,)
        Binary labels, 1 = real.

    Returns
    -------
    curves : `dict` [`str`, `numpy.ndarray`]
        ``threshold`` (distinct scores, decreasing), ``purity`` (TP / (TP + FP) of
        ``score >= threshold``), ``completeness`` (TP / number of real), ``n_selected``.
    """
    scores, labels = _check_scores_labels(scores, labels)
    n_pos = int(labels.sum())
    if n_pos == 0:
        raise ValueError("purity_completeness needs at least one real example.")
    order = np.argsort(-scores, kind="stable")
    s_sorted = scores[order]
    tp = np.cumsum(labels[order])
    n_sel = np.arange(1, scores.size + 1)
    # Keep the last index of each run of equal scores: thresholds are inclusive.
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], scores.size - 1]
    tp = tp[last]
    n_sel = n_sel[last]
    return {
        "threshold": s_sorted[last],
        "purity": tp / n_sel,
        "completeness": tp / n_pos,
        "n_selected": n_sel,
    }


@dataclasses.dataclass(frozen=True)
class ThresholdChoice:
    """A score threshold and the purity and completeness it gives.

    Attributes
    ----------
    threshold : `float`
        Candidates with ``score >= threshold`` are classified real.
    purity : `float`
        Fraction of selected candidates that are real.
    completeness : `float`
        Fraction of real candidates selected.
    target_purity : `float`
        The purity asked for.
    reached : `bool`
        Whether ``purity >= target_purity``; if not, the threshold of maximum purity is given.
    """

    threshold: float
    purity: float
    completeness: float
    target_purity: float
    reached: bool

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dictionary."""
        return dataclasses.asdict(self)


def threshold_for_purity(scores: Any, labels: Any, purity: float = 0.99) -> ThresholdChoice:
    """Choose the lowest threshold whose selection reaches a target purity.

    The purity is measured at the prevalence of the given sample (use the natural mix of real and
    bogus candidates, not a class-balanced one).  The lowest such threshold maximises completeness.

    Parameters
    ----------
    scores : array-like, shape (N,)
        Classifier scores.
    labels : array-like, shape (N,)
        Binary labels, 1 = real.
    purity : `float`, optional
        Target purity, in (0, 1].

    Returns
    -------
    choice : `ThresholdChoice`
        The threshold with its purity and completeness.  When no threshold reaches the target,
        ``reached`` is `False` and the (lowest) threshold of maximum purity is returned.
    """
    if not 0.0 < purity <= 1.0:
        raise ValueError(f"purity must be in (0, 1], got {purity}.")
    curves = purity_completeness(scores, labels)
    ok = curves["purity"] >= purity
    if np.any(ok):
        i = int(np.nonzero(ok)[0][-1])  # thresholds decrease: the last index is the lowest threshold.
        reached = True
    else:
        best = curves["purity"].max()
        i = int(np.nonzero(curves["purity"] == best)[0][-1])
        reached = False
    return ThresholdChoice(
        threshold=float(curves["threshold"][i]),
        purity=float(curves["purity"][i]),
        completeness=float(curves["completeness"][i]),
        target_purity=float(purity),
        reached=reached,
    )


def completeness_vs_snr(
    scores: Any,
    labels: Any,
    snr: Any,
    threshold: float,
    bins: Sequence[float] | np.ndarray | None = None,
) -> dict[str, list[float]]:
    """Completeness of real candidates in bins of signal-to-noise ratio.

    Parameters
    ----------
    scores : array-like, shape (N,)
        Classifier scores.
    labels : array-like, shape (N,)
        Binary labels, 1 = real; only real candidates enter.
    snr : array-like, shape (N,)
        Signal-to-noise ratio of each candidate (absolute value is used).
    threshold : `float`
        Classification threshold (``score >= threshold`` is real).
    bins : sequence of `float`, optional
        Bin edges; default ``[5, 6, 7, 8, 10, 12, 15, 20, 30, 50, 100, inf]``.

    Returns
    -------
    result : `dict` [`str`, `list`]
        ``bin_low``, ``bin_high``, ``snr_median``, ``n``, ``n_selected``, ``completeness`` and
        ``completeness_err`` (binomial ``sqrt(p (1 - p) / n)``; NaN for empty bins).
    """
    scores, labels = _check_scores_labels(scores, labels)
    snr = np.abs(np.asarray(snr, dtype=np.float64))
    if snr.shape != scores.shape:
        raise ValueError(f"snr shape {snr.shape} does not match scores shape {scores.shape}.")
    edges = np.asarray(
        bins if bins is not None else [5, 6, 7, 8, 10, 12, 15, 20, 30, 50, 100, np.inf], dtype=np.float64
    )
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise ValueError("bins must be at least two strictly increasing edges.")
    real = labels == 1
    selected = scores >= threshold
    out: dict[str, list[float]] = {
        k: []
        for k in ("bin_low", "bin_high", "snr_median", "n", "n_selected", "completeness", "completeness_err")
    }
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = real & (snr >= lo) & (snr < hi)
        n = int(in_bin.sum())
        k = int((in_bin & selected).sum())
        p = k / n if n else math.nan
        out["bin_low"].append(float(lo))
        out["bin_high"].append(float(hi))
        out["snr_median"].append(float(np.median(snr[in_bin])) if n else math.nan)
        out["n"].append(n)
        out["n_selected"].append(k)
        out["completeness"].append(p)
        out["completeness_err"].append(math.sqrt(p * (1 - p) / n) if n else math.nan)
    return out


def per_type_rates(scores: Any, labels: Any, types: Any, threshold: float) -> dict[str, dict[str, Any]]:
    """Recall of real and rejection of bogus candidates per candidate type.

    Parameters
    ----------
    scores : array-like, shape (N,)
        Classifier scores.
    labels : array-like, shape (N,)
        Binary labels, 1 = real.
    types : array-like of `str`, shape (N,)
        Type of each candidate (e.g. ``hostless``, ``cosmic_ray``).
    threshold : `float`
        Classification threshold.

    Returns
    -------
    rates : `dict` [`str`, `dict`]
        Per type: ``n``, ``n_real``, ``n_bogus``, ``recall`` (fraction of its real candidates
        selected, NaN if none) and ``rejection`` (fraction of its bogus candidates rejected, NaN if
        none).
    """
    scores, labels = _check_scores_labels(scores, labels)
    types = np.asarray(types).astype(str)
    if types.shape != scores.shape:
        raise ValueError(f"types shape {types.shape} does not match scores shape {scores.shape}.")
    selected = scores >= threshold
    out: dict[str, dict[str, Any]] = {}
    for name in np.unique(types):
        m = types == name
        real = m & (labels == 1)
        bogus = m & (labels == 0)
        n_real = int(real.sum())
        n_bogus = int(bogus.sum())
        out[str(name)] = {
            "n": int(m.sum()),
            "n_real": n_real,
            "n_bogus": n_bogus,
            "recall": float((real & selected).sum() / n_real) if n_real else math.nan,
            "rejection": float((bogus & ~selected).sum() / n_bogus) if n_bogus else math.nan,
        }
    return out


def _check_probabilities(probs: np.ndarray) -> None:
    if np.any(probs < 0) or np.any(probs > 1):
        raise ValueError("calibration metrics need probabilities in [0, 1].")


def reliability_diagram(probs: Any, labels: Any, n_bins: int = 15) -> dict[str, list[float]]:
    """Reliability-diagram bins: mean predicted probability vs observed real fraction.

    Parameters
    ----------
    probs : array-like, shape (N,)
        Predicted probabilities of being real, in [0, 1].
    labels : array-like, shape (N,)
        Binary labels, 1 = real.
    n_bins : `int`, optional
        Number of equal-width bins on [0, 1].

    Returns
    -------
    bins : `dict` [`str`, `list`]
        ``bin_low``, ``bin_high``, ``count``, ``mean_predicted``, ``fraction_real`` (NaN in empty bins).
    """
    probs, labels = _check_scores_labels(probs, labels)
    _check_probabilities(probs)
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}.")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    index = np.clip(np.searchsorted(edges, probs, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(index, minlength=n_bins)
    sum_p = np.bincount(index, weights=probs, minlength=n_bins)
    sum_y = np.bincount(index, weights=labels, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / count, np.nan)
        frac = np.where(count > 0, sum_y / count, np.nan)
    return {
        "bin_low": edges[:-1].tolist(),
        "bin_high": edges[1:].tolist(),
        "count": count.tolist(),
        "mean_predicted": mean_p.tolist(),
        "fraction_real": frac.tolist(),
    }


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Compute the expected calibration error over equal-width probability bins.

    ``ECE = sum_b (n_b / N) |mean_predicted_b - fraction_real_b|``.

    Parameters
    ----------
    probs : array-like, shape (N,)
        Predicted probabilities of being real.
    labels : array-like, shape (N,)
        Binary labels, 1 = real.
    n_bins : `int`, optional
        Number of bins (15 by default).

    Returns
    -------
    ece : `float`
        The expected calibration error, in [0, 1].
    """
    diag = reliability_diagram(probs, labels, n_bins)
    count = np.asarray(diag["count"], dtype=np.float64)
    mean_p = np.nan_to_num(np.asarray(diag["mean_predicted"]))
    frac = np.nan_to_num(np.asarray(diag["fraction_real"]))
    return float(np.sum(count / count.sum() * np.abs(mean_p - frac)))


def _json_float(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def to_jsonable(obj: Any) -> Any:
    """Make nested containers JSON-safe (NaN/inf become None, numpy values become Python).

    Parameters
    ----------
    obj : `object`
        Nested dicts, lists, tuples, numpy arrays and scalars.

    Returns
    -------
    clean : `object`
        The same structure with only JSON types.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, bool | np.bool_):
        return bool(obj)
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return _json_float(float(obj))
    return obj


def summarize(
    scores: Any,
    labels: Any,
    snr: Any = None,
    types: Any = None,
    threshold: float | None = None,
    target_purity: float = 0.99,
) -> dict[str, Any]:
    """Summarise classifier performance in a JSON-serialisable dictionary.

    Parameters
    ----------
    scores : array-like, shape (N,)
        Scores; calibration metrics are included only if all lie in [0, 1].
    labels : array-like, shape (N,)
        Binary labels, 1 = real.
    snr : array-like, optional
        Per-candidate SNR for completeness vs SNR.
    types : array-like of `str`, optional
        Per-candidate type for per-type rates.
    threshold : `float`, optional
        Classification threshold; if `None` it is chosen with `threshold_for_purity`.
    target_purity : `float`, optional
        Purity used when choosing the threshold.

    Returns
    -------
    summary : `dict`
        ``n``, ``n_real``, ``auc``, ``average_precision``, ``threshold``, ``purity``,
        ``completeness``, ``false_positive_rate``, ``threshold_choice``, and optionally
        ``ece``, ``reliability``, ``completeness_vs_snr``, ``per_type``.  NaN is written as null.
    """
    scores, labels = _check_scores_labels(scores, labels)
    _require_both_classes(labels, "summarize")
    choice = threshold_for_purity(scores, labels, target_purity)
    if threshold is None:
        threshold = choice.threshold
    selected = scores >= threshold
    n_pos = int(labels.sum())
    n_neg = int(labels.size - n_pos)
    tp = int((selected & (labels == 1)).sum())
    fp = int((selected & (labels == 0)).sum())
    _, _, _, ap = precision_recall(scores, labels)
    out: dict[str, Any] = {
        "n": int(labels.size),
        "n_real": n_pos,
        "auc": roc_auc(scores, labels),
        "average_precision": ap,
        "threshold": float(threshold),
        "purity": tp / (tp + fp) if tp + fp else math.nan,
        "completeness": tp / n_pos,
        "false_positive_rate": fp / n_neg,
        "threshold_choice": choice.to_dict(),
    }
    if np.all((scores >= 0) & (scores <= 1)):
        out["ece"] = expected_calibration_error(scores, labels)
        out["reliability"] = reliability_diagram(scores, labels)
    if snr is not None:
        out["completeness_vs_snr"] = completeness_vs_snr(scores, labels, snr, threshold)
    if types is not None:
        out["per_type"] = per_type_rates(scores, labels, types, threshold)
    return to_jsonable(out)
