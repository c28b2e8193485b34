"""Every real alert stamp (shared/realdata) scores without error through ``score_stamps``.

EVALUATION ONLY: these stamps are never used for training or tuning; this test only checks that the
scoring path copes with real pixels (sizes 30/51/63, DN or nJy, NaN padding, 0.17–1.0″ pixels).  It
uses a tiny random model (what is tested is the preprocessing, not accuracy) and also the packaged
default model when one is installed.  The directory is found beside the clone
(``Path(__file__).parents[2] / "shared" / "realdata"``); a missing directory is a failure.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
from lsst.meas.realbogus.real_stamps import AlertStamps, list_alert_stamp_files
from lsst.meas.realbogus.real_stamps import read_alert_stamps as _read
from lsst.meas.realbogus.scoring import DEFAULT_MODEL_PATH, RealBogusModel, load_model
from tiny_models import write_tiny_classifier

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"
EXPECTED = {"lsstcam": (30, 30), "hsc_lsstpipe": (30, 30), "ztf": (63, 63), "decat": (51, 51)}


@functools.cache
def read_alert_stamps(path: Path, keep_sentinels: bool = False) -> AlertStamps:
    """Read a stamp file once per test session (the ZTF file is 100 MB uncompressed)."""
    return _read(path, keep_sentinels=keep_sentinels)


def realdata_dir() -> Path:
    """Return realdata dir."""
    if not REALDATA.is_dir():
        pytest.fail(
            f"Real alert stamps not found at {REALDATA}: the tests expect the shared/ directory "
            "(with realdata/*.npz) beside the clone of meas_realbogus"
        )
    return REALDATA


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> list[RealBogusModel]:
    """Return models."""
    path = tmp_path_factory.mktemp("real") / "m.safetensors"
    out = [load_model(write_tiny_classifier(path, cutout_size=31, version="real"))]
    if DEFAULT_MODEL_PATH.exists():
        out.append(load_model())
    return out


def test_all_stamp_files_are_present_and_readable() -> None:
    """Check: all stamp files are present and readable."""
    paths = list_alert_stamp_files(realdata_dir())
    surveys = {}
    for path in paths:
        data = read_alert_stamps(path)
        surveys[data.survey] = data.stamps.shape[2:]
        assert data.stamps.dtype == np.float32 and len(data.ids) == len(data)
        assert len(np.unique(data.ids)) == len(data.ids)
        assert set(np.unique(data.polarity)) <= {-1, 0, 1}
    assert surveys == EXPECTED


def test_every_real_stamp_scores_finite(models: list[RealBogusModel]) -> None:
    """Check: every real stamp scores finite."""
    for model in models:
        for path in list_alert_stamp_files(realdata_dir()):
            data = read_alert_stamps(path)
            scores = data.score(model, batch_size=512)
            assert scores.shape == (len(data),) and scores.dtype == np.float32
            usable = data.has_finite_difference
            bad = np.flatnonzero(usable & ~np.isfinite(scores))
            assert bad.size == 0, (
                f"{path.name}: {bad.size} stamps with finite difference pixels got NaN "
                f"(ids {data.ids[bad[:5]]})"
            )
            finite = scores[np.isfinite(scores)]
            assert np.all((finite >= 0) & (finite <= 1))
            # Real stamps of different content do not collapse onto one value.  Confident scores
            # saturate to exactly 0 or 1 in float32 (sigmoid of |logit| > ~17): that is not a
            # spurious constant, so only interior values are checked for ties.
            interior = finite[(finite > 0) & (finite < 1)]
            assert interior.size >= 0.5 * finite.size, f"{path.name}: most scores saturated"
            _, counts = np.unique(interior, return_counts=True)
            assert counts.max() <= max(2, 0.02 * finite.size), f"{path.name}: tie of {counts.max()} scores"


def test_flt_max_sentinels_are_read_as_nan(models: list[RealBogusModel]) -> None:
    """Some ZTF templates mark missing pixels with -FLT_MAX; the reader makes them NaN."""
    path = realdata_dir() / "ztf_triplets_63.npz"
    raw = read_alert_stamps(path, True)
    clean = read_alert_stamps(path)
    sentinel = np.abs(raw.stamps) >= 1e38
    assert clean.n_sentinel_pixels == int(sentinel.sum()) > 0
    assert np.isnan(clean.stamps[sentinel]).all()
    np.testing.assert_array_equal(clean.stamps[~sentinel], raw.stamps[~sentinel])
    rows = np.flatnonzero(sentinel.reshape(len(raw), -1).any(axis=1))
    # With NaN in their place the scores of those stamps are unit-free again.
    model = models[0]
    subset = clean.stamps[rows]
    np.testing.assert_allclose(
        model.score_stamps(subset * np.float32(1e3)), model.score_stamps(subset), atol=2e-4
    )


def test_real_stamp_scores_are_unit_invariant(models: list[RealBogusModel]) -> None:
    """ZTF stamps are in DN, Rubin in nJy: rescaling a file must not change its scores."""
    model = models[0]
    for path in list_alert_stamp_files(realdata_dir()):
        data = read_alert_stamps(path)
        subset = data.stamps[:300]
        base = model.score_stamps(subset)
        np.testing.assert_allclose(model.score_stamps(subset * np.float32(1e3)), base, atol=2e-4)
        np.testing.assert_allclose(model.score_stamps(subset * np.float32(1e-2)), base, atol=2e-4)
