"""Conversion between plain arrays and `lsst.images` visit / difference images.

This is the only module of the package that knows about `lsst.images` types.  The numerical
code works on plain `numpy` arrays (image and variance in nJy and nJy², an ``int32`` mask with
the bits of `lsst.meas.realbogus.mask_planes`, a normalised PSF kernel image and an astropy
`~astropy.wcs.WCS`); the Butler stores `lsst.images.VisitImage` and
`lsst.images.DifferenceImage`.  The functions here translate in both directions:

- `make_visit_image` / `make_difference_image` build the Butler objects from arrays;
- `exposure_to_arrays` returns an `ExposureArrays` (native byte order) from either;
- `psf_kernel_image` / `psf_sigma` evaluate an `lsst.images` PSF for the numerics.

Mask bits are translated by plane name: our planes are the legacy (afw) plane names and map to
the `lsst.images` names of `lsst.images.get_legacy_difference_image_mask_planes` (e.g. ``SAT`` →
``SATURATED``, ``CR`` → ``COSMIC_RAY``).
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_PIXEL_SIZE_MM",
    "ExposureArrays",
    "exposure_to_arrays",
    "image_array",
    "make_detector",
    "make_difference_image",
    "make_mask_schema",
    "make_visit_image",
    "mask_from_images",
    "mask_to_images",
    "psf_kernel_image",
    "psf_sigma",
    "sky_projection_pixel_scale",
]

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import astropy.time
import astropy.units as u
import astropy.wcs
import numpy as np
from astro_metadata_translator import ObservationInfo
from lsst.images import (
    Box,
    DetectorFrame,
    DifferenceImage,
    Image,
    Mask,
    MaskPlane,
    MaskSchema,
    SkyProjection,
    VisitImage,
    get_legacy_difference_image_mask_planes,
)
from lsst.images._transforms import _ast as ast
from lsst.images.cameras import CameraFrameSet, Detector, DetectorAttributes, DetectorType, Orientation
from lsst.images.psfs import GaussianPointSpreadFunction, PointSpreadFunction

from .. import mask_planes

DEFAULT_PIXEL_SIZE_MM = 0.01
"""Physical pixel size of the simulated detectors, in mm (10 µm, as LSSTCam)."""

_EXTRA_PLANES = {
    # Planes of ours that have no legacy-difference equivalent get their own names.
    "DETECTED_NEGATIVE": MaskPlane("DETECTED_NEGATIVE", "Pixel was part of a negative detection."),
}


@dataclasses.dataclass
class ExposureArrays:
    """Plain-array view of a visit or difference image, as used by the numerical code.

    Attributes
    ----------
    image : `numpy.ndarray`
        Image in nJy per pixel, ``float32``, native byte order, ``[y, x]``.
    variance : `numpy.ndarray`
        Variance in nJy², ``float32``, native byte order.
    mask : `numpy.ndarray`
        ``int32`` mask using the bits of `lsst.meas.realbogus.mask_planes`.
    psf : `numpy.ndarray`
        Normalised 2-D PSF kernel image (odd size, centred), evaluated at the image centre.
    psf_sigma : `float`
        Gaussian-equivalent PSF sigma in pixels.
    wcs : `astropy.wcs.WCS` or `None`
        FITS WCS of the pixel grid (0-based pixel coordinates).
    band : `str`
        Short band name.
    physical_filter : `str`
        Physical filter name.
    visit : `int` or `None`
        Visit id, if known.
    detector : `int`
        Detector id.
    metadata : `dict`
        Flexible metadata stored with the image.
    """

    image: np.ndarray
    variance: np.ndarray
    mask: np.ndarray
    psf: np.ndarray
    psf_sigma: float
    wcs: astropy.wcs.WCS | None
    band: str
    physical_filter: str
    visit: int | None
    detector: int
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


def _native(array: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
    """Return ``array`` as ``dtype`` in native byte order (FITS arrays come back big-endian)."""
    return np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("="))


def _plane_map() -> dict[str, MaskPlane]:
    """Map each of our plane names to the `lsst.images` `MaskPlane` used to store it."""
    legacy = get_legacy_difference_image_mask_planes()
    result: dict[str, MaskPlane] = {}
    for name in mask_planes.MASK_PLANES:
        if name in legacy:
            result[name] = legacy[name]
        elif name in _EXTRA_PLANES:
            result[name] = _EXTRA_PLANES[name]
        else:
            result[name] = MaskPlane(name, f"meas_realbogus mask plane {name}.")
    return result


def make_mask_schema() -> MaskSchema:
    """Return the `lsst.images.MaskSchema` holding this package's mask planes.

    Returns
    -------
    schema : `lsst.images.MaskSchema`
        One plane per entry of `lsst.meas.realbogus.mask_planes.MASK_PLANES`, in bit order.
    """
    return MaskSchema(list(_plane_map().values()), dtype=np.uint8)


def mask_to_images(mask: np.ndarray, bbox: Box | None = None, schema: MaskSchema | None = None) -> Mask:
    """Convert an integer mask array to an `lsst.images.Mask`.

    Parameters
    ----------
    mask : `numpy.ndarray`
        2-D integer mask with the bits of `lsst.meas.realbogus.mask_planes`.
    bbox : `lsst.images.Box`, optional
        Bounding box; defaults to the array shape starting at (0, 0).
    schema : `lsst.images.MaskSchema`, optional
        Target schema; defaults to `make_mask_schema`.

    Returns
    -------
    result : `lsst.images.Mask`
        The converted mask.

    Raises
    ------
    ValueError
        Raised if ``mask`` is not 2-D or has bits that are not known mask planes.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    known = 0
    for bit in mask_planes.MASK_PLANES.values():
        known |= bit
    unknown = np.bitwise_or.reduce(mask.astype(np.int64), axis=None) & ~known
    if unknown:
        raise ValueError(f"mask has bits {unknown:#x} that are not planes of lsst.meas.realbogus.mask_planes")
    if schema is None:
        schema = make_mask_schema()
    if bbox is None:
        bbox = Box.from_shape(mask.shape)
    result = Mask(0, schema=schema, bbox=bbox)
    for name, plane in _plane_map().items():
        selected = (mask & mask_planes.MASK_PLANES[name]) != 0
        if selected.any():
            result.set(plane.name, selected)
    return result


