"""Run a function in several local processes joined by a gloo process group, for tests and benchmarks.

`run_data_parallel` starts ``world_size`` processes (``torch.multiprocessing`` spawn), joins them
in a ``torch.distributed`` gloo process group and calls a function in each.  The rendezvous is a
file (``FileStore``), not a TCP server, and gloo is bound to the loopback interface, so nothing
listens on an external address.  It is the CPU stand-in for ``torchrun``: code that trains under
``torch.distributed`` (e.g. `lsst.meas.realbogus.training.train_classifier`) behaves the same.
"""

from __future__ import annotations

__all__ = ["LOOPBACK_INTERFACE", "run_data_parallel"]

import json
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

LOOPBACK_INTERFACE = "lo"
"""Network interface gloo is bound to (``GLOO_SOCKET_IFNAME``) unless the caller set one."""


def _worker(
    rank: int,
    world_size: int,
    directory: str,
    fn: Callable[..., Any],
    args: Sequence[Any],
) -> None:
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", LOOPBACK_INTERFACE)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{Path(directory) / 'rendezvous'}",
        rank=rank,
        world_size=world_size,
    )
    try:
        result = fn(rank, world_size, *args)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    (Path(directory) / f"result_{rank}.json").write_text(json.dumps(result))


def run_data_parallel(
    fn: Callable[..., Any], world_size: int, args: Sequence[Any] = (), *, env: dict[str, str] | None = None
) -> list[Any]:
    """Call ``fn(rank, world_size, *args)`` in ``world_size`` processes of one gloo process group.

    Parameters
    ----------
    fn : callable
        A module-level (picklable) function; it runs with ``torch.distributed`` initialised and
        must return something JSON-serialisable.
    world_size : `int`
        Number of processes.
    args : sequence, optional
        Further (picklable) arguments of ``fn``.
    env : `dict` [`str`, `str`], optional
        Environment variables set in this process (and so inherited by the workers) for the run,
        e.g. ``{"OMP_NUM_THREADS": "1"}``; restored afterwards.

    Returns
    -------
    results : `list`
        What ``fn`` returned in each process, by rank (JSON round-tripped).

    Raises
    ------
    torch.multiprocessing.ProcessRaisedException
        Raised if ``fn`` raised in a worker.
    """
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be positive, got {world_size}.")
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        with tempfile.TemporaryDirectory(prefix="rb_ddp_") as directory:
            mp.spawn(_worker, args=(world_size, directory, fn, tuple(args)), nprocs=world_size, join=True)
            return [
                json.loads((Path(directory) / f"result_{rank}.json").read_text())
                for rank in range(world_size)
            ]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
