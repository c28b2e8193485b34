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


_AUTO = "ours load_model()"
_TORCH = "ours load_model(backend='torch')"
_TASK = "ours RBTransiNetTask.run (modelSource='package')"


def _cpu_model() -> str:
    """Return the CPU model name from ``lscpu`` (or ``/proc/cpuinfo``, or `platform.processor`)."""
    import subprocess

    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=10).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _shipped_info() -> dict[str, Any]:
    """Describe the shipped default model package (file, checksum, version, architecture)."""
    import dataclasses
    import hashlib

    from lsst.meas.realbogus.model_package import read_model_package
    from lsst.meas.realbogus.scoring import DEFAULT_MODEL_PATH

    data = DEFAULT_MODEL_PATH.read_bytes()
    meta = read_model_package(data).metadata
    try:
        shown = str(DEFAULT_MODEL_PATH.relative_to(os.getcwd()))
    except ValueError:
        shown = str(DEFAULT_MODEL_PATH)
    return {
        "file": shown,
        "file_sha256": hashlib.sha256(data).hexdigest(),
        "file_bytes": len(data),
        "file_mtime_utc": time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(DEFAULT_MODEL_PATH.stat().st_mtime)
        ),
        "version": meta.version,
        "created": meta.created,
        "architecture": meta.architecture,
        "architecture_kwargs": dict(meta.architecture_kwargs),
        "channels": list(meta.channels),
        "input_channels": meta.input_channels,
        "cutout_size": meta.cutout_size,
        "normalization": dataclasses.asdict(meta.normalization),
        "weights_sha256": meta.weights_sha256,
    }


def _shipped_models(threads: int, torch_too: bool = True) -> dict[str, Any]:
    """Load the shipped default model as users do: ``load_model()``, ``load_model(backend="torch")``."""
    from lsst.meas.realbogus.scoring import load_model

    models = {_AUTO: load_model(threads=threads)}
    if torch_too:
        models[_TORCH] = load_model(threads=threads, backend="torch")
    return models


def _task_scorer(det: dict[str, Any], channels: Sequence[str]) -> Callable[[Any, Any], Any] | str:
    """Return ``f(x, y)`` running ``RBTransiNetTask.run`` (``modelSource="package"``), or why it cannot.

    The task loads the shipped model itself (`~lsst.meas.realbogus.scoring.load_model_cached`,
    on the first call: the warm-up).
    """
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
        config.modelChannels = list(channels)
        task = RBTransiNetTask(config=config)
    except Exception as err:  # noqa: BLE001 - report and go on without the task row.
        return f"could not set up RBTransiNetTask ({type(err).__name__}: {err})"

    def run(x: Any, y: Any) -> Any:
        catalog = Table({"id": np.arange(len(x), dtype=np.int64), "x": x, "y": y})
        return task.run(catalog, difference, science=science, template=template)

    return run


def _breakdown(model: Any, det: dict[str, Any], x: Any, y: Any, timer: _Timer) -> dict[str, float]:
    """Time the stages of our scoring separately on the same sources (at the model's cutout size)."""
    import numpy as np
    from lsst.meas.realbogus.cutouts import extract_cutouts
    from lsst.meas.realbogus.normalization import normalize_stamps_with_scale

    size = model.cutout_size
    planes = {c: det[c] for c in model.channels}
    spec = model.metadata.normalization
    cut = extract_cutouts(planes, x, y, size, mask=det["mask"])
    var_stamps = None
    parts: dict[str, float] = {}
    # Warm-ups keep first-touch page faults of fresh allocations out of the timings.
    parts["cutouts"] = timer.measure(
        lambda: extract_cutouts(planes, x, y, size, mask=det["mask"]), warmup=True
    )["seconds"]
    if spec.use_variance:  # score() only cuts the variance when the package's normalisation uses it.
        var_stamps = extract_cutouts({"variance": det["variance"]}, x, y, size).stamps[:, 0]
        parts["variance_cutouts"] = timer.measure(
            lambda: extract_cutouts({"variance": det["variance"]}, x, y, size), warmup=True
        )["seconds"]
    norm, _ = normalize_stamps_with_scale(cut.stamps, model.channels, spec, var_stamps)
    norm = np.ascontiguousarray(norm)
    parts["normalization"] = timer.measure(
        lambda: normalize_stamps_with_scale(cut.stamps, model.channels, spec, var_stamps), warmup=True
    )["seconds"]
    parts["model"] = timer.measure(lambda: model.predict_normalized(norm), warmup=True)["seconds"]
    return parts


