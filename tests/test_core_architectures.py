"""Tests of the architecture registry and built-in networks."""

from __future__ import annotations

import pytest
import torch
from lsst.meas.realbogus.architectures import (
    architecture_info,
    build_architecture,
    flops_per_source,
    list_architectures,
    register_architecture,
)
from lsst.meas.realbogus.errors import UnknownArchitectureError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Run torch single-threaded: the test machines are small and shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)



def test_builtins_registered() -> None:
    names = list_architectures()
    for name in ("rb3_cnn", "rb1_cnn", "incumbent_cnn"):
        assert name in names
        assert architecture_info(name)["kind"] == "classifier"
    assert set(list_architectures(kind="classifier")) <= set(names)


def test_unknown_architecture_lists_known() -> None:
    with pytest.raises(UnknownArchitectureError, match="rb3_cnn"):
        build_architecture("no_such_net")
    with pytest.raises(UnknownArchitectureError):
        architecture_info("no_such_net")


def test_bad_kwargs_name_architecture() -> None:
    with pytest.raises(TypeError, match="rb3_cnn"):
        build_architecture("rb3_cnn", depth=3)
    with pytest.raises(ValueError, match="in_channels"):
        build_architecture("rb3_cnn", in_channels=0)


def test_register_duplicate_refused() -> None:
    @register_architecture("_test_tiny", kind="classifier")
    def tiny() -> torch.nn.Module:
        """Tiny test net."""
        return torch.nn.Linear(1, 1)

    assert "_test_tiny" in list_architectures()
    with pytest.raises(ValueError, match="already registered"):
        register_architecture("_test_tiny")(lambda: torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="kind"):
        register_architecture("_test_other", kind="detector")


@pytest.mark.parametrize("size", [30, 51, 63])
def test_rb_cnn_any_size_logits(size: int) -> None:
    for name, channels in (("rb3_cnn", 4), ("rb1_cnn", 2)):
        model = build_architecture(name).eval()
        with torch.inference_mode():
            out = model(torch.randn(5, channels, size, size))
        assert out.shape == (5,)


def test_batch_independence() -> None:
    torch.manual_seed(0)
    model = build_architecture("rb3_cnn").eval()
    x = torch.randn(64, 4, 51, 51)
    with torch.inference_mode():
        full = model(x)
        single = torch.cat([model(x[i : i + 1]) for i in range(8)])
    torch.testing.assert_close(full[:8], single, atol=1e-5, rtol=1e-5)


def test_flops() -> None:
    incumbent = build_architecture("incumbent_cnn")
    ours = build_architecture("rb3_cnn")
    f_inc = flops_per_source(incumbent, 3, 51)
    f_ours = flops_per_source(ours, 4, 51)
    # 5x5 valid convs: 47^2*16*75 + 19^2*32*400 + 5^2*64*800 + 256*32 + 32 MACs.
    assert f_inc == 2 * (47 * 47 * 16 * 75 + 19 * 19 * 32 * 400 + 5 * 5 * 64 * 800 + 256 * 32 + 32)
    assert f_ours * 5 < f_inc
    assert flops_per_source(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3)), 1, 2) == 2 * 12


def test_incumbent_size_fixed() -> None:
    model = build_architecture("incumbent_cnn", size=51).eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 3, 51, 51)).shape == (2,)
        with pytest.raises(RuntimeError):
            model(torch.randn(2, 3, 63, 63))
    with pytest.raises(ValueError, match="too small"):
        build_architecture("incumbent_cnn", size=20)


def test_rb_cnn_stem() -> None:
    """A stride-1 stem adds one full-resolution convolution (and its FLOPs); bad widths are refused."""
    plain = build_architecture("rb3_cnn", widths=(8, 16), hidden=8)
    stem = build_architecture("rb3_cnn", widths=(8, 16), hidden=8, stem=6)
    convs = [m for m in stem.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1), (2, 2), (2, 2)] and convs[0].out_channels == 6
    # The stem costs 31^2 * 6 * 4 * 9 MACs and feeds 6 (not 4) channels into the first strided conv.
    extra = 2 * 31 * 31 * 6 * 4 * 9 + 2 * 16 * 16 * 8 * (6 - 4) * 9
    assert flops_per_source(stem, 4, 31) - flops_per_source(plain, 4, 31) == extra
    with torch.inference_mode():
        assert stem.eval()(torch.randn(3, 4, 31, 31)).shape == (3,)
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="stem"):
            build_architecture("rb3_cnn", stem=bad)
