"""FFT convolution of one image with several small kernels, sharing the image transform."""

from __future__ import annotations

__all__ = ["convolve_same"]

from collections.abc import Sequence

import numpy as np
import scipy.fft


def convolve_same(
    image: np.ndarray, kernels: Sequence[np.ndarray], workers: int = 1, dtype: type = np.float64
) -> list[np.ndarray]:
    """Convolve ``image`` with each kernel, ``mode="same"`` with zero padding.

    The image is transformed once; each kernel costs one multiply and one inverse transform.

    Parameters
    ----------
    image : `numpy.ndarray`
        2-D image without non-finite values.
    kernels : sequence of `numpy.ndarray`
        Odd-sized, centred 2-D kernels (all of the same shape).
    workers : `int`, optional
        Threads for `scipy.fft`.
    dtype : `type`, optional
        Floating-point type of the transforms (`numpy.float32` is about 1.5× faster; its rounding
        error, ~1e-7 of the image maximum, is far below the noise of astronomical images).

    Returns
    -------
    results : `list` of `numpy.ndarray`
        ``image ⊗ kernel`` for each kernel (``dtype``, same shape as ``image``), identical to
        ``scipy.signal.fftconvolve(image, kernel, mode="same")`` up to rounding.
    """
    if len(kernels) == 0:
        return []
    kshape = np.shape(kernels[0])
    if any(np.shape(k) != kshape for k in kernels):
        raise ValueError("all kernels must have the same shape")
    if kshape[0] % 2 == 0 or kshape[1] % 2 == 0:
        raise ValueError(f"kernels must have odd side lengths, got {kshape}")
    ny, nx = image.shape
    hy, hx = kshape[0] // 2, kshape[1] // 2
    fy = scipy.fft.next_fast_len(ny + 2 * hy, real=True)
    fx = scipy.fft.next_fast_len(nx + 2 * hx, real=True)
    ft_image = scipy.fft.rfft2(np.asarray(image, dtype=dtype), s=(fy, fx), workers=workers)
    results = []
    for kernel in kernels:
        ft_kernel = scipy.fft.rfft2(np.asarray(kernel, dtype=dtype), s=(fy, fx), workers=workers)
        full = scipy.fft.irfft2(ft_image * ft_kernel, s=(fy, fx), workers=workers)
        results.append(np.ascontiguousarray(full[hy : hy + ny, hx : hx + nx]))
    return results
