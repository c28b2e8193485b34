"""Tests that the diagnostic figures render to PNG."""

from __future__ import annotations

import numpy as np
import pytest
from lsst.meas.realbogus import plots
from matplotlib.figure import Figure

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 2, 200)
    scores = np.clip(0.3 * labels + rng.uniform(0, 0.7, 200), 0, 1)
    snr = rng.uniform(5, 60, 200)
    stamps = rng.normal(size=(200, 3, 11, 11))
    return scores, labels, snr, stamps


def test_all_figures_render(data) -> None:
    scores, labels, snr, stamps = data
    figs = [
        plots.plot_roc(scores, labels),
        plots.plot_roc(scores, labels, log_fpr=True, label="test"),
        plots.plot_score_histograms(scores, labels, threshold=0.5),
        plots.plot_completeness_vs_snr(scores, labels, snr, threshold=0.5),
        plots.plot_reliability_diagram(scores, labels),
        plots.plot_worst_examples(stamps, scores, labels, n=3),
    ]
    for fig in figs:
        assert isinstance(fig, Figure)
        png = plots.figure_to_png_bytes(fig)
        assert png.startswith(PNG_MAGIC) and len(png) > 1000


def test_worst_examples_picks_the_worst(data) -> None:
    scores, labels, _, stamps = data
    fig = plots.plot_worst_examples(stamps, scores, labels, n=2)
    ylabels = [ax.get_ylabel() for ax in fig.axes if ax.get_ylabel()]
    worst_fp = scores[labels == 0].max()
    worst_fn = scores[labels == 1].min()
    assert ylabels[0] == f"false positive\n{worst_fp:.3f}"
    assert f"false negative\n{worst_fn:.3f}" in ylabels


def test_worst_examples_bad_channels(data) -> None:
    scores, labels, _, stamps = data
    with pytest.raises(ValueError, match="lack"):
        plots.plot_worst_examples(stamps, scores, labels, channels=("a", "b", "c"))
