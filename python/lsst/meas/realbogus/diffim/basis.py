"""Alard–Lupton kernel basis and the polynomials used for spatial variation.

The matching kernel is a linear combination of Gaussians multiplied by polynomials
(Alard & Lupton 1998, ApJ 503, 325).  The basis is re-organised so that its first
member has unit sum and all others have zero sum: the kernel sum (photometric
scaling) is then carried by a single coefficient, which is kept spatially constant.
"""

from __future__ import annotations

__all__ = ["alard_lupton_basis", "poly_terms", "poly_values"]

from collections.abc import Sequence

import numpy as np


def alard_lupton_basis(sigmas: Sequence[float], degrees: Sequence[int], half_width: int) -> np.ndarray:
    """Build a normalised Alard–Lupton basis.

    Parameters
    ----------
    sigmas : sequence of `float`
        Gaussian widths in pixels (all > 0).
    degrees : sequence of `int`
        Maximum total polynomial degree for each Gaussian (same length as ``sigmas``).
    half_width : `int`
        Kernel half size; kernels are ``2 * half_width + 1`` pixels on a side.

    Returns
    -------
    basis : `numpy.ndarray`, shape ``(n_basis, size, size)``
        ``basis[0]`` has unit sum; every other member has zero sum and unit L2 norm.

    Raises
    ------
    ValueError
        Raised on mismatched lengths, non-positive widths or negative degrees.
    """
    if len(sigmas) != len(degrees) or len(sigmas) == 0:
        raise ValueError(f"need one degree per Gaussian width, got sigmas={sigmas}, degrees={degrees}")
    if any(not (s > 0) for s in sigmas):
        raise ValueError(f"basis Gaussian widths must be > 0, got {sigmas}")
    if any(d < 0 for d in degrees):
        raise ValueError(f"basis polynomial degrees must be >= 0, got {degrees}")
    if half_width < 1:
        raise ValueError(f"kernel half width must be >= 1, got {half_width}")
    coords = np.arange(-half_width, half_width + 1, dtype=np.float64)
    y, x = np.meshgrid(coords, coords, indexing="ij")
    raw = []
    for sigma, degree in zip(sigmas, degrees):
        gauss = np.exp(-0.5 * (x**2 + y**2) / sigma**2)
        # Scale coordinates by sigma so that high-order terms stay well conditioned.
        xs, ys = x / sigma, y / sigma
        for total in range(degree + 1):
            for j in range(total + 1):
                raw.append(gauss * xs ** (total - j) * ys**j)
    first = raw[0] / raw[0].sum()
    basis = [first]
    for b in raw[1:]:
        b = b - b.sum() * first
        norm = np.sqrt((b**2).sum())
        if norm > 1e-12:
            basis.append(b / norm)
    return np.array(basis)


def poly_terms(order: int) -> list[tuple[int, int]]:
    """Exponents ``(i, j)`` of the monomials ``u**i * v**j`` with ``i + j <= order``.

    Parameters
    ----------
    order : `int`
        Maximum total degree (>= 0).

    Returns
    -------
    terms : `list` of `tuple`
        ``[(0, 0), (1, 0), (0, 1), (2, 0), ...]``; the constant term comes first.
    """
    if order < 0:
        raise ValueError(f"polynomial order must be >= 0, got {order}")
    return [(total - j, j) for total in range(order + 1) for j in range(total + 1)]


def poly_values(
    x: np.ndarray | float, y: np.ndarray | float, order: int, shape: tuple[int, int]
) -> np.ndarray:
    """Evaluate the monomials of `poly_terms` at detector positions.

    Coordinates are rescaled to ``[-1, 1]`` over the detector so that the
    coefficients are well conditioned.

    Parameters
    ----------
    x, y : `numpy.ndarray` or `float`
        Pixel positions (0-based).
    order : `int`
        Maximum total degree.
    shape : `tuple` of `int`
        Detector shape ``(ny, nx)``.

    Returns
    -------
    values : `numpy.ndarray`, shape ``(n_terms,) + np.shape(x)``
        Monomial values.
    """
    ny, nx = shape
    u = (np.asarray(x, dtype=np.float64) - 0.5 * (nx - 1)) / max(0.5 * (nx - 1), 1.0)
    v = (np.asarray(y, dtype=np.float64) - 0.5 * (ny - 1)) / max(0.5 * (ny - 1), 1.0)
    return np.array([u**i * v**j for i, j in poly_terms(order)])
