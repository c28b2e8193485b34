"""Diagnostic figures for real/bogus classifiers (matplotlib, Agg backend, no pyplot state).

Every function returns a `matplotlib.figure.Figure`; write it with `figure_to_png_bytes` or
``fig.savefig``.
"""

from __future__ import annotations

__all__ = [
    "figure_to_png_bytes",
    "plot_completeness_vs_snr",
    "plot_reliability_diagram",
    "plot_roc",
    "plot_score_histograms",
    "plot_worst_examples",
]

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)

import numpy as np  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from . import metrics  # noqa: E402


def _figure(figsize: tuple[float, float] = (5.0, 4.0)) -> Figure:
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_to_png_bytes(fig: Figure, dpi: int = 100) -> bytes:
    """Render a figure to PNG bytes.

    Parameters
    ----------
    fig : `matplotlib.figure.Figure`
        The figure.
    dpi : `int`, optional
        Resolution.

    Returns
    -------
    png : `bytes`
        The PNG file content.
    """
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def plot_roc(scores: Any, labels: Any, *, log_fpr: bool = False, label: str | None = None) -> Figure:
    """ROC curve (true-positive vs false-positive rate).

    Parameters
    ----------
    scores : array-like
        Classifier scores.
    labels : array-like
        Binary labels, 1 = real.
    log_fpr : `bool`, optional
        Logarithmic false-positive-rate axis (zero rates are clipped at 1 / N_bogus / 2).
    label : `str`, optional
        Legend label; the AUC is appended.

    Returns
    -------
    fig : `matplotlib.figure.Figure`
        The figure.
    """
    fpr, tpr, _ = metrics.roc_curve(scores, labels)
    auc = metrics.roc_auc(scores, labels)
    fig = _figure()
    ax = fig.add_subplot()
    if log_fpr:
        n_neg = int(np.size(labels) - np.sum(labels))
        fpr = np.maximum(fpr, 0.5 / max(n_neg, 1))
        ax.set_xscale("log")
    ax.plot(fpr, tpr, drawstyle="steps-post", label=f"{label + ', ' if label else ''}AUC = {auc:.4f}")
    if not log_fpr:
        ax.plot([0, 1], [0, 1], ls=":", color="gray")
    ax.set_xlabel("false-positive rate")
    ax.set_ylabel("true-positive rate (completeness)")
    ax.set_title("ROC")
    ax.legend(loc="lower right")
    return fig


