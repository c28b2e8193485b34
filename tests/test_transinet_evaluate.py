"""Tests of TransiNet detection evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from lsst.meas.realbogus.transinet.evaluate import evaluate_detections, match_detections


def test_match_one_to_one_nearest_first() -> None:
    match = match_detections([10.0, 10.8, 50.0], [10.0, 10.0, 50.0], [10.5, 30.0], [10.0, 30.0], radius=2.0)
    # Both detections 0 and 1 are within 2 px of truth 0; the nearest (1, at 0.3 px) wins.
    assert list(match) == [1, -1]
    assert list(match_detections([], [], [1.0], [1.0], 2.0)) == [-1]


def test_evaluate_counts() -> None:
    truth = Table(
        rows=[(10.0, 10.0, "transient", 4.0), (40.0, 40.0, "transient", -30.0),
              (70.0, 70.0, "transient", 12.0), (90.0, 20.0, "artifact", 0.0)],
        names=("x", "y", "category", "snr"),
    )
    det = Table({"x": [10.5, 40.0, 91.0, 5.0], "y": [10.0, 41.0, 20.0, 80.0]})
    summary = evaluate_detections([det, det[:0]], [truth, truth], match_radius=2.0,
                                  snr_bins=(0, 5, 20, np.inf))
    bins = summary["completeness"]
    assert [b["n_true"] for b in bins] == [2, 2, 2]
    assert [b["n_found"] for b in bins] == [1, 0, 1]  # the fading (negative SNR) source counts by |SNR|
    assert summary["n_true_positives"] == 2 and summary["n_true"] == 6
    assert summary["false_positives_per_detector"] == pytest.approx(1.0)
    assert summary["false_positives_at_artifacts_per_detector"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="truth tables"):
        evaluate_detections([det], [truth, truth])
