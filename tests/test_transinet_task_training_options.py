"""TransiNet training options used by the shipped default model: flat-top targets and the
cosine learning-rate schedule (kept in a ``test_transinet_task_*`` module by file ownership).
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from lsst.meas.realbogus.transinet.targets import build_targets
from lsst.meas.realbogus.transinet.training import TransiNetTrainingConfig


def _truth(x: float, y: float) -> Table:
    return Table({"x": [x], "y": [y], "category": ["transient"], "snr": [20.0]})


def test_flat_top_target_reaches_one_off_centre():
    """Flat-top blobs reach 1 off a pixel centre and fall off as a shifted Gaussian."""
    truth = _truth(20.4, 30.45)  # off the pixel centre
    plain = build_targets(truth, (64, 64), psf_sigma=1.5).target
    flat = build_targets(truth, (64, 64), psf_sigma=1.5, core_radius=1.0).target
    assert plain.max() < 0.95
    assert flat.max() == pytest.approx(1.0)
    assert flat[30, 20] == pytest.approx(1.0)
    # Beyond the core the fall-off is the Gaussian shifted by the core radius, never below plain.
    assert np.all(flat >= plain - 1e-7)
    yy, xx = np.mgrid[:64, :64]
    r = np.hypot(xx - 20.4, yy - 30.45)
    far = r > 3
    np.testing.assert_allclose(flat[far & (r < 6)], np.exp(-0.5 * (r[far & (r < 6)] - 1.0) ** 2 / 1.5**2),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="core_radius"):
        build_targets(truth, (64, 64), psf_sigma=1.5, core_radius=-1.0)


def test_cosine_schedule():
    """The cosine schedule decays monotonically from the rate to rate / 20."""
    config = TransiNetTrainingConfig(max_epochs=11, learning_rate=1e-2, lr_schedule="cosine")
    config.validate()
    rates = [config.learning_rate_at(e) for e in range(11)]
    assert rates[0] == pytest.approx(1e-2)
    assert rates[-1] == pytest.approx(1e-2 / 20)
    assert np.all(np.diff(rates) < 0)
    constant = TransiNetTrainingConfig(max_epochs=11, learning_rate=1e-2)
    assert {constant.learning_rate_at(e) for e in range(11)} == {1e-2}
    with pytest.raises(ValueError, match="lr_schedule"):
        TransiNetTrainingConfig(lr_schedule="step").validate()