def mask_from_images(mask: Mask) -> np.ndarray:
    """Convert an `lsst.images.Mask` to an ``int32`` array with this package's bits.

    Planes of ``mask`` that have no equivalent in `lsst.meas.realbogus.mask_planes` are dropped.

    Parameters
    ----------
    mask : `lsst.images.Mask`
        Mask to convert.

    Returns
    -------
    result : `numpy.ndarray`
        2-D ``int32`` mask.
    """
    result = np.zeros(mask.bbox.shape, dtype=np.int32)
    names = mask.schema.names
    for name, plane in _plane_map().items():
        if plane.name in names:
            result[mask.get(plane.name)] |= mask_planes.MASK_PLANES[name]
    return result


def _make_camera_frames(
    instrument: str,
    detector: int,
    width: int,
    height: int,
    pixel_size_mm: float,
    plate_scale_arcsec_per_mm: float,
) -> CameraFrameSet:
    """Build a minimal camera frame set (detector → focal plane → field angle) for one detector."""
    pixels = ast.Frame(2, f"Ident=DETECTOR_{detector},Domain=PIXELS")
    pixels._impl.Bottom_1 = 0
    pixels._impl.Top_1 = width
    pixels._impl.Bottom_2 = 0
    pixels._impl.Top_2 = height
    frame_set = ast.FrameSet(pixels)
    focal_plane = ast.Frame(2, "Ident=FOCAL_PLANE,Domain=FOCAL_PLANE,Unit(1)=mm,Unit(2)=mm")
    to_focal_plane = ast.CmpMap(
        ast.ShiftMap([-0.5 * width, -0.5 * height]), ast.ZoomMap(2, pixel_size_mm), True
    )
    frame_set.addFrame(1, to_focal_plane, focal_plane)
    field_angle = ast.Frame(2, "Ident=FIELD_ANGLE,Domain=FIELD_ANGLE,Unit(1)=rad,Unit(2)=rad")
    rad_per_mm = plate_scale_arcsec_per_mm * math.pi / (180.0 * 3600.0)
    frame_set.addFrame(2, ast.ZoomMap(2, rad_per_mm), field_angle)
    return CameraFrameSet(instrument, frame_set)


