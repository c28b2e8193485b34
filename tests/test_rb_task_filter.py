"""FilterDiaSourceReliabilityTask: high/low reliability split at the model's or a configured threshold."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from lsst.meas.realbogus.tasks.filter_reliability import (
    FilterDiaSourceReliabilityConfig,
    FilterDiaSourceReliabilityTask,
)
from lsst.meas.realbogus.tasks.rb_transinet import make_reliability_table
from lsst.pipe.base import testUtils


def _inputs(n: int = 40, threshold: float = 0.6, seed: int = 1) -> tuple[Table, Table]:
    """Return a diaSource table and a reliability table in another row order."""
    rng = np.random.default_rng(seed)
    ids = rng.permutation(np.arange(n, dtype=np.int64) * 13 + 2**40)
    sources = Table({"id": ids, "x": rng.uniform(0, 100, n), "snr": rng.uniform(5, 50, n)})
    scores = rng.uniform(0, 1, n).astype(np.float32)
    scores[:3] = np.nan
    flags = {name: np.zeros(n, bool) for name in ("flag_edge", "flag_bad", "flag_nan_center")}
    reliability = make_reliability_table(ids, scores, flags, np.full(n, ""), "v1", threshold)
    order = rng.permutation(n)
    return sources, reliability[order]


def test_split_at_model_threshold_keeps_order_and_rows():
    """Every diaSource lands in exactly one output, in input order, with its own score."""
    sources, reliability = _inputs()
    task = FilterDiaSourceReliabilityTask()
    result = task.run(sources, reliability)
    testUtils.assertValidOutput(task, result)
    high, low = result.filteredDiaSources, result.rejectedDiaSources
    assert result.threshold == pytest.approx(0.6)
    assert len(high) + len(low) == len(sources) and len(high) > 0 and len(low) > 0
    assert np.all(high["reliability"] >= np.float32(0.6))
    assert np.all((low["reliability"] < np.float32(0.6)) | np.isnan(low["reliability"]))
    by_id = dict(zip(reliability["id"], reliability["score"]))
    for table in (high, low):
        position = {i: k for k, i in enumerate(sources["id"])}
        assert list(table["id"]) == sorted(table["id"], key=position.__getitem__)
        np.testing.assert_array_equal(table["reliability"], [by_id[i] for i in table["id"]])
        assert set(table["reliability_version"]) <= {"v1"}
        np.testing.assert_array_equal(table["snr"], sources["snr"][[position[i] for i in table["id"]]])


def test_configured_threshold_and_unscored_destination():
    """A configured threshold overrides the model's; unscored sources can be kept."""
    sources, reliability = _inputs()
    config = FilterDiaSourceReliabilityConfig(threshold=0.2, unscoredDestination="high")
    result = FilterDiaSourceReliabilityTask(config=config).run(sources, reliability)
    assert result.threshold == 0.2
    assert np.isnan(result.filteredDiaSources["reliability"]).sum() == 3
    assert np.all(result.rejectedDiaSources["reliability"] < np.float32(0.2))


def test_mismatched_catalogues_are_errors():
    """Catalogues that were not scored together are rejected with a clear message."""
    sources, reliability = _inputs()
    task = FilterDiaSourceReliabilityTask()
    with pytest.raises(ValueError, match="reliability rows"):
        task.run(sources, reliability[:-1])
    other = reliability.copy()
    other["id"][0] = -1
    with pytest.raises(ValueError, match="no reliability row"):
        task.run(sources, other)
    no_threshold = reliability.copy()
    no_threshold.remove_column("threshold")
    with pytest.raises(ValueError, match="set config.threshold"):
        task.run(sources, no_threshold)


def test_empty_inputs():
    """Empty inputs give two empty outputs with the reliability columns."""
    sources, reliability = _inputs()
    result = FilterDiaSourceReliabilityTask().run(sources[:0], reliability[:0])
    assert len(result.filteredDiaSources) == len(result.rejectedDiaSources) == 0
    assert "reliability" in result.filteredDiaSources.colnames
