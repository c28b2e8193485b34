"""Tests of stamp normalisation."""

from __future__ import annotations

import numpy as np
import pytest
from lsst.meas.realbogus.normalization import (
    NormalizationSpec,
    nanmedian_rows,
    noise_scale,
    normalize_stamps,
    normalize_stamps_with_scale,
)

CHANNELS = ("template", "science", "difference")


def make_stamps(n: int = 12, size: int = 21, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.5, 20.0, n)
    stamps = rng.normal(size=(n, 3, size, size)) * sigma[:, None, None, None]
    stamps[:, :2] += rng.uniform(-100, 1000, (n, 2, 1, 1))  # backgrounds
    yy, xx = np.mgrid[:size, :size] - size // 2
    star = np.exp(-(xx**2 + yy**2) / 4.0)
    stamps[:, 1] += 500 * sigma[:, None, None] * star
    stamps[:, 2] += 50 * sigma[:, None, None] * star
    variance = np.broadcast_to((sigma**2)[:, None, None], (n, size, size)).copy()
    return stamps.astype(np.float32), variance.astype(np.float32)


SPECS = [
    NormalizationSpec(),
    NormalizationSpec(use_variance=False),
    NormalizationSpec(asinh_a=None, mask_channel=False),
    NormalizationSpec(method="difference_snr"),
    NormalizationSpec(method="difference_snr", asinh_a=None, use_variance=False),
]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("factor", [1e3, 1e-4, 57.3])
def test_unit_invariance(spec: NormalizationSpec, factor: float) -> None:
    stamps, variance = make_stamps()
    stamps[0, :, :3] = np.nan
    a = normalize_stamps(stamps, CHANNELS, spec, variance)
    b = normalize_stamps(stamps * factor, CHANNELS, spec, variance * factor**2)
    assert a.shape == b.shape
    # Inputs reach ~2000 sigma, so float32 rounding of the scaled images is ~1e-4 sigma.
    np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("spec", SPECS)
def test_unit_invariance_exact_scaling(spec: NormalizationSpec) -> None:
    # A power-of-two factor scales float32 exactly: outputs agree to float32 rounding.
    stamps, variance = make_stamps(seed=1)
    a = normalize_stamps(stamps, CHANNELS, spec, variance)
    b = normalize_stamps(stamps * np.float32(1024.0), CHANNELS, spec, variance * np.float32(1024.0**2))
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-6)


def test_robust_values() -> None:
    stamps, variance = make_stamps(n=3)
    spec = NormalizationSpec(asinh_a=None, mask_channel=False, use_variance=False)
    out = normalize_stamps(stamps, CHANNELS, spec)
    diff = stamps[:, 2].reshape(3, -1).astype(np.float64)
    mad = 1.4826 * np.median(np.abs(diff - np.median(diff, axis=1)[:, None]), axis=1)
    for c in range(3):
        chan = stamps[:, c].reshape(3, -1).astype(np.float64)
        expected = (chan - np.median(chan, axis=1)[:, None]) / mad[:, None]
        np.testing.assert_allclose(out[:, c].reshape(3, -1), expected, rtol=1e-4, atol=1e-4)
    # With the variance the scale is sqrt(median variance).
    sigma = noise_scale(stamps, CHANNELS, NormalizationSpec(), variance)
    np.testing.assert_allclose(sigma, np.sqrt(variance[:, 0, 0]))


def test_stretch_compresses_bright() -> None:
    stamps, variance = make_stamps(n=4)
    lin = normalize_stamps(stamps, CHANNELS, NormalizationSpec(asinh_a=None), variance)
    stretched = normalize_stamps(stamps, CHANNELS, NormalizationSpec(asinh_a=10.0), variance)
    np.testing.assert_allclose(stretched[:, :3], 10 * np.arcsinh(lin[:, :3] / 10), rtol=1e-4, atol=1e-4)
    assert stretched[:, 1].max() < lin[:, 1].max() / 5


def test_never_nan_and_valid_channel() -> None:
    stamps, variance = make_stamps(n=6)
    stamps[0] = np.nan  # all NaN
    stamps[1, 2] = 5.0  # constant difference: zero spread
    stamps[2, :, 4, 4] = np.inf
    stamps[3, 0, :5] = np.nan
    for spec in SPECS + [NormalizationSpec(method="none")]:
        out, sigma = normalize_stamps_with_scale(stamps, CHANNELS, spec, None)
        assert out.dtype == np.float32
        assert np.all(np.isfinite(out))
        assert out.shape[1] == len(spec.output_channels(CHANNELS))
        assert np.isnan(sigma[0])
        if spec.mask_channel:
            valid = out[:, -1]
            assert np.all(valid[0] == 0)
            if spec.method != "none":
                assert np.all(out[1] == 0)  # no noise estimate: zeros, valid 0
            assert valid[2, 4, 4] == 0 and valid[2, 5, 5] == 1
            if spec.method != "difference_snr":
                assert np.all(valid[3, :5] == 0) and np.all(valid[3, 5:] == 1)