def make_detector(
    instrument: str,
    detector: int,
    width: int,
    height: int,
    *,
    visit: int | None = None,
    pixel_size_mm: float = DEFAULT_PIXEL_SIZE_MM,
    pixel_scale_arcsec: float = 0.2,
) -> Detector:
    """Make an `lsst.images.cameras.Detector` for a simulated detector.

    Parameters
    ----------
    instrument : `str`
        Instrument name (e.g. ``"SimCam"``).
    detector : `int`
        Detector id.
    width, height : `int`
        Detector size in pixels.
    visit : `int`, optional
        Visit the detector geometry is associated with.
    pixel_size_mm : `float`, optional
        Physical pixel size in mm.
    pixel_scale_arcsec : `float`, optional
        Pixel scale in arcsec, used for the focal-plane → field-angle transform.

    Returns
    -------
    detector : `lsst.images.cameras.Detector`
        A single-detector camera description with no amplifiers.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"detector size must be positive, got {width}x{height}")
    frames = _make_camera_frames(
        instrument, detector, width, height, pixel_size_mm, pixel_scale_arcsec / pixel_size_mm
    )
    attributes = DetectorAttributes(
        name=f"S{detector:02d}",
        id=detector,
        type=DetectorType.SCIENCE,
        serial=f"{instrument}-{detector:02d}",
        bbox=Box.factory[0:height, 0:width],
        orientation=Orientation(focal_plane_x=0.0, focal_plane_y=0.0, focal_plane_z=0.0),
        pixel_size=pixel_size_mm,
        physical_type="simulated",
    )
    return Detector(attributes, [], frames, visit=visit)


def _stamp_size(sigma: float) -> int:
    """Odd PSF stamp size covering about ±5 sigma."""
    half = max(3, int(math.ceil(5.0 * sigma)))
    return 2 * half + 1


def _make_observation_info(
    instrument: str, visit: int | None, detector: int, physical_filter: str, metadata: Mapping[str, Any]
) -> ObservationInfo:
    """Build the `ObservationInfo` of a simulated exposure from its metadata."""
    kwargs: dict[str, Any] = {
        "instrument": instrument,
        "telescope": instrument,
        "physical_filter": physical_filter,
        "detector_num": detector,
        "observation_type": "science",
    }
    if visit is not None:
        kwargs["visit_id"] = visit
        kwargs["exposure_id"] = visit
        kwargs["observation_id"] = f"{instrument}_{visit}"
    exposure_time = metadata.get("exposure_time")
    if exposure_time is not None:
        kwargs["exposure_time"] = float(exposure_time) * u.s
    mjd = metadata.get("mjd")
    if mjd is not None:
        begin = astropy.time.Time(float(mjd), format="mjd", scale="tai")
        kwargs["datetime_begin"] = begin
        if exposure_time is not None:
            kwargs["datetime_end"] = begin + float(exposure_time) * u.s
    airmass = metadata.get("airmass")
    if airmass is not None:
        kwargs["boresight_airmass"] = float(airmass)
    return ObservationInfo(**kwargs)


def _metadata_values(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Keep the scalar entries of ``metadata`` that `lsst.images` can store."""
    result: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, np.generic):
            value = value.item()
        if value is None or isinstance(value, (bool, int, float, str)):
            result[str(key)] = value
    return result


