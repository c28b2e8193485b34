"""Tests of the float16 stamp store, dihedral augmentation and batch iteration."""

from __future__ import annotations

import numpy as np
import pytest
from lsst.meas.realbogus.normalization import NormalizationSpec, normalize_stamps
from lsst.meas.realbogus.stamp_dataset import (
    ArrayStampSource,
    IndexedStampSource,
    StampBatchIterator,
    StampStore,
    OCCLUSION_MIN_RADIUS,
    apply_dihedral,
    apply_occlusions,
    dihedral_variants,
    draw_occlusions,
)

CHANNELS = ("science", "template", "difference")


def _stamps(n: int, size: int = 9, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (n, 3, size, size)) * rng.uniform(1e-3, 1e7, (n, 1, 1, 1))


def test_store_roundtrip_large_dynamic_range(tmp_path) -> None:
    stamps = _stamps(10)
    stamps[0, 1, 2, 3] = 3.0e6  # would overflow float16 without the per-stamp scale
    stamps[1, 2, 0, 0] = np.nan
    store = StampStore.create(tmp_path / "s", 12, CHANNELS, 9)
    store.append(stamps[:4], [1, 0, 1, 0], snr=[5, 6, 7, 8], groups=[1, 1, 2, 2], types=["a", "b", "c", "d"])
    store.append(stamps[4:], [0] * 6)
    ro = StampStore.open(tmp_path / "s")
    assert len(ro) == 10
    assert ro._arrays["stamps"].dtype == np.float16
    assert isinstance(ro._arrays["stamps"], np.memmap)
    back = ro.read(np.arange(10))
    assert back.dtype == np.float32
    assert np.isnan(back[1, 2, 0, 0])
    ok = np.isfinite(stamps)
    peak = np.nanmax(np.abs(stamps).reshape(10, -1), axis=1)[:, None, None, None]
    # float16 keeps ~11 bits: error below 1e-3 of each stamp's peak.
    assert np.all(np.abs(back - stamps)[ok] <= (1e-3 * np.broadcast_to(peak, stamps.shape))[ok])
    np.testing.assert_array_equal(ro.labels, [1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(ro.groups[:4], [1, 1, 2, 2])
    assert ro.groups[5] == -1 and np.isnan(ro.snr[5]) and ro.types[2] == "c"
    # Unsorted and repeated reads come back in the requested order.
    np.testing.assert_array_equal(ro.read(np.array([3, 0, 3])), back[[3, 0, 3]])


def test_store_errors(tmp_path) -> None:
    store = StampStore.create(tmp_path / "s", 2, CHANNELS, 9)
    with pytest.raises(ValueError, match="shape"):
        store.append(np.zeros((1, 3, 8, 8)), [1])
    with pytest.raises(ValueError, match="capacity"):
        store.append(np.zeros((3, 3, 9, 9)), [1, 0, 1])
    with pytest.raises(ValueError, match="binary"):
        store.append(np.zeros((1, 3, 9, 9)), [2])
    with pytest.raises(FileExistsError):
        StampStore.create(tmp_path / "s", 2, CHANNELS, 9)
    with pytest.raises(PermissionError):
        StampStore.open(tmp_path / "s").append(np.zeros((1, 3, 9, 9)), [1])
    with pytest.raises(FileNotFoundError):
        StampStore.open(tmp_path / "nothing")


def test_dihedral_variants_are_the_8_distinct_symmetries() -> None:
    stamp = np.arange(25, dtype=float).reshape(5, 5)
    variants = dihedral_variants(stamp)
    assert variants.shape == (8, 5, 5)
    assert len({v.tobytes() for v in variants}) == 8
    np.testing.assert_array_equal(variants[0], stamp)
    np.testing.assert_array_equal(variants[1], np.rot90(stamp))
    np.testing.assert_array_equal(variants[4], stamp[:, ::-1])
    # Closed under composition: every variant of a variant is a variant.
    known = {v.tobytes() for v in variants}
    for v in variants:
        assert {w.tobytes() for w in dihedral_variants(v)} == known
    # The centre pixel never moves.
    assert np.all(variants[:, 2, 2] == stamp[2, 2])
    with pytest.raises(ValueError):
        apply_dihedral(stamp, 8)


def test_batch_iterator_reorders_channels_and_augments() -> None:
    stamps = _stamps(20, seed=3).astype(np.float32)
    src = ArrayStampSource(stamps, np.arange(20) % 2, CHANNELS)
    spec = NormalizationSpec()
    model_channels = ("template", "science", "difference")
    it = StampBatchIterator(src, 8, model_channels, spec)
    expected = normalize_stamps(stamps[:, [1, 0, 2]], model_channels, spec)
    batches = list(it.iterate(np.arange(20)))
    assert [b[0].shape[0] for b in batches] == [8, 8, 4]
    np.testing.assert_allclose(np.concatenate([b[0] for b in batches]), expected, rtol=1e-6, atol=1e-6)
    aug = list(it.iterate(np.arange(20), np.random.default_rng(0)))
    aug_again = list(it.iterate(np.arange(20), np.random.default_rng(0)))
    np.testing.assert_array_equal(aug[0][0], aug_again[0][0])
    x_aug = np.concatenate([b[0] for b in aug])
    # Each augmented stamp is one of the 8 variants of the plain one.
    for i in range(20):
        assert any(np.array_equal(x_aug[i], v) for v in dihedral_variants(expected[i]))


def test_indexed_source(tmp_path) -> None:
    stamps = _stamps(6)
    store = StampStore.create(tmp_path / "s", 6, CHANNELS, 9)
    store.append(stamps, [1, 0, 1, 0, 1, 0], groups=np.arange(6))
    view = IndexedStampSource(StampStore.open(tmp_path / "s"), np.array([5, 1]))
    assert len(view) == 2
    np.testing.assert_array_equal(view.groups, [5, 1])
    np.testing.assert_array_equal(view.read(np.array([1])), store.read(np.array([1])))
    with pytest.raises(IndexError):
        IndexedStampSource(store, np.array([6]))


def test_torch_dataset_with_dataloader() -> None:
    import torch
    from lsst.meas.realbogus.stamp_dataset import StampTorchDataset
    from torch.utils.data import DataLoader

    stamps = _stamps(10, seed=5).astype(np.float32)
    it = StampBatchIterator(ArrayStampSource(stamps, np.arange(10) % 2, CHANNELS), 4)
    ds = StampTorchDataset(it)
    assert len(ds) == 10
    x, y = next(iter(DataLoader(ds, batch_size=4)))
    assert x.shape == (4, 4, 9, 9) and x.dtype == torch.float32
    np.testing.assert_allclose(x.numpy(), it.get_batch(np.arange(4)), rtol=1e-6)
    np.testing.assert_array_equal(y.numpy(), [0, 1, 0, 1])


def test_occlusions_spare_the_centre_and_follow_the_probability() -> None:
    size, n = 31, 4000
    masks = draw_occlusions(np.random.default_rng(3), n, size, 0.4)
    assert masks.shape == (n, size, size) and masks.dtype == bool
    c, r = size // 2, OCCLUSION_MIN_RADIUS
    assert not masks[:, c - r : c + r + 1, c - r : c + r + 1].any()
    hit = masks.any(axis=(1, 2))
    assert 0.37 < hit.mean() < 0.43
    # Blocks reach the stamp border; lines are 1-2 pixels wide and cross the whole stamp.
    touches_border = masks[:, 0].any(axis=1) | masks[:, -1].any(axis=1) | masks[:, :, 0].any(axis=1) | masks[
        :, :, -1
    ].any(axis=1)
    assert np.all(touches_border[hit])
    fractions = masks[hit].mean(axis=(1, 2))
    assert fractions.min() > 0 and fractions.max() < 0.5  # never more than the half-plane beyond the centre
    # The same generator state gives the same masks; probability 0 draws nothing.
    np.testing.assert_array_equal(masks, draw_occlusions(np.random.default_rng(3), n, size, 0.4))
    rng = np.random.default_rng(5)
    assert draw_occlusions(rng, n, size, 0.0) is None
    assert rng.uniform() == np.random.default_rng(5).uniform()
    with pytest.raises(ValueError, match="probability"):
        draw_occlusions(rng, 3, size, 1.5)
    with pytest.raises(ValueError, match="too small"):
        draw_occlusions(rng, 3, 7, 0.5)


def test_occlusions_become_missing_pixels_in_every_channel() -> None:
    stamps = _stamps(40, size=15).astype(np.float32)
    masks = draw_occlusions(np.random.default_rng(0), 40, 15, 1.0)
    out = apply_occlusions(stamps, masks)
    assert np.isnan(out).any(axis=1).sum() == masks.sum()
    assert np.all(np.isnan(out) == masks[:, None])
    np.testing.assert_array_equal(out[~np.isnan(out)], stamps[~np.broadcast_to(masks[:, None], stamps.shape)])
    assert not np.isnan(stamps).any()  # the input is not modified
    assert apply_occlusions(stamps, None) is stamps
    with pytest.raises(ValueError, match="do not fit"):
        apply_occlusions(stamps, masks[:, :-1])
    # Through the batch iterator: the model's mask channel marks the occluded pixels.
    spec = NormalizationSpec(method="robust", mask_channel=True)
    it = StampBatchIterator(ArrayStampSource(stamps, np.zeros(40, np.int64), CHANNELS), 8, CHANNELS, spec)
    batch = it.get_batch(np.arange(40), occlusion=masks)
    assert np.isfinite(batch).all()
    np.testing.assert_array_equal(batch[:, -1] == 0, masks)
