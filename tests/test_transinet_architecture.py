"""Tests of the TransiNet U-Net and its input normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lsst.meas.realbogus.mask_planes import NO_DATA
from lsst.meas.realbogus.transinet.architecture import TransiNetUNet, build_transinet_unet
from lsst.meas.realbogus.transinet.normalization import NormalizationSpec, normalize_pair


def _random_net(seed: int = 0, **kwargs: int) -> TransiNetUNet:
    torch.manual_seed(seed)
    net = build_transinet_unet(**kwargs).eval()
    torch.nn.init.normal_(net.head_out.weight, std=0.5)
    return net


@pytest.mark.parametrize("shape", [(1, 1), (37, 53), (64, 64), (129, 7)])
@pytest.mark.parametrize("depth", [1, 3])
def test_output_shape_any_size(shape: tuple[int, int], depth: int) -> None:
    net = _random_net(depth=depth)
    with torch.inference_mode():
        out = net(torch.randn(2, 3, *shape))
    assert out.shape == (2, 1, *shape)
    assert torch.isfinite(out).all()


def test_variance_channels_and_bad_input() -> None:
    net = build_transinet_unet(in_channels=5, base_width=4, depth=2)
    assert net(torch.zeros(1, 5, 20, 20)).shape == (1, 1, 20, 20)
    with pytest.raises(ValueError, match="expects input"):
        net(torch.zeros(1, 3, 20, 20))
    with pytest.raises(ValueError, match="depth"):
        build_transinet_unet(depth=0)


def test_receptive_radius_bounds_influence() -> None:
    net = _random_net(1)
    x = torch.randn(1, 3, 160, 160)
    x2 = x.clone()
    x2[0, :, 80, 80] += 50.0
    with torch.inference_mode():
        changed = (net(x) - net(x2)).abs()[0, 0] > 0
    ys, xs = np.nonzero(changed.numpy())
    assert changed.any()
    reach = max(np.abs(ys - 80).max(), np.abs(xs - 80).max())
    assert reach <= net.receptive_radius


def test_registered_architecture_matches() -> None:
    """If the architecture registry is importable, our name must build our network."""
    try:
        from lsst.meas.realbogus.architectures import build_architecture
    except ImportError:
        build_architecture = None
    if build_architecture is not None:
        net = build_architecture("transinet_unet", in_channels=3, base_width=8, depth=3)
        assert isinstance(net, TransiNetUNet)
    assert isinstance(build_transinet_unet(), TransiNetUNet)


def test_normalization_unit_invariant_and_nan_handling() -> None:
    rng = np.random.default_rng(2)
    sci = rng.normal(100.0, 10.0, (40, 50))
    tmpl = rng.normal(50.0, 5.0, (40, 50))
    sci[5:10, 5:10] = np.nan
    mask = np.zeros((40, 50), dtype=np.int32)
    mask[30:, 40:] = NO_DATA
    var = np.full((40, 50), 100.0)
    spec = NormalizationSpec()
    a = normalize_pair(tmpl, sci, science_variance=var, mask=mask, spec=spec)
    b = normalize_pair(tmpl * 1e3, sci * 1e3, science_variance=var * 1e6, mask=mask, spec=spec)
    assert a.shape == (3, 40, 50) and a.dtype == np.float32
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.isfinite(a).all()
    valid = a[spec.channels.index("valid")]
    assert valid[7, 7] == 0 and valid[35, 45] == 0 and valid[20, 20] == 1
    assert np.all(a[:, 5:10, 5:10] == 0)
    # Undoing the stretch gives the background-subtracted science in units of its noise sigma.
    z = np.sinh(a[spec.channels.index("science")][valid > 0]) * spec.asinh_softening
    assert abs(np.median(z)) < 0.05
    assert 0.9 < np.std(z) < 1.1


def test_normalization_errors() -> None:
    with pytest.raises(ValueError, match="Unknown TransiNet channel"):
        NormalizationSpec(channels=("template", "science", "diff"))
    with pytest.raises(ValueError, match="shape"):
        normalize_pair(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match="noise sigma"):
        normalize_pair(np.zeros((8, 8)), np.ones((8, 8)))
    with pytest.raises(ValueError, match="No valid pixel"):
        normalize_pair(np.full((8, 8), np.nan), np.zeros((8, 8)))
    with pytest.raises(ValueError, match="variance"):
        normalize_pair(np.zeros((8, 8)), np.zeros((8, 8)),
                       spec=NormalizationSpec(channels=("template", "science", "variance_science")))
    spec = NormalizationSpec(channels=("science", "template", "valid"), asinh_softening=2.0)
    assert NormalizationSpec.from_dict(spec.to_dict()) == spec
