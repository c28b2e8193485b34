"""Tests for lsst.meas.realbogus.metrics on hand-computable cases."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from lsst.meas.realbogus import metrics


def test_auc_perfect_reversed_and_half() -> None:
    labels = np.array([0, 0, 1, 1])
    assert metrics.roc_auc([0.1, 0.2, 0.8, 0.9], labels) == 1.0
    assert metrics.roc_auc([0.9, 0.8, 0.2, 0.1], labels) == 0.0
    # One inversion among the 4 (pos, neg) pairs: AUC = 3/4.
    assert metrics.roc_auc([0.1, 0.85, 0.8, 0.9], labels) == pytest.approx(0.75)


def test_purity_completeness_by_hand() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, 1, 0, 1, 0])
    curves = metrics.purity_completeness(scores, labels)
    np.testing.assert_allclose(curves["threshold"], scores)
    np.testing.assert_allclose(curves["purity"], [1, 1, 2 / 3, 3 / 4, 3 / 5])
    np.testing.assert_allclose(curves["completeness"], [1 / 3, 2 / 3, 2 / 3, 1, 1])


def test_purity_completeness_ties_are_inclusive() -> None:
    curves = metrics.purity_completeness([0.5, 0.5, 0.2], [1, 0, 1])
    np.testing.assert_allclose(curves["threshold"], [0.5, 0.2])
    np.testing.assert_allclose(curves["purity"], [0.5, 2 / 3])


def test_threshold_for_purity_lowest_threshold() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    labels = np.array([1, 1, 0, 1, 0])
    choice = metrics.threshold_for_purity(scores, labels, purity=0.75)
    # Purity 3/4 is reached at 0.6 (lower than 0.8 where purity is 1).
    assert choice.threshold == pytest.approx(0.6)
    assert choice.completeness == pytest.approx(1.0)
    assert choice.reached
    strict = metrics.threshold_for_purity(scores, labels, purity=0.99)
    assert strict.threshold == pytest.approx(0.8)
    assert strict.purity == 1.0
    assert strict.completeness == pytest.approx(2 / 3)


def test_threshold_for_purity_unreachable() -> None:
    choice = metrics.threshold_for_purity([0.9, 0.1], [0, 1], purity=0.99)
    assert not choice.reached
    assert choice.purity == pytest.approx(0.5)


def test_ece_calibrated_and_miscalibrated() -> None:
    rng = np.random.default_rng(1)
    probs = rng.uniform(size=200_000)
    labels = (rng.uniform(size=probs.size) < probs).astype(int)
    assert metrics.expected_calibration_error(probs, labels) < 0.01
    # Always predicting 0.9 for a 50/50 set: ECE = 0.4.
    lab = np.array([0, 1] * 50)
    assert metrics.expected_calibration_error(np.full(100, 0.9), lab) == pytest.approx(0.4)


def test_reliability_diagram_bins() -> None:
    diag = metrics.reliability_diagram([0.0, 0.05, 1.0, 0.95], [0, 0, 1, 1], n_bins=10)
    assert diag["count"][0] == 2
    assert diag["count"][9] == 2
    assert diag["fraction_real"][9] == 1.0
    assert math.isnan(diag["fraction_real"][5])


def test_completeness_vs_snr_and_errors() -> None:
    scores = np.array([0.9, 0.1, 0.9, 0.9, 0.2])
    labels = np.array([1, 1, 1, 1, 0])
    snr = np.array([5.5, 5.5, 20.0, 20.0, 5.5])
    res = metrics.completeness_vs_snr(scores, labels, snr, threshold=0.5, bins=[5, 10, 30])
    assert res["n"] == [2, 2]
    assert res["completeness"] == [0.5, 1.0]
    assert res["completeness_err"][0] == pytest.approx(math.sqrt(0.25 / 2))
    assert res["completeness_err"][1] == 0.0


def test_per_type_rates() -> None:
    scores = [0.9, 0.2, 0.8, 0.7]
    labels = [1, 1, 0, 0]
    types = ["hostless", "hostless", "cosmic_ray", "cosmic_ray"]
    rates = metrics.per_type_rates(scores, labels, types, threshold=0.75)
    assert rates["hostless"]["recall"] == 0.5
    assert rates["cosmic_ray"]["rejection"] == 0.5
    assert math.isnan(rates["cosmic_ray"]["recall"])


def test_summarize_is_json_serialisable() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 500)
    scores = np.clip(labels * 0.6 + rng.uniform(0, 0.4, 500), 0, 1)
    out = metrics.summarize(
        scores, labels, snr=rng.uniform(5, 50, 500), types=np.where(labels == 1, "hostless", "cosmic_ray")
    )
    text = json.dumps(out, allow_nan=False)
    assert json.loads(text)["auc"] == 1.0
    assert out["purity"] >= 0.99
    assert "ece" in out and "per_type" in out and "completeness_vs_snr" in out


@pytest.mark.parametrize(
    "scores,labels",
    [([0.1, np.nan], [0, 1]), ([0.1, 0.2], [0, 2]), ([0.1, 0.2, 0.3], [0, 1]), ([[0.1]], [[1]])],
)
def test_bad_input_raises(scores, labels) -> None:
    with pytest.raises(ValueError):
        metrics.roc_auc(scores, labels)


def test_single_class_raises() -> None:
    with pytest.raises(ValueError, match="both real and bogus"):
        metrics.roc_auc([0.1, 0.2], [1, 1])
