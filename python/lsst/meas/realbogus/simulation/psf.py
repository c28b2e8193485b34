"""PSF models of the simulated survey: varied profiles with realistic wings."""

from __future__ import annotations

__all__ = ["PsfModel", "draw_kernel", "draw_psf_model", "effective_sigma"]

from dataclasses import dataclass, fields

import galsim
import numpy as np

PSF_KINDS = ("moffat", "kolmogorov", "moffat_halo", "kolmogorov_halo", "double_gaussian", "gaussian")
"""All profile families (``gaussian`` is meant for exact tests, not realism)."""

DEFAULT_SCIENCE_PSF_KINDS = ("moffat", "kolmogorov", "moffat_halo", "kolmogorov_halo", "double_gaussian")
"""Profile families drawn for science PSFs by default."""


@dataclass(frozen=True)
class PsfModel:
    """A (mildly spatially varying) PSF model.

    The profile at detector position ``(x, y)`` has FWHM
    ``fwhm * (1 + dfwhm_x * u + dfwhm_y * v)`` and shear ``(g1 + dg1 * u, g2 + dg2 * v)``
    with ``u, v`` in [-1, 1] from the detector centre to the edges.
    """

    kind: str
    """Profile family, one of ``PSF_KINDS``."""
    fwhm: float
    """Core FWHM (arcsec) at the detector centre."""
    beta: float = 3.0
    """Moffat index (Moffat kinds)."""
    g1: float = 0.0
    """Reduced shear component 1 at the centre."""
    g2: float = 0.0
    """Reduced shear component 2 at the centre."""
    halo_fraction: float = 0.0
    """Flux fraction of the broad halo (``*_halo`` and ``double_gaussian`` kinds)."""
    halo_scale: float = 2.5
    """Halo FWHM in units of the core FWHM."""
    dfwhm_x: float = 0.0
    """Fractional FWHM gradient along x."""
    dfwhm_y: float = 0.0
    """Fractional FWHM gradient along y."""
    dg1: float = 0.0
    """Shear gradient (g1 along x)."""
    dg2: float = 0.0
    """Shear gradient (g2 along y)."""

    def to_metadata(self, prefix: str = "psf_") -> dict[str, float | str]:
        """Return the model as flat metadata entries ``{prefix + field: value}``."""
        return {prefix + f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_metadata(cls, metadata: dict, prefix: str = "psf_") -> PsfModel:
        """Rebuild a model from entries written by `to_metadata`.

        Raises
        ------
        KeyError
            Raised naming the first missing entry.
        """
        kwargs = {}
        for f in fields(cls):
            key = prefix + f.name
            if key not in metadata:
                raise KeyError(f"PSF metadata entry {key!r} is missing.")
            kwargs[f.name] = metadata[key]
        return cls(**kwargs)

    def kernel_at(
        self, x: float, y: float, width: int, height: int, pixel_scale: float, size: int = 41
    ) -> np.ndarray:
        """Return the normalised kernel for a source at detector position ``(x, y)``.

        The kernel is centred on the source's sub-pixel position relative to pixel
        ``(floor(x + 0.5), floor(y + 0.5))``, which is the kernel's central pixel.

        Parameters
        ----------
        x, y : `float`
            Source position (pixels).
        width, height : `int`
            Detector size (pixels), for the spatial variation.
        pixel_scale : `float`
            Arcsec per pixel.
        size : `int`
            Odd kernel size.

        Returns
        -------
        kernel : `numpy.ndarray`
            ``(size, size)`` kernel summing to one.
        """
        u = 2.0 * x / (width - 1) - 1.0
        v = 2.0 * y / (height - 1) - 1.0
        ix, iy = np.floor(x + 0.5), np.floor(y + 0.5)
        return draw_kernel(self.profile(u, v), size, pixel_scale, (x - ix, y - iy))

    def profile(
        self, u: float = 0.0, v: float = 0.0, fwhm_scale: float = 1.0, flux: float = 1.0
    ) -> galsim.GSObject:
        """Return the galsim profile at normalised detector position ``(u, v)``.

        Parameters
        ----------
        u, v : `float`
            Position relative to the detector centre, in units of half the width/height.
        fwhm_scale : `float`
            Extra multiplicative FWHM factor (brighter-fatter effect).
        flux : `float`
            Total flux.

        Returns
        -------
        profile : `galsim.GSObject`
            The PSF profile (arcsec units).
        """
        fwhm = self.fwhm * (1.0 + self.dfwhm_x * u + self.dfwhm_y * v) * fwhm_scale
        if self.kind == "moffat":
            obj = galsim.Moffat(beta=self.beta, fwhm=fwhm)
        elif self.kind == "kolmogorov":
            obj = galsim.Kolmogorov(fwhm=fwhm)
        elif self.kind == "moffat_halo":
            obj = (1 - self.halo_fraction) * galsim.Moffat(
                beta=self.beta, fwhm=fwhm
            ) + self.halo_fraction * galsim.Moffat(beta=2.6, fwhm=fwhm * self.halo_scale)
        elif self.kind == "kolmogorov_halo":
            obj = (1 - self.halo_fraction) * galsim.Kolmogorov(
                fwhm=fwhm
            ) + self.halo_fraction * galsim.Moffat(beta=2.8, fwhm=fwhm * self.halo_scale)
        elif self.kind == "gaussian":
            obj = galsim.Gaussian(fwhm=fwhm)
        elif self.kind == "double_gaussian":
            obj = (1 - self.halo_fraction) * galsim.Gaussian(
                fwhm=fwhm
            ) + self.halo_fraction * galsim.Gaussian(fwhm=fwhm * self.halo_scale)
        else:
            raise ValueError(f"Unknown PSF kind {self.kind!r}; expected one of {PSF_KINDS}.")
        g1 = self.g1 + self.dg1 * u
        g2 = self.g2 + self.dg2 * v
        if g1 != 0.0 or g2 != 0.0:
            obj = obj.shear(g1=g1, g2=g2)
        return obj.withFlux(flux)


def draw_psf_model(
    rng: np.random.Generator,
    fwhm: float,
    max_ellipticity: float,
    variation: float,
    kinds: tuple[str, ...] = DEFAULT_SCIENCE_PSF_KINDS,
) -> PsfModel:
    """Draw a random PSF model with the given core FWHM.

    Parameters
    ----------
    rng : `numpy.random.Generator`
        Random generator.
    fwhm : `float`
        Core FWHM in arcsec.
    max_ellipticity : `float`
        Maximum reduced shear.
    variation : `float`
        Maximum fractional FWHM change across the detector.
    kinds : `tuple` [`str`]
        Profile families to choose from.

    Returns
    -------
    model : `PsfModel`
        The model.
    """
    if fwhm <= 0:
        raise ValueError(f"PSF FWHM must be positive, got {fwhm}.")
    unknown = [k for k in kinds if k not in PSF_KINDS]
    if unknown or not kinds:
        raise ValueError(f"Unknown or no PSF kinds {unknown}; known kinds: {PSF_KINDS}.")
    weights = {
        "moffat": 0.35,
        "kolmogorov": 0.2,
        "moffat_halo": 0.2,
        "kolmogorov_halo": 0.15,
        "double_gaussian": 0.1,
        "gaussian": 0.1,
    }
    p = np.array([weights.get(k, 0.1) for k in kinds])
    kind = str(kinds[rng.choice(len(kinds), p=p / p.sum())])
    g = max_ellipticity * np.sqrt(rng.uniform())
    angle = rng.uniform(0, np.pi)
    gvar = 0.3 * max_ellipticity
    return PsfModel(
        kind=kind,
        fwhm=float(fwhm),
        beta=float(rng.uniform(2.3, 4.8)),
        g1=float(g * np.cos(2 * angle)),
        g2=float(g * np.sin(2 * angle)),
        halo_fraction=float(rng.uniform(0.02, 0.12)),
        halo_scale=float(rng.uniform(1.8, 3.0)),
        dfwhm_x=float(rng.uniform(-variation, variation) / 2),
        dfwhm_y=float(rng.uniform(-variation, variation) / 2),
        dg1=float(rng.uniform(-gvar, gvar)),
        dg2=float(rng.uniform(-gvar, gvar)),
    )


def draw_kernel(
    profile: galsim.GSObject, size: int, pixel_scale: float, offset: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Draw a normalised PSF kernel image (sampled at pixel centres).

    Parameters
    ----------
    profile : `galsim.GSObject`
        The PSF profile.
    size : `int`
        Odd kernel size in pixels.
    pixel_scale : `float`
        Arcsec per pixel.
    offset : `tuple` [`float`, `float`]
        Sub-pixel offset ``(dx, dy)`` of the profile centre from the central pixel.

    Returns
    -------
    kernel : `numpy.ndarray`
        ``(size, size)`` float64 array summing to one.
    """
    if size % 2 != 1 or size < 3:
        raise ValueError(f"Kernel size must be odd and >= 3, got {size}.")
    img = profile.withFlux(1.0).drawImage(
        nx=size, ny=size, scale=pixel_scale, method="no_pixel", offset=offset
    )
    arr = img.array.astype(np.float64)
    return arr / arr.sum()


def effective_sigma(kernel: np.ndarray) -> float:
    """Return the Gaussian-equivalent sigma (pixels) of a normalised kernel.

    The sigma is defined through the noise-equivalent area, ``Neff = 1 / sum(P**2) = 4 pi sigma**2``,
    which is the quantity that sets the PSF-photometry noise.

    Parameters
    ----------
    kernel : `numpy.ndarray`
        Kernel image (normalised internally).

    Returns
    -------
    sigma : `float`
        Gaussian-equivalent sigma in pixels.
    """
    k = np.asarray(kernel, dtype=np.float64)
    total = k.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("Kernel must have a positive, finite sum.")
    k = k / total
    return float(np.sqrt(1.0 / (4.0 * np.pi * np.sum(k * k))))
