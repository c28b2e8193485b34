"""classify_negatives: which artefact an unmatched candidate falls on."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from lsst.meas.realbogus.simulation import classify_negatives, simulate_visit, small_test_config


def _truth(rows):
    names = ("category", "type", "x", "y", "x1", "y1")
    return Table(rows=rows, names=names)


def test_points_segments_and_boxes():
    truth = _truth(
        [
            ("artifact", "hot_pixel", 10.0, 10.0, 10.0, 10.0),
            ("artifact", "satellite_trail", 0.0, 50.0, 100.0, 150.0),
            ("artifact", "nan_region", 200.0, 200.0, 220.0, 230.0),
            ("artifact", "edge", 0.0, 0.0, 299.0, 3.0),
            ("transient", "hostless", 150.0, 20.0, 150.0, 20.0),
        ]
    )
    x = np.array([11.0, 50.0, 49.0, 210.0, 223.0, 150.0, 120.0, 60.0, 226.0])
    y = np.array([10.5, 100.0, 102.0, 215.0, 215.0, 1.0, 20.0, 60.0, 215.0])
    out = classify_negatives(truth, x, y, radius_pix=3.0)
    assert out.tolist() == [
        "hot_pixel",
        "satellite_trail",
        "satellite_trail",
        "nan_region",
        "nan_region",
        "edge",
        "other",
        "other",
        "other",
    ]
    # Beyond the segment end the distance is to the end point.
    assert classify_negatives(truth, np.array([102.0]), np.array([152.0]), 3.0).tolist() == [
        "satellite_trail"
    ]
    assert classify_negatives(truth, np.array([105.0]), np.array([155.0]), 3.0).tolist() == ["other"]


def test_nearest_artifact_wins_and_transients_ignored():
    truth = _truth(
        [
            ("artifact", "cosmic_ray", 10.0, 10.0, 20.0, 10.0),
            ("artifact", "hot_pixel", 14.0, 12.0, 14.0, 12.0),
            ("transient", "hostless", 14.0, 10.5, 14.0, 10.5),
        ]
    )
    out = classify_negatives(truth, np.array([14.0, 14.0]), np.array([10.4, 11.8]), radius_pix=2.5)
    assert out.tolist() == ["cosmic_ray", "hot_pixel"]


def test_on_simulated_visit():
    config = small_test_config(256, n_cosmic_rays_per_detector=2000.0, n_hot_pixels_per_detector=1000.0)
    sv = simulate_visit(config, 1, 0, seed=1)
    truth = sv.truth
    for typ in ("cosmic_ray", "hot_pixel"):
        rows = truth[truth["type"] == typ]
        assert len(rows) > 5
        got = classify_negatives(truth, np.asarray(rows["x"]), np.asarray(rows["y"]), 0.1)
        assert np.mean(got == typ) > 0.8
    assert classify_negatives(truth, np.zeros(0), np.zeros(0), 2.0).shape == (0,)


def test_bad_input():
    truth = _truth([("artifact", "hot_pixel", 1.0, 1.0, 1.0, 1.0)])
    with pytest.raises(ValueError, match="radius"):
        classify_negatives(truth, np.array([1.0]), np.array([1.0]), -1.0)
    with pytest.raises(ValueError, match="equal length"):
        classify_negatives(truth, np.array([1.0, 2.0]), np.array([1.0]), 1.0)
    with pytest.raises(ValueError, match="finite"):
        classify_negatives(truth, np.array([np.nan]), np.array([1.0]), 1.0)
    with pytest.raises(ValueError, match="columns"):
        classify_negatives(Table({"x": [1.0]}), np.array([1.0]), np.array([1.0]), 1.0)
