"""Compiling the Numba kernels a command needs before it starts: cold-cache notice, no compile in
the progress bar's rate, same code (and so the same bits) cold or warm.

Numba compiles a kernel at its first call and caches the machine code on disk (``cache=True``).
Two things go wrong if a command just calls its kernels:

- The first run spends ~22 s (CPU time) compiling inside step 1, silently, and the progress bar
  takes that for the step rate.
- The process that compiles a kernel does not run the code it caches. Numba links every callee
  (the parallel loop body, helper functions) into the kernel's module and optimises it again, but
  the compiling process evidently runs other code (most likely the callees' separately optimised
  definitions, which it loaded first). With fastmath the two can round differently: a cold run's
  fit differed from a warm one (the SSIM loss gradient, ~1e-9, then 0.04 dB after 1200 steps).

``prepare(name)`` therefore checks the cache index of every (kernel, signature) the command uses
and, if any is missing, compiles them in child processes (two at once, one per core, balanced by
measured compile time) that only fill the cache; this process then loads them from the cache like
any warm run. If a child fails (no writable cache, no ``python`` to start), the kernels compile
here as before (same results as ever, just without the cold = warm guarantee).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

# Compile-time estimate shown to the user (seconds, 2 cores, docs/NOTES.md, "First run").
NOTICE = "imagegs: compiling kernels (first run only, ~{s:.0f} s)"
_PROCESSES = 2  # child processes compiling at once (the machines we target have >= 2 cores)

# Each kernel a command may need: (its measured cold compile CPU seconds, a function returning
# (dispatcher, argument types), or a list of such pairs). The argument types are what the callers
# pass for a float32 model (the fit's dtype); ``test_jit`` checks that a fit compiles nothing after
# ``prepare``. Numba is imported only when these run (``import imagegs`` stays light).
def _types():
    from numba import types as t
    return t, t.float32, t.float64, t.int32, t.int64, lambda dtype, ndim: t.Array(dtype, ndim, "C")


def _forward():
    from .renderer import _forward as k
    t, f32, f64, i32, i64, a = _types()
    return [_region_tiles(), (k._forward_worker, (
        i64, i64, a(i64, 1), i64, a(f32, 2), a(f32, 2), a(f32, 1), a(f32, 2), a(i64, 1), a(i32, 1), i64, i64, i64, f64,
        i64, i64, i64, i64, a(f32, 3), a(i64, 2), a(i32, 1), i64, a(f32, 3), a(i32, 2), a(t.uint8, 1)))]


def _region_tiles():
    from .renderer import _kernels as k
    t, f32, f64, i32, i64, a = _types()
    return k.region_tiles, (a(i64, 1), i64, i64, i64, i64, i64)


def _backward():
    from .renderer import _backward as k
    t, f32, f64, i32, i64, a = _types()
    return [_region_tiles(), (k._backward_worker, (
        i64, i64, a(f32, 2), a(f32, 2), a(f32, 2), a(i64, 1), a(i32, 1), i64, i64, a(f32, 3), a(f32, 3), a(i32, 2),
        a(t.uint8, 1), i64, a(i32, 2), i64, a(f32, 3), a(f32, 3), a(f32, 3)))]


def _bin_tiles():
    from .renderer import _kernels as k
    t, f32, f64, i32, i64, a = _types()
    return k.bin_tiles, (a(f32, 2), a(f32, 1), i64, i64)


def _project_forward():
    from .renderer import _project_cpu as k
    t, f32, f64, i32, i64, a = _types()
    return k._forward, (a(f32, 2), a(f32, 2), a(f32, 1), i64, i64, f64, f64, a(f32, 2), a(f32, 2), a(f32, 1))


def _project_backward():
    from .renderer import _project_cpu as k
    t, f32, f64, i32, i64, a = _types()
    return k._backward, (a(f32, 2), a(f32, 1), a(f32, 2), a(f32, 2), i64, i64, f64, f64, a(f32, 2), a(f32, 2),
                         a(f32, 1))


def _target_stats():
    from . import _ssim_kernels as k
    t, f32, f64, i32, i64, a = _types()
    return k._target_stats_worker, (i64, i64, a(f64, 3), a(f64, 1), a(f64, 3), a(f64, 3))


def _loss_grad():
    from . import _ssim_kernels as k
    t, f32, f64, i32, i64, a = _types()
    im = a(f32, 3)
    return [(k._loss_pass1, (i64, i64, im, im, im, im, a(f32, 1), im, f64, im, a(f64, 1), a(f64, 1))),
            (k._loss_pass2, (i64, i64, im, im, a(f32, 1), im, f64, f64, im, im)),
            (k._ordered_sum, (a(f64, 1),))]


KERNELS: dict[str, tuple[float, Callable]] = {  # CPU seconds: benchmarks/results/compile_time.json
    "forward": (10.8, _forward), "backward": (4.4, _backward), "bin_tiles": (1.5, _bin_tiles),
    "project_forward": (0.6, _project_forward), "project_backward": (0.7, _project_backward),
    "target_stats": (1.8, _target_stats), "loss_grad": (2.6, _loss_grad),
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
        for disp, sig in _specialisations(name):
            if sig in disp.overloads:
                continue
            cache = disp._cache
            key = cache._index_key(sig, disp.targetctx.codegen())
            if key not in cache._cache_file._load_index():
                out.append(name)
                break
    return out


def _specialisations(name: str) -> list:
    """The (dispatcher, argument types) pairs of kernel ``name``."""
    got = KERNELS[name][1]()
    return got if isinstance(got, list) else [got]


def _partition(names: list[str], parts: int) -> list[list[str]]:
    """Split kernels into ``parts`` groups of similar compile time (longest first, greedy)."""
    groups: list[list[str]] = [[] for _ in range(parts)]
    loads = [0.0] * parts
    for name in sorted(names, key=lambda n: -KERNELS[n][0]):
        i = loads.index(min(loads))
        groups[i].append(name)
        loads[i] += KERNELS[name][0]
    return [g for g in groups if g]


# A child imports the kernel modules without running the packages' __init__ (which import torch:
# ~2 s of each child's start, on the first run's critical path): empty package modules stand in.
_STUB = ("import sys, types\n"
         "for name, sub in (('imagegs', ''), ('imagegs.renderer', '/renderer')):\n"
         "    m = types.ModuleType(name); m.__path__ = [sys.argv[1] + sub]; sys.modules[name] = m\n")
_CHILD = _STUB + "from imagegs._jit import _main\nsys.exit(_main(sys.argv[2:]))\n"


def _spawn(names: list[str], *, only_missing: bool = False) -> list[subprocess.Popen]:
    """Child processes (up to ``_PROCESSES``) compiling ``names`` into Numba's cache; with
    ``only_missing`` each first checks the cache and compiles only what is not there."""
    package = str(Path(__file__).resolve().parent)  # this copy of imagegs, in the children too
    flag = ["--only-missing"] if only_missing else []
    return [subprocess.Popen([sys.executable, "-c", _CHILD, package, *flag, *group], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for group in _partition(names, _PROCESSES)]


def _wait(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.communicate()


def _compile_in_children(names: list[str]) -> None:
    """Compile ``names`` into Numba's cache in up to ``_PROCESSES`` child processes at once."""
    _wait(_spawn(names))