def test_spec_round_trip_and_validation() -> None:
    spec = NormalizationSpec(method="difference_snr", asinh_a=3.0, use_variance=False, mask_channel=False)
    assert NormalizationSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="Unknown normalisation method"):
        NormalizationSpec(method="zscale")
    with pytest.raises(ValueError, match="asinh_a"):
        NormalizationSpec(asinh_a=-1.0)
    with pytest.raises(ValueError, match="Unknown normalisation parameters"):
        NormalizationSpec.from_dict({"method": "robust", "gain": 2})


def test_input_errors() -> None:
    stamps, _ = make_stamps(n=2)
    with pytest.raises(ValueError, match="difference"):
        normalize_stamps(stamps, ("a", "b", "c"))
    with pytest.raises(ValueError, match="channel names"):
        normalize_stamps(stamps, ("template", "difference"))
    with pytest.raises(ValueError, match="variance"):
        normalize_stamps(stamps, CHANNELS, variance=np.ones((2, 5, 5)))


def test_nanmedian_rows_matches_numpy() -> None:
    rng = np.random.default_rng(5)
    values = rng.normal(size=(50, 17))
    values[rng.random(values.shape) < 0.3] = np.nan
    values[3] = np.nan
    values[4, 2] = np.inf
    expected = np.array([np.median(r[np.isfinite(r)]) if np.isfinite(r).any() else np.nan for r in values])
    np.testing.assert_allclose(nanmedian_rows(values), expected)


def test_empty_and_integer_input() -> None:
    for spec in SPECS:
        out = normalize_stamps(np.zeros((0, 3, 7, 7)), CHANNELS, spec)
        assert out.shape == (0, len(spec.output_channels(CHANNELS)), 7, 7)
    counts = np.random.default_rng(2).poisson(100, size=(2, 3, 9, 9))  # integer DN stamps
    out = normalize_stamps(counts, CHANNELS)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(out, normalize_stamps(counts.astype(np.float64) * 3.0, CHANNELS), atol=1e-5)


def test_no_difference_data_is_unscorable_even_with_variance() -> None:
    stamps, variance = make_stamps(n=3)
    stamps[1, 2] = np.nan  # science and template fine, difference missing
    sigma = noise_scale(stamps, CHANNELS, NormalizationSpec(), variance)
    assert np.isnan(sigma[1]) and np.all(np.isfinite(sigma[[0, 2]]))


def test_per_channel_noise_makes_each_channel_scale_free():
    """With per_channel_noise, rescaling only the template leaves the output unchanged."""
    rng = np.random.default_rng(7)
    stamps = rng.normal(0.0, 1.0, size=(5, 3, 21, 21)).astype(np.float32)
    stamps[:, 0] *= 0.2  # a deeper template
    stamps[:, :, 10, 10] += 30.0
    channels = ("template", "science", "difference")
    spec = NormalizationSpec(per_channel_noise=True)
    base = normalize_stamps(stamps, channels, spec)
    scaled = stamps.copy()
    scaled[:, 0] *= 37.0  # the template in another photometric scale
    assert np.allclose(normalize_stamps(scaled, channels, spec), base, atol=1e-4)
    # The shared-sigma default does depend on the template's scale.
    shared = NormalizationSpec()
    assert not np.allclose(normalize_stamps(scaled, channels, shared), normalize_stamps(stamps, channels, shared),
                           atol=1e-2)
    # Whole-stamp unit invariance still holds.
    assert np.allclose(normalize_stamps(stamps * 1e3, channels, spec), base, atol=1e-4)
    assert NormalizationSpec.from_dict(spec.to_dict()) == spec


def test_blank_value_markers_are_treated_as_missing():
    """Float32-minimum 'no data' markers (as in some ZTF templates) behave exactly like NaN."""
    rng = np.random.default_rng(11)
    stamps = rng.normal(0.0, 1.0, size=(3, 3, 15, 15)).astype(np.float32)
    marked = stamps.copy()
    nan = stamps.copy()
    marked[:, 0, :4, :] = np.finfo(np.float32).min
    nan[:, 0, :4, :] = np.nan
    channels = ("template", "science", "difference")
    for spec in (NormalizationSpec(), NormalizationSpec(per_channel_noise=True)):
        expected = normalize_stamps(nan, channels, spec)
        assert np.array_equal(normalize_stamps(marked, channels, spec), expected)
        assert np.array_equal(normalize_stamps(marked * 1e-3, channels, spec)[:, -1], expected[:, -1])
