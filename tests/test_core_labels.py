"""Tests of one-to-one truth matching and labels."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from lsst.meas.realbogus.labels import label_candidates, match_candidates


def brute_force_greedy(cx, cy, tx, ty, radius):
    pairs = []
    for i in range(len(cx)):
        for j in range(len(tx)):
            d = np.hypot(cx[i] - tx[j], cy[i] - ty[j])
            if d <= radius:
                pairs.append((d, i, j))
    pairs.sort()
    result = np.full(len(cx), -1)
    used = set()
    for _, i, j in pairs:
        if result[i] < 0 and j not in used:
            result[i] = j
            used.add(j)
    return result


def test_nearest_first_one_to_one() -> None:
    # Two candidates compete for one truth: the nearer wins, the other takes the next truth.
    cand_x, cand_y = np.array([0.0, 0.3]), np.array([0.0, 0.0])
    truth_x, truth_y = np.array([0.25, 0.9]), np.array([0.0, 0.0])
    result = match_candidates(cand_x, cand_y, truth_x, truth_y, radius=1.0)
    np.testing.assert_array_equal(result.truth_index, [1, 0])
    np.testing.assert_allclose(result.distance, [0.9, 0.05])
    # With a small radius the loser stays unmatched.
    small = match_candidates(cand_x, cand_y, truth_x, truth_y, radius=0.5)
    np.testing.assert_array_equal(small.truth_index, [-1, 0])
    assert np.isnan(small.distance[0])


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cx, cy = rng.uniform(0, 10, 40), rng.uniform(0, 10, 40)
    tx, ty = rng.uniform(0, 10, 30), rng.uniform(0, 10, 30)
    result = match_candidates(cx, cy, tx, ty, radius=1.0)
    np.testing.assert_array_equal(result.truth_index, brute_force_greedy(cx, cy, tx, ty, 1.0))
    matched = result.truth_index[result.truth_index >= 0]
    assert len(set(matched.tolist())) == matched.size  # one-to-one


def test_non_finite_and_empty() -> None:
    one = np.array([1.0])
    result = match_candidates(np.array([np.nan, 1.0]), np.array([0.0, 1.0]), one, one, 0.5)
    np.testing.assert_array_equal(result.truth_index, [-1, 0])
    empty = match_candidates(np.array([1.0]), np.array([1.0]), np.array([]), np.array([]), 0.5)
    np.testing.assert_array_equal(empty.truth_index, [-1])
    with pytest.raises(ValueError, match="radius"):
        match_candidates(np.array([1.0]), np.array([1.0]), np.array([1.0]), np.array([1.0]), -1.0)
    with pytest.raises(ValueError, match="1-D"):
        match_candidates(np.array([1.0, 2.0]), np.array([1.0]), np.array([1.0]), np.array([1.0]), 1.0)


def test_label_candidates_uses_only_transients() -> None:
    truth = Table(
        {
            "x": [10.0, 20.0, 30.0],
            "y": [10.0, 20.0, 30.0],
            "category": ["artifact", "transient", "transient"],
        }
    )
    cand_x = np.array([10.1, 20.2, 50.0, 29.0])
    cand_y = np.array([10.0, 20.0, 50.0, 30.0])
    labels, idx = label_candidates(cand_x, cand_y, truth, radius_pix=2.5)
    np.testing.assert_array_equal(labels, [False, True, False, True])
    np.testing.assert_array_equal(idx, [-1, 1, -1, 2])
    none = Table({"x": [1.0], "y": [1.0], "category": ["artifact"]})
    labels, idx = label_candidates(np.array([1.0]), np.array([1.0]), none, 1.0)
    assert not labels[0] and idx[0] == -1
    with pytest.raises(ValueError, match="category"):
        label_candidates(cand_x, cand_y, Table({"x": [1.0], "y": [1.0]}), 1.0)
