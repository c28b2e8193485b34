"""Tests of the re-implemented incumbent scoring (reference for the benchmark)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lsst.meas.realbogus.architectures import build_architecture
from lsst.meas.realbogus.incumbent import (
    INCUMBENT_CHANNELS,
    incumbent_cutout,
    incumbent_cutouts,
    incumbent_score,
)


@pytest.fixture(scope="module")
def images() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    shape = (160, 200)
    science = rng.normal(size=shape).astype(np.float32)
    template = rng.normal(size=shape).astype(np.float32)
    difference = (science - template).astype(np.float32)
    return science, template, difference


@pytest.fixture(scope="module")
def module() -> torch.nn.Module:
    torch.manual_seed(7)
    return build_architecture("incumbent_cnn")


def test_cutout_centre_and_edges() -> None:
    image = np.arange(100 * 120, dtype=np.float32).reshape(100, 120)
    c = incumbent_cutout(image, 60.4, 50.5)
    assert c.shape == (51, 51) and c.dtype == np.float32
    assert c[25, 25] == image[51, 60]  # floor(y + 0.5), floor(x + 0.5)
    assert c[0, 0] == image[51 - 25, 60 - 25]
    # Fully inside at the extreme positions; one pixel further is all zeros.
    assert incumbent_cutout(image, 25, 25)[0, 0] == image[0, 0]
    assert incumbent_cutout(image, 120 - 26, 100 - 26)[-1, -1] == image[-1, -1]
    for x, y in [(24, 50), (60, 24), (95, 50), (60, 75), (np.nan, 50), (-1e9, 3)]:
        assert not incumbent_cutout(image, x, y).any()


def test_nan_to_zero() -> None:
    image = np.ones((80, 80), dtype=np.float32)
    image[40, 41] = np.nan
    c = incumbent_cutout(image, 40, 40)
    assert np.all(np.isfinite(c))
    assert c[25, 26] == 0.0 and c.sum() == 51 * 51 - 1


def test_cutouts_channel_order(images: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    science, template, difference = images
    stamps = incumbent_cutouts(science, template, difference, np.array([100.0]), np.array([80.0]))
    assert len(stamps) == 1 and stamps[0].shape == (3, 51, 51)
    assert INCUMBENT_CHANNELS == ("template", "science", "difference")
    np.testing.assert_array_equal(stamps[0][0], template[55:106, 75:126])
    np.testing.assert_array_equal(stamps[0][1], science[55:106, 75:126])
    np.testing.assert_array_equal(stamps[0][2], difference[55:106, 75:126])


def test_score_shapes_and_batching(
    images: tuple[np.ndarray, np.ndarray, np.ndarray], module: torch.nn.Module
) -> None:
    science, template, difference = images
    rng = np.random.default_rng(1)
    n = 150
    x = rng.uniform(30, 170, n)
    y = rng.uniform(30, 130, n)
    scores = incumbent_score(science, template, difference, x, y, module)
    assert scores.shape == (n,) and scores.dtype == np.float32
    assert np.all((scores > 0) & (scores < 1))
    assert np.ptp(scores) > 0  # interior sources see different inputs
    same = incumbent_score(science, template, difference, x, y, module, batch_size=7)
    np.testing.assert_allclose(same, scores, rtol=0, atol=1e-6)
    # The same as running the module directly on the stacked stamps.
    stamps = np.stack(incumbent_cutouts(science, template, difference, x, y))
    with torch.no_grad():
        direct = torch.sigmoid(module.eval()(torch.from_numpy(stamps))).numpy()
    np.testing.assert_allclose(scores, direct, rtol=0, atol=1e-6)
    empty = incumbent_score(science, template, difference, np.zeros(0), np.zeros(0), module)
    assert empty.shape == (0,)


def test_edge_sources_get_one_constant_score(
    images: tuple[np.ndarray, np.ndarray, np.ndarray], module: torch.nn.Module
) -> None:
    """Every source whose box crosses the edge gets the same all-zero input."""
    science, template, difference = images
    # Very different sources near each edge, one of them bright in the difference.
    x = np.array([3.0, 196.0, 100.0, 100.0, 10.0, 150.0, -5.0, np.nan])
    y = np.array([80.0, 80.0, 2.0, 150.0, 10.0, 140.0, 80.0, 50.0])
    bright = difference.copy()
    bright[78:83, 1:6] += 1000.0
    stamps = incumbent_cutouts(science, template, bright, x, y)
    assert all(not s.any() for s in stamps)
    scores = incumbent_score(science, template, bright, x, y, module)
    assert np.all(scores == scores[0])
    with torch.no_grad():
        zero_score = torch.sigmoid(module(torch.zeros(1, 3, 51, 51))).item()
    assert scores[0] == pytest.approx(zero_score, abs=1e-6)
    interior = incumbent_score(science, template, bright, np.array([100.0]), np.array([80.0]), module)
    assert interior[0] != scores[0]


def test_errors(images: tuple[np.ndarray, np.ndarray, np.ndarray], module: torch.nn.Module) -> None:
    science, template, difference = images
    with pytest.raises(ValueError, match="share one shape"):
        incumbent_score(science, template[:-1], difference, [1.0], [1.0], module)
    with pytest.raises(ValueError, match="2-D"):
        incumbent_score(science[0], template, difference, [1.0], [1.0], module)
    with pytest.raises(ValueError, match="x and y"):
        incumbent_score(science, template, difference, [1.0, 2.0], [1.0], module)
    with pytest.raises(ValueError, match="batch_size"):
        incumbent_score(science, template, difference, [1.0], [1.0], module, batch_size=0)
