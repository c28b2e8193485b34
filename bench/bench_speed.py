#!/usr/bin/env python
"""Speed benchmark: scoring one detector's diaSources, ours vs the incumbent.

Run from the repository root::

    .venv/bin/python bench/bench_speed.py [--threads 1] [--quick] [--json out.json]

Everything is measured in one run, side by side, with ``--threads`` intra-op
threads (1 by default) for PyTorch, ONNX Runtime and the BLAS libraries.
Four sections are printed:

1. cutout extraction rate vs number of sources on a 4k × 4k detector (three
   planes): `~lsst.meas.realbogus.cutouts.extract_cutouts` vs the incumbent's
   per-source Python loop (`~lsst.meas.realbogus.incumbent.incumbent_cutouts`);
2. model throughput per architecture and inference backend, with FLOPs per
   source and the fraction of the core's peak (estimated with a large sgemm);
3. end-to-end scoring of a detector (cutouts + normalisation + model) for the
   same source counts: `~lsst.meas.realbogus.scoring.RealBogusModel.score`
   as it is, the same with the ONNX Runtime backend, and the incumbent's way
   (`~lsst.meas.realbogus.incumbent.incumbent_score`), with the ratios and a
   breakdown of where our time goes;
4. peak memory above the images for the largest source count.

Rates are ``sources / time`` of the best of several repeats.  With one
thread the time is the process CPU time (`time.process_time`), which is
robust against other processes sharing the cores; the best wall time is
reported alongside.  With more threads the wall time is used.
"""

from __future__ import annotations

__all__ = ["main", "parse_args"]

import argparse
import json
import os
import platform
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

