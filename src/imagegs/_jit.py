"""Compiling the Numba kernels a command needs before it starts: cold-cache notice, no compile in
the progress bar's rate, same code (and so the same bits) cold or warm.

Numba compiles a kernel at its first call and caches the machine code on disk (``cache=True``).
Two things go wrong if a command just calls its kernels:

- The first run spends ~40 s (CPU time) compiling inside step 1, silently, and the progress bar
  takes that for the step rate.
- The process that compiles a kernel does not run the code it caches. Numba links every callee
  (the parallel loop body, helper functions) into the kernel's module and optimises it again, but
  the copy that runs in the compiling process binds to the callee's separately optimised
  definition, loaded first. With fastmath the two copies can round differently, so a cold run's
  fit differed from a warm one (the SSIM loss gradient, ~1e-9, then 0.04 dB after 1200 steps).

``prepare(name)`` therefore checks the cache index of every (kernel, signature) the command uses
and, if any is missing, compiles them in child processes (two at once, one per core, balanced by
measured compile time) that only fill the cache; this process then loads them from the cache like
any warm run. If a child fails (no writable cache, no ``python`` to start), the kernels compile
here as before (same results as ever, just without the cold = warm guarantee).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from numba import types

# Compile-time estimate shown to the user (seconds, 2 cores, docs/notes/compile.md).
NOTICE = "imagegs: compiling kernels (first run only, ~{s:.0f} s)"
_PROCESSES = 2  # child processes compiling at once

_f32, _f64, _i32, _i64 = types.float32, types.float64, types.int32, types.int64


def _a(dtype, ndim: int) -> types.Array:
    return types.Array(dtype, ndim, "C")


# Each kernel a command may need: (name, its measured cold compile CPU seconds, a function
# returning (dispatcher, argument types)). The argument types are what the callers pass for a
# float32 model (the fit's dtype); ``test_jit`` checks a fit compiles nothing after ``prepare``.
def _forward():
    from .renderer import _forward as k
    return k.forward, (_a(_f32, 2), _a(_f32, 2), _a(_f32, 1), _a(_f32, 2), _a(_i64, 1), _a(_i32, 1), _i64, _i64,
                       _i64, _f64, _i64, _i64, _i64, _i64, _a(_f32, 3), _a(_i64, 2), _a(_i32, 1), _i64, _i64,
                       _a(_f32, 3), _a(_i32, 2), _a(types.uint8, 1))


def _backward():
    from .renderer import _backward as k
    return k.backward, (_a(_f32, 2), _a(_f32, 2), _a(_f32, 2), _a(_i64, 1), _a(_i32, 1), _i64, _i64, _a(_f32, 3),
                        _a(_f32, 3), _a(_i32, 2), _a(types.uint8, 1), _i64, _i64, _a(_i32, 2))


def _bin_tiles():
    from .renderer import _kernels as k
    return k.bin_tiles, (_a(_f32, 2), _a(_f32, 1), _i64, _i64)


def _project_forward():
    from .renderer import _project_cpu as k
    return k._forward, (_a(_f32, 2), _a(_f32, 2), _a(_f32, 1), _i64, _i64, _f64, _f64, _a(_f32, 2), _a(_f32, 2),
                        _a(_f32, 1))


def _project_backward():
    from .renderer import _project_cpu as k
    return k._backward, (_a(_f32, 2), _a(_f32, 1), _a(_f32, 2), _a(_f32, 2), _i64, _i64, _f64, _f64,
                         _a(_f32, 2), _a(_f32, 2), _a(_f32, 1))


def _target_stats():
    from . import _ssim_kernels as k
    return k.target_stats, (_a(_f64, 3), _a(_f64, 1))


def _loss_grad():
    from . import _ssim_kernels as k
    return k.loss_grad, (_a(_f32, 3), _a(_f32, 3), _a(_f32, 3), _a(_f32, 3), _a(_f32, 1), _f64, _f64,
                         types.boolean, _a(_f32, 3), _a(_f32, 3))


KERNELS: dict[str, tuple[float, Callable]] = {
    "forward": (16.0, _forward), "backward": (11.0, _backward), "bin_tiles": (1.0, _bin_tiles),
    "project_forward": (0.6, _project_forward), "project_backward": (0.5, _project_backward),
    "target_stats": (3.0, _target_stats), "loss_grad": (7.0, _loss_grad),
}
LOSS = ("target_stats", "loss_grad")
RENDER = ("bin_tiles", "forward")
COMMANDS: dict[str, tuple[str, ...]] = {
    "fit": RENDER + ("backward", "project_forward", "project_backward") + LOSS,
    "fit-reference": LOSS,  # a fit on the reference renderer still uses the loss kernels
    "render": RENDER,
}


def missing(names) -> list[str]:
    """The kernels among ``names`` whose float32 specialisation is not in Numba's cache (nor
    compiled in this process). Raises if Numba's cache layout is not the one this reads."""
    out = []
    for name in names:
        disp, sig = KERNELS[name][1]()
        if sig in disp.overloads:
            continue
        cache = disp._cache
        key = cache._index_key(sig, disp.targetctx.codegen())
        if key not in cache._cache_file._load_index():
            out.append(name)
    return out


def _partition(names: list[str], parts: int) -> list[list[str]]:
    """Split kernels into ``parts`` groups of similar compile time (longest first, greedy)."""
    groups: list[list[str]] = [[] for _ in range(parts)]
    loads = [0.0] * parts
    for name in sorted(names, key=lambda n: -KERNELS[n][0]):
        i = loads.index(min(loads))
        groups[i].append(name)
        loads[i] += KERNELS[name][0]
    return [g for g in groups if g]


_CHILD = "import sys; from imagegs._jit import _main; sys.exit(_main(sys.argv[1:]))"


def _compile_in_children(names: list[str]) -> None:
    """Compile ``names`` into Numba's cache in up to ``_PROCESSES`` child processes at once."""
    env = dict(os.environ)
    src = str(Path(__file__).resolve().parent.parent)  # import this copy of imagegs in the children
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    procs = [subprocess.Popen([sys.executable, "-c", _CHILD, *group], env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for group in _partition(names, _PROCESSES)]
    for p in procs:
        p.communicate()


def prepare(command: str, *, notice: bool = False) -> list[str]:
    """Make sure the kernels of ``command`` (a ``COMMANDS`` key) are compiled before it starts.

    With a warm cache this reads the cache index and loads the kernels (what their first calls
    would do). Otherwise prints ``NOTICE`` to stderr if ``notice``, fills the cache from child
    processes first, and compiles here whatever is still missing. Returns the kernels that were
    missing (for tests)."""
    names = COMMANDS[command]
    try:
        todo = missing(names)
    except Exception:  # an unexpected Numba cache layout: compile lazily, as Numba does
        return []
    if todo:
        if notice:
            print(NOTICE.format(s=_estimate(todo)), file=sys.stderr, flush=True)
        try:
            _compile_in_children(todo)
        except OSError:
            pass  # compiled below, in this process
    for name in names:
        _load(name)
    return todo


def _load(name: str) -> None:
    """Load kernel ``name`` from the cache into this process (or compile it, if not cached)."""
    disp, sig = KERNELS[name][1]()
    disp.compile(sig)


def _estimate(names: list[str]) -> float:
    """Wall seconds to compile ``names`` in ``_PROCESSES`` processes (plus their start-up)."""
    return max(sum(KERNELS[n][0] for n in g) for g in _partition(names, _PROCESSES)) + 5.0


def _main(names: list[str]) -> int:
    """Child process: compile the named kernels into the cache."""
    for name in names:
        _load(name)
    return 0


