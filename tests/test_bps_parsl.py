"""``bps submit`` of the simulated AP pipeline through Parsl on loopback, checked against ``pipetask run``."""

from __future__ import annotations

import ipaddress
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from lsst.daf.butler import Butler
from lsst.meas.realbogus.bps import LOOPBACK_ADDRESS
from lsst.meas.realbogus.testing.sim_repo import (
    AP_OUTPUT_DATASET_TYPES,
    assert_same_outputs,
    make_small_sim_repo,
    venv_environment,
)

ROOT = Path(__file__).resolve().parents[1]
VISITS = (1, 2)
DETECTORS = (0, 1)
LABELS = ("subtractImages", "detectDiaSources", "matchTruth")


def _ipv4(address: str) -> str:
    """Return an IPv4 address, unmapping IPv4-mapped IPv6 (``::ffff:a.b.c.d``)."""
    if not address:
        return address
    ip = ipaddress.ip_address(address)
    return str(getattr(ip, "ipv4_mapped", None) or ip)


class _SocketWatcher(threading.Thread):
    """Record the TCP endpoints of a process tree until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root = psutil.Process(pid)
        self.endpoints: set[tuple[str, str, str]] = set()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.5):
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for process in processes:
                try:
                    connections = process.net_connections(kind="inet")
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
                for conn in connections:
                    remote = _ipv4(conn.raddr.ip) if conn.raddr else ""
                    self.endpoints.add((conn.status, _ipv4(conn.laddr.ip), remote))


@pytest.mark.slow
def test_bps_parsl_matches_pipetask_run(tmp_path, record_property):
    """Submit SimulatedAP with BPS + loopback Parsl; outputs must equal a serial ``pipetask run``."""
    repo = tmp_path / "repo"
    butler = make_small_sim_repo(repo, visits=VISITS, detectors=DETECTORS)
    del butler
    env = venv_environment()
    env["REALBOGUS_REPO"] = str(repo)
    work = tmp_path / "work"
    work.mkdir()
    # BPS puts its submit directory under ${PWD}: make that the work directory.
    env["PWD"] = str(work)

    # The shipped submit YAML, with the test's pipeline path and output collection.
    submit = work / "submit.yaml"
    submit.write_text(
        f"includeConfigs:\n  - {ROOT / 'bps' / 'SimulatedAP_parsl.yaml'}\n"
        f"pipelineYaml: {ROOT / 'pipelines' / 'SimulatedAP.yaml'}\n"
        "operator: tester\n"
        "payload:\n  output: u/tester/bps\n"
    )
    start = time.perf_counter()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "bps"), "submit", str(submit)],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    watcher = _SocketWatcher(process.pid)
    watcher.start()
    try:
        output, _ = process.communicate(timeout=420)
    finally:
        watcher.stop.set()
        if process.poll() is None:
            process.kill()
            process.communicate()
    wall_bps = time.perf_counter() - start
    assert process.returncode == 0, output[-6000:]

    # Parsl's interchange and workers talked over loopback only.
    assert watcher.endpoints, "no TCP sockets seen: was the HighThroughputExecutor used?"
    assert any(status == psutil.CONN_LISTEN for status, _, _ in watcher.endpoints), watcher.endpoints
    for status, local, remote in watcher.endpoints:
        assert local == LOOPBACK_ADDRESS and remote in ("", LOOPBACK_ADDRESS), watcher.endpoints
    assert not (work / "runinfo").exists() or (work / "runinfo").is_dir()

    # One job per (visit, detector), each running the three tasks.
    (submit_dir,) = (work / "submit" / "u" / "tester" / "bps").iterdir()
    job_logs = sorted((submit_dir / "logs" / "visitDetector").rglob("visitDetector_*.stdout"))
    assert len(job_logs) == len(VISITS) * len(DETECTORS), job_logs
    assert (submit_dir / "runinfo").is_dir()

    start = time.perf_counter()
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "pipetask"),
            "run",
            "-b",
            str(repo),
            "-i",
            "SimCam/sim",
            "-o",
            "u/tester/serial",
            "-p",
            str(ROOT / "pipelines" / "SimulatedAP.yaml"),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    wall_serial = time.perf_counter() - start
    assert result.returncode == 0, result.stderr[-4000:]

    butler = Butler.from_config(str(repo))
    expected = {(v, d) for v in VISITS for d in DETECTORS}
    # Every quantum ran (metadata and log written) in the BPS run.
    n_quanta = 0
    for label in LABELS:
        for suffix in ("metadata", "log"):
            refs = butler.query_datasets(f"{label}_{suffix}", collections="u/tester/bps")
            assert {(int(r.dataId["visit"]), int(r.dataId["detector"])) for r in refs} == expected
        n_quanta += len(expected)
    counts = assert_same_outputs(
        butler, "u/tester/bps", butler, "u/tester/serial", AP_OUTPUT_DATASET_TYPES, expected_data_ids=expected
    )
    assert counts == {name: len(expected) for name in AP_OUTPUT_DATASET_TYPES}
    n_sources = sum(
        len(butler.get(ref))
        for ref in butler.query_datasets("dia_source_unstandardized", collections="u/tester/bps")
    )
    assert n_sources > 0

    record_property("quanta", n_quanta)
    record_property("bps_wall_s", round(wall_bps, 1))
    record_property("pipetask_wall_s", round(wall_serial, 1))
    print(
        f"bps submit (Parsl, loopback): {n_quanta} quanta in {len(job_logs)} jobs, {wall_bps:.1f} s; "
        f"serial pipetask run: {wall_serial:.1f} s; {n_sources} diaSources"
    )