def _build(
    cls: type[VisitImage],
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    *,
    wcs: astropy.wcs.WCS,
    psf_sigma: float,
    instrument: str,
    visit: int | None,
    detector: int,
    physical_filter: str,
    band: str,
    metadata: Mapping[str, Any] | None,
    pixel_scale_arcsec: float | None,
) -> VisitImage:
    image = np.asarray(image)
    variance = np.asarray(variance)
    mask = np.asarray(mask)
    if image.ndim != 2:
        raise ValueError(f"image must be 2-D, got shape {image.shape}")
    if variance.shape != image.shape or mask.shape != image.shape:
        raise ValueError(
            f"image {image.shape}, variance {variance.shape} and mask {mask.shape} shapes differ"
        )
    if not (psf_sigma > 0 and math.isfinite(psf_sigma)):
        raise ValueError(f"psf_sigma must be positive and finite, got {psf_sigma}")
    if wcs is None:
        raise ValueError("a WCS is required to make a VisitImage")
    metadata = dict(metadata or {})
    height, width = image.shape
    if pixel_scale_arcsec is None:
        scales = astropy.wcs.utils.proj_plane_pixel_scales(wcs.celestial)
        pixel_scale_arcsec = float(np.mean(scales) * 3600.0)
    det = make_detector(
        instrument, detector, width, height, visit=visit, pixel_scale_arcsec=pixel_scale_arcsec
    )
    bbox = det.bbox
    frame = DetectorFrame(instrument=instrument, visit=visit, detector=detector, bbox=bbox)
    sky_projection = SkyProjection.from_fits_wcs(wcs, frame, pixel_bounds=bbox)
    psf = GaussianPointSpreadFunction(float(psf_sigma), bounds=bbox, stamp_size=_stamp_size(psf_sigma))
    obs_info = _make_observation_info(instrument, visit, detector, physical_filter, metadata)
    return cls(
        Image(_native(image, np.float32), bbox=bbox, unit=u.nJy),
        mask=mask_to_images(mask, bbox),
        variance=Image(_native(variance, np.float32), bbox=bbox, unit=u.nJy**2),
        sky_projection=sky_projection,
        obs_info=obs_info,
        psf=psf,
        detector=det,
        band=band,
        metadata=_metadata_values(metadata),
    )


def make_visit_image(
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    *,
    wcs: astropy.wcs.WCS,
    psf_sigma: float,
    instrument: str,
    visit: int | None,
    detector: int,
    physical_filter: str,
    band: str,
    metadata: Mapping[str, Any] | None = None,
    pixel_scale_arcsec: float | None = None,
) -> VisitImage:
    """Build an `lsst.images.VisitImage` from arrays.

    Parameters
    ----------
    image : `numpy.ndarray`
        Image in nJy per pixel, ``[y, x]``.
    variance : `numpy.ndarray`
        Variance in nJy².
    mask : `numpy.ndarray`
        Integer mask with the bits of `lsst.meas.realbogus.mask_planes`.
    wcs : `astropy.wcs.WCS`
        Celestial FITS WCS with 0-based pixel coordinates.
    psf_sigma : `float`
        Gaussian PSF sigma in pixels (stored as a
        `lsst.images.psfs.GaussianPointSpreadFunction`).
    instrument : `str`
        Instrument name.
    visit : `int` or `None`
        Visit id.
    detector : `int`
        Detector id.
    physical_filter : `str`
        Physical filter name (stored in the `ObservationInfo`).
    band : `str`
        Band name.
    metadata : `~collections.abc.Mapping`, optional
        Observation metadata; ``mjd``, ``exposure_time`` (s) and ``airmass`` go into the
        `ObservationInfo`, all scalar entries into the image metadata.
    pixel_scale_arcsec : `float`, optional
        Pixel scale for the detector description; derived from ``wcs`` if not given.

    Returns
    -------
    visit_image : `lsst.images.VisitImage`
        The image, with units nJy.

    Raises
    ------
    ValueError
        Raised if array shapes differ, the PSF sigma is not positive, the WCS is missing or the
        mask has unknown bits.
    """
    return _build(
        VisitImage,
        image,
        variance,
        mask,
        wcs=wcs,
        psf_sigma=psf_sigma,
        instrument=instrument,
        visit=visit,
        detector=detector,
        physical_filter=physical_filter,
        band=band,
        metadata=metadata,
        pixel_scale_arcsec=pixel_scale_arcsec,
    )