# Children started by ``start_early``: (command, processes), until ``prepare`` takes them.
_EARLY: tuple[str, list[subprocess.Popen]] | None = None
# The command-line commands whose work starts with a fit, and the kernels they need.
EARLY_COMMANDS = {"fit": "fit", "encode": "fit", "restore": "fit"}


def start_early(argv: list[str]) -> None:
    """Start the kernels' compilation for the command line ``argv`` in child processes now, before
    this process imports torch and reads its input (~2 s on the first run's critical path).

    The children check Numba's cache first and exit at once when it is warm (~0.5 s of CPU each,
    beside this process's imports); ``prepare`` waits for them. Children that ``prepare`` never
    takes (the command failed before fitting) are stopped when this process exits."""
    global _EARLY
    words = [a for a in argv if not a.startswith("-")]
    command = EARLY_COMMANDS.get(words[0]) if words else None
    if command is None or _EARLY is not None or any(a in ("-h", "--help") for a in argv):
        return
    try:
        _EARLY = (command, _spawn(list(COMMANDS[command]), only_missing=True))
    except OSError:
        return
    import atexit

    atexit.register(_stop_early)


def _stop_early() -> None:
    """Stop children of ``start_early`` that nobody waited for (Numba writes its cache atomically)."""
    global _EARLY
    if _EARLY is not None:
        for p in _EARLY[1]:
            p.kill()
        _wait(_EARLY[1])
        _EARLY = None


def _take_early(command: str) -> list[subprocess.Popen]:
    """The children ``start_early`` started for ``command`` (then forgotten here), or none."""
    global _EARLY
    if _EARLY is None or _EARLY[0] != command:
        return []
    procs, _EARLY = _EARLY[1], None
    return procs


def prepare(command: str, *, notice: bool = False) -> list[str]:
    """Make sure the kernels of ``command`` (a ``COMMANDS`` key) are compiled before it starts.

    With a warm cache this reads the cache index and loads the kernels (what their first calls
    would do). Otherwise prints ``NOTICE`` to stderr if ``notice``, fills the cache from child
    processes first (those of ``start_early`` if it started them), and compiles here whatever is
    still missing. Returns the kernels that were missing (for tests)."""
    names = COMMANDS[command]
    early = _take_early(command)
    try:
        todo = missing(names)
    except Exception:  # an unexpected Numba cache layout: compile lazily, as Numba does
        _wait(early)
        return []
    if todo and notice:
        print(NOTICE.format(s=_estimate(todo)), file=sys.stderr, flush=True)
    if early or not todo:
        _wait(early)
    else:
        try:
            _compile_in_children(todo)
        except OSError:
            pass  # compiled below, in this process
    for name in names:
        _load(name)
    return todo


def _load(name: str) -> None:
    """Load kernel ``name`` from the cache into this process (or compile it, if not cached)."""
    for disp, sig in _specialisations(name):
        disp.compile(sig)


def _estimate(names: list[str]) -> float:
    """Wall seconds to compile ``names`` in ``_PROCESSES`` processes (plus their start-up)."""
    return max(sum(KERNELS[n][0] for n in g) for g in _partition(names, _PROCESSES)) + 2.0


def _main(args: list[str]) -> int:
    """Child process: compile the named kernels into the cache (``--only-missing`` first: those
    not in it)."""
    names = [a for a in args if a != "--only-missing"]
    if len(names) < len(args):
        names = missing(names)
    for name in names:
        _load(name)
    return 0
