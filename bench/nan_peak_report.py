#!/usr/bin/env python
"""Score distribution of sources whose cutouts are crossed by NaN rows/columns: no artefact peak.

A simulated visit gets NaN rows and columns injected into its science, template and difference
planes (with ``NO_DATA`` in the mask), as a detector with dead rows/columns or an unfilled template
region would have.  Sources whose model stamp is crossed by a NaN line (centre included or not) are
scored with this package's model and with the incumbent's method (``incumbent.py``: NaN -> 0, no
normalisation, whole box zeroed at the edge).  An artefact of the NaN handling shows up as a spike:
many sources sharing exactly one score value.  The report prints, for both, the 20-bin histogram,
the largest fraction of the affected sources sharing one exact score ("tie fraction"), and the
same for unaffected sources as a reference.  Sources within 25 px of the detector edge are scored
too: there the incumbent zeroes the whole box, which gives its well-known constant-score spike.

Usage::

    python bench/nan_peak_report.py [--model PATH] [--size 512] [--lines 12] [--seed 0]

Without ``--model`` the packaged default model is used if installed, else a small random network
(the NaN handling, not accuracy, is what is measured; say which in any report).
"""

from __future__ import annotations

__all__ = ["NanPeakResult", "inject_nan_lines", "main", "nan_peak_experiment", "tie_fraction"]

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np


def tie_fraction(scores: np.ndarray) -> float:
    """Largest fraction of finite scores that share one exact value (0 if none are finite)."""
    s = np.asarray(scores)[np.isfinite(scores)]
    if s.size == 0:
        return 0.0
    return float(np.unique(s, return_counts=True)[1].max() / s.size)


