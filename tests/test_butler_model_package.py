"""Butler put/get of a real/bogus model package (storage class RealBogusModelPackage)."""

from __future__ import annotations

import pytest
import torch
from lsst.daf.butler import Butler
from lsst.meas.realbogus.architectures import build_architecture
from lsst.meas.realbogus.butler import repo
from lsst.meas.realbogus.model_package import (
    ModelMetadata,
    ModelPackage,
    model_package_to_bytes,
    read_model_package,
)


def _package() -> ModelPackage:
    torch.manual_seed(4)
    net = build_architecture("rb3_cnn", widths=(4, 4), hidden=4)
    metadata = ModelMetadata(
        architecture="rb3_cnn",
        channels=["template", "science", "difference"],
        cutout_size=31,
        version="bt0.1",
        architecture_kwargs={"widths": [4, 4], "hidden": 4},
        threshold=0.42,
    )
    # Go through the package's own serialisation so that the checksum is filled in.
    return read_model_package(model_package_to_bytes(net, metadata))


def test_model_package_round_trip(tmp_path):
    butler = repo.create_sim_repo(tmp_path / "repo", n_detectors=1)
    repo.register_dataset_types(butler, ["realbogus_model"])
    butler.registry.registerRun("models/test")
    package = _package()
    ref = butler.put(package, "realbogus_model", run="models/test")
    uri = butler.getURI(ref)
    assert uri.getExtension() == ".safetensors"
    # The stored file is exactly the package's own serialisation (no pickle, no wrapper).
    assert uri.read() == model_package_to_bytes(package.state_dict, package.metadata)
    got = Butler.from_config(str(tmp_path / "repo")).get("realbogus_model", collections="models/test")
    assert isinstance(got, ModelPackage)
    assert got.metadata.threshold == 0.42 and got.metadata.version == "bt0.1"
    assert got.metadata.weights_sha256 == package.metadata.weights_sha256
    assert got.state_dict.keys() == package.state_dict.keys()
    for name, tensor in package.state_dict.items():
        assert torch.equal(got.state_dict[name], tensor)
    stamps = torch.randn(2, package.metadata.input_channels, 31, 31)
    with torch.no_grad():
        assert torch.equal(got.build_module()(stamps), package.build_module()(stamps))


def test_formatter_rejects_other_objects_and_corrupt_files(tmp_path):
    butler = repo.create_sim_repo(tmp_path / "repo", n_detectors=1)
    repo.register_dataset_types(butler, ["realbogus_model"])
    for run in ("models/bad", "models/corrupt"):
        butler.registry.registerRun(run)
    with pytest.raises(TypeError, match="ModelPackage"):
        butler.put({"not": "a package"}, "realbogus_model", run="models/bad")
    ref = butler.put(_package(), "realbogus_model", run="models/corrupt")
    uri = butler.getURI(ref)
    data = uri.read()
    # Same size (the datastore checks sizes itself), different weights: the checksum fails.
    uri.write(data[:-8] + bytes(b ^ 0xFF for b in data[-8:]), overwrite=True)
    # The datastore wraps the formatter error in a ValueError naming the file.
    with pytest.raises(ValueError, match="checksum mismatch"):
        butler.get(ref)
