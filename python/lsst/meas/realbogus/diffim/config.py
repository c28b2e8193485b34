"""Configuration of PSF-matched image subtraction."""

from __future__ import annotations

__all__ = ["SubtractionConfig"]

from dataclasses import dataclass


@dataclass
class SubtractionConfig:
    """Parameters of `subtract_images`.

    Attributes
    ----------
    convolve : `str`
        Which image is convolved: ``"template"`` (difference = science − K⊗template, PSF of the
        difference = science PSF), ``"science"`` (difference = K⊗science − template, PSF = template PSF)
        or ``"auto"`` (template unless the science PSF is sharper than the template PSF by more than
        ``sharper_tolerance``).  Forcing ``"template"`` with a sharper science PSF is ill-posed: a
        warning is logged and a best-effort (deconvolving) fit is made.
    sharper_tolerance : `float`
        Relative tolerance on the PSF sigmas for ``"auto"``: the science is treated as sharper only if
        ``sigma_science < (1 - sharper_tolerance) * sigma_template``.
    kernel_half_width : `int` or `None`
        Half size of the matching kernel in pixels; `None` chooses
        ``ceil(kernel_size_factor * max(basis sigmas))`` clipped to ``[3, 30]``.
    kernel_size_factor : `float`
        Factor used when ``kernel_half_width`` is `None`.
    basis_sigma_factors : `tuple` of `float`
        Widths of the basis Gaussians in units of the matching sigma
        ``sqrt(|sigma_sci**2 - sigma_tmpl**2|)``.
    halo_basis : `bool` or `None`
        Add one broad basis Gaussian (``halo_sigma_factor`` × matching sigma, polynomial degree
        ``halo_degree``) so that the kernel can build the extended halo of a seeing-limited PSF;
        without it the kernel sum is biased low by ~2 % on simulated Kolmogorov-plus-halo PSFs and
        bright stars leave residuals.  `None` adds it when the PSF to be matched has extended wings:
        its second-moment sigma exceeds its noise-equivalent-area sigma by ``halo_wing_ratio``.
        The kernel half width then also covers ``2.5`` halo sigmas (at most 30 pixels).
    halo_sigma_factor : `float`
        Width of the halo basis Gaussian in units of the matching sigma.
    halo_degree : `int`
        Polynomial degree of the halo basis Gaussian.
    halo_wing_ratio : `float`
        Threshold of the automatic halo decision.
    min_basis_sigma : `float`
        Floor on the basis Gaussian widths in pixels (for nearly equal PSFs).
    basis_degrees : `tuple` of `int`
        Polynomial degree of each basis Gaussian (same length as ``basis_sigma_factors``).
    spatial_order : `int`
        Polynomial order of the spatial variation of the kernel shape over the detector (the kernel
        sum is kept spatially constant).  Reduced automatically when there are too few stamps.
    background_order : `int`
        Polynomial order of the differential background (``-1`` disables it).
    n_stamps : `int`
        Maximum number of stars used for the fit.
    stamp_grid : `int`
        Stars are spread over a ``stamp_grid × stamp_grid`` grid of detector cells.
    min_stamps : `int`
        Fewer usable stamps than this triggers the analytic Gaussian fallback kernel.
    stamp_half_width : `int` or `None`
        Half size of the fitted stamps; `None` uses the kernel half width plus ``ceil(3 * sigma)`` of
        the broader PSF (at least 3), so that the stamps include sky beyond the kernel's reach and the
        kernel wings are not degenerate with the background.
    isolation_factor : `float`
        A stamp star must be the brightest peak within this many sigmas of the broader PSF (fainter
        neighbours are harmless: the fit convolves the whole stamp region).
    star_snr_min : `float`
        Minimum peak signal-to-noise (in the template, after PSF smoothing) of a stamp star.
    clip_sigma : `float`
        Stamps whose reduced chi² exceeds the median by more than ``clip_sigma`` robust standard
        deviations are rejected.
    clip_iterations : `int`
        Maximum number of fit-and-clip iterations.
    bad_mask_bits : `int` or `None`
        Mask bits that exclude a pixel from the fit; `None` means BAD|SAT|NO_DATA|CR|SUSPECT.
    grow_mask_bits : `int` or `None`
        Mask bits of the convolved image grown by the kernel footprint; `None` means all planes except
        DETECTED, DETECTED_NEGATIVE and EDGE.
    exact_variance : `bool`
        Propagate the convolved image's variance with the spatially varying ``K(x, y)²`` (one FFT per
        pair of spatial terms) instead of the kernel at the detector centre (one FFT).
    ridge : `float`
        Relative Tikhonov regularisation added to the normal equations' diagonal.
    """

    convolve: str = "auto"
    sharper_tolerance: float = 0.02
    kernel_half_width: int | None = None
    kernel_size_factor: float = 3.0
    basis_sigma_factors: tuple[float, ...] = (0.5, 1.0, 2.0)
    min_basis_sigma: float = 0.5
    basis_degrees: tuple[int, ...] = (4, 2, 2)
    halo_basis: bool | None = None
    halo_sigma_factor: float = 5.0
    halo_degree: int = 1
    halo_wing_ratio: float = 1.05
    spatial_order: int = 1
    background_order: int = 1
    n_stamps: int = 100
    stamp_grid: int = 4
    min_stamps: int = 5
    stamp_half_width: int | None = None
    isolation_factor: float = 5.0
    star_snr_min: float = 30.0
    clip_sigma: float = 4.0
    clip_iterations: int = 3
    bad_mask_bits: int | None = None
    grow_mask_bits: int | None = None
    exact_variance: bool = False
    ridge: float = 1e-9

    def validate(self) -> None:
        """Check the values.

        Raises
        ------
        ValueError
            Raised naming the first inconsistent field.
        """
        if self.convolve not in ("auto", "template", "science"):
            raise ValueError(f"convolve must be 'auto', 'template' or 'science', got {self.convolve!r}")
        if len(self.basis_sigma_factors) != len(self.basis_degrees) or not self.basis_degrees:
            raise ValueError(
                f"basis_sigma_factors {self.basis_sigma_factors} and basis_degrees {self.basis_degrees} "
                "must be non-empty and of equal length"
            )
        if any(f <= 0 for f in self.basis_sigma_factors) or self.min_basis_sigma <= 0:
            raise ValueError("basis_sigma_factors and min_basis_sigma must be > 0")
        if self.halo_sigma_factor <= 0 or self.halo_degree < 0 or self.halo_wing_ratio <= 0:
            raise ValueError("halo_sigma_factor and halo_wing_ratio must be > 0 and halo_degree >= 0")
        if self.kernel_half_width is not None and self.kernel_half_width < 1:
            raise ValueError(f"kernel_half_width must be >= 1, got {self.kernel_half_width}")
        if self.spatial_order < 0:
            raise ValueError(f"spatial_order must be >= 0, got {self.spatial_order}")
        if self.background_order < -1:
            raise ValueError(f"background_order must be >= -1, got {self.background_order}")
        if self.n_stamps < 1 or self.min_stamps < 1 or self.stamp_grid < 1:
            raise ValueError("n_stamps, min_stamps and stamp_grid must be >= 1")
        if self.stamp_half_width is not None and self.stamp_half_width < 2:
            raise ValueError(f"stamp_half_width must be >= 2, got {self.stamp_half_width}")
        if self.clip_sigma <= 0 or self.clip_iterations < 1:
            raise ValueError("clip_sigma must be > 0 and clip_iterations >= 1")
