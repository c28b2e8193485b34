"""Robustness of scoring to bad inputs: every case gives a clear error or a defined, documented result.

The matrix of cases is in ``doc/robustness.rst``.  A tiny randomly initialised ``rb3_cnn`` package is
used (weights scaled up so that scores vary visibly between stamps); the behaviour under test is the
preprocessing and bookkeeping around the network, not its accuracy.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from lsst.meas.realbogus import mask_planes
from lsst.meas.realbogus.cutouts import extract_cutouts
from lsst.meas.realbogus.normalization import NormalizationSpec
from lsst.meas.realbogus.scoring import RealBogusModel, load_model
from tiny_models import write_tiny_classifier

SIZE = 21
SHAPE = (160, 180)
WEIGHT_SCALE = 1.5


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_tiny_model(
    path: Path, *, size: int = SIZE, seed: int = 0, spec: NormalizationSpec | None = None
) -> Path:
    """Write a tiny random ``rb3_cnn`` package with visibly varying scores."""
    return write_tiny_classifier(path, cutout_size=size, seed=seed, version="robust",
                                 weight_scale=WEIGHT_SCALE, normalization=spec or NormalizationSpec())


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> RealBogusModel:
    """Return model."""
    return load_model(write_tiny_model(tmp_path_factory.mktemp("robust_model") / "tiny.safetensors"))


def make_images(seed: int = 1, shape: tuple[int, int] = SHAPE, n_stars: int = 40) -> dict[str, np.ndarray]:
    """Science/template/difference/variance images with point sources, including on the edges."""
    rng = np.random.default_rng(seed)
    height, width = shape
    template = rng.normal(200.0, 6.0, shape)
    science = template + rng.normal(0.0, 6.0, shape)
    yy, xx = np.mgrid[:height, :width]
    cx = np.r_[rng.uniform(0, width, n_stars), np.zeros(5), np.full(5, width - 1.0)]
    cy = np.r_[rng.uniform(0, height, n_stars), rng.uniform(0, height, 10)]
    amp = rng.uniform(50, 2000, cx.size) * rng.choice([-1, 1], cx.size)
    for a, x0, y0 in zip(amp, cx, cy):
        r2 = (xx - x0) ** 2 + (yy - y0) ** 2
        science += a * np.exp(-r2 / 5.0)
        template += 0.3 * abs(a) * np.exp(-r2 / 7.0)
    return {
        "science": science.astype(np.float32),
        "template": template.astype(np.float32),
        "difference": (science - template).astype(np.float32),
        "variance": np.full(shape, 72.0, dtype=np.float32),
    }


@pytest.fixture(scope="module")
def images() -> dict[str, np.ndarray]:
    """Return images."""
    return make_images()


def score(model: RealBogusModel, im: dict[str, np.ndarray], x, y, variance=True, **kwargs):
    """Return score."""
    return model.score(
        im["science"],
        im["template"],
        im["difference"],
        np.asarray(x, float),
        np.asarray(y, float),
        im["variance"] if variance else None,
        **kwargs,
    )


def interior_positions(n: int, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Return interior positions."""
    rng = np.random.default_rng(seed)
    return rng.uniform(15, SHAPE[1] - 15, n), rng.uniform(15, SHAPE[0] - 15, n)


def test_nan_and_inf_pixels_get_finite_scores(model: RealBogusModel, images: dict[str, np.ndarray]) -> None:
    """Check: nan and inf pixels get finite scores."""
    x, y = interior_positions(40)
    rng = np.random.default_rng(5)
    bad = {k: v.copy() for k, v in images.items()}
    for name in ("science", "template", "difference"):
        for value in (np.nan, np.inf, -np.inf):
            n = 400
            bad[name][rng.integers(0, SHAPE[0], n), rng.integers(0, SHAPE[1], n)] = value
    # Also hit every source centre with a non-finite pixel in one plane.
    iy, ix = np.floor(y + 0.5).astype(int), np.floor(x + 0.5).astype(int)
    bad["difference"][iy[::3], ix[::3]] = np.inf
    bad["science"][iy[1::3], ix[1::3]] = -np.inf
    bad["template"][iy[2::3], ix[2::3]] = np.nan
    result = score(model, bad, x, y)
    assert np.all(np.isfinite(result.scores)), result.reason[~np.isfinite(result.scores)]
    assert np.all((result.scores >= 0) & (result.scores <= 1))
    assert result.flag_bad.all() and result.flag_nan_center.all()
    assert np.std(result.scores) > 1e-3


