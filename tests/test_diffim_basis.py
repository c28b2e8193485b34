"""Tests of the kernel basis, polynomials, FFT convolution and PSF helpers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.signal
from lsst.meas.realbogus.diffim.basis import alard_lupton_basis, poly_terms, poly_values
from lsst.meas.realbogus.diffim.convolution import convolve_same
from lsst.meas.realbogus.diffim.psf import check_psf, gaussian_kernel, psf_moment_sigma, psf_sigma


def test_basis_normalisation():
    """The first member has unit sum, all others zero sum and unit norm."""
    basis = alard_lupton_basis([0.8, 1.6, 3.2], [4, 2, 2], 9)
    assert basis.shape == (15 + 6 + 6, 19, 19)
    assert basis[0].sum() == pytest.approx(1.0)
    np.testing.assert_allclose(basis[1:].sum(axis=(1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(np.sqrt((basis[1:] ** 2).sum(axis=(1, 2))), 1.0)
    # Linearly independent: full rank.
    assert np.linalg.matrix_rank(basis.reshape(len(basis), -1)) == len(basis)


def test_basis_rejects_bad_arguments():
    """Mismatched lengths, non-positive widths and tiny kernels raise ValueError."""
    with pytest.raises(ValueError, match="one degree per"):
        alard_lupton_basis([1.0, 2.0], [2], 5)
    with pytest.raises(ValueError, match="> 0"):
        alard_lupton_basis([0.0], [2], 5)
    with pytest.raises(ValueError, match="half width"):
        alard_lupton_basis([1.0], [2], 0)


def test_poly_terms_and_values():
    """Monomials are ordered constant first and scaled to [-1, 1] over the detector."""
    assert poly_terms(0) == [(0, 0)]
    assert poly_terms(2) == [(0, 0), (1, 0), (0, 1), (2, 0), (1, 1), (0, 2)]
    values = poly_values(np.array([0.0, 99.0]), np.array([0.0, 49.0]), 1, (50, 100))
    np.testing.assert_allclose(values, [[1, 1], [-1, 1], [-1, 1]])


def test_convolve_same_matches_scipy():
    """Shared-transform convolution equals scipy's fftconvolve in 'same' mode."""
    rng = np.random.default_rng(0)
    image = rng.normal(size=(97, 130))
    kernels = [rng.normal(size=(11, 11)) for _ in range(3)]
    for kernel, result in zip(kernels, convolve_same(image, kernels)):
        np.testing.assert_allclose(result, scipy.signal.fftconvolve(image, kernel, mode="same"), atol=1e-10)
    single = convolve_same(image, kernels[:1], dtype=np.float32)[0]
    assert single.dtype == np.float32
    np.testing.assert_allclose(single, scipy.signal.fftconvolve(image, kernels[0], mode="same"), atol=1e-3)
    with pytest.raises(ValueError, match="odd"):
        convolve_same(image, [np.ones((4, 4))])


def test_psf_helpers():
    """Gaussian kernels are unit-sum; both sigma estimators agree on Gaussians only."""
    kernel = gaussian_kernel(2.0, 15)
    assert kernel.sum() == pytest.approx(1.0)
    assert psf_sigma(kernel) == pytest.approx(np.sqrt(4.0 + 1.0 / 12.0), rel=0.01)
    assert psf_moment_sigma(kernel) == pytest.approx(psf_sigma(kernel), rel=0.005)
    winged = 0.9 * gaussian_kernel(2.0, 15) + 0.1 * gaussian_kernel(6.0, 15)
    assert psf_moment_sigma(winged) > 1.2 * psf_sigma(winged)
    np.testing.assert_allclose(check_psf(3 * kernel), kernel)
    with pytest.raises(ValueError, match="non-finite"):
        check_psf(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="positive sum"):
        check_psf(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="2-D"):
        check_psf(np.ones(5))
