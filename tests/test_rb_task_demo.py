"""The demo's reliability summary: purity and completeness at the model threshold by SNR, and
`realbogus-demo --model PATH` end to end on a tiny survey.
"""

from __future__ import annotations

import numpy as np
import pytest
from lsst.daf.butler import Butler
from lsst.meas.realbogus.butler import repo
from lsst.meas.realbogus.cli import demo
from test_rb_task_support import make_model_file


def test_reliability_by_snr_counts():
    """Completeness and purity per SNR bin follow from the counts; NaN scores count as rejected."""
    real = np.array([0.9, 0.2, np.nan, 0.8, 0.7])
    real_snr = np.array([6.0, 6.5, 8.0, 30.0, 30.0])
    bogus = np.array([0.95, 0.1, 0.3])
    bogus_snr = np.array([6.2, 8.0, 200.0])
    table = demo.reliability_by_snr(real, bogus, real_snr, bogus_snr, 0.5, bins=(0, 7, 10, 50, np.inf))
    assert table["n_real"] == [2, 1, 2, 0] and table["n_bogus"] == [1, 1, 0, 1]
    assert table["n_real_kept"] == [1, 0, 2, 0] and table["n_bogus_kept"] == [1, 0, 0, 0]
    assert table["completeness"][:3] == [0.5, 0.0, 1.0] and np.isnan(table["completeness"][3])
    assert table["purity"][0] == 0.5 and table["purity"][2] == 1.0
    assert np.isnan(table["purity"][1]) and np.isnan(table["purity"][3])


def test_ingest_demo_model_is_idempotent(tmp_path):
    """Running the demo twice with the same --model reuses the stored model."""
    root = tmp_path / "repo"
    repo.create_sim_repo(root, n_detectors=1)
    first = make_model_file(tmp_path / "a.safetensors", version="a1", seed=1)
    second = make_model_file(tmp_path / "b.safetensors", version="b1", seed=2)
    run_a = demo.ingest_demo_model(str(root), first)
    run_b = demo.ingest_demo_model(str(root), second)
    assert demo.ingest_demo_model(str(root), first) == run_a and run_a.startswith("models/a1-")
    chain = Butler.from_config(str(root)).registry.getCollectionChain("pretrained_models")
    assert list(chain) == [run_a, run_b]


@pytest.mark.slow
def test_demo_with_model_prints_purity_and_completeness_by_snr(tmp_path, capsys):
    """`realbogus-demo --model PATH` scores every diaSource through the Butler-found model."""
    model = make_model_file(tmp_path / "m.safetensors", version="dm1", threshold=0.5)
    argv = ["--repo", str(tmp_path / "repo"), "--visits", "1", "--detectors", "1", "--size", "160",
            "--seed", "2", "--model", str(model), "--output", "demo/test"]
    assert demo.main(argv) == 0
    out = capsys.readouterr().out
    assert "completeness  purity" in out and "at threshold 0.500" in out
    butler = Butler.from_config(str(tmp_path / "repo"), collections=["demo/test"])
    sources = butler.query_datasets("dia_source_unstandardized", explain=False)
    reliability = butler.query_datasets("dia_source_reliability", explain=False)
    assert [r.dataId for r in reliability] == [r.dataId for r in sources]
    table = butler.get(reliability[0])
    assert set(table["version"]) == {"dm1"}
    summary = demo.summarize_outputs(str(tmp_path / "repo"), "demo/test")
    by_snr = summary["reliability"]["by_snr"]
    # Every diaSource with a finite SNR is in exactly one bin, as real or bogus.
    n_finite = int(np.isfinite(np.asarray(butler.get(sources[0])["snr"], dtype=float)).sum())
    assert sum(by_snr["n_real"]) + sum(by_snr["n_bogus"]) == n_finite
    assert sum(by_snr["n_real"]) == summary["n_real"]
