"""Running a Numba kernel's workers on threads: the kernels' one parallel loop.

Each parallel kernel (the forward and backward rasterisers, the loss) is a ``nogil`` worker
``worker(wk, nworkers, ...)`` that takes its share of the tasks (wk, wk + nworkers, ...) and writes
disjoint outputs, so results do not depend on the threads' timing. Threads instead of a Numba
``prange`` loop: Numba's parallel-loop passes were ~40 % of the kernels' compile time (a first
run's wait) for the same run time (docs/NOTES.md, "First run").
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

_POOL: ThreadPoolExecutor | None = None
_POOL_PID = 0  # the process that made _POOL (a forked child must make its own: the threads stay behind)
_POOL_LOCK = threading.Lock()


def run_workers(worker, nworkers: int, *args) -> None:
    """``worker(wk, nworkers, *args)`` for wk = 0 .. nworkers - 1, at once: worker 0 in the calling
    thread, the others on a pool of threads kept for the process. ``wk`` and ``nworkers`` are
    passed as int64 (one compiled specialisation). Exceptions of any worker propagate."""
    global _POOL, _POOL_PID
    nworkers = max(int(nworkers), 1)
    n = np.int64(nworkers)
    if nworkers == 1:
        worker(np.int64(0), n, *args)
        return
    with _POOL_LOCK:
        if _POOL is None or _POOL_PID != os.getpid() or _POOL._max_workers < nworkers - 1:
            _POOL = ThreadPoolExecutor(max_workers=nworkers - 1, thread_name_prefix="imagegs-kernel")
            _POOL_PID = os.getpid()
        pool = _POOL
    futures = [pool.submit(worker, np.int64(wk), n, *args) for wk in range(1, nworkers)]
    try:
        worker(np.int64(0), n, *args)
    finally:
        for f in futures:
            f.result()


@contextmanager
def torch_serial(active: bool = True) -> Iterator[None]:
    """torch's intra-op threads at 1 inside (restored after), if ``active``: for loops that
    alternate torch operations with these kernels (a fit's steps, the colour polish). torch's
    OpenMP threads spin for a while after each parallel operation and take the cores the kernels'
    threads need (a 10k-Gaussian 512^2 fit step on 2 cores: 29 ms with torch on 2 threads, 23 ms
    on 1); the torch side of such a loop is light."""
    import torch

    n = torch.get_num_threads()
    if not active or n == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)