def _model_scorer(model: Any, det: dict[str, Any]) -> Callable[[Any, Any], Any]:
    """Return ``f(x, y)`` calling ``model.score`` on the detector as a user would."""
    return lambda x, y: model.score(
        det["science"], det["template"], det["difference"], x, y, variance=det["variance"], mask=det["mask"]
    )


def _scorer_for(kind: str, det: dict[str, Any], threads: int) -> Callable[[Any, Any], Any]:
    """Return ``f(x, y)`` scoring sources: ``auto``, ``torch``, ``task`` or ``incumbent``."""
    if kind == "incumbent":
        import torch
        from lsst.meas.realbogus.architectures import build_architecture
        from lsst.meas.realbogus.incumbent import incumbent_score

        torch.manual_seed(0)
        module = build_architecture("incumbent_cnn").eval()
        return lambda x, y: incumbent_score(det["science"], det["template"], det["difference"], x, y, module)
    if kind == "task":
        from lsst.meas.realbogus.scoring import load_model_cached

        task = _task_scorer(det, load_model_cached().channels)
        if isinstance(task, str):
            raise RuntimeError(task)
        return task
    if kind == "torch":
        from lsst.meas.realbogus.scoring import load_model

        return _model_scorer(load_model(threads=threads, backend="torch"), det)
    (model,) = _shipped_models(threads, torch_too=False).values()
    return _model_scorer(model, det)


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