def plot_score_histograms(
    scores: Any, labels: Any, *, threshold: float | None = None, bins: int = 50
) -> Figure:
    """Histograms of the scores of real and bogus candidates (log counts).

    Parameters
    ----------
    scores : array-like
        Classifier scores.
    labels : array-like
        Binary labels, 1 = real.
    threshold : `float`, optional
        Threshold drawn as a vertical line.
    bins : `int`, optional
        Number of bins.

    Returns
    -------
    fig : `matplotlib.figure.Figure`
        The figure.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    if scores.shape != labels.shape:
        raise ValueError(f"scores shape {scores.shape} does not match labels shape {labels.shape}.")
    edges = np.histogram_bin_edges(scores[np.isfinite(scores)], bins=bins)
    fig = _figure()
    ax = fig.add_subplot()
    ax.hist(scores[labels == 1], bins=edges, histtype="step", label=f"real ({int((labels == 1).sum())})")
    ax.hist(scores[labels == 0], bins=edges, histtype="step", label=f"bogus ({int((labels == 0).sum())})")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.3g}")
    ax.set_yscale("log")
    ax.set_xlabel("score")
    ax.set_ylabel("count")
    ax.legend()
    return fig


def plot_completeness_vs_snr(
    scores: Any, labels: Any, snr: Any, threshold: float, bins: Sequence[float] | None = None
) -> Figure:
    """Completeness of real candidates vs SNR with binomial error bars.

    Parameters
    ----------
    scores, labels, snr : array-like
        Scores, binary labels and SNR per candidate.
    threshold : `float`
        Classification threshold.
    bins : sequence of `float`, optional
        SNR bin edges (see `metrics.completeness_vs_snr`).

    Returns
    -------
    fig : `matplotlib.figure.Figure`
        The figure.
    """
    res = metrics.completeness_vs_snr(scores, labels, snr, threshold, bins)
    lo = np.asarray(res["bin_low"])
    hi = np.asarray(res["bin_high"])
    x = np.asarray(res["snr_median"], dtype=float)
    x = np.where(np.isfinite(x), x, np.where(np.isfinite(hi), 0.5 * (lo + hi), lo))
    fig = _figure()
    ax = fig.add_subplot()
    ax.errorbar(x, res["completeness"], yerr=res["completeness_err"], fmt="o-", capsize=2)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("SNR")
    ax.set_ylabel("completeness")
    ax.set_title(f"threshold {threshold:.3g}")
    return fig


def plot_reliability_diagram(probs: Any, labels: Any, n_bins: int = 15) -> Figure:
    """Reliability diagram: observed real fraction vs mean predicted probability.

    Parameters
    ----------
    probs : array-like
        Predicted probabilities.
    labels : array-like
        Binary labels, 1 = real.
    n_bins : `int`, optional
        Number of equal-width bins.

    Returns
    -------
    fig : `matplotlib.figure.Figure`
        The figure, with the ECE in the title.
    """
    diag = metrics.reliability_diagram(probs, labels, n_bins)
    ece = metrics.expected_calibration_error(probs, labels, n_bins)
    fig = _figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], ls=":", color="gray")
    ax.plot(diag["mean_predicted"], diag["fraction_real"], "o-")
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("fraction real")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(f"reliability (ECE = {ece:.4f})")
    return fig


def plot_worst_examples(
    stamps: np.ndarray,
    scores: Any,
    labels: Any,
    channels: Sequence[str] = ("science", "template", "difference"),
    n: int = 5,
) -> Figure:
    """Gallery of the highest-scoring bogus and lowest-scoring real candidates.

    Each row shows the (template, science, difference) triplet of one candidate with its score.

    Parameters
    ----------
    stamps : `numpy.ndarray`, shape (N, C, S, S)
        Raw stamps.
    scores : array-like, shape (N,)
        Scores.
    labels : array-like, shape (N,)
        Binary labels, 1 = real.
    channels : sequence of `str`, optional
        Channel names of ``stamps``; must include template, science and difference.
    n : `int`, optional
        Number of false positives and of false negatives shown.

    Returns
    -------
    fig : `matplotlib.figure.Figure`
        The figure (left block: worst false positives, right block: worst false negatives).
    """
    stamps = np.asarray(stamps)
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(int)
    channels = tuple(channels)
    if stamps.ndim != 4 or stamps.shape[0] != scores.size or stamps.shape[1] != len(channels):
        raise ValueError(
            f"stamps shape {stamps.shape} does not fit {scores.size} scores and channels {channels}."
        )
    order_names = ("template", "science", "difference")
    missing = [c for c in order_names if c not in channels]
    if missing:
        raise ValueError(f"channels {channels} lack {missing}.")
    idx = [channels.index(c) for c in order_names]
    bogus = np.nonzero(labels == 0)[0]
    real = np.nonzero(labels == 1)[0]
    fps = bogus[np.argsort(-scores[bogus], kind="stable")][:n]
    fns = real[np.argsort(scores[real], kind="stable")][:n]
    rows = max(len(fps), len(fns), 1)
    fig = _figure(figsize=(9.0, 1.6 * rows + 0.6))
    for col0, chosen, title in ((0, fps, "false positive"), (3, fns, "false negative")):
        for r in range(rows):
            for c in range(3):
                ax = fig.add_subplot(rows, 6, r * 6 + col0 + c + 1)
                ax.set_xticks([])
                ax.set_yticks([])
                if r >= len(chosen):
                    ax.axis("off")
                    continue
                img = stamps[chosen[r], idx[c]].astype(np.float64)
                finite = img[np.isfinite(img)]
                vmin, vmax = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)
                ax.imshow(img, origin="lower", cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
                if r == 0:
                    ax.set_title(order_names[c], fontsize=8)
                if c == 0:
                    ax.set_ylabel(f"{title}\n{scores[chosen[r]]:.3f}", fontsize=7)
    return fig
