"""First-run cost: Numba compile time per kernel, and the quick start's first command on a cold cache.

    python benchmarks/compile_time.py [--repeats 1] [--no-command] [--json benchmarks/results/compile_time.json]

Every run points NUMBA_CACHE_DIR at a new empty folder (so neither the user's cache nor the
``__pycache__`` next to the sources is reused; Numba writes only there when it is set).
- kernels: each kernel of ``imagegs._jit.KERNELS`` compiled alone in a fresh process (wall and
  CPU seconds of ``dispatcher.compile``; helpers it calls are compiled inside it);
- command: ``imagegs fit astronaut -o M --render P`` then ``imagegs render M -o P2 --scale 2``
  (README's quick start, install excluded), wall and user+sys of each, cold, then warm once.
Medians over ``--repeats``. The machine is shared: say so next to the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ONE = ("import sys, time; from imagegs import _jit; _jit._specialisations(sys.argv[1]); "
        "w, c = time.perf_counter(), time.process_time(); _jit._load(sys.argv[1]); "
        "print(time.perf_counter() - w, time.process_time() - c)")


def _run(cmd: list[str], env: dict) -> tuple[float, float]:
    """(wall, user + sys of the children) seconds of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def kernel_times(env: dict) -> dict:
    from imagegs import _jit

    out = {}
    for name in _jit.KERNELS:
        with tempfile.TemporaryDirectory() as cache:
            r = subprocess.run([sys.executable, "-c", _ONE, name], env=dict(env, NUMBA_CACHE_DIR=cache),
                               check=True, capture_output=True, text=True)
            wall, cpu = (float(v) for v in r.stdout.split())
        out[name] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
        print(f"{name:18s} wall {wall:6.1f} s  cpu {cpu:6.1f} s", flush=True)
    return out


def command_times(env: dict) -> dict:
    imagegs = [sys.executable, "-m", "imagegs"]
    with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as cache:
        env = dict(env, NUMBA_CACHE_DIR=cache)
        m, p, p2 = (str(Path(tmp) / n) for n in ("a.gsm", "a.png", "a2.png"))
        rec = {}
        for state in ("cold", "warm"):
            fw, fc = _run([*imagegs, "fit", "astronaut", "-o", m, "--render", p, "--quiet"], env)
            rw, rc = _run([*imagegs, "render", m, "-o", p2, "--scale", "2"], env)
            rec[state] = {"fit_wall_s": round(fw, 1), "fit_cpu_s": round(fc, 1), "render_wall_s": round(rw, 1),
                          "render_cpu_s": round(rc, 1)}
            print(f"{state}: fit wall {fw:.1f} s (user+sys {fc:.1f} s), render 2x wall {rw:.1f} s "
                  f"(user+sys {rc:.1f} s)", flush=True)
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--no-command", action="store_true", help="kernels only")
    ap.add_argument("--no-kernels", action="store_true", help="the command only (e.g. for older code)")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args(argv)
    env = dict(os.environ)
    record: dict = {"load_before": os.getloadavg()[0], "cpus": os.cpu_count()}
    if not a.no_kernels:
        runs = [kernel_times(env) for _ in range(a.repeats)]
        kernels = {k: {f: statistics.median(r[k][f] for r in runs) for f in runs[0][k]} for k in runs[0]}
        record["kernels"] = kernels
        record["kernel_cpu_total_s"] = round(sum(v["cpu_s"] for v in kernels.values()), 1)
        print(f"kernels, CPU total {record['kernel_cpu_total_s']} s")
    if not a.no_command:
        cmds = [command_times(env) for _ in range(a.repeats)]
        record["command"] = {s: {f: statistics.median(c[s][f] for c in cmds) for f in cmds[0][s]} for s in cmds[0]}
    record["load_after"] = os.getloadavg()[0]
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
