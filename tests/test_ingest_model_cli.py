"""realbogus-ingest-model: model packages as Butler datasets in models/<name>, chained."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lsst.daf.butler import Butler, CollectionType
from lsst.meas.realbogus.butler import repo
from lsst.meas.realbogus.butler.ingest_model import ingest_model_package, model_run_name
from lsst.meas.realbogus.cli import ingest_model
from lsst.meas.realbogus.model_package import ModelPackage, read_model_package
from test_rb_task_support import make_model_file

BIN = Path(__file__).parents[1] / "bin" / "realbogus_ingest_model.py"


@pytest.fixture
def sim_repo(tmp_path) -> str:
    """Create an empty SimCam repository and return its root."""
    repo.create_sim_repo(tmp_path / "repo", n_detectors=1)
    return str(tmp_path / "repo")


def test_ingest_and_chain(sim_repo, tmp_path, capsys):
    """Check: ingest and chain."""
    first = make_model_file(tmp_path / "a.safetensors", version="a1", seed=1)
    second = make_model_file(tmp_path / "b.safetensors", version="b2", seed=2)
    assert ingest_model.main([sim_repo, str(first)]) == 0  # name defaults to the version
    assert "models/a1" in capsys.readouterr().out
    assert ingest_model.main([sim_repo, str(second), "--name", "rb-b.2"]) == 0
    butler = Butler.from_config(sim_repo)
    assert butler.registry.getCollectionType("pretrained_models") == CollectionType.CHAINED
    assert list(butler.registry.getCollectionChain("pretrained_models")) == ["models/rb-b.2", "models/a1"]
    dataset_type = butler.get_dataset_type("realbogus_model")
    assert dataset_type.dimensions.names == set()
    assert dataset_type.storageClass_name == "RealBogusModelPackage"
    # The chain finds the newest model; each RUN keeps its own.
    newest = butler.get("realbogus_model", collections="pretrained_models")
    assert isinstance(newest, ModelPackage) and newest.metadata.version == "b2"
    expected = read_model_package(second)
    assert newest.metadata.weights_sha256 == expected.metadata.weights_sha256
    for name, tensor in expected.state_dict.items():
        assert torch.equal(newest.state_dict[name], tensor)
    assert butler.get("realbogus_model", collections="models/a1").metadata.version == "a1"
    # Re-ingesting under an existing name is refused; nothing is replaced.
    assert ingest_model.main([sim_repo, str(second), "--name", "a1"]) == 1
    assert "already holds" in capsys.readouterr().err
    kept = Butler.from_config(sim_repo).get("realbogus_model", collections="models/a1")
    assert kept.metadata.version == "a1"
    # Re-pointing the chain at an older model: ingest it again under a new name.
    argv = [sim_repo, str(first), "--name", "a1-again", "--chain", "pretrained_models"]
    assert ingest_model.main(argv) == 0
    chain = Butler.from_config(sim_repo).registry.getCollectionChain("pretrained_models")
    assert list(chain) == ["models/a1-again", "models/rb-b.2", "models/a1"]


def test_errors_are_clear(sim_repo, tmp_path, capsys):
    """Check: errors are clear."""
    assert ingest_model.main([sim_repo, str(tmp_path / "missing.safetensors")]) == 1
    assert "does not exist" in capsys.readouterr().err
    not_a_model = tmp_path / "pickle.safetensors"
    not_a_model.write_bytes(b"\x80\x04\x95 not really a model")
    assert ingest_model.main([sim_repo, str(not_a_model)]) == 1
    assert "pickle" in capsys.readouterr().err
    model = make_model_file(tmp_path / "m.safetensors")
    assert ingest_model.main([sim_repo, str(model), "--name", "bad/name"]) == 1
    assert "Invalid model name" in capsys.readouterr().err
    butler = Butler.from_config(sim_repo, writeable=True)
    butler.registry.registerRun("not_a_chain")
    with pytest.raises(RuntimeError, match="not a CHAINED"):
        ingest_model_package(butler, model, "x", chain="not_a_chain")
    # --no-chain stores the RUN only.
    assert ingest_model.main([sim_repo, str(model), "--name", "lonely", "--no-chain"]) == 0
    butler = Butler.from_config(sim_repo)
    assert butler.query_datasets("realbogus_model", collections=model_run_name("lonely"), explain=False)
    assert "pretrained_models" not in butler.collections.query("*")
    with pytest.raises(SystemExit):
        ingest_model.main(["--help"])


def test_repo_without_storage_class_needs_config_path(tmp_path, monkeypatch):
    """Check: repo without storage class needs config path."""
    root = tmp_path / "plain"
    Butler.makeRepo(str(root))  # no seed config: the storage class is unknown
    model = make_model_file(tmp_path / "m.safetensors")
    monkeypatch.delenv("DAF_BUTLER_CONFIG_PATH", raising=False)
    with pytest.raises(RuntimeError, match="DAF_BUTLER_CONFIG_PATH="):
        ingest_model_package(Butler.from_config(str(root), writeable=True), model, "m")
    # The failed attempt left no RUN behind.
    assert "models/m" not in Butler.from_config(str(root)).collections.query("*")
    monkeypatch.setenv("DAF_BUTLER_CONFIG_PATH", str(repo.config_directory()))
    result = ingest_model_package(Butler.from_config(str(root), writeable=True), model, "m")
    got = Butler.from_config(str(root)).get("realbogus_model", collections="pretrained_models")
    assert got.metadata.weights_sha256 == result.weights_sha256


def test_bin_script(sim_repo, tmp_path):
    """Check: bin script."""
    model = make_model_file(tmp_path / "m.safetensors", version="s1")
    result = subprocess.run([sys.executable, str(BIN), sim_repo, str(model)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pretrained_models -> models/s1" in result.stdout
