"""Tests of RealBogusModel scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lsst.meas.realbogus import mask_planes
from lsst.meas.realbogus.architectures import build_architecture
from lsst.meas.realbogus.cutouts import extract_cutouts
from lsst.meas.realbogus.errors import ModelPackageError
from lsst.meas.realbogus.model_package import ModelMetadata, read_model_package
from lsst.meas.realbogus.normalization import NormalizationSpec
from lsst.meas.realbogus.scoring import RealBogusModel, load_model, load_model_cached
from tiny_models import write_tiny_classifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")


SIZE = 25


def write_model(path: Path, *, architecture: str = "rb3_cnn", channels=None, seed: int = 0, **meta) -> Path:
    # Larger weights than the default init, so that scores vary visibly between stamps.
    return write_tiny_classifier(
        path, architecture=architecture, channels=channels or ["template", "science", "difference"],
        seed=seed, widths=(8, 8), hidden=8, weight_scale=3.0, cutout_size=SIZE, version="test", **meta,
    )


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "rb3.safetensors")


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    shape = (120, 140)
    template = rng.normal(100.0, 5.0, shape)
    science = template + rng.normal(0.0, 5.0, shape)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    for cx, cy in ((30, 40), (70, 80), (2, 3), (100, 118)):
        science += 400 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 6.0)
    difference = science - template
    variance = np.full(shape, 50.0)
    return {
        "science": science.astype(np.float32),
        "template": template.astype(np.float32),
        "difference": difference.astype(np.float32),
        "variance": variance.astype(np.float32),
    }


def positions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = np.r_[rng.uniform(-5, 145, 60), 30.0, 70.0, 2.0, 0.0, 139.0, np.nan, 5.0, 1e5]
    y = np.r_[rng.uniform(-5, 125, 60), 40.0, 80.0, 3.0, 0.0, 119.0, 5.0, np.inf, 5.0]
    return x, y


def test_scores_edges_and_unscorable(model_path: Path, images: dict[str, np.ndarray]) -> None:
    model = load_model(model_path)
    x, y = positions()
    result = model.score(images["science"], images["template"], images["difference"], x, y)
    assert result.scores.dtype == np.float32 and len(result) == x.size
    finite = np.isfinite(result.scores)
    assert np.all((result.scores[finite] >= 0) & (result.scores[finite] <= 1))
    # Only the non-finite and far-outside positions are unscored.
    np.testing.assert_array_equal(~finite, np.r_[np.zeros(65, bool), True, True, True])
    assert list(result.reason[-3:]) == ["non_finite_position", "non_finite_position", "outside_image"]
    # Edge sources get real, distinct scores (not one constant).
    edge = result.flag_edge & finite
    assert edge.sum() >= 5
    assert np.unique(result.scores[edge]).size == edge.sum()
    assert result.flag_nan_center[63] and "edge" in result.reason[63]


def test_mask_flags(model_path: Path, images: dict[str, np.ndarray]) -> None:
    model = load_model(model_path)
    mask = np.zeros(images["difference"].shape, np.int32)
    mask[40, 30] = mask_planes.SAT
    result = model.score(
        images["science"],
        images["template"],
        images["difference"],
        np.array([30.0, 70.0]),
        np.array([40.0, 80.0]),
        mask=mask,
    )
    np.testing.assert_array_equal(result.flag_bad, [True, False])
    np.testing.assert_array_equal(result.flag_nan_center, [True, False])
    assert np.all(np.isfinite(result.scores))


def test_unit_invariance_and_batch_size(model_path: Path, images: dict[str, np.ndarray]) -> None:
    model = load_model(model_path)
    x, y = positions()
    a = model.score(images["science"], images["template"], images["difference"], x, y, images["variance"])
    b = model.score(
        images["science"] * 1e3, images["template"] * 1e3, images["difference"] * 1e3, x, y,
        images["variance"] * 1e6, batch_size=7,
    )
    c = model.score(images["science"], images["template"], images["difference"], x, y, images["variance"],
                    batch_size=1)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4, equal_nan=True)
    # Fixed-size forward passes make scores bit-identical for any batch size.
    np.testing.assert_array_equal(a.scores, c.scores)
    np.testing.assert_array_equal(a.reason, b.reason)
    assert np.nanstd(a.scores) > 1e-3  # the test would be vacuous with constant scores


@pytest.mark.parametrize("stamp_size", [30, 63, 25])
def test_score_stamps_any_size(model_path: Path, images: dict[str, np.ndarray], stamp_size: int) -> None:
    model = load_model(model_path)
    x, y = np.array([30.0, 70.0, 50.0]), np.array([40.0, 80.0, 60.0])
    planes = {k: images[k] for k in ("science", "template", "difference")}
    stamps = extract_cutouts(planes, x, y, stamp_size).stamps  # alert order science, template, difference
    scores = model.score_stamps(stamps)
    direct = model.score(images["science"], images["template"], images["difference"], x, y).scores
    assert scores.shape == (3,) and scores.dtype == np.float32
    if stamp_size >= SIZE:
        # Central crop to the model size gives exactly the directly cut stamps.
        np.testing.assert_allclose(scores, direct, atol=1e-6)
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(model.score_stamps(stamps * 1e3), scores, atol=1e-4)
    nan_stamps = stamps.copy()
    nan_stamps[0] = np.nan
    assert np.isnan(model.score_stamps(nan_stamps)[0])


def test_score_cutouts_reorders_channels(model_path: Path, images: dict[str, np.ndarray]) -> None:
    model = load_model(model_path)
    x, y = np.array([30.0, 70.0]), np.array([40.0, 80.0])
    order_a = {k: images[k] for k in ("difference", "science", "template")}
    order_b = {k: images[k] for k in ("template", "science", "difference")}
    a = model.score_cutouts(extract_cutouts(order_a, x, y, 41))
    b = model.score_cutouts(extract_cutouts(order_b, x, y, SIZE))
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)
    with pytest.raises(ValueError, match="lack"):
        model.score_cutouts(extract_cutouts({"difference": images["difference"]}, x, y, SIZE))


def test_difference_only_model(tmp_path: Path, images: dict[str, np.ndarray]) -> None:
    path = write_model(
        tmp_path / "rb1.safetensors", architecture="rb1_cnn", channels=["difference"],
        normalization=NormalizationSpec(method="difference_snr"),
    )
    model = load_model(path)
    x, y = np.array([30.0]), np.array([40.0])
    result = model.score(None, None, images["difference"], x, y, images["variance"])
    assert np.isfinite(result.scores[0])
    rb3 = load_model(write_model(tmp_path / "rb3.safetensors"))
    with pytest.raises(ValueError, match="needs the 'template'"):
        rb3.score(None, None, images["difference"], np.array([30.0]), np.array([40.0]))


def test_dihedral_average(model_path: Path, images: dict[str, np.ndarray]) -> None:
    pkg = read_model_package(model_path)
    model = RealBogusModel.from_package(pkg, dihedral_average=True)
    planes = {k: images[k] for k in ("science", "template", "difference")}
    stamps = extract_cutouts(planes, np.array([30.0, 70.0]), np.array([40.0, 80.0]), SIZE).stamps
    a = model.score_stamps(stamps)
    b = model.score_stamps(np.ascontiguousarray(np.rot90(stamps, 1, axes=(2, 3))))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_load_model_cached_and_errors(model_path: Path, tmp_path: Path) -> None:
    a = load_model_cached(model_path)
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(model_path.read_bytes())
    assert load_model_cached(copy) is a
    assert load_model(model_path) is not a
    with pytest.raises(ModelPackageError, match="does not exist"):
        load_model(tmp_path / "nope.safetensors")
    with pytest.raises(ValueError, match="device"):
        load_model(model_path, device="tpu")


def test_empty_and_bad_inputs(model_path: Path, images: dict[str, np.ndarray]) -> None:
    model = load_model(model_path)
    empty = model.score(images["science"], images["template"], images["difference"], np.zeros(0), np.zeros(0))
    assert len(empty) == 0 and empty.scores.dtype == np.float32
    with pytest.raises(ValueError, match="share one shape"):
        model.score(images["science"][:10], images["template"], images["difference"], np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="shape"):
        model.score_stamps(np.zeros((2, 3, 5)))
    with pytest.raises(ValueError, match="batch_size"):
        model.score(images["science"], images["template"], images["difference"], np.ones(1), np.ones(1),
                    batch_size=0)


def test_unscorable_reasons(model_path: Path, images: dict[str, np.ndarray]) -> None:
    model = load_model(model_path)
    difference = images["difference"].copy()
    difference[:30, :30] = np.nan  # a NaN region larger than the stamp
    difference[60:100, 60:100] = 3.0  # constant: no noise estimate
    x, y = np.array([14.0, 80.0, 40.0]), np.array([14.0, 80.0, 60.0])
    result = model.score(images["science"], images["template"], difference, x, y)
    assert list(result.reason[:2]) == ["no_valid_pixels", "no_noise_estimate"]
    assert np.all(np.isnan(result.scores[:2])) and np.isfinite(result.scores[2])


def test_variance_shape_checked(model_path: Path, images: dict[str, np.ndarray]) -> None:
    model = load_model(model_path)
    with pytest.raises(ValueError, match="variance shape"):
        model.score(images["science"], images["template"], images["difference"], np.ones(1), np.ones(1),
                    np.ones((5, 5)))


def test_onnx_backend_matches_torch_and_is_batch_invariant():
    """The ONNX Runtime path gives the PyTorch scores (≤ 1e-6) for any batch size."""
    import torch as _torch
    from lsst.meas.realbogus.scoring import RealBogusModel

    _torch.manual_seed(3)
    module = build_architecture("rb3_cnn", in_channels=4)
    meta = ModelMetadata(architecture="rb3_cnn", architecture_kwargs={"in_channels": 4},
                         channels=["template", "science", "difference"], cutout_size=25, version="t")
    ref = RealBogusModel(module, meta, backend="torch")
    fast = RealBogusModel(module, meta, backend="onnx")
    assert fast.backend_name == "onnx"
    stamps = np.random.default_rng(1).normal(size=(150, 3, 25, 25)).astype(np.float32)
    stamps[::7, 2, 12, 12] += 40.0
    expected = ref.score_stamps(stamps)
    got = fast.score_stamps(stamps)
    assert np.abs(got - expected).max() <= 1e-6
    assert np.array_equal(fast.score_stamps(stamps, batch_size=13), got)
    with pytest.raises(ValueError, match="Unknown scoring backend"):
        RealBogusModel(module, meta, backend="tensorrt")
