"""A ``pipetask run`` killed mid-way and resumed completes with no duplicate or missing outputs.

The simulated Alert Production pipeline (``pipelines/SimulatedAP.yaml``: differencing, detection,
reliability with a tiny model package file, the reliability split and truth matching) runs on a tiny
simulated repository of four visits.  The ``pipetask`` process group is killed with SIGKILL as soon as
the first quanta's outputs are in the datastore, then the run is resumed as ``pipe_base`` documents it:
``--extend-run`` (reuse the output RUN collection, skip quanta whose outputs all exist) with
``--skip-existing-in <output>`` and ``--clobber-outputs`` (remove partial outputs of the killed
quantum).  Training interruption is tested in ``test_robustness_determinism.py``.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from lsst.daf.butler import Butler
from lsst.meas.realbogus.butler import repo
from lsst.meas.realbogus.cli.demo import find_pipetask
from lsst.meas.realbogus.simulation import small_test_config
from tiny_models import write_tiny_classifier

PIPELINE = Path(__file__).parents[1] / "pipelines" / "SimulatedAP.yaml"
OUTPUTS = (
    "difference_image",
    "dia_source_unstandardized",
    "dia_source_reliability",
    "dia_source_high_reliability",
    "dia_source_low_reliability",
    "dia_source_truth_match",
)
VISITS = (1, 2, 3, 4)
OUTPUT = "robust/interrupted"


def write_tiny_model(path: Path) -> Path:
    """Write a tiny random model package (the test must not depend on the packaged default)."""
    return write_tiny_classifier(path, channels=("science", "template", "difference"), widths=(4, 4),
                                 hidden=4, weight_scale=None, version="kill")


def pipetask_command(root: Path, model: Path, *extra: str) -> list[str]:
    """Return pipetask command."""
    return [
        *find_pipetask(),
        "run",
        "-b",
        str(root),
        "-i",
        "SimCam/sim",
        "-o",
        OUTPUT,
        "-p",
        str(PIPELINE),
        "-c",
        "rbTransiNet:modelSource=file",
        "-c",
        f"rbTransiNet:modelPath={model}",
        "-c",
        "rbTransiNet:numThreads=1",
        "--register-dataset-types",
        "-j",
        "1",
        *extra,
    ]


def output_files(root: Path) -> collections.Counter[str]:
    """Count datastore files per output dataset type under the output collection's directory."""
    counts: collections.Counter[str] = collections.Counter()
    base = root / OUTPUT
    if base.exists():
        for path in base.rglob("*"):
            if path.is_file():
                for name in OUTPUTS:
                    if name in path.parts:
                        counts[name] += 1
    return counts


@pytest.mark.slow
def test_killed_pipetask_resumes_without_duplicates_or_gaps(tmp_path: Path) -> None:
    """Check: killed pipetask resumes without duplicates or gaps."""
    root = tmp_path / "repo"
    butler = repo.create_sim_repo(root, n_detectors=1)
    repo.ingest_simulated_visits(butler, small_test_config(128), list(VISITS), [0], seed=2)
    model = write_tiny_model(tmp_path / "tiny.safetensors")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log = tmp_path / "first.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            pipetask_command(root, model),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 240
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                if output_files(root)["difference_image"] >= 2:
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"pipetask was not killed mid-way:\n{log.read_text()[-3000:]}"
    butler = Butler.from_config(str(root))
    chain = butler.collections.get_info(OUTPUT).children
    run = chain[0]  # the output RUN; the inputs follow it in the chain
    before = {}
    for name in OUTPUTS:
        for ref in butler.query_datasets(name, collections=run, explain=False):
            before[name, ref.dataId["visit"]] = ref.id
    done_before = collections.Counter(name for name, _ in before)
    assert 1 <= done_before["difference_image"] < len(VISITS), done_before
    assert done_before["dia_source_truth_match"] < len(VISITS)

    resume = subprocess.run(
        pipetask_command(root, model, "--extend-run", "--skip-existing-in", OUTPUT, "--clobber-outputs"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resume.returncode == 0, resume.stdout[-3000:] + resume.stderr[-3000:]
    executed = [
        int(n) for n in re.findall(r"Executed (\d+) quanta successfully", resume.stdout + resume.stderr)
    ]
    n_done = (
        done_before["difference_image"]
        + done_before["dia_source_unstandardized"]
        + done_before["dia_source_reliability"]
        + done_before["dia_source_high_reliability"]
        + done_before["dia_source_truth_match"]
    )
    assert executed and executed[-1] == 5 * len(VISITS) - n_done  # 5 tasks; the filter writes 2 outputs

    butler = Butler.from_config(str(root), collections=[OUTPUT])
    assert butler.collections.get_info(OUTPUT).children == chain  # same RUN, extended
    for name in OUTPUTS:
        refs = butler.query_datasets(name, collections=run, explain=False)
        visits = [ref.dataId["visit"] for ref in refs]
        assert sorted(visits) == list(VISITS), f"{name}: {visits}"  # none missing, none duplicated
        for ref in refs:
            assert butler.stored(ref), f"{name} {ref.dataId} is registered but has no file"
            if (name, ref.dataId["visit"]) in before:
                assert ref.id == before[name, ref.dataId["visit"]], "a finished output was rewritten"
    # At most one orphan file: the output the killed quantum was writing when SIGKILL arrived (the
    # datastore writes the file before the registry insert; daf_butler leaves it, unregistered and
    # harmless, next to the resumed quantum's own file).
    files = output_files(root)
    orphans = sum(files.values()) - len(OUTPUTS) * len(VISITS)
    assert 0 <= orphans <= 1, files
    assert all(files[name] >= len(VISITS) for name in OUTPUTS), files
    for visit in VISITS:
        data_id = dict(visit=visit, detector=0, instrument="SimCam")
        sources = butler.get("dia_source_unstandardized", data_id)
        assert len(np.unique(np.asarray(sources["id"]))) == len(sources)
        for name in ("dia_source_truth_match", "dia_source_reliability"):
            np.testing.assert_array_equal(butler.get(name, data_id)["id"], sources["id"])
        split = np.r_[
            np.asarray(butler.get("dia_source_high_reliability", data_id)["id"]),
            np.asarray(butler.get("dia_source_low_reliability", data_id)["id"]),
        ]
        assert sorted(split.tolist()) == sorted(np.asarray(sources["id"]).tolist())
