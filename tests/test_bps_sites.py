"""Loopback-only Parsl site classes and the BPS submit YAML of ``bps/``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from lsst.ctrl.bps import BpsConfig
from lsst.meas.realbogus.bps import LOOPBACK_ADDRESS, LoopbackLocal, ThreadLocal, environment_prefix
from parsl.executors import HighThroughputExecutor, ThreadPoolExecutor

BPS_DIR = Path(__file__).resolve().parents[1] / "bps"


def _site_config(tmp_path: Path, site_class: str, **site: object) -> BpsConfig:
    lines = [f"    {key}: {value}" for key, value in site.items()]
    path = tmp_path / "site.yaml"
    path.write_text(
        "computeSite: local\n"
        f"submitPath: {tmp_path}/submit\n"
        "site:\n  local:\n"
        f"    class: {site_class}\n" + "\n".join(lines) + "\n"
    )
    return BpsConfig(str(path))


@pytest.fixture
def repo_env(monkeypatch, tmp_path):
    """Point the submit YAML's ``REALBOGUS_REPO`` at a temporary path."""
    monkeypatch.setenv("REALBOGUS_REPO", str(tmp_path / "repo"))


@pytest.mark.parametrize("name", ["SimulatedAP_parsl.yaml", "TrainRealBogus_parsl.yaml"])
def test_submit_yaml(repo_env, tmp_path, name):
    """Submit YAML: Parsl service, loopback site, 1 CPU, visit x detector clustering, venv commands."""
    config = BpsConfig(str(BPS_DIR / name))
    assert config["wmsServiceClass"] == "lsst.ctrl.bps.parsl.ParslService"
    assert config["computeSite"] == "local"
    assert config[".site.local.class"] == "lsst.meas.realbogus.bps.LoopbackLocal"
    assert config["requestCpus"] == 1
    assert config[".finalJob.requestCpus"] == 1
    assert config[".payload.butlerConfig"] == str(tmp_path / "repo")
    assert config["pipelineYaml"].endswith(name.replace("_parsl", ""))
    assert config["clusterAlgorithm"] == "lsst.ctrl.bps.quantum_clustering_funcs.dimension_clustering"
    cluster = config[".cluster.visitDetector"]
    labels = [label.strip() for label in cluster["pipetasks"].split(",")]
    assert {"subtractImages", "detectDiaSources", "rbTransiNet"} <= set(labels)
    assert [d.strip() for d in cluster["dimensions"].split(",")] == ["visit", "detector"]
    # Commands do not rely on EUPS-only PATH set-up.
    assert config["createQuantumGraph"].startswith("${CTRL_MPEXEC_DIR}/bin/pipetask")
    assert config["runQuantumCommand"].startswith("${CTRL_MPEXEC_DIR}/bin/pipetask")
    assert config[".pipetask.pipetaskInit.runQuantumCommand"].startswith("${CTRL_MPEXEC_DIR}/bin/pipetask")
    assert config[".finalJob.command1"].startswith("${DAF_BUTLER_DIR}/bin/butler")


@pytest.mark.parametrize("name", ["htcondor_example.yaml", "slurm_example.yaml"])
def test_site_examples_parse(repo_env, name):
    """The documented cluster site examples are valid BPS configs."""
    config = BpsConfig(str(BPS_DIR / "sites" / name))
    site = config[f".site.{config['computeSite']}"]
    assert site is not None
    assert config["wmsServiceClass"]
    assert config["clusterAlgorithm"].endswith("dimension_clustering")


def test_loopback_site_executor(tmp_path):
    """LoopbackLocal binds and connects to 127.0.0.1 only and uses this interpreter."""
    site = LoopbackLocal(_site_config(tmp_path, "lsst.meas.realbogus.bps.LoopbackLocal", cores=2))
    (executor,) = site.get_executors()
    assert isinstance(executor, HighThroughputExecutor)
    assert executor.address == LOOPBACK_ADDRESS
    assert executor.loopback_address == LOOPBACK_ADDRESS
    assert executor.all_addresses == {LOOPBACK_ADDRESS}
    assert executor.launch_cmd.startswith(f"{sys.executable} -m parsl.executors.high_throughput")
    assert executor.interchange_launch_cmd[0] == sys.executable
    assert executor.max_workers_per_node == 2
    assert site.get_address() == LOOPBACK_ADDRESS
    assert site.select_executor(None) == "local"
    assert site.get_monitor() is None
    assert site.get_parsl_config().run_dir == os.path.join(tmp_path, "submit", "runinfo")
    prefix = site.get_command_prefix()
    assert f"export PATH={os.path.dirname(sys.executable)}:" in prefix
    assert "CTRL_MPEXEC_DIR" in prefix and "DAF_BUTLER_DIR" in prefix


def test_site_options(tmp_path):
    """ThreadLocal, useVenv and configuration errors."""
    site = ThreadLocal(
        _site_config(tmp_path, "lsst.meas.realbogus.bps.ThreadLocal", cores=3, useVenv="false")
    )
    (executor,) = site.get_executors()
    assert isinstance(executor, ThreadPoolExecutor) and executor.max_threads == 3
    assert site.get_command_prefix() == ""
    assert environment_prefix() not in site.get_command_prefix()
    with pytest.raises(ValueError, match="cores must be at least 1"):
        LoopbackLocal(_site_config(tmp_path, "lsst.meas.realbogus.bps.LoopbackLocal", cores=0))
    bad_range = _site_config(
        tmp_path, "lsst.meas.realbogus.bps.LoopbackLocal", cores=1, workerPortRange="'70000,80000'"
    )
    with pytest.raises(ValueError, match="workerPortRange"):
        LoopbackLocal(bad_range).get_executors()
