"""Tests of the small default TransiNet model shipped with the package."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from lsst.meas.realbogus.simulation import SurveyConfig, simulate_visit
from lsst.meas.realbogus.transinet.evaluate import match_detections
from lsst.meas.realbogus.transinet.model import TransiNetModel


def test_default_model_finds_bright_transients() -> None:
    torch.set_num_threads(1)
    model = TransiNetModel.default()
    assert 0 < model.threshold < 1 and 1 <= len(model.version) <= 7
    # A held-out visit of the default model's evaluation set (visit 2000, detector 10).
    visit = simulate_visit(dataclasses.replace(SurveyConfig(), width=512, height=512), 2000, 10, seed=0)
    mask = visit.science.mask | visit.template.mask
    score = model.score_image(visit.template.image, visit.science.image, visit.template.variance,
                              visit.science.variance, mask, science_psf_sigma=visit.science_psf_sigma,
                              template_psf_sigma=visit.template_psf_sigma)
    assert score.shape == visit.science.image.shape and np.isfinite(score).all()
    det = model.detect(visit.template.image, visit.science.image, visit.template.variance,
                       visit.science.variance, mask, threshold=0.5, wcs=visit.wcs, score=score,
                       science_psf_sigma=visit.science_psf_sigma, template_psf_sigma=visit.template_psf_sigma)
    assert np.all(np.isfinite(det["ra"])) and np.all(np.isfinite(det["flux"]))
    truth = visit.truth[(visit.truth["category"] == "transient") & (np.abs(visit.truth["snr"]) > 20)]
    assert len(truth) > 0
    found = match_detections(det["x"], det["y"], truth["x"], truth["y"], radius=2.0) >= 0
    assert found.mean() >= 0.5
    # The flux estimate of found bright sources has the sign and rough size of the truth flux.
    idx = match_detections(det["x"], det["y"], truth["x"], truth["y"], radius=2.0)
    ok = idx >= 0
    ratio = np.asarray(det["flux"])[idx[ok]] / np.asarray(truth["flux"])[ok]
    assert np.median(ratio) > 0.5 and np.median(ratio) < 2.0