def test_inf_pixels_are_treated_exactly_like_nan(
    model: RealBogusModel, images: dict[str, np.ndarray]
) -> None:
    """Check: inf pixels are treated exactly like nan."""
    x, y = interior_positions(30, seed=8)
    rng = np.random.default_rng(9)
    rows, cols = rng.integers(0, SHAPE[0], 3000), rng.integers(0, SHAPE[1], 3000)
    with_nan = {k: v.copy() for k, v in images.items()}
    with_inf = {k: v.copy() for k, v in images.items()}
    for name, sign in (("science", 1), ("template", -1), ("difference", 1)):
        with_nan[name][rows, cols] = np.nan
        with_inf[name][rows, cols] = sign * np.inf
    a, b = score(model, with_nan, x, y), score(model, with_inf, x, y)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.reason, b.reason)


def test_all_nan_cutout_gets_nan_score_and_reason(
    model: RealBogusModel, images: dict[str, np.ndarray]
) -> None:
    """Check: all nan cutout gets nan score and reason."""
    im = {k: v.copy() for k, v in images.items()}
    im["difference"][40:100, 40:100] = np.nan  # the difference is unusable around (70, 70)
    im["science"][:, 150:] = np.nan
    im["template"][:, 150:] = np.nan
    im["difference"][:, 150:] = np.nan  # every plane NaN around (165, 80)
    result = score(model, im, [70.0, 165.0, 20.0], [70.0, 80.0, 20.0])
    assert np.isnan(result.scores[0]) and result.reason[0] == "no_valid_pixels"
    assert np.isnan(result.scores[1]) and result.reason[1] == "no_valid_pixels"
    assert np.isfinite(result.scores[2]) and result.reason[2] == ""
    # Alert stamps: an all-NaN stamp is NaN, a stamp with one finite difference pixel is not.
    stamps = np.full((2, 3, SIZE, SIZE), np.nan, np.float32)
    stamps[1, 2, 3:6, 4:7] = np.arange(9, dtype=np.float32).reshape(3, 3)
    out = model.score_stamps(stamps)
    assert np.isnan(out[0]) and np.isfinite(out[1])


def test_constant_difference_stamp_is_unscorable(
    model: RealBogusModel, images: dict[str, np.ndarray]
) -> None:
    """Zero spread in the difference and no variance (no noise scale): NaN, not garbage."""
    stamps = np.random.default_rng(0).normal(0, 1, (3, 3, SIZE, SIZE)).astype(np.float32)
    stamps[0, 2] = 5.0
    out = model.score_stamps(stamps)
    assert np.isnan(out[0]) and np.all(np.isfinite(out[1:]))
    im = {k: v.copy() for k, v in images.items()}
    im["difference"][40:100, 40:100] = 3.0
    result = score(model, im, [70.0, 20.0], [70.0, 20.0], variance=False)
    assert np.isnan(result.scores[0]) and result.reason[0] == "no_noise_estimate"
    assert np.isfinite(result.scores[1])
    # With a variance plane the noise scale is known and the flat stamp is scored.
    assert np.isfinite(score(model, im, [70.0], [70.0]).scores[0])


def test_edge_sources_get_spread_of_scores(model: RealBogusModel, images: dict[str, np.ndarray]) -> None:
    """Check: edge sources get spread of scores."""
    rng = np.random.default_rng(21)
    n = 60
    along_x, along_y = rng.uniform(0, SHAPE[1] - 1, n), rng.uniform(0, SHAPE[0] - 1, n)
    # On all four edges, up to 8 px outside, and at the corners.
    x = np.r_[along_x, along_x, rng.uniform(-8, 3, n), rng.uniform(SHAPE[1] - 4, SHAPE[1] + 7, n), -3, 183]
    y = np.r_[rng.uniform(-8, 3, n), rng.uniform(SHAPE[0] - 4, SHAPE[0] + 7, n), along_y, along_y, -2, 162]
    result = score(model, images, x, y)
    assert result.flag_edge.all()
    assert np.all(np.isfinite(result.scores)), result.reason[~np.isfinite(result.scores)]
    values, counts = np.unique(result.scores, return_counts=True)
    assert values.size >= 0.95 * x.size, f"only {values.size} distinct scores for {x.size} edge sources"
    assert counts.max() <= 3
    assert np.std(result.scores) > 0.02


def test_sources_far_outside_or_non_finite_are_nan_with_reason(
    model: RealBogusModel, images: dict[str, np.ndarray]
) -> None:
    """Check: sources far outside or non finite are nan with reason."""
    x = np.array([-11.0, 200.0, 50.0, 1e300, np.nan, np.inf, 50.0, -np.inf])
    y = np.array([50.0, 50.0, -1e6, 50.0, 50.0, 50.0, np.nan, 50.0])
    result = score(model, images, x, y)
    assert np.isnan(result.scores).all()
    assert list(result.reason[:4]) == ["outside_image"] * 4
    assert list(result.reason[4:]) == ["non_finite_position"] * 4
    assert result.flag_edge.all()


