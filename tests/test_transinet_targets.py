"""Tests of TransiNet target building."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from lsst.meas.realbogus.mask_planes import NO_DATA
from lsst.meas.realbogus.transinet.targets import build_targets


def _truth() -> Table:
    return Table(
        rows=[
            (20.3, 15.6, "transient", 50.0, 20.3, 15.6),
            (40.0, 40.0, "transient", 1.0, 40.0, 40.0),  # too faint when min_snr=3
            (5.0, 50.0, "artifact", 0.0, 5.0, 50.0),  # point artefact
            (50.0, 5.0, "artifact", 0.0, 58.0, 5.0),  # trail segment
        ],
        names=("x", "y", "category", "snr", "x1", "y1"),
    )


def test_blobs_at_transients_only() -> None:
    sigma = 1.5
    t = build_targets(_truth(), (60, 64), sigma, positive_weight=4.0, artifact_weight=3.0)
    assert t.target.shape == (60, 64) and t.target.dtype == np.float32
    iy, ix = np.unravel_index(np.argmax(t.target[:30, :30]), (30, 30))
    assert (iy, ix) == (16, 20)
    expected = np.exp(-0.5 * ((20 - 20.3) ** 2 + (16 - 15.6) ** 2) / sigma**2)
    assert t.target[16, 20] == pytest.approx(expected, rel=1e-5)
    assert t.target[40, 40] == pytest.approx(1.0, abs=1e-6)
    # Nothing at artefacts or far away.
    assert t.target[50, 5] == 0 and t.target[5, 54] == 0 and t.target[55, 60] == 0
    # Weights: up-weighted blobs and hard negatives, 1 elsewhere.
    assert t.weight[40, 40] == pytest.approx(1 + 4.0)
    assert t.weight[50, 5] == 3.0 and t.weight[5, 54] == 3.0 and t.weight[8, 54] == 3.0
    assert t.weight[55, 60] == 1.0


def test_ignore_invalid_and_faint() -> None:
    mask = np.zeros((60, 64), dtype=np.int32)
    mask[:20, :30] = NO_DATA
    invalid = np.zeros((60, 64), dtype=bool)
    invalid[50:, 50:] = True
    t = build_targets(_truth(), (60, 64), 1.5, mask=mask, invalid=invalid, min_snr=3.0)
    assert np.all(t.weight[:20, :30] == 0) and np.all(t.target[:20, :30] == 0)
    assert np.all(t.weight[50:, 50:] == 0)
    assert t.weight[40, 40] == 0 and t.target[40, 40] == 0  # faint transient: ignored, not negative
    assert t.weight[30, 10] == 1.0


def test_empty_truth_and_errors() -> None:
    empty = Table(names=("x", "y", "category"), dtype=(float, float, str))
    t = build_targets(empty, (10, 12), 2.0)
    assert np.all(t.target == 0) and np.all(t.weight == 1)
    with pytest.raises(ValueError, match="category"):
        build_targets(Table({"x": [1.0], "y": [2.0]}), (10, 10), 1.0)
    with pytest.raises(ValueError, match="psf_sigma"):
        build_targets(empty, (10, 10), 0.0)
    with pytest.raises(ValueError, match="mask has shape"):
        build_targets(empty, (10, 10), 1.0, mask=np.zeros((5, 5), dtype=np.int32))