def _memory_kind(label: str) -> str:
    return {_AUTO: "auto", _TORCH: "torch", _TASK: "task"}[label]


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
    from lsst.meas.realbogus.model_package import read_model_package
    from lsst.meas.realbogus.scoring import DEFAULT_MODEL_PATH

    timer = _Timer(args.threads, args.repeats, args.max_seconds)
    shipped = _shipped_info()
    size = shipped["cutout_size"]
    results: dict[str, Any] = {
        "config": {
            "threads": args.threads,
            "quick": args.quick,
            "image_size": args.image_size,
            "counts": list(args.counts),
            "repeats": args.repeats,
            "max_seconds": args.max_seconds,
            "timing": "process CPU time" if timer.use_cpu else "wall time",
            "stamp_size": size,
            "incumbent_stamp_size": _SIZE,
            "model_file": shipped["file"],
            "model_version": shipped["version"],
            "model_file_sha256": shipped["file_sha256"],
            "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        "machine": {
            "cpu_model": _cpu_model(),
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "numpy": np.__version__,
        },
        "model": shipped,
    }
    try:
        import onnxruntime

        results["machine"]["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    kwargs = ", ".join(f"{k}={v}" for k, v in shipped["architecture_kwargs"].items())
    print(
        f"meas_realbogus speed benchmark: threads={args.threads}, "
        f"detector {args.image_size}×{args.image_size}, "
        f"best of {args.repeats} ({results['config']['timing']})\n"
        f"Machine: {results['machine']['cpu_model']} ({os.cpu_count()} logical CPUs), {platform.platform()}\n"
        f"Shipped model: {shipped['file']} version {shipped['version']!r} (created {shipped['created']}, "
        f"sha256 {shipped['file_sha256'][:12]}…): {shipped['architecture']}({kwargs}), "
        f"{size}×{size} stamps of {'+'.join(shipped['channels'])}, "
        f"{shipped['normalization']['method']} normalisation"
        f"{' with variance' if shipped['normalization']['use_variance'] else ', no variance'}\n"
        f"Incumbent: per-source loop, {_SIZE}×{_SIZE} stamps, incumbent_cnn (random weights), batches of 64"
    )

    peak = _sgemm_peak(timer)
    results["sgemm_gflops"] = peak
    print(f"Estimated peak: {peak:.1f} GFLOP/s fp32 ({args.threads} thread(s), 1024³ sgemm)")

    det = _make_detector(args.image_size)
    planes3 = {c: det[c] for c in ("science", "template", "difference")}

    # 1. Cutouts ------------------------------------------------------------
    # At the shipped model's size ("cutouts", what score() does) and at the incumbent's 51.
    sizes = [size] + ([_SIZE] if size != _SIZE else [])
    rows = []
    for s in sizes:
        key = "cutouts" if s == size else f"cutouts_{s}"
        results[key] = []
        for n in args.counts:
            x, y = _positions(n, args.image_size, seed=n)
            ours = timer.measure(lambda: extract_cutouts(planes3, x, y, s))
            # The batched path used by RealBogusModel.score (bounded memory).
            batched = timer.measure(lambda: deque(iter_cutout_batches(planes3, x, y, s, 4096), maxlen=0))
            inc = timer.measure(
                lambda: incumbent_cutouts(det["science"], det["template"], det["difference"], x, y, s)
            )
            r_ours, r_inc = n / ours["seconds"], n / inc["seconds"]
            r_batched = n / batched["seconds"]
            results[key].append(
                {
                    "n": n,
                    "size": s,
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
                    f"{s}×{s}",
                    f"{n:,}",
                    _fmt_rate(r_ours),
                    _fmt_rate(r_batched),
                    _fmt_rate(r_inc),
                    f"{max(r_ours, r_batched) / r_inc:.1f}×",
                )
            )
    _print_table(
        f"1. Cutout extraction, 3 planes, {' and '.join(f'{s}×{s}' for s in sizes)} (sources/s; "
        f"{size}: the shipped model)",
        (
            "stamp",
            "sources",
            "ours extract_cutouts",
            "ours batches of 4096",
            "incumbent loop",
            "ours/incumbent",
        ),
        rows,
    )

    # 2. Model throughput --------------------------------------------------
    n_model = 256 if args.quick else 2048
    all_backends = list(_BACKENDS) + ([("compile", {"channels_last": True})] if args.compile else [])
    # Other architectures (random weights, 51×51) on the two backends score() uses, to keep the run short.
    few_backends = [("torch", {"channels_last": True}), ("onnx", {})]
    torch.manual_seed(0)
    archs: list[tuple[str, str, Any, int, int, list[tuple[str, dict[str, Any]]]]] = [
        (
            f"{shipped['architecture']} shipped {shipped['version']}",
            shipped["architecture"],
            read_model_package(DEFAULT_MODEL_PATH).build_module(),
            shipped["input_channels"],
            size,
            all_backends,
        ),
        ("incumbent_cnn", "incumbent_cnn", build_architecture("incumbent_cnn"), 3, _SIZE, all_backends),
    ]
    for arch, c in _ARCHS:
        if arch != "incumbent_cnn":
            archs.append((f"{arch} default", arch, build_architecture(arch), c, _SIZE, few_backends))
    rows = []
    results["models"] = []
    rng = np.random.default_rng(0)
    for label, arch, module, c, s, backends in archs:
        module = module.eval()
        flops = flops_per_source(module, c, s)
        xs = rng.standard_normal((n_model, c, s, s), dtype=np.float32)
        for name, kw in backends:
            blabel = name + ("+channels_last" if kw.get("channels_last") else "")
            backend = make_backend(module, name, in_channels=c, size=s, threads=args.threads, **kw)
            t = timer.measure(lambda: backend.predict_logits(xs), warmup=True)
            rate = n_model / t["seconds"]
            gflops = rate * flops / 1e9
            results["models"].append(
                {
                    "architecture": f"{label} {s}×{s}",
                    "registry_name": arch,
                    "shipped": label.startswith(f"{shipped['architecture']} shipped"),
                    "size": s,
                    "in_channels": c,
                    "backend": blabel,
                    "flops_per_source": flops,
                    "rate": rate,
                    "gflops": gflops,
                    "fraction_of_peak": gflops / peak,
                    **t,
                }
            )
            rows.append(
                (
                    label,
                    f"{c}×{s}×{s}",
                    blabel,
                    f"{flops / 1e6:.2f}",
                    _fmt_rate(rate),
                    f"{gflops:.1f}",
                    f"{100 * gflops / peak:.0f}%",
                )
            )
    _print_table(
        f"2. Model throughput, {n_model} stamps (sources/s)",
        ("model", "input", "backend", "MFLOP/src", "sources/s", "GFLOP/s", "of peak"),
        rows,
    )

    # 3. End to end --------------------------------------------------------
    ours_models = _shipped_models(args.threads)
    results["model"]["auto_backend"] = ours_models[_AUTO].backend_name
    torch.manual_seed(0)
    incumbent_module = build_architecture("incumbent_cnn").eval()
    ours_scorers = {label: _model_scorer(model, det) for label, model in ours_models.items()}
    task = _task_scorer(det, ours_models[_AUTO].channels)
    if isinstance(task, str):
        print(f"\nNote: end to end without RBTransiNetTask.run: {task}")
    else:
        ours_scorers[_TASK] = task
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
            entry[label]["ratio"] = rate / inc_rate
            row += [_fmt_rate(rate), f"{rate / inc_rate:.1f}×"]
        entry["incumbent"]["rate"] = inc_rate
        row += [_fmt_rate(inc_rate), f"{entry['incumbent']['seconds']:.2f}"]
        results["end_to_end"].append(entry)
        rows.append(row)
    auto = ours_models[_AUTO].backend_name
    task_backend = "?"
    if _TASK in ours_scorers:
        from lsst.meas.realbogus.scoring import load_model_cached

        # The model RBTransiNetTask.load_model used (the process-wide cache, filled by the runs above).
        task_backend = load_model_cached().backend_name
        results["model"]["task_backend"] = task_backend
    short = {
        _AUTO: f"load_model() [{auto}]",
        _TORCH: "load_model(torch)",
        _TASK: f"task package [{task_backend}]",
    }
    header = ["sources"]
    for label in ours_scorers:
        header += [f"{short[label]} /s", "vs inc."]
    header += ["incumbent /s", "incumbent s"]
    _print_table(
        f"3. End to end per detector, shipped model {shipped['version']!r} ({size}×{size}) vs incumbent "
        f"({_SIZE}×{_SIZE}): cutouts + normalisation + model (sources/s)",
        header,
        rows,
    )

    # Breakdown of our time (bounded to 10,000 sources to keep the run short).
    n = max(args.counts)
    n_w = min(n, 10_000)
    x_w, y_w = _positions(n_w, args.image_size, seed=n_w + 1)
    rows = []
    results["breakdown"] = {"n": n_w}
    stages: list[str] = []
    parts_by_label = {}
    for label, model in ours_models.items():
        parts_by_label[label] = _breakdown(model, det, x_w, y_w, timer)
        stages += [s for s in parts_by_label[label] if s not in stages]
    for label, parts in parts_by_label.items():
        total = sum(parts.values())
        results["breakdown"][label] = parts
        rows.append(
            [short[label]]
            + [
                f"{1e6 * parts[s] / n_w:.1f} ({100 * parts[s] / total:.0f}%)" if s in parts else "—"
                for s in stages
            ]
            + [f"{1e6 * total / n_w:.1f}"]
        )
    _print_table(
        f"   Where our time goes at {n_w:,} sources (µs per source, share; {size}×{size}, "
        f"{'with' if shipped['normalization']['use_variance'] else 'no'} variance cutouts)",
        ["scorer"] + [s.replace("_", " ") for s in stages] + ["sum"],
        rows,
    )

    # 4. Memory ------------------------------------------------------------
    # Each scorer runs in a fresh process: in this one, freed memory kept by
    # the allocators (glibc, ONNX Runtime's arena) would hide the peak.
    image_bytes = sum(a.nbytes for a in det.values())
    results["memory"] = {"n": n, "image_bytes": image_bytes, "incumbent_n": n_w}
    rows = []
    kinds = {label: (_memory_kind(label), n) for label in ours_scorers}
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
    ratios = {label: e2e[label]["ratio"] for label in ours_scorers}
    best_label = max(ratios, key=lambda k: ratios[k])
    cut_rate = max(results["cutouts"][-1]["ours_rate"], results["cutouts"][-1]["ours_batched_rate"])
    mem_ok = all(results["memory"][label] < 2**30 for label in ours_scorers)
    results["summary"] = {
        "n": e2e["n"],
        "model_version": shipped["version"],
        "best": best_label,
        "end_to_end_ratio": ratios[best_label],
        **{f"ratio {label}": r for label, r in ratios.items()},
        "cutout_rate": cut_rate,
        "memory_below_1GiB": mem_ok,
    }
    print(
        f"\nSummary at {e2e['n']:,} sources, shipped model {shipped['version']!r} "
        "vs the incumbent end to end: "
        + "; ".join(f"{short[label]} {r:.1f}×" for label, r in ratios.items())
        + f" (target ≥ 5×: {'met' if min(ratios.values()) >= 5 else 'NOT met by all'}); "
        f"cutouts at {size}×{size} {cut_rate:,.0f}/s "
        f"(target ≥ 100,000/s: {'met' if cut_rate >= 1e5 else 'NOT met'}); "
        f"memory < 1 GiB: {'yes' if mem_ok else 'NO'}."
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=float)
            f.write("\n")
        print(f"Results written to {args.json}")
    return results


if __name__ == "__main__":
    main()
