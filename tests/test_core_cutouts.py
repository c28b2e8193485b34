"""Tests of vectorised cutout extraction."""

from __future__ import annotations

import numpy as np
import pytest
from lsst.meas.realbogus import mask_planes
from lsst.meas.realbogus.cutouts import center_crop_or_pad, extract_cutouts, iter_cutout_batches


def naive_cutout(image: np.ndarray, x: float, y: float, size: int) -> np.ndarray:
    """Cut one stamp pixel by pixel (reference), NaN outside."""
    out = np.full((size, size), np.nan, dtype=np.float32)
    if not (np.isfinite(x) and np.isfinite(y)):
        return out
    ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
    half = size // 2
    for r in range(size):
        for c in range(size):
            yy, xx = iy - half + r, ix - half + c
            if 0 <= yy < image.shape[0] and 0 <= xx < image.shape[1]:
                out[r, c] = image[yy, xx]
    return out


@pytest.fixture
def planes() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(42)
    shape = (37, 45)
    return {name: rng.normal(size=shape).astype(np.float32) for name in ("science", "template", "difference")}


@pytest.mark.parametrize("size", [1, 2, 7, 8, 15, 51])
def test_matches_naive_reference(planes: dict[str, np.ndarray], size: int) -> None:
    rng = np.random.default_rng(size)
    x = np.r_[rng.uniform(-10, 55, 40), 0.0, 44.0, 0.5, -0.5, 44.49, 22.5]
    y = np.r_[rng.uniform(-10, 47, 40), 0.0, 36.0, 0.5, -0.5, 36.49, 18.5]
    batch = extract_cutouts(planes, x, y, size)
    assert batch.stamps.shape == (x.size, 3, size, size)
    assert batch.stamps.dtype == np.float32
    assert batch.channels == ("science", "template", "difference")
    for i in range(x.size):
        for c, name in enumerate(batch.channels):
            np.testing.assert_array_equal(batch.stamps[i, c], naive_cutout(planes[name], x[i], y[i], size))
        ref = naive_cutout(planes["science"], x[i], y[i], size)
        assert batch.edge_fraction[i] == pytest.approx(np.isnan(ref).mean())
        assert batch.bad_fraction[i] == pytest.approx(np.isnan(ref).mean())


def test_corners_and_outside(planes: dict[str, np.ndarray]) -> None:
    x = np.array([0.0, 44.0, 0.0, 44.0, 22.0, 1e6, -1e6, np.nan, np.inf, 10.0])
    y = np.array([0.0, 0.0, 36.0, 36.0, 18.0, 5.0, 5.0, 5.0, 5.0, -np.inf])
    batch = extract_cutouts(planes, x, y, 5)
    # A corner source keeps a 3x3 quadrant of its 5x5 stamp.
    np.testing.assert_allclose(batch.edge_fraction[:4], 1 - 9 / 25)
    np.testing.assert_array_equal(batch.stamps[0, 0, 2:, 2:], planes["science"][:3, :3])
    assert batch.edge_fraction[4] == 0 and not batch.center_bad[4]
    assert np.all(batch.edge_fraction[5:] == 1.0)
    assert np.all(batch.bad_fraction[5:] == 1.0)
    assert np.all(np.isnan(batch.stamps[5:]))
    assert np.all(batch.center_bad[5:])
    # Corner: central 3x3 partly outside.
    assert batch.center_bad[0]


