"""Tests of TransiNet's optional Gaussian-PSF-matched ``difference`` input channel."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lsst.meas.realbogus.transinet.architecture import TransiNetUNet
from lsst.meas.realbogus.transinet.model import TransiNetModel
from lsst.meas.realbogus.transinet.normalization import (
    NormalizationSpec,
    matched_difference,
    normalize_pair,
    valid_mask,
)
from lsst.meas.realbogus.transinet.synthetic import _add_gaussian, make_synthetic_pair
from lsst.meas.realbogus.transinet.training import TransiNetTrainingConfig, train_transinet

CHANNELS = ("template", "science", "difference", "valid")
SPEC = NormalizationSpec(channels=CHANNELS)


def _model(tile_size: int = 128, seed: int = 4) -> TransiNetModel:
    torch.manual_seed(seed)
    net = TransiNetUNet(in_channels=len(CHANNELS), base_width=8, depth=3)
    torch.nn.init.normal_(net.head_out.weight, std=0.5)  # default init outputs a constant
    return TransiNetModel(net, SPEC, tile_size=tile_size, batch_size=2)


def _args(pair) -> tuple:
    return (pair.template.image, pair.science.image, pair.template.variance, pair.science.variance,
            pair.science.mask | pair.template.mask)


def _sigmas(pair) -> dict[str, float]:
    return {"science_psf_sigma": pair.science_psf_sigma, "template_psf_sigma": pair.template_psf_sigma}


def _diff_plane(pair, **kwargs) -> np.ndarray:
    template, science, tvar, svar, mask = _args(pair)
    inputs = normalize_pair(template, science, template_variance=tvar, science_variance=svar, mask=mask,
                            spec=SPEC, **(_sigmas(pair) | kwargs))
    return inputs[CHANNELS.index("difference")]


@pytest.mark.parametrize(("sigma_sci", "sigma_tmpl"), [(2.0, 1.2), (1.2, 2.0), (1.5, 1.5)])
def test_matched_difference_cancels_static_stars(sigma_sci: float, sigma_tmpl: float) -> None:
    """Static Gaussian stars cancel whichever image is sharper; a variable star remains."""
    shape = (96, 96)
    science = np.full(shape, 50.0)
    template = np.full(shape, 20.0)
    for x, y, flux in ((20.3, 30.7, 5e4), (70.0, 60.2, 2e4)):
        _add_gaussian(science, x, y, flux, sigma_sci)
        _add_gaussian(template, x, y, flux, sigma_tmpl)
    _add_gaussian(science, 45.0, 75.0, 3e4, sigma_sci)  # a variable star: brighter in the science image
    _add_gaussian(template, 45.0, 75.0, 1e4, sigma_tmpl)
    valid = np.ones(shape, bool)
    diff = matched_difference(template, science, valid, sigma_sci, sigma_tmpl, template_median=20.0,
                              science_median=50.0)
    assert diff.dtype == np.float32 and diff.shape == shape
    broad = max(sigma_sci, sigma_tmpl)
    peak_static = 5e4 / (2 * np.pi * broad**2)
    # Residuals of the static stars are a small fraction of their (matched) peak.
    assert np.abs(diff[22:40, 12:30]).max() < 0.02 * peak_static
    # The variable star's matched difference has its flux change at the broader PSF.
    np.testing.assert_allclose(diff[75, 45], 2e4 / (2 * np.pi * broad**2), rtol=0.02)
    np.testing.assert_allclose(diff[60:90, 30:60].sum(), 2e4, rtol=0.02)


def test_difference_channel_is_noise_scaled_and_shows_transients() -> None:
    """The channel is the asinh of the difference in units of its own scatter; transients stand out."""
    pair = make_synthetic_pair((160, 160), seed=3, n_transients=6, snr_range=(30, 60), n_cosmic_rays=0,
                               n_hot_pixels=0)
    plane = _diff_plane(pair)
    z = np.sinh(plane) * SPEC.asinh_softening  # back to units of the difference's robust sigma
    mad = 1.4826 * np.median(np.abs(z - np.median(z)))
    assert mad == pytest.approx(1.0, rel=0.05)
    truth = pair.truth[pair.truth["category"] == "transient"]
    at_truth = z[np.rint(truth["y"]).astype(int), np.rint(truth["x"]).astype(int)]
    assert np.all(at_truth > 5)
    # The same sky without the transients has no such values: static stars cancel.
    quiet = make_synthetic_pair((160, 160), seed=3, n_transients=0, n_cosmic_rays=0, n_hot_pixels=0)
    assert np.abs(np.sinh(_diff_plane(quiet)) * SPEC.asinh_softening).max() < 6


def test_difference_channel_nan_regions() -> None:
    """NaN / NO_DATA pixels are 0 in the channel; the fill keeps neighbouring pixels at noise level."""
    pair = make_synthetic_pair((128, 128), seed=6, n_stars=0, n_transients=0, n_cosmic_rays=0,
                               n_hot_pixels=0, nan_box=(40, 80, 0, 50))
    # Sky levels far above the noise: filling invalid pixels with 0 instead of the median would
    # leave a strong edge in the blurred template next to the NaN regions.
    pair.science.image += 500.0
    pair.template.image += 200.0
    pair.science.image[100:, 100:] = np.nan  # NaN without a mask bit
    plane = _diff_plane(pair)
    assert np.isfinite(plane).all()
    valid = valid_mask(pair.template.image, pair.science.image, mask=pair.science.mask | pair.template.mask)
    assert np.all(plane[~valid] == 0.0)
    # Right next to the NaN regions the difference stays at noise level (no edge artefact).
    z = np.sinh(plane) * SPEC.asinh_softening
    assert np.abs(z[36:40, 0:54]).max() < 5 and np.abs(z[96:100, 100:]).max() < 5
    score = _model().score_image(*_args(pair), **_sigmas(pair))
    assert np.isfinite(score).all() and np.all(score[~valid] == 0.0) and np.all(score[valid] > 0)


def test_tiled_equals_full_with_difference_channel() -> None:
    """The difference is computed once on the whole image: tiles have no seams."""
    pair = make_synthetic_pair((301, 277), seed=5, n_transients=10, nan_box=(100, 140, 200, 277))
    model = _model(tile_size=160)  # a 3x3 grid of tiles
    tiled = model.score_image(*_args(pair), **_sigmas(pair), tiled=True)
    full = model.score_image(*_args(pair), **_sigmas(pair), tiled=False)
    assert np.ptp(full) > 1e-3
    np.testing.assert_allclose(tiled, full, atol=1e-5, rtol=0)
    # The channel changes the score: a model given other PSF sigmas scores differently.
    other = model.score_image(*_args(pair), science_psf_sigma=1.0, template_psf_sigma=2.5)
    assert np.abs(other - full).max() > 1e-3


def test_missing_psf_sigmas_are_a_clear_error() -> None:
    """Models with the channel refuse to score without both PSF sigmas; others do not need them."""
    pair = make_synthetic_pair((64, 64), seed=1)
    model = _model()
    assert model.needs_psf_sigmas
    with pytest.raises(ValueError, match="science_psf_sigma and template_psf_sigma"):
        model.score_image(*_args(pair))
    with pytest.raises(ValueError, match="science_psf_sigma and template_psf_sigma"):
        model.score_image(*_args(pair), science_psf_sigma=1.7)
    with pytest.raises(ValueError, match="science_psf_sigma and template_psf_sigma"):
        model.detect(*_args(pair), threshold=0.5)
    with pytest.raises(ValueError, match="template_psf_sigma"):
        normalize_pair(pair.template.image, pair.science.image, spec=SPEC, science_psf_sigma=1.7)
    with pytest.raises(ValueError, match="positive finite PSF sigma"):
        model.score_image(*_args(pair), science_psf_sigma=-1.0, template_psf_sigma=1.3)
    with pytest.raises(ValueError, match="positive finite PSF sigma"):
        model.score_image(*_args(pair), science_psf_sigma=1.7, template_psf_sigma=np.nan)
    # The pure (template, science) channel set does not need them.
    torch.manual_seed(0)
    plain = TransiNetModel(TransiNetUNet(in_channels=3, base_width=4, depth=2), NormalizationSpec())
    assert not plain.needs_psf_sigmas
    assert np.isfinite(plain.score_image(*_args(pair))).all()


def test_package_round_trip_with_difference_channel(tmp_path) -> None:
    """The package declares the channel; the loaded model scores like the trained one."""
    from lsst.meas.realbogus.model_package import read_model_package
    from lsst.meas.realbogus.transinet.model import save_transinet_package

    train = [make_synthetic_pair((96, 96), seed=s, n_transients=8, snr_range=(15, 60)) for s in range(2)]
    val = [make_synthetic_pair((96, 96), seed=50, n_transients=8, snr_range=(15, 60))]
    config = TransiNetTrainingConfig(base_width=4, depth=2, crop_size=48, crops_per_epoch=8, batch_size=8,
                                     max_epochs=1, channels=CHANNELS, seed=1)
    torch.set_num_threads(1)
    result = train_transinet(train, val, config)
    path = tmp_path / "tn_diff.safetensors"
    save_transinet_package(result, path, threshold=0.6)
    package = read_model_package(path)
    assert package.metadata.channels == ["template", "science", "difference"]
    assert package.metadata.training["transinet_normalization"]["channels"] == list(CHANNELS)
    loaded = TransiNetModel.from_package(package)
    assert loaded.needs_psf_sigmas and loaded.spec == config.spec()
    direct = TransiNetModel.from_training_result(result)
    pair = val[0]
    np.testing.assert_array_equal(loaded.score_image(*_args(pair), **_sigmas(pair)),
                                  direct.score_image(*_args(pair), **_sigmas(pair)))
    with pytest.raises(ValueError, match="science_psf_sigma and template_psf_sigma"):
        loaded.score_image(*_args(pair))
    # A package whose declared channels disagree with its normalisation is refused.
    package.metadata.channels = ["template", "science"]
    with pytest.raises(ValueError, match="disagree"):
        TransiNetModel.from_package(package)


def test_prepared_examples_are_accepted_and_checked() -> None:
    """train_transinet takes PreparedExample objects and checks their channel count."""
    from lsst.meas.realbogus.transinet.training import prepare_example

    pairs = [make_synthetic_pair((96, 96), seed=s, n_transients=6, snr_range=(15, 60)) for s in range(3)]
    config = TransiNetTrainingConfig(base_width=4, depth=2, crop_size=48, crops_per_epoch=8, batch_size=8,
                                     max_epochs=2, channels=CHANNELS, seed=2)
    torch.set_num_threads(1)
    prepared = [prepare_example(p, config) for p in pairs]
    assert prepared[0].inputs.shape == (4, 96, 96)
    from_pairs = train_transinet(pairs[:2], pairs[2:], config)
    from_prepared = train_transinet(prepared[:2], prepared[2:], config)
    assert [h["val_loss"] for h in from_prepared.history] == [h["val_loss"] for h in from_pairs.history]
    three = TransiNetTrainingConfig(base_width=4, depth=2, crop_size=48, crops_per_epoch=8, batch_size=8,
                                    max_epochs=1)
    with pytest.raises(ValueError, match="input channels"):
        train_transinet(prepared[:2], prepared[2:], three)


def test_variance_scaled_difference() -> None:
    """difference_noise='variance' divides by the matched per-pixel noise: unit scatter on white noise."""
    pair = make_synthetic_pair((192, 192), seed=9, n_stars=0, n_transients=0, n_cosmic_rays=0,
                               n_hot_pixels=0, nan_box=(0, 20, 0, 30))
    spec = NormalizationSpec(channels=CHANNELS, difference_noise="variance")
    assert NormalizationSpec.from_dict(spec.to_dict()) == spec
    template, science, tvar, svar, mask = _args(pair)
    for sigmas in ((1.7, 1.3), (1.2, 2.2)):
        inputs = normalize_pair(template, science, template_variance=tvar, science_variance=svar, mask=mask,
                                spec=spec, science_psf_sigma=sigmas[0], template_psf_sigma=sigmas[1])
        z = np.sinh(inputs[2]) * spec.asinh_softening
        valid = inputs[3] > 0
        # Away from the edges (the zero padding lowers the blurred noise there) the scatter is 1.
        inner = valid.copy()
        inner[:30, :] = inner[-10:, :] = inner[:, :10] = inner[:, -10:] = False
        assert np.std(z[inner]) == pytest.approx(1.0, abs=0.06)
        assert np.all(z[~valid] == 0) and np.isfinite(z).all()
    with pytest.raises(ValueError, match="variance planes"):
        normalize_pair(template, science, mask=mask, spec=spec, science_psf_sigma=1.7, template_psf_sigma=1.3)
    with pytest.raises(ValueError, match="difference_noise"):
        NormalizationSpec(channels=CHANNELS, difference_noise="rms")


def test_threshold_scan_and_matched_point() -> None:
    """Completeness of bright transients and FP per 1024^2 detector for each threshold."""
    from astropy.table import Table
    from lsst.meas.realbogus.transinet.evaluate import matched_operating_point, threshold_scan

    truth = Table({"x": [10.0, 50.0, 90.0], "y": [10.0, 50.0, 90.0],
                   "category": ["transient", "transient", "artifact"], "snr": [20.0, 4.0, 0.0]})
    truth.meta["area"] = 512 * 512  # a quarter of the reference detector
    det = Table({"x": [10.5, 50.0, 200.0, 300.0], "y": [10.0, 51.0, 200.0, 300.0],
                 "peak_score": [0.9, 0.8, 0.7, 0.3]})
    scan = threshold_scan([det], [truth], [0.2, 0.5, 0.85, 0.95], match_radius=2.5, min_snr=6.0)
    assert [e["n_true"] for e in scan] == [1] * 4  # only the SNR 20 transient counts
    assert [e["n_found"] for e in scan] == [1, 1, 1, 0]
    assert [e["n_fp"] for e in scan] == [2, 1, 0, 0]  # the faint transient's match is no FP
    assert scan[0]["fp_per_detector"] == pytest.approx(8.0)  # 2 FP on a quarter detector
    point = matched_operating_point(scan, 4.0)
    assert point["threshold"] == 0.5 and point["completeness"] == 1.0
    assert matched_operating_point(scan, -1.0)["threshold"] == 0.95
    with pytest.raises(ValueError, match="Empty"):
        matched_operating_point([], 1.0)


def test_training_fields_and_survey_mix() -> None:
    """Fields are split between the main survey and the mix members, deterministically."""
    from lsst.meas.realbogus.transinet.train_cli import TRAINING_SURVEY_MIX, field_survey

    names = [field_survey(f, 9, 1 / 3)[0] for f in range(9)]
    assert names == ["main"] * 6 + ["coarse", "shallow", "coarse"]
    assert field_survey(0, 4, 0.0) == ("main", {})
    assert field_survey(3, 4, 1.0)[1] == TRAINING_SURVEY_MIX[1][1]
    with pytest.raises(ValueError, match="mix_fraction"):
        field_survey(0, 4, 1.5)
    from lsst.meas.realbogus.transinet.train_cli import EXTRA_MIX_MEMBERS

    extra = [field_survey(f, 9, 1 / 3, ["sharp"]) for f in range(6, 9)]
    assert [name for name, _ in extra] == ["coarse", "shallow", "sharp"]
    assert extra[2][1] == EXTRA_MIX_MEMBERS["sharp"]
    # 'undersampled' is the classifier's survey mix member of that name (the detector size aside).
    from lsst.meas.realbogus.cli.train_default import DEFAULT_SURVEY_MIX

    classifier = {m["name"]: m["overrides"] for m in DEFAULT_SURVEY_MIX}["undersampled"]
    assert EXTRA_MIX_MEMBERS["undersampled"] == {k: v for k, v in classifier.items()
                                                 if k not in ("width", "height")}
    with pytest.raises(ValueError, match="Unknown extra survey mix"):
        field_survey(0, 4, 0.5, ["blurry"])


def test_bright_neighbour_jobs() -> None:
    """``--bright-neighbours`` adds the rate to every training job, mix members included."""
    from lsst.meas.realbogus.transinet.train_cli import _jobs, build_parser

    jobs = _jobs(6, 0, 100, 3, 1 / 3, (), 40.0)
    assert [j[2] for j in jobs] == ["main", "main", "coarse"] * 2
    assert all(j[3]["n_bright_neighbour_per_detector"] == 40.0 for j in jobs)
    assert jobs[2][3]["pixel_scale"] == 0.5
    assert all("n_bright_neighbour_per_detector" not in j[3] for j in _jobs(3, 0, 100, 3, 1 / 3))
    assert build_parser().parse_args(["--bright-neighbours", "25"]).bright_neighbours == 25.0


def test_init_from_checks_before_simulating(tmp_path) -> None:
    """``--init-from`` fails fast on a missing package or one the other options do not fit."""
    from lsst.meas.realbogus.transinet.train_cli import main

    with pytest.raises(FileNotFoundError, match="no model package"):
        main(["--init-from", str(tmp_path / "missing.safetensors")])
    # The shipped model has base width 12 and four channels; the CLI defaults are 8 and three.
    with pytest.raises(ValueError, match="cannot be fine-tuned.*architecture_kwargs"):
        main(["--init-from", "default"])