_DEFAULT_COUNTS = (100, 1_000, 10_000, 100_000)
_QUICK_COUNTS = (100, 1_000)
_SIZE = 51
_BACKENDS = (
    ("torch", {}),
    ("torch", {"channels_last": True}),
    ("torchscript", {}),
    ("torchscript", {"channels_last": True}),
    ("onnx", {}),
)
_ARCHS = (("rb3_cnn", 4), ("rb1_cnn", 2), ("incumbent_cnn", 3))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the command line.

    Parameters
    ----------
    argv : `~collections.abc.Sequence` [`str`], optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    args : `argparse.Namespace`
        Parsed arguments.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="small smoke run (1k×1k image, few sources)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--counts", type=lambda s: tuple(int(v) for v in s.split(",")), help="source counts, e.g. 100,1000"
    )
    parser.add_argument("--image-size", type=int, help="detector side in pixels (default 4096)")
    parser.add_argument("--repeats", type=int, help="repeats per measurement (best is kept; default 3)")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile (slow to build)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=20.0,
        help="stop repeating a measurement once it has used this many seconds (default 20)",
    )
    parser.add_argument("--memory-child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    if args.counts is None:
        args.counts = _QUICK_COUNTS if args.quick else _DEFAULT_COUNTS
    if any(c < 1 for c in args.counts):
        parser.error("--counts must be positive")
    if args.image_size is None:
        args.image_size = 1024 if args.quick else 4096
    if args.image_size < _SIZE:
        parser.error(f"--image-size must be at least {_SIZE}")
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    return args


def _pin_threads(threads: int) -> None:
    """Pin the BLAS/OpenMP thread pools (before numpy/torch are imported)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(threads)


class _Timer:
    """Best-of-N timing by process CPU time (1 thread) or wall time."""

    def __init__(self, threads: int, repeats: int, max_seconds: float):
        self.threads = threads
        self.use_cpu = threads == 1
        self.repeats = repeats
        self.max_seconds = max_seconds

    def measure(self, func: Callable[[], Any], warmup: bool = False) -> dict[str, float]:
        if warmup:
            func()
        cpu, wall = [], []
        spent = 0.0
        for _ in range(self.repeats):
            w0, c0 = time.perf_counter(), time.process_time()
            func()
            c1, w1 = time.process_time(), time.perf_counter()
            cpu.append(c1 - c0)
            wall.append(w1 - w0)
            spent += w1 - w0
            if spent > self.max_seconds:
                break
        best = min(cpu) if self.use_cpu else min(wall)
        return {"seconds": best, "cpu_best": min(cpu), "wall_best": min(wall), "runs": len(cpu)}


class _RssSampler:
    """Sample the resident set size in a thread and keep its maximum."""

    def __init__(self, interval: float = 0.002):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            import psutil

            return int(psutil.Process().memory_info().rss)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            time.sleep(self.interval)

    def __enter__(self) -> _RssSampler:
        self.start = self.rss()
        self.peak = self.start
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.rss())


def _make_detector(size: int, seed: int = 12345) -> dict[str, Any]:
    """Simulate detector planes: noise, a few stars, a NaN patch and mask bits."""
    import numpy as np
    from lsst.meas.realbogus import mask_planes

    rng = np.random.default_rng(seed)
    sky_sigma = 30.0
    science = rng.standard_normal((size, size), dtype=np.float32) * np.float32(sky_sigma)
    template = rng.standard_normal((size, size), dtype=np.float32) * np.float32(sky_sigma * 0.7)
    yy, xx = np.mgrid[-7:8, -7:8]
    star = np.exp(-(xx**2 + yy**2) / (2 * 1.7**2)).astype(np.float32)
    for _ in range(size * size // 20_000):
        x0, y0 = rng.integers(0, size - 15, 2)
        flux = np.float32(rng.uniform(500, 50_000))
        science[y0 : y0 + 15, x0 : x0 + 15] += flux * star
        template[y0 : y0 + 15, x0 : x0 + 15] += flux * star
    difference = science - template
    variance = np.full((size, size), sky_sigma**2 * 1.49, dtype=np.float32)
    mask = np.zeros((size, size), dtype=np.int32)
    patch = slice(size // 3, size // 3 + 40)
    for plane in (science, difference):
        plane[patch, patch] = np.nan
    mask[patch, patch] |= mask_planes.NO_DATA
    mask[size // 2, :] |= mask_planes.SAT  # a saturated row
    return {
        "science": science,
        "template": template,
        "difference": difference,
        "variance": variance,
        "mask": mask,
    }


def _positions(n: int, size: int, seed: int) -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    return rng.uniform(-0.5, size - 0.5, n), rng.uniform(-0.5, size - 0.5, n)


def _sgemm_peak(timer: _Timer) -> float:
    """Best single-precision GEMM rate in GFLOP/s (an estimate of the peak)."""
    import torch

    n = 1024
    a = torch.randn(n, n)
    b = torch.randn(n, n)
    c = torch.empty(n, n)

    def run() -> None:
        for _ in range(4):
            torch.mm(a, b, out=c)

    # More repeats than the other measurements: the estimate is a best case.
    t = _Timer(timer.threads, max(timer.repeats, 7), timer.max_seconds).measure(run, warmup=True)
    return 4 * 2 * n**3 / t["seconds"] / 1e9


def _fmt_rate(v: float) -> str:
    return f"{v:,.0f}"


def _print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    line = "  ".join("-" * w for w in widths)
    print(line)
    print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells[0], widths))))
    print(line)
    for r in cells[1:]:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
    print(line, flush=True)


def _ours_models(
    threads: int, size: int = _SIZE, max_stat_pixels: int | None = None, torch_too: bool = True
) -> dict[str, Any]:
    """Our rb3_cnn scorers: RealBogusModel as is, and with the ONNX backend.

    ``size`` and ``max_stat_pixels`` change the (simulated) package's cutout
    size and normalisation, for the what-if rows.
    """
    import numpy as np
    import torch
    from lsst.meas.realbogus.architectures import build_architecture
    from lsst.meas.realbogus.backends import make_backend
    from lsst.meas.realbogus.model_package import ModelMetadata
    from lsst.meas.realbogus.normalization import NormalizationSpec
    from lsst.meas.realbogus.scoring import RealBogusModel
    from scipy.special import expit

    torch.manual_seed(0)
    module = build_architecture("rb3_cnn")
    spec = (
        NormalizationSpec() if max_stat_pixels is None else NormalizationSpec(max_stat_pixels=max_stat_pixels)
    )
    metadata = ModelMetadata(
        architecture="rb3_cnn",
        channels=["template", "science", "difference"],
        cutout_size=size,
        version="bench",
        normalization=spec,
    )
    backend = make_backend(module, "onnx", in_channels=metadata.input_channels, size=size, threads=threads)

    class BackendModel(RealBogusModel):
        """RealBogusModel whose network runs on an inference backend."""

        def predict_normalized(self, normalized: np.ndarray, *, batch_size: int = 4096) -> np.ndarray:
            return expit(backend.predict_logits(normalized)).astype(np.float32)

    models = {"ours (RealBogusModel, onnx)": BackendModel(module, metadata)}
    if torch_too:
        models = {"ours (RealBogusModel, torch)": RealBogusModel(module, metadata), **models}
    return models


def _task_scorer(det: dict[str, Any], model: Any) -> Callable[[Any, Any], Any] | str:
    """Return ``f(x, y)`` running ``RBTransiNetTask.run`` on the detector, or why it cannot."""
    try:
        import numpy as np
        from astropy.table import Table
        from lsst.meas.realbogus.butler.images import make_difference_image, make_visit_image
        from lsst.meas.realbogus.butler.toy_data import make_toy_wcs
        from lsst.meas.realbogus.tasks.rb_transinet import RBTransiNetConfig, RBTransiNetTask
    except ImportError as err:
        return f"RBTransiNetTask not available ({err})"
    try:
        size = det["science"].shape[0]
        common = dict(
            wcs=make_toy_wcs(size),
            psf_sigma=1.7,
            instrument="SimCam",
            visit=1,
            detector=0,
            physical_filter="r",
            band="r",
        )
        var = np.full_like(det["variance"], 30.0**2)
        science = make_visit_image(det["science"], var, det["mask"], **common)
        template = make_visit_image(det["template"], var * 0.49, np.zeros_like(det["mask"]), **common)
        difference = make_difference_image(det["difference"], det["variance"], det["mask"], science=science)
        config = RBTransiNetConfig()
        config.modelSource = "package"
        config.modelChannels = list(model.channels)
        task = RBTransiNetTask(config=config)
    except Exception as err:  # noqa: BLE001 - report and go on without the task row.
        return f"could not set up RBTransiNetTask ({type(err).__name__}: {err})"

    def run(x: Any, y: Any) -> Any:
        catalog = Table({"id": np.arange(len(x), dtype=np.int64), "x": x, "y": y})
        return task.run(catalog, difference, science=science, template=template, model=model)

    return run


def _breakdown(model: Any, det: dict[str, Any], x: Any, y: Any, timer: _Timer) -> dict[str, float]:
    """Time the stages of our scoring separately on the same sources."""
    import numpy as np
    from lsst.meas.realbogus.cutouts import extract_cutouts
    from lsst.meas.realbogus.normalization import normalize_stamps_with_scale

    planes = {c: det[c] for c in model.channels}
    spec = model.metadata.normalization
    cut = extract_cutouts(planes, x, y, _SIZE, mask=det["mask"])
    var = extract_cutouts({"variance": det["variance"]}, x, y, _SIZE)
    norm, _ = normalize_stamps_with_scale(cut.stamps, model.channels, spec, var.stamps[:, 0])
    norm = np.ascontiguousarray(norm)
    # Warm-ups keep first-touch page faults of fresh allocations out of the timings.
    t_cut = timer.measure(lambda: extract_cutouts(planes, x, y, _SIZE, mask=det["mask"]), warmup=True)[
        "seconds"
    ]
    t_var = timer.measure(lambda: extract_cutouts({"variance": det["variance"]}, x, y, _SIZE), warmup=True)[
        "seconds"
    ]
    t_norm = timer.measure(
        lambda: normalize_stamps_with_scale(cut.stamps, model.channels, spec, var.stamps[:, 0]), warmup=True
    )["seconds"]
    t_model = timer.measure(lambda: model.predict_normalized(norm), warmup=True)["seconds"]
    return {"cutouts": t_cut, "variance_cutouts": t_var, "normalization": t_norm, "model": t_model}


def _scorer_for(kind: str, det: dict[str, Any], threads: int) -> Callable[[Any, Any], Any]:
    """Return ``f(x, y)`` scoring sources: ``torch``, ``onnx``, ``task`` or ``incumbent``."""
    if kind == "incumbent":
        import torch
        from lsst.meas.realbogus.architectures import build_architecture
        from lsst.meas.realbogus.incumbent import incumbent_score

        torch.manual_seed(0)
        module = build_architecture("incumbent_cnn").eval()
        return lambda x, y: incumbent_score(det["science"], det["template"], det["difference"], x, y, module)
    models = _ours_models(threads)
    if kind == "task":
        task = _task_scorer(det, models["ours (RealBogusModel, onnx)"])
        if isinstance(task, str):
            raise RuntimeError(task)
        return task
    model = models[f"ours (RealBogusModel, {kind})"]
    return lambda x, y: model.score(
        det["science"], det["template"], det["difference"], x, y, variance=det["variance"], mask=det["mask"]
    )


def _malloc_trim() -> None:
    """Return freed heap memory to the system (glibc only; no-op elsewhere)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _memory_child(args: argparse.Namespace) -> None:
    """Measure the peak RSS of one scorer in this (fresh) process and print it as JSON."""
    import torch

    torch.set_num_threads(args.threads)
    kind, n = args.memory_child[0], int(args.memory_child[1])
    det = _make_detector(args.image_size)
    scorer = _scorer_for(kind, det, args.threads)
    x, y = _positions(n, args.image_size, seed=n + 1)
    scorer(x[:200], y[:200])  # lazy initialisation is not the per-detector cost
    _malloc_trim()
    with _RssSampler() as sampler:
        scorer(x, y)
    print(json.dumps({"kind": kind, "n": n, "start": sampler.start, "peak": sampler.peak}))


def _memory_in_child(kind: str, n: int, args: argparse.Namespace) -> int:
    """Run `_memory_child` in a fresh interpreter; return the peak RSS increase in bytes."""
    import subprocess

    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--threads",
        str(args.threads),
        "--image-size",
        str(args.image_size),
        "--memory-child",
        kind,
        str(n),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"Memory measurement of {kind!r} failed:\n{proc.stderr[-3000:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    return int(data["peak"] - data["start"])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the tables and return the results.

    Parameters
    ----------
    argv : `~collections.abc.Sequence` [`str`], optional
        Command-line arguments.

    Returns
    -------
    results : `dict`
        Everything printed, as JSON-serialisable values.
    """
    args = parse_args(argv)
    _pin_threads(args.threads)
    if args.memory_child:
        _memory_child(args)
        return {}
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # Already fixed by an earlier parallel call in this process.

    from lsst.meas.realbogus.architectures import build_architecture, flops_per_source
    from lsst.meas.realbogus.backends import make_backend
    from lsst.meas.realbogus.cutouts import extract_cutouts, iter_cutout_batches
    from lsst.meas.realbogus.incumbent import incumbent_cutouts, incumbent_score

    timer = _Timer(args.threads, args.repeats, args.max_seconds)
    results: dict[str, Any] = {
        "config": {
            "threads": args.threads,
            "quick": args.quick,
            "image_size": args.image_size,
            "counts": list(args.counts),
            "repeats": args.repeats,
            "timing": "process CPU time" if timer.use_cpu else "wall time",
            "stamp_size": _SIZE,
        },
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
    }
    try:
        import onnxruntime

        results["machine"]["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    print(
        f"meas_realbogus speed benchmark: threads={args.threads}, "
        f"detector {args.image_size}×{args.image_size}, stamps {_SIZE}×{_SIZE}, "
        f"best of {args.repeats} ({results['config']['timing']})"
    )

    peak = _sgemm_peak(timer)
    results["sgemm_gflops"] = peak
    print(f"Estimated peak: {peak:.1f} GFLOP/s fp32 ({args.threads} thread(s), 1024³ sgemm)")

    det = _make_detector(args.image_size)
    planes3 = {c: det[c] for c in ("science", "template", "difference")}

    # 1. Cutouts ------------------------------------------------------------
    rows = []
    results["cutouts"] = []
    for n in args.counts:
        x, y = _positions(n, args.image_size, seed=n)
        ours = timer.measure(lambda: extract_cutouts(planes3, x, y, _SIZE))
        # The batched path used by RealBogusModel.score (bounded memory).
        batched = timer.measure(lambda: deque(iter_cutout_batches(planes3, x, y, _SIZE, 4096), maxlen=0))
        inc = timer.measure(
            lambda: incumbent_cutouts(det["science"], det["template"], det["difference"], x, y, _SIZE)
        )
        r_ours, r_inc = n / ours["seconds"], n / inc["seconds"]
        r_batched = n / batched["seconds"]
        results["cutouts"].append(
            {
                "n": n,
                "ours": ours,
                "ours_batched": batched,
                "incumbent": inc,
                "ours_rate": r_ours,
                "ours_batched_rate": r_batched,
                "incumbent_rate": r_inc,
            }
        )
        rows.append(
            (
                f"{n:,}",
                _fmt_rate(r_ours),
                _fmt_rate(r_batched),
                _fmt_rate(r_inc),
                f"{max(r_ours, r_batched) / r_inc:.1f}×",
            )
        )
    _print_table(
        "1. Cutout extraction, 3 planes 51×51 (sources/s)",
        ("sources", "ours extract_cutouts", "ours batches of 4096", "incumbent loop", "ours/incumbent"),
        rows,
    )

    # 2. Model throughput --------------------------------------------------
    n_model = 256 if args.quick else 2048
    backends = list(_BACKENDS) + ([("compile", {"channels_last": True})] if args.compile else [])
    rows = []
    results["models"] = []
    rng = np.random.default_rng(0)
    for arch, c in _ARCHS:
        torch.manual_seed(0)
        module = build_architecture(arch)
        flops = flops_per_source(module, c, _SIZE)
        xs = rng.standard_normal((n_model, c, _SIZE, _SIZE), dtype=np.float32)
        for name, kw in backends:
            label = name + ("+channels_last" if kw.get("channels_last") else "")
            backend = make_backend(module, name, in_channels=c, size=_SIZE, threads=args.threads, **kw)
            t = timer.measure(lambda: backend.predict_logits(xs), warmup=True)
            rate = n_model / t["seconds"]
            gflops = rate * flops / 1e9
            results["models"].append(
                {
                    "architecture": arch,
                    "backend": label,
                    "flops_per_source": flops,
                    "rate": rate,
                    "gflops": gflops,
                    "fraction_of_peak": gflops / peak,
                    **t,
                }
            )
            rows.append(
                (
                    arch,
                    label,
                    f"{flops / 1e6:.2f}",
                    _fmt_rate(rate),
                    f"{gflops:.1f}",
                    f"{100 * gflops / peak:.0f}%",
                )
            )
    _print_table(
        f"2. Model throughput, {n_model} stamps in chunks of 256 (sources/s)",
        ("architecture", "backend", "MFLOP/src", "sources/s", "GFLOP/s", "of peak"),
        rows,
    )

    # 3. End to end --------------------------------------------------------
    ours_models = _ours_models(args.threads)
    torch.manual_seed(0)
    incumbent_module = build_architecture("incumbent_cnn").eval()

    def model_scorer(model: Any) -> Callable[[Any, Any], Any]:
        def run(x: Any, y: Any) -> Any:
            return model.score(
                det["science"],
                det["template"],
                det["difference"],
                x,
                y,
                variance=det["variance"],
                mask=det["mask"],
            )

        return run

    ours_scorers = {label: model_scorer(model) for label, model in ours_models.items()}
    task = _task_scorer(det, ours_models["ours (RealBogusModel, onnx)"])
    if isinstance(task, str):
        print(f"\nNote: end to end without RBTransiNetTask.run: {task}")
    else:
        ours_scorers["ours (RBTransiNetTask.run, onnx)"] = task
    rows = []
    results["end_to_end"] = []
    for n in args.counts:
        x, y = _positions(n, args.image_size, seed=n + 1)
        entry: dict[str, Any] = {"n": n}
        for label, scorer in ours_scorers.items():
            entry[label] = timer.measure(lambda: scorer(x, y), warmup=n <= 1000)
        entry["incumbent"] = timer.measure(
            lambda: incumbent_score(
                det["science"], det["template"], det["difference"], x, y, incumbent_module
            ),
            warmup=n <= 1000,
        )
        inc_rate = n / entry["incumbent"]["seconds"]
        row = [f"{n:,}"]
        for label in ours_scorers:
            rate = n / entry[label]["seconds"]
            entry[label]["rate"] = rate
            row += [_fmt_rate(rate), f"{rate / inc_rate:.1f}×"]
        entry["incumbent"]["rate"] = inc_rate
        row += [_fmt_rate(inc_rate), f"{entry['incumbent']['seconds']:.2f}"]
        results["end_to_end"].append(entry)
        rows.append(row)
    header = ["sources"]
    for label in ours_scorers:
        short = label.split(", ")[1].rstrip(")")
        short = f"task {short}" if "Task" in label else short
        header += [f"ours {short} /s", "vs inc."]
    header += ["incumbent /s", "incumbent s"]
    _print_table("3. End to end per detector: cutouts + normalisation + model (sources/s)", header, rows)

    # Breakdown of our time (bounded to 10,000 sources to keep the run short).
    n = max(args.counts)
    n_w = min(n, 10_000)
    x_w, y_w = _positions(n_w, args.image_size, seed=n_w + 1)
    rows = []
    results["breakdown"] = {"n": n_w}
    for label, model in ours_models.items():
        parts = _breakdown(model, det, x_w, y_w, timer)
        total = sum(parts.values())
        results["breakdown"][label] = parts
        rows.append(
            [label]
            + [f"{1e6 * v / n_w:.1f} ({100 * v / total:.0f}%)" for v in parts.values()]
            + [f"{1e6 * total / n_w:.1f}"]
        )
    _print_table(
        f"   Where our time goes at {n_w:,} sources (µs per source, share)",
        ["scorer", "cutouts 3+mask", "variance cutout", "normalisation", "model", "sum"],
        rows,
    )

    # What-if: the same code with other package settings (smaller crop, fewer statistics pixels).
    e2e_w = next(e for e in results["end_to_end"] if e["n"] == n_w) if n_w in args.counts else None
    inc_rate_w = (
        e2e_w["incumbent"]["rate"]
        if e2e_w
        else n_w
        / timer.measure(
            lambda: incumbent_score(
                det["science"], det["template"], det["difference"], x_w, y_w, incumbent_module
            )
        )["seconds"]
    )
    rows = []
    results["what_if"] = []
    for size_w, msp in ((_SIZE, None), (_SIZE, 256), (41, 256), (35, 256), (31, 256)):
        (model_w,) = _ours_models(args.threads, size_w, msp, torch_too=False).values()
        t = timer.measure(
            lambda: model_w.score(
                det["science"],
                det["template"],
                det["difference"],
                x_w,
                y_w,
                variance=det["variance"],
                mask=det["mask"],
            ),
            warmup=True,
        )
        rate = n_w / t["seconds"]
        stat = model_w.metadata.normalization.max_stat_pixels
        results["what_if"].append(
            {"n": n_w, "size": size_w, "max_stat_pixels": stat, "rate": rate, "ratio": rate / inc_rate_w, **t}
        )
        rows.append((f"{size_w}×{size_w}", stat, _fmt_rate(rate), f"{rate / inc_rate_w:.1f}×"))
    _print_table(
        f"   What-if, ours (RealBogusModel, onnx) at {n_w:,} sources vs incumbent {_fmt_rate(inc_rate_w)}/s",
        ("crop", "max_stat_pixels", "sources/s", "vs inc."),
        rows,
    )

    # 4. Memory ------------------------------------------------------------
    # Each scorer runs in a fresh process: in this one, freed memory kept by
    # the allocators (glibc, ONNX Runtime's arena) would hide the peak.
    image_bytes = sum(a.nbytes for a in det.values())
    results["memory"] = {"n": n, "image_bytes": image_bytes, "incumbent_n": n_w}
    rows = []
    kinds = {"ours (RealBogusModel, torch)": ("torch", n), "ours (RealBogusModel, onnx)": ("onnx", n)}
    if "ours (RBTransiNetTask.run, onnx)" in ours_scorers:
        kinds["ours (RBTransiNetTask.run, onnx)"] = ("task", n)
    # The incumbent's memory is measured on at most 10,000 sources (its run time).
    kinds[f"incumbent ({n_w:,} sources)"] = ("incumbent", n_w)
    for label, (kind, n_kind) in kinds.items():
        if args.quick:
            # Smoke run: in this process (cheaper, but may under-report).
            x_m, y_m = _positions(n_kind, args.image_size, seed=n_kind + 1)
            func = ours_scorers.get(label) or (
                lambda x, y: incumbent_score(
                    det["science"], det["template"], det["difference"], x, y, incumbent_module
                )
            )
            _malloc_trim()
            with _RssSampler() as sampler:
                func(x_m, y_m)
            delta = sampler.peak - sampler.start
        else:
            delta = _memory_in_child(kind, n_kind, args)
        results["memory"][label] = delta
        rows.append((label, f"{delta / 2**20:,.0f}", "yes" if delta < 2**30 else "NO"))
    _print_table(
        f"4. Peak RSS above the images ({image_bytes / 2**20:,.0f} MiB) and a warm model while scoring "
        f"{n:,} sources ({'in this process' if args.quick else 'fresh process each'})",
        ("scorer", "MiB", "< 1 GiB"),
        rows,
    )

    e2e = results["end_to_end"][-1]
    best_label = max(ours_scorers, key=lambda k: e2e[k]["rate"])
    ratio = e2e[best_label]["rate"] / e2e["incumbent"]["rate"]
    cut_rate = max(results["cutouts"][-1]["ours_rate"], results["cutouts"][-1]["ours_batched_rate"])
    results["summary"] = {"best": best_label, "end_to_end_ratio": ratio, "cutout_rate": cut_rate}
    print(
        f"\nSummary at {e2e['n']:,} sources: {best_label} is {ratio:.1f}× the incumbent end to end "
        f"(target ≥ 5×: {'met' if ratio >= 5 else 'NOT met'}); cutouts {cut_rate:,.0f}/s "
        f"(target ≥ 100,000/s: {'met' if cut_rate >= 1e5 else 'NOT met'})."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=float)
        print(f"Results written to {args.json}")
    return results


if __name__ == "__main__":
    main()
