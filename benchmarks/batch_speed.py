"""Batch throughput: images per minute of ``imagegs batch encode`` with 1 and 2 workers against a
shell loop of the single-file ``imagegs encode``; the scheduler's overhead per task; the
throughput that more workers would give, on paper.

    python benchmarks/batch_speed.py --images ../shared/data/images --count 4 --max-side 512 \\
        --json benchmarks/results/batch_speed.json

Inputs: the first ``--count`` images of ``--images`` (sorted by name), downscaled with Lanczos so
the long side is ``--max-side`` (a copy in a temporary folder), encoded at ``--bpp`` with the
default (fast) schedule. Each way of running is a child process timed from start to exit (wall
time) and by its CPU time (the children's rusage: user + system, workers included):

- ``loop``: ``for f in DIR/*; do imagegs encode $f -o OUT/$f.igs --bpp B --quiet; done`` (each
  process uses every core, as the single-file command does by default);
- ``batch_1``: ``imagegs batch encode DIR -o OUT --bpp B --workers 1`` (1 worker x all cores);
- ``batch_2``: the same with ``--workers 2`` (2 workers x cores / 2 threads);
- ``loop_t1``: the shell loop with ``--threads 1`` (one process at a time, one thread: what one
  worker of ``batch_2`` does, without Dask).

Overhead: a tiny image (32x32, 1 fit step, no polish) encoded by ``imagegs.batch``'s worker
function in this process against the same task sent through a warm LocalCluster of one worker
and waited for, one at a time (medians of ``--repeats``); plus the LocalCluster's start and close.

Resumable: each stage's result is kept in the JSON as soon as it is measured and not redone
(``--redo`` names stages to measure again). The machine is whatever runs it (shared or not: say so).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imagegs import batch
from imagegs.io import atomic_write, image_files

STAGES = ("loop", "batch_1", "batch_2", "overhead", "loop_t1")
WORKERS_ON_PAPER = (1, 2, 4, 8, 16, 32, 64)


def _cpu_of_children() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _timed(commands: list[list[str]]) -> dict:
    """Run the commands one after the other; wall and CPU seconds of all of them."""
    cpu0, t0 = _cpu_of_children(), time.perf_counter()
    for cmd in commands:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return {"wall_s": time.perf_counter() - t0, "cpu_s": _cpu_of_children() - cpu0}


def _prepare(images: Path, count: int, max_side: int, folder: Path) -> list[str]:
    """The first ``count`` images, downscaled, as PNGs in ``folder``; their names."""
    names = []
    for path in image_files(images)[:count]:
        with Image.open(path) as im:
            im = im.convert("RGB")
            s = max_side / max(im.size)
            if s < 1:
                im = im.resize((round(im.width * s), round(im.height * s)), Image.Resampling.LANCZOS)
            im.save(folder / (path.stem + ".png"))
        names.append(path.stem + ".png")
    return names


def _stage_encode(stage: str, src: Path, names: list[str], bpp: float, work: Path) -> dict:
    imagegs = [sys.executable, "-m", "imagegs"]
    out = work / stage
    if stage.startswith("loop"):
        out.mkdir()
        threads = ["--threads", "1"] if stage == "loop_t1" else []
        result = _timed([imagegs + ["encode", str(src / n), "-o", str(out / (n + ".igs")), "--bpp", str(bpp),
                                    "--quiet", *threads] for n in names])
        per_image = None
    else:
        workers = int(stage.split("_")[1])
        result = _timed([imagegs + ["batch", "encode", str(src), "-o", str(out), "--bpp", str(bpp),
                                    "--workers", str(workers), "--quiet"]])
        records = [json.loads(x) for x in (out / batch.MANIFEST).read_text().splitlines()]
        assert all(r["status"] == "done" for r in records), records
        per_image = [r["seconds"] for r in records]
        result.update(workers=workers, threads_per_worker=batch.cluster_size(workers)[1],
                      mean_psnr=statistics.mean(r["psnr"] for r in records),
                      mean_bpp=statistics.mean(r["bpp"] for r in records))
    result.update(images=len(names), images_per_minute=60 * len(names) / result["wall_s"],
                  task_seconds=per_image)
    return result


def _tiny_task(folder: Path) -> tuple[str, bytes]:
    rng = np.random.default_rng(0)
    path = folder / "tiny.png"
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return "tiny.png", path.read_bytes()


def _stage_overhead(work: Path, repeats: int) -> dict:
    """Per-task overhead of the cluster: the same tiny encode in process and through it."""
    import numba
    import torch
    from distributed import Client, LocalCluster

    torch.set_num_threads(1)  # as the worker: one thread, so that only the cluster differs
    numba.set_num_threads(1)
    item = _tiny_task(work)
    kw = {"options": {"num_gaussians": 16, "max_steps": 1, "polish_steps": 0}, "alpha": "keep"}
    batch._encode_task(item, **kw)  # warm: kernels loaded, imports done
    local = []
    for _ in range(repeats):
        t = time.perf_counter()
        assert batch._encode_task(item, **kw)["status"] == "done"
        local.append(time.perf_counter() - t)
    t = time.perf_counter()
    cluster = LocalCluster(n_workers=1, threads_per_worker=1, processes=True, memory_limit=batch.MEMORY_LIMIT,
                           env={"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}, dashboard_address=batch._HTTP_ADDRESS)
    client = Client(cluster)
    start = time.perf_counter() - t
    try:
        t = time.perf_counter()
        client.submit(batch._encode_task, item, pure=False, **kw).result()  # the worker's first task: imports
        first = time.perf_counter() - t
        remote = []
        for _ in range(repeats):
            t = time.perf_counter()
            assert client.submit(batch._encode_task, item, pure=False, **kw).result()["status"] == "done"
            remote.append(time.perf_counter() - t)
    finally:
        t = time.perf_counter()
        client.close()
        cluster.close()
        close = time.perf_counter() - t
    in_process, through = statistics.median(local), statistics.median(remote)
    return {"task": "32x32 RGB, 16 Gaussians, 1 step, no polish", "repeats": repeats,
            "in_process_s": in_process, "through_cluster_s": through, "overhead_s": through - in_process,
            "cluster_start_s": start, "worker_first_task_s": first, "cluster_close_s": close}


def on_paper(result: dict) -> dict:
    """Images per minute with W single-thread workers: W / (t + o), t = the median task time of
    the 2-worker run (one thread each; its first task per worker includes loading imagegs), o =
    the per-task overhead; the cluster's start, the workers' first-task warm-up and the close are
    paid once per batch and left out (they amortise over a large batch)."""
    t = statistics.median(result["batch_2"]["task_seconds"])
    o = result["overhead"]["overhead_s"]
    return {"task_s": t, "overhead_s": o, "overhead_share": o / t,
            "images_per_minute": {w: 60 * w / (t + o) for w in WORKERS_ON_PAPER}}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "images")
    ap.add_argument("--count", type=int, default=4)
    ap.add_argument("--max-side", type=int, default=512)
    ap.add_argument("--bpp", type=float, default=0.3)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--redo", default="", help=f"comma-separated stages to measure again ({', '.join(STAGES)})")
    args = ap.parse_args(argv)
    result = json.loads(args.json.read_text()) if args.json.exists() else {}
    setup = {"images": str(args.images), "count": args.count, "max_side": args.max_side, "bpp": args.bpp}
    if result.get("setup") != setup:
        result = {"setup": setup}
    result.update(machine={"cores": os.cpu_count(), "platform": platform.platform(),
                           "note": "shared machine: other work ran at the same time"},
                  memory_limit_bytes=batch.MEMORY_LIMIT)
    redo = {s for s in args.redo.split(",") if s}
    with tempfile.TemporaryDirectory(prefix="batch-speed-") as tmp:
        work = Path(tmp)
        src = work / "src"
        src.mkdir()
        names = _prepare(args.images, args.count, args.max_side, src)
        result["files"] = names
        for stage in STAGES:
            if stage in result and stage not in redo:
                continue
            print(f"measuring {stage}...", file=sys.stderr, flush=True)
            result[stage] = (_stage_overhead(work, args.repeats) if stage == "overhead"
                             else _stage_encode(stage, src, names, args.bpp, work))
            args.json.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(args.json, lambda p: Path(p).write_text(json.dumps(result, indent=1)))
            print(json.dumps(result[stage], indent=1))
    result["on_paper"] = on_paper(result)
    atomic_write(args.json, lambda p: Path(p).write_text(json.dumps(result, indent=1)))
    print(json.dumps(result["on_paper"], indent=1))


if __name__ == "__main__":
    main()
