"""PipelineTask: PSF-matched subtraction of a template from a science visit image."""

from __future__ import annotations

__all__ = ["SubtractImagesConfig", "SubtractImagesConnections", "SubtractImagesTask"]

import dataclasses
from typing import Any

import numpy as np
from lsst.pex.config import ChoiceField, Field, ListField
from lsst.pipe.base import (
    NoWorkFound,
    PipelineTask,
    PipelineTaskConfig,
    PipelineTaskConnections,
    Struct,
)
from lsst.pipe.base import connectionTypes as cT
from lsst.utils.timer import timeMethod

from .. import mask_planes
from ..diffim import SubtractionConfig, subtract_images

_DEFAULTS = SubtractionConfig()
"""Defaults of the numerical configuration, used as the pex_config defaults."""


class SubtractImagesConnections(PipelineTaskConnections, dimensions=("instrument", "visit", "detector")):
    """Connections of `SubtractImagesTask`."""

    science = cT.Input(
        doc="Calibrated science image of one visit and detector (nJy).",
        name="preliminary_visit_image",
        storageClass="VisitImage",
        dimensions=("instrument", "visit", "detector"),
    )
    template = cT.Input(
        doc="Template already warped to the science pixel grid (nJy).",
        name="template_detector",
        storageClass="VisitImage",
        dimensions=("instrument", "visit", "detector"),
    )
    difference = cT.Output(
        doc="PSF-matched difference image, science minus template (nJy).",
        name="difference_image",
        storageClass="DifferenceImage",
        dimensions=("instrument", "visit", "detector"),
    )


class SubtractImagesConfig(PipelineTaskConfig, pipelineConnections=SubtractImagesConnections):
    """Configuration of `SubtractImagesTask`.

    The fields mirror `lsst.meas.realbogus.diffim.SubtractionConfig` (see its documentation), with
    its defaults; masks are named by plane instead of given as bit values.
    """

    convolve = ChoiceField[str](
        doc="Which image is convolved with the matching kernel.",
        default=_DEFAULTS.convolve,
        allowed={
            "auto": "The template, unless the science PSF is sharper.",
            "template": "Always the template (difference PSF = science PSF).",
            "science": "Always the science image (difference PSF = template PSF).",
        },
    )
    sharper_tolerance = Field[float](
        doc="Relative PSF-sigma tolerance before the science image counts as sharper ('auto').",
        default=_DEFAULTS.sharper_tolerance,
    )
    kernel_half_width = Field[int](
        doc="Half size of the matching kernel in pixels; None chooses it from the PSF sigmas.",
        default=_DEFAULTS.kernel_half_width,
        optional=True,
    )
    kernel_size_factor = Field[float](
        doc="Kernel half width in units of the largest basis sigma when kernel_half_width is None.",
        default=_DEFAULTS.kernel_size_factor,
    )
    basis_sigma_factors = ListField[float](
        doc="Widths of the basis Gaussians in units of the matching sigma.",
        default=list(_DEFAULTS.basis_sigma_factors),
    )
    min_basis_sigma = Field[float](
        doc="Floor on the basis Gaussian widths (pixels).", default=_DEFAULTS.min_basis_sigma
    )
    basis_degrees = ListField[int](
        doc="Polynomial degree of each basis Gaussian (same length as basis_sigma_factors).",
        default=list(_DEFAULTS.basis_degrees),
    )
    halo_basis = Field[bool](
        doc="Add a broad halo basis Gaussian; None decides from the PSF wings (halo_wing_ratio).",
        default=_DEFAULTS.halo_basis,
        optional=True,
    )
    halo_sigma_factor = Field[float](
        doc="Width of the halo basis Gaussian in units of the matching sigma.",
        default=_DEFAULTS.halo_sigma_factor,
    )
    halo_degree = Field[int](
        doc="Polynomial degree of the halo basis Gaussian.", default=_DEFAULTS.halo_degree
    )
    halo_wing_ratio = Field[float](
        doc="Threshold of the automatic halo decision.", default=_DEFAULTS.halo_wing_ratio
    )
    spatial_order = Field[int](
        doc="Polynomial order of the kernel's spatial variation.", default=_DEFAULTS.spatial_order
    )
    background_order = Field[int](
        doc="Polynomial order of the differential background (-1 disables it).",
        default=_DEFAULTS.background_order,
    )
    n_stamps = Field[int](doc="Maximum number of stars used for the kernel fit.", default=_DEFAULTS.n_stamps)
    stamp_grid = Field[int](
        doc="Stars are spread over a stamp_grid x stamp_grid grid of cells.", default=_DEFAULTS.stamp_grid
    )
    min_stamps = Field[int](
        doc="Fewer usable stamps than this use the analytic Gaussian fallback kernel.",
        default=_DEFAULTS.min_stamps,
    )
    stamp_half_width = Field[int](
        doc="Half size of the fitting stamps (pixels); None uses ceil(4 sigma_science).",
        default=_DEFAULTS.stamp_half_width,
        optional=True,
    )
    isolation_factor = Field[float](
        doc="A stamp star must be the brightest peak within this many sigmas of the broader PSF.",
        default=_DEFAULTS.isolation_factor,
    )
    star_snr_min = Field[float](
        doc="Minimum peak SNR of a kernel-fit star in the template.", default=_DEFAULTS.star_snr_min
    )
    clip_sigma = Field[float](
        doc="Stamp rejection threshold in robust standard deviations.", default=_DEFAULTS.clip_sigma
    )
    clip_iterations = Field[int](
        doc="Maximum number of fit-and-clip iterations.", default=_DEFAULTS.clip_iterations
    )
    bad_mask_planes = ListField[str](
        doc="Mask planes excluding a pixel from the fit; None uses BAD, SAT, NO_DATA, CR, SUSPECT.",
        default=None,
        optional=True,
    )
    grow_mask_planes = ListField[str](
        doc="Planes of the convolved image grown by the kernel; None: all but DETECTED*, EDGE.",
        default=None,
        optional=True,
    )
    exact_variance = Field[bool](
        doc="Propagate the variance with the spatially varying kernel (slower) instead of the central one.",
        default=_DEFAULTS.exact_variance,
    )
    ridge = Field[float](
        doc="Relative Tikhonov regularisation of the normal equations.", default=_DEFAULTS.ridge
    )
    max_no_data_fraction = Field[float](
        doc="Raise NoWorkFound if more than this fraction of the science pixels have NO_DATA.",
        default=0.9,
    )

    def validate(self) -> None:
        """Check the plane names and the numerical configuration."""
        super().validate()
        for name in ("bad_mask_planes", "grow_mask_planes"):
            for plane in getattr(self, name) or ():
                if plane not in mask_planes.MASK_PLANES:
                    raise ValueError(
                        f"{name}: unknown mask plane {plane!r}; known {list(mask_planes.MASK_PLANES)}"
                    )
        self.to_subtraction_config().validate()

    def to_subtraction_config(self) -> SubtractionConfig:
        """Return the equivalent `lsst.meas.realbogus.diffim.SubtractionConfig`.

        Returns
        -------
        config : `lsst.meas.realbogus.diffim.SubtractionConfig`
            Numerical configuration with the values of this config.
        """
        values: dict[str, Any] = {}
        for field in dataclasses.fields(SubtractionConfig):
            if field.name in ("bad_mask_bits", "grow_mask_bits"):
                planes = getattr(self, field.name.replace("_bits", "_planes"))
                bits = None
                if planes is not None:
                    bits = 0
                    for plane in planes:
                        bits |= mask_planes.mask_bit(plane)
                values[field.name] = bits
                continue
            value = getattr(self, field.name)
            if value is not None and not isinstance(value, (str, int, float)):
                value = tuple(value)  # pex_config ListField → tuple
            values[field.name] = value
        return SubtractionConfig(**values)