def test_empty_catalogue_gives_empty_result(model: RealBogusModel, images: dict[str, np.ndarray]) -> None:
    """Check: empty catalogue gives empty result."""
    result = score(model, images, [], [])
    assert len(result) == 0 and result.scores.dtype == np.float32
    assert result.flag_edge.shape == result.reason.shape == (0,)
    assert model.score_stamps(np.zeros((0, 3, 30, 30), np.float32)).shape == (0,)
    # Inputs are still validated with zero sources.
    with pytest.raises(ValueError, match="shape"):
        model.score(images["science"][:10], images["template"], images["difference"], [], [])


def test_duplicate_positions_get_identical_scores(
    model: RealBogusModel, images: dict[str, np.ndarray]
) -> None:
    """Scoring is positional: duplicated rows (e.g. duplicate ids) are scored independently and equally."""
    x, y = interior_positions(10, seed=4)
    xd, yd = np.r_[x, x[::-1], x[:3]], np.r_[y, y[::-1], y[:3]]
    result = score(model, images, xd, yd)
    np.testing.assert_array_equal(result.scores[:10], result.scores[10:20][::-1])
    np.testing.assert_array_equal(result.scores[:3], result.scores[20:])


@pytest.mark.parametrize(
    "which,shape",
    [("science", (160, 179)), ("template", (159, 180)), ("difference", (180, 160)), ("variance", (10, 10))],
)
def test_images_of_different_shapes_raise(
    model: RealBogusModel, images: dict[str, np.ndarray], which: str, shape: tuple[int, int]
) -> None:
    """Check: images of different shapes raise."""
    im = dict(images)
    im[which] = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match="shape"):
        score(model, im, [50.0], [50.0])


def test_non_2d_images_and_mismatched_positions_raise(
    model: RealBogusModel, images: dict[str, np.ndarray]
) -> None:
    """Check: non 2d images and mismatched positions raise."""
    im = dict(images)
    im["difference"] = images["difference"][None]
    with pytest.raises(ValueError, match="2-D"):
        score(model, im, [50.0], [50.0])
    with pytest.raises(ValueError, match="one length"):
        score(model, images, [50.0, 60.0], [50.0])
    with pytest.raises(ValueError, match="Mask"):
        score(model, images, [50.0], [50.0], mask=np.zeros((5, 5), np.int32))


def test_missing_variance_uses_difference_mad(model: RealBogusModel, images: dict[str, np.ndarray]) -> None:
    """Check: missing variance uses difference mad."""
    x, y = interior_positions(50, seed=6)
    with_var = score(model, images, x, y)
    without = score(model, images, x, y, variance=False)
    assert np.all(np.isfinite(without.scores)) and np.all((without.scores >= 0) & (without.scores <= 1))
    # The documented fallback: a model told not to use the variance gives the same scores.
    pkg_spec = model.metadata.normalization
    no_var_meta = type(model.metadata)(**{**model.metadata.__dict__})
    no_var_meta.normalization = NormalizationSpec(**{**pkg_spec.to_dict(), "use_variance": False})
    no_var_model = RealBogusModel(model.module, no_var_meta, backend=model.backend_name)
    np.testing.assert_array_equal(
        no_var_model.score(
            images["science"], images["template"], images["difference"], x, y, images["variance"]
        ).scores,
        without.scores,
    )
    # A variance plane that is all NaN or non-positive falls back the same way.
    im = dict(images)
    im["variance"] = np.full(SHAPE, np.nan, np.float32)
    np.testing.assert_array_equal(score(model, im, x, y).scores, without.scores)
    im["variance"] = np.zeros(SHAPE, np.float32)
    np.testing.assert_array_equal(score(model, im, x, y).scores, without.scores)
    # The supplied variance does change the scale (the test would be vacuous otherwise).
    assert not np.array_equal(with_var.scores, without.scores)


