"""Tests of TransiNet's fitted-kernel ``difference`` channel and type-weighted positive crops."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from astropy.table import Table
from lsst.meas.realbogus.transinet.architecture import TransiNetUNet
from lsst.meas.realbogus.transinet.model import TransiNetModel
from lsst.meas.realbogus.transinet.normalization import (
    NormalizationSpec,
    fitted_difference,
    fitted_pair_difference,
    matched_difference,
    normalize_pair,
    valid_mask,
)
from lsst.meas.realbogus.transinet.peaks import find_peaks
from lsst.meas.realbogus.transinet.synthetic import make_synthetic_pair
from lsst.meas.realbogus.transinet.training import (
    PreparedExample,
    TransiNetTrainingConfig,
    _draw_crops,
)

CHANNELS = ("template", "science", "difference", "valid")
FITTED = NormalizationSpec(channels=CHANNELS, difference_noise="variance", difference_kernel="fitted")


def _add_double_gaussian(image: np.ndarray, x: float, y: float, flux: float, sigma: float, wing: float
                         ) -> None:
    """Add a star with a non-Gaussian PSF: a fraction ``wing`` of its flux in ``2.5 sigma``."""
    yy, xx = np.mgrid[: image.shape[0], : image.shape[1]]
    r2 = (xx - x) ** 2 + (yy - y) ** 2
    for frac, s in ((1 - wing, sigma), (wing, 2.5 * sigma)):
        image += frac * flux / (2 * np.pi * s**2) * np.exp(-0.5 * r2 / s**2)


def _star_field(sigma_sci: float, sigma_tmpl: float, seed: int = 0, shape: tuple[int, int] = (200, 200)):
    """Noisy (template, science) pair of static double-Gaussian stars and one variable star.

    The PSFs differ in shape, not only in width (the science PSF has more light in its wing),
    as when the seeing changes: no Gaussian kernel matches them.
    """
    rng = np.random.default_rng(seed)
    science = np.zeros(shape)
    template = np.zeros(shape)
    stars = [(x, y) for x in range(25, shape[1] - 20, 35) for y in range(25, shape[0] - 20, 35)]
    for x, y in stars:
        flux = rng.uniform(2e4, 8e4)
        dx, dy = rng.uniform(-0.5, 0.5, 2)
        _add_double_gaussian(science, x + dx, y + dy, flux, sigma_sci, 0.25)
        _add_double_gaussian(template, x + dx, y + dy, flux, sigma_tmpl, 0.05)
    variable = stars[len(stars) // 2]
    _add_double_gaussian(science, variable[0] + 0.2, variable[1] + 0.3, 2e4, sigma_sci, 0.25)  # brightens
    sky_sci, sky_tmpl = 100.0, 25.0
    science_var = science + sky_sci
    template_var = template + sky_tmpl
    science = science + 40.0 + rng.normal(0, np.sqrt(science_var))
    template = template + 10.0 + rng.normal(0, np.sqrt(template_var))
    stars = [s for s in stars if s != variable]
    return template, science, template_var, science_var, stars, variable


@pytest.mark.parametrize(("sigma_sci", "sigma_tmpl"), [(2.2, 1.4), (1.4, 2.2)])
def test_fitted_kernel_cancels_non_gaussian_stars(sigma_sci: float, sigma_tmpl: float) -> None:
    """Static non-Gaussian stars cancel far better than with the fixed Gaussian; the variable stays."""
    template, science, tvar, svar, stars, variable = _star_field(sigma_sci, sigma_tmpl)
    valid = np.ones(science.shape, bool)
    kwargs = {"template_median": 10.0, "science_median": 40.0}
    diff, var = fitted_difference(template, science, valid, sigma_sci, sigma_tmpl, template_variance=tvar,
                                  science_variance=svar, **kwargs)
    gdiff, gvar = matched_difference(template, science, valid, sigma_sci, sigma_tmpl, template_variance=tvar,
                                     science_variance=svar, **kwargs)
    assert diff.dtype == np.float32 and var.dtype == np.float32 and np.isfinite(diff).all()

    def peak_z(d: np.ndarray, v: np.ndarray, x: int, y: int) -> float:
        return float(np.abs(d / np.sqrt(v))[y - 3:y + 4, x - 3:x + 4].max())

    fitted_static = np.median([peak_z(diff, var, x, y) for x, y in stars])
    gauss_static = np.median([peak_z(gdiff, gvar, x, y) for x, y in stars])
    assert fitted_static < 5.0  # about noise level
    assert gauss_static > 2 * fitted_static  # the fixed Gaussian leaves residuals on every star
    x, y = variable
    assert peak_z(diff, var, x, y) > 3 * fitted_static
    # The flux change is kept: 20000 within 10 %.
    box = (slice(y - 15, y + 16), slice(x - 15, x + 16))
    np.testing.assert_allclose(diff[box].sum(), 2e4, rtol=0.1)
    # Pure noise in the difference has unit scatter in units of the returned variance.
    quiet = np.ones(science.shape, bool)
    for sx, sy in stars + [variable]:
        quiet[max(sy - 15, 0):sy + 16, max(sx - 15, 0):sx + 16] = False
    quiet[:15] = quiet[-15:] = quiet[:, :15] = quiet[:, -15:] = False
    assert np.std((diff / np.sqrt(var))[quiet]) == pytest.approx(1.0, abs=0.1)


@pytest.mark.parametrize(("sigma_sci", "sigma_tmpl"), [(1.5, 1.45), (1.45, 1.5)])
def test_fitted_difference_has_no_pedestal_when_psfs_nearly_match(sigma_sci: float, sigma_tmpl: float
                                                                   ) -> None:
    """Nearly equal PSF widths but different wings: the sky of the difference stays at zero.

    The constant background fitted with the kernel on star stamps absorbs the wing mismatch;
    applying it left a pedestal of about -1.3 sigma over the whole sky here.
    """
    template, science, tvar, svar, stars, variable = _star_field(sigma_sci, sigma_tmpl, shape=(300, 300))
    valid = np.ones(science.shape, bool)
    diff, var = fitted_difference(template, science, valid, sigma_sci, sigma_tmpl, template_variance=tvar,
                                  science_variance=svar, template_median=10.0, science_median=40.0)
    yy, xx = np.mgrid[: science.shape[0], : science.shape[1]]
    sky = np.ones(science.shape, bool)
    for x, y in [*stars, variable]:
        sky &= np.hypot(xx - x, yy - y) > 12
    z = diff / np.sqrt(var)
    assert abs(float(np.median(z[sky]))) < 0.3
    assert 0.9 < float(np.std(z[sky])) < 1.2


def test_fitted_difference_invalid_pixels_and_few_stars() -> None:
    """Invalid pixels give 0 / variance 1; without stars the Gaussian fallback still gives a difference."""
    pair = make_synthetic_pair((128, 128), seed=6, n_stars=0, n_transients=3, snr_range=(30, 40),
                               n_cosmic_rays=0, n_hot_pixels=0, nan_box=(40, 80, 0, 50))
    mask = pair.science.mask | pair.template.mask
    valid = valid_mask(pair.template.image, pair.science.image, mask=mask)
    assert not valid.all()
    diff, var = fitted_difference(pair.template.image, pair.science.image, valid, pair.science_psf_sigma,
                                  pair.template_psf_sigma, template_variance=pair.template.variance,
                                  science_variance=pair.science.variance, mask=mask)
    assert np.isfinite(diff).all() and np.isfinite(var).all() and np.all(var > 0)
    assert np.all(diff[~valid] == 0) and np.all(var[~valid] == 1)
    truth = pair.truth[pair.truth["category"] == "transient"]
    z = diff / np.sqrt(var)
    assert np.all(z[np.rint(truth["y"]).astype(int), np.rint(truth["x"]).astype(int)] > 5)
    with pytest.raises(ValueError, match="science_psf_sigma"):
        fitted_difference(pair.template.image, pair.science.image, valid, -1.0, 1.0,
                          template_variance=pair.template.variance, science_variance=pair.science.variance)


def test_fitted_spec_round_trip_and_errors() -> None:
    """The kernel choice is stored with the spec; unknown kernels and missing variances are errors."""
    assert NormalizationSpec.from_dict(FITTED.to_dict()) == FITTED
    old = FITTED.to_dict()
    del old["difference_kernel"]  # packages written before the option: the fixed Gaussian
    assert NormalizationSpec.from_dict(old).difference_kernel == "gaussian"
    with pytest.raises(ValueError, match="difference_kernel"):
        NormalizationSpec(channels=CHANNELS, difference_kernel="sinc")
    pair = make_synthetic_pair((64, 64), seed=1)
    mad = NormalizationSpec(channels=CHANNELS, difference_kernel="fitted")
    with pytest.raises(ValueError, match="variance planes"):
        normalize_pair(pair.template.image, pair.science.image, spec=mad, science_psf_sigma=1.5,
                       template_psf_sigma=1.2)


def test_tiled_equals_full_with_fitted_difference() -> None:
    """The kernel is fitted once on the whole image: tiles have no seams."""
    pair = make_synthetic_pair((301, 277), seed=5, n_stars=25, n_transients=10, nan_box=(100, 140, 200, 277))
    torch.manual_seed(3)
    net = TransiNetUNet(in_channels=len(CHANNELS), base_width=8, depth=3)
    torch.nn.init.normal_(net.head_out.weight, std=0.5)
    model = TransiNetModel(net, FITTED, tile_size=160, batch_size=2)
    args = (pair.template.image, pair.science.image, pair.template.variance, pair.science.variance,
            pair.science.mask | pair.template.mask)
    sigmas = {"science_psf_sigma": pair.science_psf_sigma, "template_psf_sigma": pair.template_psf_sigma}
    tiled = model.score_image(*args, **sigmas, tiled=True)
    full = model.score_image(*args, **sigmas, tiled=False)
    assert np.ptp(full) > 1e-3
    np.testing.assert_allclose(tiled, full, atol=1e-5, rtol=0)


def _example(types: list[str]) -> PreparedExample:
    n = len(types)
    xs = np.linspace(40, 460, n)
    return PreparedExample(inputs=np.zeros((2, 512, 512), np.float32),
                           target=np.zeros((512, 512), np.float32), weight=np.ones((512, 512), np.float32),
                           positives=np.column_stack([xs, np.full(n, 256.0)]),
                           positive_types=np.array(types))


def test_positive_type_weights_change_crop_centres() -> None:
    """Up-weighted types centre more positive crops; without weights every transient is equally likely."""
    types = ["hostless"] * 8 + ["variable_fade"] * 2
    example = _example(types)
    is_variable = np.array([t.startswith("variable") for t in types])

    def variable_fraction(weights: dict[str, float]) -> float:
        config = TransiNetTrainingConfig(crop_size=32, crops_per_epoch=600, positive_fraction=1.0,
                                         augment=False, positive_type_weights=weights, seed=1)
        config.validate()
        x = example.inputs.copy()
        # Mark each transient's column so that the crop centre can be read back from the crop.
        for i, (cx, _) in enumerate(example.positives):
            x[0, :, int(cx)] = i + 1
        marked = PreparedExample(x, example.target, example.weight, example.positives, example.positive_types)
        crops, _, _ = _draw_crops([marked], config, epoch=0)
        ids = crops[:, 0].max(axis=(1, 2)).astype(int) - 1
        assert np.all(ids >= 0)  # every crop holds its transient's column
        return float(is_variable[ids].mean())

    assert variable_fraction({}) == pytest.approx(0.2, abs=0.05)
    assert variable_fraction({"variable_fade": 4.0}) == pytest.approx(0.5, abs=0.06)  # 8 against 8
    assert variable_fraction({"variable_fade": 0.0}) == 0.0
    with pytest.raises(ValueError, match="positive_type_weights"):
        TransiNetTrainingConfig(positive_type_weights={"hostless": -1.0}).validate()
    stored = TransiNetTrainingConfig(positive_type_weights={"moving": 2}).to_dict()
    assert stored["positive_type_weights"] == {"moving": 2.0}


def test_prepare_example_records_types_and_cli_parses_weights() -> None:
    """prepare_example keeps the truth types of the transients; the CLI parses TYPE=WEIGHT."""
    from lsst.meas.realbogus.transinet.train_cli import _type_weight_arg, build_parser
    from lsst.meas.realbogus.transinet.training import prepare_example

    pair = make_synthetic_pair((96, 96), seed=2, n_transients=4, snr_range=(20, 40))
    pair.truth["type"] = [f"t{i}" for i in range(len(pair.truth))]
    ex = prepare_example(pair, TransiNetTrainingConfig(channels=("template", "science", "valid")))
    is_tr = np.asarray(pair.truth["category"]) == "transient"
    assert list(ex.positive_types) == list(np.asarray(pair.truth["type"])[is_tr])
    no_type = Table(pair.truth)
    del no_type["type"]
    pair.truth = no_type
    assert list(prepare_example(pair, TransiNetTrainingConfig()).positive_types) == [""] * int(is_tr.sum())
    args = build_parser().parse_args(["--positive-type-weights", "variable_fade=4", "moving=0.5",
                                      "--difference-kernel", "fitted"])
    assert dict(args.positive_type_weights) == {"variable_fade": 4.0, "moving": 0.5}
    assert args.difference_kernel == "fitted"
    for bad in ("variable_fade", "=3", "moving=-1", "moving=x"):
        with pytest.raises(argparse.ArgumentTypeError, match="TYPE=WEIGHT"):
            _type_weight_arg(bad)


def test_precomputed_difference_gives_the_same_network_input() -> None:
    template, science, tvar, svar, _, _ = _star_field(2.2, 1.4, seed=3)
    mask = np.zeros(science.shape, dtype=np.int32)
    science[5:20, 150:190] = np.nan  # invalid pixels are NaN in the returned planes
    kwargs = {"template_variance": tvar, "science_variance": svar, "mask": mask, "spec": FITTED,
              "science_psf_sigma": 2.2, "template_psf_sigma": 1.4}
    diff, var, _ = fitted_pair_difference(template, science, **kwargs)
    assert np.isnan(diff[10, 160]) and np.isnan(var[10, 160]) and np.isfinite(diff[100, 100])
    fresh = normalize_pair(template, science, **kwargs)
    reused = normalize_pair(template, science, difference=(diff, var), **kwargs)
    np.testing.assert_array_equal(reused, fresh)


def test_fluxes_on_the_fitted_difference_ignore_static_stars() -> None:
    """Static non-Gaussian stars: the fitted-difference flux is noise, the Gaussian estimate is not."""
    sigma_sci, sigma_tmpl = 2.2, 1.4
    template, science, tvar, svar, stars, variable = _star_field(sigma_sci, sigma_tmpl, seed=1)
    yy, xx = np.mgrid[: science.shape[0], : science.shape[1]]
    score = np.zeros(science.shape)
    for x, y in stars + [variable]:  # a score blob on every star
        score = np.maximum(score, 0.9 * np.exp(-0.5 * ((xx - x) ** 2 + (yy - y) ** 2) / 1.5**2))
    sigmas = {"science_psf_sigma": sigma_sci, "template_psf_sigma": sigma_tmpl}
    difference = fitted_pair_difference(template, science, template_variance=tvar, science_variance=svar,
                                        spec=FITTED, **sigmas)
    fitted = find_peaks(score, threshold=0.5, difference=difference, **sigmas)
    gauss = find_peaks(score, threshold=0.5, science=science, template=template, science_variance=svar,
                       template_variance=tvar, **sigmas)
    assert len(fitted) == len(gauss) == len(stars) + 1

    def split(table):
        d = np.hypot(table["x"] - variable[0], table["y"] - variable[1])
        snr = np.asarray(table["flux"] / table["flux_err"])
        return snr[d > 2], float(np.asarray(table["flux"])[np.argmin(d)])

    static_fitted, var_flux = split(fitted)
    static_gauss, _ = split(gauss)
    assert np.median(np.abs(static_fitted)) < 3.0  # static stars: noise
    assert np.median(np.abs(static_gauss)) > 10.0  # Gaussian matching leaves a residual on every star
    # The variable star's 2e4 brightening; Gaussian weights on a PSF with 25 % of its light in a wing
    # measure about 0.82 of it.
    assert 0.7 * 2e4 < var_flux < 1.05 * 2e4


def test_flux_errors_account_for_the_noise_the_kernel_correlates() -> None:
    """Science sharper than the template: the science is convolved and its noise correlated."""
    sigma_sci, sigma_tmpl = 1.4, 2.2
    template, science, tvar, svar, stars, variable = _star_field(sigma_sci, sigma_tmpl, seed=2,
                                                                 shape=(300, 300))
    diff, var, flux_var = fitted_pair_difference(template, science, template_variance=tvar, science_variance=svar,
                                                 spec=FITTED, science_psf_sigma=sigma_sci,
                                                 template_psf_sigma=sigma_tmpl)
    rng = np.random.default_rng(5)
    x, y = rng.uniform(15, 285, (2, 4000))
    far = np.min([np.hypot(x - sx, y - sy) for sx, sy in stars + [variable]], axis=0) > 12
    x, y = x[far], y[far]
    assert len(x) > 500
    from lsst.meas.realbogus.transinet.peaks import difference_fluxes

    f, e = difference_fluxes(x, y, diff, flux_var, sigma_tmpl)
    _, e_pixel = difference_fluxes(x, y, diff, var, sigma_tmpl)
    assert np.std(f / e) == pytest.approx(1.0, abs=0.12)
    assert np.std(f / e_pixel) > 1.3  # the per-pixel variance alone underestimates the errors
