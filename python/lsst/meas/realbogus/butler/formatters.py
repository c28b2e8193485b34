"""Butler formatter for real/bogus model packages (storage class ``RealBogusModelPackage``)."""

from __future__ import annotations

__all__ = ["ModelPackageFormatter"]

from typing import Any, ClassVar

from lsst.daf.butler import FormatterV2
from lsst.resources import ResourcePath


class ModelPackageFormatter(FormatterV2):
    """Read and write a `lsst.meas.realbogus.model_package.ModelPackage` as one safetensors file.

    The file holds the weights as tensors and the package metadata (architecture name,
    channels, normalisation, threshold, checksum, ...) as JSON in the safetensors header; it
    contains no pickled or executable content.  Serialisation and validation are delegated to
    `lsst.meas.realbogus.model_package`, so a file written through the Butler is byte-identical
    to one written with ``model_package_to_bytes`` and can be read with ``read_model_package``.
    """

    default_extension: ClassVar[str] = ".safetensors"
    supported_extensions: ClassVar[frozenset[str]] = frozenset({".safetensors"})
    can_read_from_uri: ClassVar[bool] = True

    def read_from_uri(self, uri: ResourcePath, component: str | None = None, expected_size: int = -1) -> Any:
        """Read a model package from a (local or remote) URI.

        Parameters
        ----------
        uri : `lsst.resources.ResourcePath`
            Location of the safetensors file.
        component : `str`, optional
            Not supported; the storage class has no components.
        expected_size : `int`, optional
            Expected size in bytes, or -1 if unknown.

        Returns
        -------
        package : `lsst.meas.realbogus.model_package.ModelPackage`
            The validated model package.
        """
        from ..model_package import read_model_package

        if component is not None:
            raise ValueError(f"RealBogusModelPackage has no component {component!r}")
        return read_model_package(uri.read())

    def to_bytes(self, in_memory_dataset: Any) -> bytes:
        """Serialise a model package to the bytes of a safetensors file.

        Parameters
        ----------
        in_memory_dataset : `lsst.meas.realbogus.model_package.ModelPackage`
            Package to write.

        Returns
        -------
        data : `bytes`
            The safetensors file content.
        """
        from ..model_package import ModelPackage, model_package_to_bytes

        if not isinstance(in_memory_dataset, ModelPackage):
            raise TypeError(
                f"RealBogusModelPackage expects a ModelPackage, got {type(in_memory_dataset).__name__}"
            )
        return model_package_to_bytes(in_memory_dataset.state_dict, in_memory_dataset.metadata)

    def write_local_file(self, in_memory_dataset: Any, uri: ResourcePath) -> None:
        """Write a model package to a local file.

        Parameters
        ----------
        in_memory_dataset : `lsst.meas.realbogus.model_package.ModelPackage`
            Package to write.
        uri : `lsst.resources.ResourcePath`
            Local file to write.
        """
        uri.write(self.to_bytes(in_memory_dataset))