class SubtractImagesTask(PipelineTask):
    """Subtract a PSF-matched template from a science image.

    Thin Butler layer over `lsst.meas.realbogus.diffim.subtract_images`: the images are
    converted to arrays, the PSFs evaluated at the detector centre, and the result is written as
    an `lsst.images.DifferenceImage` on the science image's grid, with the difference PSF
    (the science PSF when the template is convolved) and the subtraction diagnostics in its
    metadata (``DIFFIM_*`` keys).
    """

    ConfigClass = SubtractImagesConfig
    _DefaultName = "subtractImages"

    config: SubtractImagesConfig

    @timeMethod
    def run(self, science: Any, template: Any) -> Struct:
        """Subtract ``template`` from ``science``.

        Parameters
        ----------
        science : `lsst.images.VisitImage`
            Science image.
        template : `lsst.images.VisitImage`
            Template on the same pixel grid.

        Returns
        -------
        result : `lsst.pipe.base.Struct`
            ``difference`` (`lsst.images.DifferenceImage`) and ``metrics`` (`dict`).

        Raises
        ------
        lsst.pipe.base.NoWorkFound
            Raised if (almost) the whole science image has no data.
        ValueError
            Raised if the images are not on the same pixel grid.
        """
        from ..butler.images import exposure_to_arrays, make_difference_image

        if science.bbox != template.bbox:
            raise ValueError(f"science bbox {science.bbox} and template bbox {template.bbox} differ")
        sci = exposure_to_arrays(science)
        tmpl = exposure_to_arrays(template)
        no_data = np.mean(((sci.mask & mask_planes.NO_DATA) != 0) | ~np.isfinite(sci.image))
        if no_data > self.config.max_no_data_fraction:
            raise NoWorkFound(f"{no_data:.1%} of the science pixels have no data")
        result = subtract_images(
            sci.image,
            sci.variance,
            sci.mask,
            tmpl.image,
            tmpl.variance,
            tmpl.mask,
            sci.psf,
            tmpl.psf,
            config=self.config.to_subtraction_config(),
        )
        metrics = dict(result.metrics)
        metrics["n_stamps_used"] = int(result.n_stamps_used)
        self.log.info(
            "Subtracted template (convolved %s, %d stamps, kernel sum %.4f, difference PSF sigma %.3f px).",
            metrics.get("convolved", "?"),
            result.n_stamps_used,
            float(metrics.get("kernel_sum", np.nan)),
            result.psf_sigma,
        )
        metadata = {f"DIFFIM_{key.upper()}": value for key, value in metrics.items()}
        difference = make_difference_image(
            result.image,
            result.variance,
            result.mask,
            science=science,
            psf_sigma=float(result.psf_sigma),
            metadata=metadata,
        )
        return Struct(difference=difference, metrics=metrics)