def make_difference_image(
    image: np.ndarray,
    variance: np.ndarray,
    mask: np.ndarray,
    *,
    science: VisitImage,
    psf_sigma: float | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> DifferenceImage:
    """Build an `lsst.images.DifferenceImage` on the pixel grid of a science image.

    Parameters
    ----------
    image, variance, mask : `numpy.ndarray`
        Difference image (nJy), variance (nJy²) and integer mask (our bits).
    science : `lsst.images.VisitImage`
        The science image: its sky projection, observation info, detector and band are reused.
    psf_sigma : `float`, optional
        Gaussian sigma of the difference PSF in pixels; defaults to the science PSF's.
    metadata : `~collections.abc.Mapping`, optional
        Extra metadata (e.g. subtraction quality metrics) added to the science metadata.

    Returns
    -------
    difference : `lsst.images.DifferenceImage`
        The difference image, with units nJy.
    """
    image = np.asarray(image)
    if image.shape != science.bbox.shape:
        raise ValueError(f"difference shape {image.shape} differs from science shape {science.bbox.shape}")
    if psf_sigma is None:
        psf = science.psf
    else:
        if not (psf_sigma > 0 and math.isfinite(psf_sigma)):
            raise ValueError(f"psf_sigma must be positive and finite, got {psf_sigma}")
        psf = GaussianPointSpreadFunction(
            float(psf_sigma), bounds=science.bbox, stamp_size=_stamp_size(psf_sigma)
        )
    merged = dict(science.metadata.native)
    merged.update(_metadata_values(metadata or {}))
    bbox = science.bbox
    return DifferenceImage(
        Image(_native(image, np.float32), bbox=bbox, unit=u.nJy),
        mask=mask_to_images(np.asarray(mask), bbox),
        variance=Image(_native(variance, np.float32), bbox=bbox, unit=u.nJy**2),
        sky_projection=science.sky_projection,
        obs_info=science.obs_info,
        psf=psf,
        detector=science.detector,
        band=science.band,
        metadata=merged,
    )


def psf_sigma(psf: PointSpreadFunction, x: float | None = None, y: float | None = None) -> float:
    """Return the Gaussian-equivalent sigma (pixels) of an `lsst.images` PSF.

    Parameters
    ----------
    psf : `lsst.images.psfs.PointSpreadFunction`
        The PSF.
    x, y : `float`, optional
        Position to evaluate a non-Gaussian PSF at (default: centre of its bounds).

    Returns
    -------
    sigma : `float`
        Exact sigma for a Gaussian PSF; otherwise from the kernel's second moments.
    """
    if isinstance(psf, GaussianPointSpreadFunction):
        return float(psf.sigma)
    kernel = psf_kernel_image(psf, x, y)
    r = kernel.shape[0] // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    second = float(np.sum(kernel * (xx**2 + yy**2)) / 2.0)
    return math.sqrt(max(second, 1e-12))


def psf_kernel_image(psf: PointSpreadFunction, x: float | None = None, y: float | None = None) -> np.ndarray:
    """Evaluate an `lsst.images` PSF into a normalised kernel image for the numerical code.

    Parameters
    ----------
    psf : `lsst.images.psfs.PointSpreadFunction`
        The PSF.
    x, y : `float`, optional
        Position to evaluate the PSF at (default: centre of the PSF's bounds).

    Returns
    -------
    kernel : `numpy.ndarray`
        ``float64`` square image with odd size, centred, summing to one, native byte order.
    """
    if x is None or y is None:
        bbox = psf.bounds.bbox
        cx = 0.5 * (bbox.x.start + bbox.x.stop - 1)
        cy = 0.5 * (bbox.y.start + bbox.y.stop - 1)
        x = cx if x is None else x
        y = cy if y is None else y
    kernel = _native(psf.compute_kernel_image(x=float(x), y=float(y)).array, np.float64)
    ny, nx = kernel.shape
    n = max(ny, nx)
    n += 1 - n % 2
    if (ny, nx) != (n, n):
        padded = np.zeros((n, n), dtype=np.float64)
        oy, ox = (n - ny) // 2, (n - nx) // 2
        padded[oy : oy + ny, ox : ox + nx] = kernel
        kernel = padded
    total = kernel.sum()
    if not (total > 0 and math.isfinite(total)):
        raise ValueError(f"PSF kernel has non-positive or non-finite sum {total}")
    return kernel / total


def image_array(exposure: VisitImage) -> np.ndarray:
    """Return only the image plane of an `lsst.images` image as native float32 in nJy.

    Cheaper than `exposure_to_arrays` when the mask, variance and PSF are not needed
    (converting the mask schema is the costly part).

    Parameters
    ----------
    exposure : `lsst.images.VisitImage`
        Image to convert; converted to nJy if it has other flux units.

    Returns
    -------
    image : `numpy.ndarray`
        The image pixels, identical to ``exposure_to_arrays(exposure).image``.
    """
    if exposure.unit != u.nJy:
        exposure = exposure.convert_unit(u.nJy, copy="as-needed")
    return _native(exposure.image.array, np.float32)


def exposure_to_arrays(exposure: VisitImage) -> ExposureArrays:
    """Return the plain arrays of a `lsst.images.VisitImage` or `~lsst.images.DifferenceImage`.

    Parameters
    ----------
    exposure : `lsst.images.VisitImage`
        Image to convert; converted to nJy if it has other flux units.

    Returns
    -------
    arrays : `ExposureArrays`
        Native-byte-order arrays, ``int32`` mask with our bits, PSF kernel and sigma, WCS.
    """
    if exposure.unit != u.nJy:
        exposure = exposure.convert_unit(u.nJy, copy="as-needed")
    bbox = exposure.bbox
    cx = 0.5 * (bbox.x.start + bbox.x.stop - 1)
    cy = 0.5 * (bbox.y.start + bbox.y.stop - 1)
    psf = exposure.psf
    metadata = dict(exposure.metadata.native)
    return ExposureArrays(
        image=image_array(exposure),
        variance=_native(exposure.variance.array, np.float32),
        mask=mask_from_images(exposure.mask),
        psf=psf_kernel_image(psf, cx, cy),
        psf_sigma=psf_sigma(psf, cx, cy),
        wcs=exposure.fits_wcs,
        band=exposure.band,
        physical_filter=exposure.physical_filter,
        visit=exposure.detector.visit,
        detector=exposure.detector.id,
        metadata=metadata,
    )


def sky_projection_pixel_scale(
    sky_projection: SkyProjection, x: float | None = None, y: float | None = None
) -> float:
    """Return the local pixel scale (arcsec per pixel) of an `lsst.images.SkyProjection`.

    Parameters
    ----------
    sky_projection : `lsst.images.SkyProjection`
        Pixel → sky transform.
    x, y : `float`, optional
        Pixel position where the scale is evaluated (default: centre of the pixel bounds, or
        the origin if the projection has no bounds).

    Returns
    -------
    scale : `float`
        Square root of the local pixel area, in arcsec.
    """
    if x is None or y is None:
        bounds = sky_projection.pixel_bounds
        if bounds is not None:
            bbox = bounds.bbox
            x = 0.5 * (bbox.x.start + bbox.x.stop - 1) if x is None else x
            y = 0.5 * (bbox.y.start + bbox.y.stop - 1) if y is None else y
        x = 0.0 if x is None else x
        y = 0.0 if y is None else y
    sky = sky_projection.pixel_to_sky(x=np.array([x, x + 1.0, x]), y=np.array([y, y, y + 1.0]))
    ra = np.asarray(sky.ra.deg, dtype=np.float64)
    dec = np.asarray(sky.dec.deg, dtype=np.float64)
    cos_dec = math.cos(math.radians(dec[0]))
    dra = (ra[1:] - ra[0] + 180.0) % 360.0 - 180.0
    jx = np.array([dra[0] * cos_dec, dec[1] - dec[0]])
    jy = np.array([dra[1] * cos_dec, dec[2] - dec[0]])
    area = abs(jx[0] * jy[1] - jx[1] * jy[0])
    return float(math.sqrt(area) * 3600.0)
