"""Kernel compilation before a command starts (``imagegs._jit``): the cold-cache notice, and a cold
process fitting exactly what a warm one does."""

import os
import subprocess
import sys

import pytest

from imagegs import _jit

# A short fit (small image, few steps, every kernel of the fit) that prints a hash of the model and
# the imagegs kernels this process compiled itself (none expected: ``prepare`` had them cached).
_FIT = """
import hashlib, numpy as np, torch
from numba.core import event
rec = event.RecordingListener(); event.register("numba:compile", rec)
from imagegs import fit
img = torch.from_numpy(np.random.default_rng(0).random((3, 40, 48), dtype=np.float32))
g = fit(img, num_gaussians=120, max_steps=12, add_steps=(4, 8), eval_every=4, progress=True)
own = sorted({e.data["dispatcher"].py_func.__qualname__ for _, e in rec.buffer
              if e.is_start and e.data["dispatcher"].py_func.__module__.startswith("imagegs")})
print(hashlib.sha256(b"".join(t.numpy().tobytes() for t in (g.xy, g.scale, g.rot, g.color))).hexdigest(), own)
"""


def _run_fit(cache_dir) -> tuple[str, str]:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    r = subprocess.run([sys.executable, "-c", _FIT], capture_output=True, text=True, env=env, check=True)
    return r.stdout.strip(), r.stderr


def test_cold_and_warm_processes_fit_the_same_model(tmp_path):
    # the cold process compiles (in child processes) and must then run the very code a warm one loads
    notice = _jit.NOTICE.split("(")[0]
    cold, cold_err = _run_fit(tmp_path)
    assert cold.endswith("[]"), f"compiled in the fitting process: {cold}"
    assert notice in cold_err
    assert cold_err.index(notice) < cold_err.index("fit:")  # before the progress bar starts
    warm, warm_err = _run_fit(tmp_path)
    assert notice not in warm_err and "fit:" in warm_err
    assert cold == warm


@pytest.fixture
def fake_cache(monkeypatch):
    """``prepare`` against a fake cache: kernels listed in ``cold`` are missing until compiled."""
    cold: set[str] = set()
    compiled: list[list[str]] = []
    loaded: list[str] = []
    monkeypatch.setattr(_jit, "missing", lambda names: [n for n in names if n in cold])
    monkeypatch.setattr(_jit, "_load", loaded.append)

    def children(names):
        compiled.append(list(names))
        cold.difference_update(names)
    monkeypatch.setattr(_jit, "_compile_in_children", children)
    return cold, compiled, loaded


@pytest.mark.parametrize("notice", [True, False])
def test_notice_only_when_cold_and_asked(fake_cache, capsys, notice):
    cold, compiled, loaded = fake_cache
    assert _jit.prepare("fit", notice=notice) == []  # warm: nothing said, kernels loaded before the bar
    assert capsys.readouterr().err == "" and compiled == [] and loaded == list(_jit.COMMANDS["fit"])
    cold.update({"forward", "loss_grad"})
    assert _jit.prepare("fit", notice=notice) == ["forward", "loss_grad"]
    err = capsys.readouterr().err
    assert ("compiling kernels (first run only" in err) == notice
    assert compiled == [["forward", "loss_grad"]]


def test_compile_groups_are_balanced():
    groups = _jit._partition(list(_jit.COMMANDS["fit"]), 2)
    cost = [sum(_jit.KERNELS[n][0] for n in g) for g in groups]
    assert sorted(n for g in groups for n in g) == sorted(_jit.COMMANDS["fit"])
    assert max(cost) <= 0.6 * sum(cost)


def test_every_command_names_known_kernels():
    for names in _jit.COMMANDS.values():
        assert set(names) <= set(_jit.KERNELS)


def test_compiling_children_do_not_import_torch():
    """The children that fill the cache import the kernel modules without the packages' __init__
    (torch's import is ~2 s of each child's start, on the first run's critical path)."""
    from pathlib import Path

    modules = ", ".join(sorted({spec[0].py_func.__module__ for name in _jit.KERNELS
                                for spec in _jit._specialisations(name)}))
    code = (_jit._STUB + f"import {modules}\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:1])\n")
    r = subprocess.run([sys.executable, "-c", code, str(Path(_jit.__file__).parent)], capture_output=True,
                       text=True, check=True)
    assert r.stdout.strip() == "[]"


class _FakeChild:
    def __init__(self):
        self.killed = self.waited = False

    def kill(self):
        self.killed = True

    def communicate(self):
        self.waited = True


def test_early_start_only_for_fitting_commands(monkeypatch):
    """The command line starts the compiling children at once for commands that fit (not for
    others, nor for --help); prepare waits for them instead of starting its own; children nobody
    took are stopped at exit."""
    spawned = []
    monkeypatch.setattr(_jit, "_spawn", lambda names, only_missing=False: spawned.append(
        (list(names), only_missing)) or [_FakeChild()])
    monkeypatch.setattr(_jit, "_EARLY", None)
    for argv in (["info", "m.gsm"], ["render", "m.gsm", "-o", "a.png"], ["fit", "--help"], []):
        _jit.start_early(argv)
        assert spawned == [] and _jit._EARLY is None
    _jit.start_early(["--quiet", "encode", "a.png", "-o", "a.igs"])
    assert spawned == [(list(_jit.COMMANDS["fit"]), True)]
    child = _jit._EARLY[1][0]
    monkeypatch.setattr(_jit, "missing", lambda names: list(names))  # cold
    monkeypatch.setattr(_jit, "_load", lambda name: None)
    monkeypatch.setattr(_jit, "_compile_in_children", lambda names: pytest.fail("early children not used"))
    assert _jit.prepare("fit") == list(_jit.COMMANDS["fit"])
    assert child.waited and _jit._EARLY is None
    _jit.start_early(["fit", "a.png"])
    untaken = _jit._EARLY[1][0]
    _jit._stop_early()
    assert untaken.killed and untaken.waited and _jit._EARLY is None