def inject_nan_lines(
    planes: dict[str, np.ndarray], mask: np.ndarray, n_lines: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Set ``n_lines`` random rows and ``n_lines`` random columns to NaN / ``NO_DATA`` in place.

    Returns
    -------
    rows, cols : `numpy.ndarray`
        The NaN rows and columns.
    """
    from lsst.meas.realbogus import mask_planes

    height, width = mask.shape
    rows = rng.choice(np.arange(8, height - 8), n_lines, replace=False)
    cols = rng.choice(np.arange(8, width - 8), n_lines, replace=False)
    for plane in planes.values():
        plane[rows, :] = np.nan
        plane[:, cols] = np.nan
    mask[rows, :] |= mask_planes.NO_DATA
    mask[:, cols] |= mask_planes.NO_DATA
    return rows, cols


@dataclass
class NanPeakResult:
    """Scores of NaN-crossed ("affected") and clean sources, ours and the incumbent's way."""

    ours: np.ndarray
    incumbent: np.ndarray
    affected: np.ndarray
    center_nan: np.ndarray
    edge_ours: np.ndarray
    edge_incumbent: np.ndarray

    def summary(self) -> dict[str, Any]:
        """Return the counts and tie fractions of the affected and unaffected sources."""
        a, u = self.affected, ~self.affected
        return {
            "n_affected": int(a.sum()),
            "n_affected_center_nan": int((a & self.center_nan).sum()),
            "n_unaffected": int(u.sum()),
            "ours_nan_scores": int((~np.isfinite(self.ours[a])).sum()),
            "ours_tie_affected": tie_fraction(self.ours[a]),
            "ours_tie_unaffected": tie_fraction(self.ours[u]),
            "incumbent_tie_affected": tie_fraction(self.incumbent[a]),
            "incumbent_tie_unaffected": tie_fraction(self.incumbent[u]),
            "ours_tie_center_nan": tie_fraction(self.ours[a & self.center_nan]),
            "ours_std_affected": float(np.nanstd(self.ours[a])),
            "ours_std_unaffected": float(np.nanstd(self.ours[u])),
            "n_edge": int(self.edge_ours.size),
            "ours_tie_edge": tie_fraction(self.edge_ours),
            "incumbent_tie_edge": tie_fraction(self.edge_incumbent),
        }


def nan_peak_experiment(
    model: Any,
    *,
    size: int = 512,
    n_lines: int = 12,
    n_sources: int = 3000,
    seed: int = 0,
    incumbent_module: Any = None,
) -> NanPeakResult:
    """Simulate a visit, inject NaN lines and score sources near them both ways.

    Parameters
    ----------
    model : `~lsst.meas.realbogus.scoring.RealBogusModel`
        Our model (science/template/difference channels).
    size : `int`, optional
        Detector side in pixels.
    n_lines : `int`, optional
        Number of NaN rows and of NaN columns.
    n_sources : `int`, optional
        Number of candidate positions: truth positions plus random positions (within half a
        stamp of a NaN line for two thirds of them); positions whose 51 x 51 box is not inside the
        image, and repeats of a nearest pixel, are dropped.
    seed : `int`, optional
        Simulation and position seed.
    incumbent_module : `torch.nn.Module`, optional
        Incumbent network; default ``incumbent_cnn`` with ``torch.manual_seed(seed)`` weights.

    Returns
    -------
    result : `NanPeakResult`
        The scores and which sources are affected.
    """
    import torch
    from lsst.meas.realbogus.architectures import build_architecture
    from lsst.meas.realbogus.cutouts import extract_cutouts
    from lsst.meas.realbogus.incumbent import incumbent_score
    from lsst.meas.realbogus.simulation import simulate_visit, small_test_config

    sim = simulate_visit(small_test_config(size), visit=1, detector=0, seed=seed)
    science = sim.science.image.astype(np.float32).copy()
    template = sim.template.image.astype(np.float32).copy()
    difference = (science - template).astype(np.float32)
    variance = (sim.science.variance + sim.template.variance).astype(np.float32)
    mask = (sim.science.mask | sim.template.mask).astype(np.int32)
    planes = {"science": science, "template": template, "difference": difference}
    rng = np.random.default_rng(seed)
    rows, cols = inject_nan_lines(planes, mask, n_lines, rng)
    # Both methods' boxes inside the image (the incumbent's 51 x 51 box is zeroed at the edge, a
    # separate, known spike that must not be confused with the NaN handling).
    half = max(model.cutout_size, 51) // 2 + 1
    n_near = 2 * n_sources // 3
    along = rng.uniform(10, size - 10, n_near)
    offset = rng.uniform(-half, half, n_near)
    use_row = rng.random(n_near) < 0.5
    line_row = rows[rng.integers(0, n_lines, n_near)]
    line_col = cols[rng.integers(0, n_lines, n_near)]
    x_near = np.where(use_row, along, line_col + offset)
    y_near = np.where(use_row, line_row + offset, along)
    n_rand = n_sources - n_near - len(sim.truth)
    x = np.r_[np.asarray(sim.truth["x"]), x_near, rng.uniform(half, size - half, max(n_rand, 0))]
    y = np.r_[np.asarray(sim.truth["y"]), y_near, rng.uniform(half, size - half, max(n_rand, 0))]
    inside = (x >= half) & (x < size - half - 1) & (y >= half) & (y < size - half - 1)
    x, y = x[inside], y[inside]
    # One source per nearest pixel: identical stamps would tie trivially.
    _, first = np.unique(np.floor(np.c_[x, y] + 0.5), axis=0, return_index=True)
    first.sort()
    x, y = x[first], y[first]
    ours = model.score(science, template, difference, x, y, variance, mask)
    cut = extract_cutouts({"difference": difference}, x, y, model.cutout_size)
    affected = cut.bad_fraction > 0
    if incumbent_module is None:
        torch.manual_seed(seed)
        incumbent_module = build_architecture("incumbent_cnn")
    inc = incumbent_score(science, template, difference, x, y, incumbent_module)
    # Sources within 25 px of the detector edge (on the image): the incumbent zeroes their box.
    n_edge = max(n_sources // 5, 1)
    ex, ey = rng.uniform(0, size - 1, n_edge), rng.uniform(0, 24, n_edge)
    ey = np.where(rng.random(n_edge) < 0.5, ey, size - 1 - ey)
    swap = rng.random(n_edge) < 0.5
    ex, ey = np.where(swap, ey, ex), np.where(swap, ex, ey)
    edge_ours = model.score(science, template, difference, ex, ey, variance, mask).scores
    edge_inc = incumbent_score(science, template, difference, ex, ey, incumbent_module)
    return NanPeakResult(
        ours=ours.scores,
        incumbent=inc,
        affected=affected,
        center_nan=ours.flag_nan_center,
        edge_ours=edge_ours,
        edge_incumbent=edge_inc,
    )


def _histogram_lines(name: str, scores: np.ndarray) -> list[str]:
    s = scores[np.isfinite(scores)]
    counts, edges = np.histogram(s, bins=20, range=(0, 1))
    lines = [f"{name}: N={s.size}, tie fraction {tie_fraction(s):.3f}"]
    peak = max(counts.max(), 1)
    for c, lo in zip(counts, edges[:-1]):
        lines.append(f"  [{lo:4.2f}, {lo + 0.05:4.2f}) {c:6d} {'#' * int(round(50 * c / peak))}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: print the histograms and tie fractions."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model package (default: packaged, else random)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--lines", type=int, default=12)
    parser.add_argument("--sources", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from lsst.meas.realbogus.scoring import DEFAULT_MODEL_PATH, RealBogusModel, load_model

    torch.set_num_threads(1)
    if args.model is not None or DEFAULT_MODEL_PATH.exists():
        model = load_model(args.model)
        which = args.model or "packaged default"
    else:
        from lsst.meas.realbogus.architectures import build_architecture
        from lsst.meas.realbogus.model_package import ModelMetadata

        torch.manual_seed(args.seed)
        net = build_architecture("rb3_cnn", in_channels=4)
        meta = ModelMetadata(
            architecture="rb3_cnn",
            architecture_kwargs={"in_channels": 4},
            channels=["template", "science", "difference"],
            cutout_size=51,
            version="random",
        )
        model = RealBogusModel(net, meta)
        which = "random rb3_cnn (no default model installed)"
    print(f"model: {which}")
    result = nan_peak_experiment(
        model, size=args.size, n_lines=args.lines, n_sources=args.sources, seed=args.seed
    )
    for key, value in result.summary().items():
        print(f"{key:28s} {value:.4f}" if isinstance(value, float) else f"{key:28s} {value}")
    a = result.affected
    for line in _histogram_lines("ours, NaN-crossed sources", result.ours[a]):
        print(line)
    for line in _histogram_lines("incumbent (NaN -> 0), NaN-crossed sources", result.incumbent[a]):
        print(line)
    for line in _histogram_lines("ours, edge sources", result.edge_ours):
        print(line)
    for line in _histogram_lines("incumbent (box zeroed), edge sources", result.edge_incumbent):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