def test_mask_and_nan_pixels(planes: dict[str, np.ndarray]) -> None:
    planes = {k: v.copy() for k, v in planes.items()}
    mask = np.zeros((37, 45), dtype=np.int32)
    mask[20, 20] = mask_planes.SAT
    mask[21, 21] = mask_planes.DETECTED  # usable bit: kept
    planes["template"][19, 19] = np.nan
    batch = extract_cutouts(planes, np.array([20.0]), np.array([20.0]), 5, mask=mask)
    assert np.all(np.isnan(batch.stamps[0, :, 2, 2]))  # masked in every channel
    assert np.isfinite(batch.stamps[0, 0, 3, 3])
    assert np.isnan(batch.stamps[0, 1, 1, 1]) and np.isfinite(batch.stamps[0, 0, 1, 1])
    assert batch.bad_fraction[0] == pytest.approx(2 / 25)
    assert batch.edge_fraction[0] == 0
    assert batch.center_bad[0]
    # With no unusable bits the masked pixel is kept.
    kept = extract_cutouts(planes, np.array([20.0]), np.array([20.0]), 5, mask=mask, unusable_bits=0)
    assert np.isfinite(kept.stamps[0, 0, 2, 2])


def test_batches_equal_full(planes: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-5, 50, 23), rng.uniform(-5, 40, 23)
    full = extract_cutouts(planes, x, y, 9)
    parts = list(iter_cutout_batches(planes, x, y, 9, 5))
    assert [len(p) for p in parts] == [5, 5, 5, 5, 3]
    np.testing.assert_array_equal(np.concatenate([p.stamps for p in parts]), full.stamps)
    np.testing.assert_array_equal(np.concatenate([p.bad_fraction for p in parts]), full.bad_fraction)


def test_image_smaller_than_stamp() -> None:
    image = np.arange(12, dtype=np.float32).reshape(3, 4)
    batch = extract_cutouts({"difference": image}, np.array([1.0]), np.array([1.0]), 7)
    np.testing.assert_array_equal(batch.stamps[0, 0], naive_cutout(image, 1.0, 1.0, 7))


def test_invalid_inputs(planes: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="share one shape"):
        extract_cutouts({"a": np.zeros((5, 5)), "b": np.zeros((5, 6))}, [1.0], [1.0], 3)
    with pytest.raises(ValueError, match="2-D"):
        extract_cutouts({"a": np.zeros((5, 5, 2))}, [1.0], [1.0], 3)
    with pytest.raises(ValueError, match="Mask shape"):
        extract_cutouts(planes, [1.0], [1.0], 3, mask=np.zeros((3, 3), np.int32))
    with pytest.raises(ValueError, match="x and y"):
        extract_cutouts(planes, [1.0, 2.0], [1.0], 3)
    with pytest.raises(ValueError, match="positive integer"):
        extract_cutouts(planes, [1.0], [1.0], 0)
    with pytest.raises(ValueError, match="non-empty"):
        extract_cutouts({}, [1.0], [1.0], 3)


@pytest.mark.parametrize(("height", "width"), [(9, 9), (10, 10), (9, 12), (4, 5)])
@pytest.mark.parametrize("size", [3, 4, 7, 14])
def test_crop_or_pad_matches_direct_cut(height: int, width: int, size: int) -> None:
    rng = np.random.default_rng(height * 100 + width)
    image = rng.normal(size=(60, 60)).astype(np.float32)
    # Cut an H x W stamp centred on (30, 30), then crop/pad to size: must equal a direct cut.
    rows = np.arange(height) - height // 2 + 30
    cols = np.arange(width) - width // 2 + 30
    stamp = image[np.ix_(rows, cols)][None, None]
    out = center_crop_or_pad(stamp, size)
    direct = extract_cutouts({"d": image}, np.array([30.0]), np.array([30.0]), size).stamps
    src_r = np.arange(size) - size // 2 + height // 2
    src_c = np.arange(size) - size // 2 + width // 2
    inside_r = (src_r >= 0) & (src_r < height)
    inside_c = (src_c >= 0) & (src_c < width)
    inside = inside_r[:, None] & inside_c[None, :]
    np.testing.assert_array_equal(out[0, 0][inside], direct[0, 0][inside])
    assert np.all(np.isnan(out[0, 0][~inside]))
    assert out[0, 0, size // 2, size // 2] == image[30, 30]
