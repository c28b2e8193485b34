"""No artefact peak in the scores of sources whose cutouts are crossed by NaN rows/columns.

Runs ``bench/nan_peak_report.py``'s experiment on a small simulated visit with NaN rows and columns
injected (all planes, ``NO_DATA`` in the mask).  A NaN-handling artefact would show up as many
sources sharing one exact score; we require that no score value is shared by more than 3 % of the
NaN-crossed sources (nor of those with NaN in the central 3 × 3), that all of them are scored, and
that their spread is comparable with that of clean sources.  The incumbent's way (NaN -> 0, box
zeroed at the edge) is scored alongside: its constant-score spike on edge sources is asserted, so
the measure is shown to detect a spike where there is one.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from lsst.meas.realbogus.scoring import RealBogusModel
from tiny_models import tiny_classifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

BENCH = Path(__file__).parents[1] / "bench" / "nan_peak_report.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("nan_peak_report", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def result():
    """Return result."""
    model = RealBogusModel(*tiny_classifier(cutout_size=31, version="nan"))
    bench = _bench_module()
    return bench, bench.nan_peak_experiment(model, size=256, n_lines=4, n_sources=800)


def test_tie_fraction_measure() -> None:
    """Check: tie fraction measure."""
    bench = _bench_module()
    assert bench.tie_fraction(np.array([0.1, 0.2, 0.2, np.nan])) == pytest.approx(2 / 3)
    assert bench.tie_fraction(np.array([np.nan])) == 0.0


def test_no_score_spike_for_nan_crossed_sources(result) -> None:
    """Check: no score spike for nan crossed sources."""
    bench, r = result
    s = r.summary()
    assert s["n_affected"] >= 300 and s["n_affected_center_nan"] >= 30 and s["n_unaffected"] >= 50
    assert s["ours_nan_scores"] == 0
    assert np.isfinite(r.ours).all()
    assert s["ours_tie_affected"] <= 0.03, s
    assert s["ours_tie_center_nan"] <= 0.05, s
    assert s["ours_std_affected"] > 0.5 * s["ours_std_unaffected"], s


def test_edge_sources_no_spike_unlike_incumbent(result) -> None:
    """Check: edge sources no spike unlike incumbent."""
    bench, r = result
    s = r.summary()
    assert np.isfinite(r.edge_ours).all()
    assert s["ours_tie_edge"] <= 0.03, s
    # The incumbent zeroes every box that crosses the edge: one constant score for all of them.
    assert s["incumbent_tie_edge"] > 0.9, s