@pytest.mark.parametrize("k", [1e-3, 1e4])
def test_scores_are_unit_invariant(model: RealBogusModel, images: dict[str, np.ndarray], k: float) -> None:
    """Check: scores are unit invariant."""
    rng = np.random.default_rng(12)
    x = np.r_[interior_positions(40, seed=7)[0], rng.uniform(-5, 3, 10)]
    y = np.r_[interior_positions(40, seed=7)[1], rng.uniform(0, SHAPE[0], 10)]
    base = score(model, images, x, y)
    scaled_images = {
        "science": images["science"] * np.float32(k),
        "template": images["template"] * np.float32(k),
        "difference": images["difference"] * np.float32(k),
        "variance": images["variance"] * np.float32(k * k),
    }
    scaled = score(model, scaled_images, x, y)
    np.testing.assert_allclose(scaled.scores, base.scores, atol=2e-4)
    np.testing.assert_array_equal(scaled.reason, base.reason)
    no_var = score(model, scaled_images, x, y, variance=False)
    np.testing.assert_allclose(no_var.scores, score(model, images, x, y, variance=False).scores, atol=2e-4)
    planes = {n: images[n] for n in ("science", "template", "difference")}
    stamps = extract_cutouts(planes, x, y, 30).stamps
    np.testing.assert_allclose(model.score_stamps(stamps * k), model.score_stamps(stamps), atol=2e-4)
    assert np.std(base.scores) > 1e-2


def test_100k_source_catalogue_memory_is_bounded(tmp_path: Path) -> None:
    """100,000 sources on a 2k x 2k detector: peak traced memory well under 1 GB above the images."""
    small = load_model(write_tiny_model(tmp_path / "tiny15.safetensors", size=15))
    rng = np.random.default_rng(0)
    shape = (2000, 2000)
    diff = rng.normal(0, 10, shape).astype(np.float32)
    sci = (diff + 100).astype(np.float32)
    tmpl = np.full(shape, 100, np.float32)
    var = np.full(shape, 100, np.float32)
    n = 100_000
    x, y = rng.uniform(-10, 2010, n), rng.uniform(-10, 2010, n)
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        result = small.score(sci, tmpl, diff, x, y, var, batch_size=4096)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    extra = peak - before
    assert len(result) == n
    assert np.isfinite(result.scores).mean() > 0.98
    assert extra < 1e9, f"peak {extra / 1e6:.0f} MB above the images"
    # Much less in fact: about one batch of stamps plus the per-source outputs.
    assert extra < 300e6, f"peak {extra / 1e6:.0f} MB above the images"


def test_model_channels_contradicting_inputs_raise(
    model: RealBogusModel, images: dict[str, np.ndarray]
) -> None:
    """Check: model channels contradicting inputs raise."""
    stamps = np.random.default_rng(0).normal(0, 1, (2, 3, SIZE, SIZE)).astype(np.float32)
    with pytest.raises(ValueError, match="channel"):
        model.score_stamps(stamps[:, :2])
    with pytest.raises(ValueError, match="lack"):
        model.score_stamps(stamps, channels=("science", "template", "variance"))
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        model.score_stamps(stamps[0])
    with pytest.raises(ValueError, match="needs the 'template'"):
        model.score(images["science"], None, images["difference"], [50.0], [50.0])
    with pytest.raises(ValueError, match="variance must have shape"):
        model.score_stamps(stamps, variance=np.ones((2, SIZE + 1, SIZE)))
    with pytest.raises(ValueError, match=r"shape \(N, 4, S, S\)"):
        model.predict_normalized(np.zeros((1, 3, SIZE, SIZE), np.float32))


def test_cutout_size_different_from_model_is_cropped_or_padded(
    model: RealBogusModel, images: dict[str, np.ndarray]
) -> None:
    """Other stamp sizes are centre-cropped / NaN-padded to the package's cutout size (documented)."""
    x, y = interior_positions(12, seed=13)
    planes = {n: images[n] for n in ("science", "template", "difference")}
    direct = score(model, images, x, y, variance=False).scores
    for size in (SIZE + 10, SIZE + 1, SIZE):
        np.testing.assert_array_equal(model.score_stamps(extract_cutouts(planes, x, y, size).stamps), direct)
    small = model.score_stamps(extract_cutouts(planes, x, y, SIZE - 8).stamps)
    assert np.all(np.isfinite(small))
    assert not np.array_equal(small, direct)


def test_mask_unusable_bits_behave_like_nan(model: RealBogusModel, images: dict[str, np.ndarray]) -> None:
    """Check: mask unusable bits behave like nan."""
    x, y = interior_positions(20, seed=14)
    mask = np.zeros(SHAPE, np.int32)
    mask[50:60, :] = mask_planes.NO_DATA
    mask[:, 30:33] |= mask_planes.SAT
    as_nan = {k: v.copy() for k, v in images.items()}
    for name in ("science", "template", "difference"):
        as_nan[name][mask != 0] = np.nan
    a = score(model, images, x, y, mask=mask)
    b = score(model, as_nan, x, y)
    np.testing.assert_array_equal(a.scores, b.scores)
