"""Decode speed: full 2048-pixel renders, random access, and the cost per pixel in MACs.

    nice -n 10 python benchmarks/decode_speed.py --json benchmarks/results/decode_speed.json

Models: the cached default fits of the shared images (``fitcache.py``: each image at a long side of
1024, 10k Gaussians), or the .gsm files given with --models. For each model:
- full decode (``render`` without gradient: projection, tile binning and the decode kernel) at
  2048x2048 (the model stretched to a square) and at a long side of 2048 (aspect kept), medians of
  --runs runs after a warm-up, with the split into projection + binning and kernel;
- random access: ``decode_pixels`` at --points uniformly random points of the native grid (all of
  it: validation, projection, binning, grouping, kernel), in points per second;
- the kernel's work counts and the multiply-accumulates per pixel they imply (see ``macs``);
- the decode kernel against the training kernel's forward on the same tile lists (alternated).
Timings depend on the machine's load: say what else was running.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numba
import numpy as np
import torch

import imagegs
from imagegs.defaults import BLEND_EPS, DEFAULT_TOP_K
from imagegs.io import atomic_write
from imagegs.renderer import project
from imagegs.renderer.forward import points_forward, prepare, rasterize_forward

import fitcache

# Multiply-accumulates of the decode kernel, counted from its code (float32 models):
PRUNE_MACS = 25  # per (chunk, tile-list entry): 4 corner q (16), the lower bound (3), q at the centre (6)
# (chunks: whole 16x16 tiles for images, runs of up to 256 points of a tile for random access)
Q_MACS = 6  # per (candidate, lane): A dx^2 + 2B dx dy + C dy^2
EXP_MACS = 11  # per (candidate, lane): range reduction (3), degree-7 polynomial (7), scaling (1)
# (the selection network adds ~2K integer min/max per inserted candidate: compares, not MACs)


def macs(counts: dict, channels: int) -> dict:
    """MACs per point from the kernel's work counts: pruning + q per candidate and lane + the dense
    blend (exp, C colour MACs and the weight sum per candidate and lane)."""
    lanes = counts["lanes"]
    per_lane_cand = counts["candidate_lanes"] / max(lanes, 1)
    total = (PRUNE_MACS * counts["list_entries"] + counts["candidate_lanes"] * (Q_MACS + EXP_MACS + channels + 1))
    return {"macs_per_point": total / counts["points"],
            "macs_per_lane": total / max(lanes, 1),
            "lanes_per_point": lanes / counts["points"],
            "tile_list_per_chunk": counts["list_entries"] / max(counts["chunks"], 1),
            "candidates_per_lane": per_lane_cand,
            "insertions_per_chunk": counts["insertions"] / max(counts["chunks"], 1),
            "paper_style_macs_per_pixel": 10 * (Q_MACS + EXP_MACS + channels + 1)}


def median_ms(fn, runs: int) -> tuple[float, list[float], float]:
    """Median wall time (ms), the runs, and the median process CPU time (ms, all threads): on a
    shared machine CPU time / threads estimates the wall time the machine would give unloaded."""
    fn()  # warm-up (compilation, caches)
    times, cpu = [], []
    for _ in range(runs):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return float(np.median(times)), [round(t, 2) for t in times], float(np.median(cpu))


def full_decode(g: imagegs.Gaussians, height: int, width: int, runs: int) -> dict:
    with torch.no_grad():
        total, times, cpu = median_ms(lambda: imagegs.render(g, height, width), runs)

        def setup():
            means, conics, radii = project(g.xy, g.scale, g.rot, height=height, width=width,
                                           native_height=g.height, native_width=g.width)
            return prepare(means, conics, g.color, radii, None, height, width)

        setup_ms, _, setup_cpu = median_ms(setup, runs)
        means, conics, radii = project(g.xy, g.scale, g.rot, height=height, width=width,
                                       native_height=g.height, native_width=g.width)
        stats: dict = {}
        rasterize_forward(means, conics, g.color, radii, height, width, top_k=DEFAULT_TOP_K, eps=BLEND_EPS, stats=stats)
    lists = np.diff(setup()[4])
    return {"height": height, "width": width, "total_ms": round(total, 2), "runs_ms": times,
            "cpu_ms": round(cpu, 2), "projection_and_binning_ms": round(setup_ms, 2),
            "projection_and_binning_cpu_ms": round(setup_cpu, 2), "megapixels_per_s": height * width / total / 1e3,
            "mean_tile_list": float(lists.mean()), "max_tile_list": int(lists.max()),
            "counts": stats, **macs(stats, g.channels)}


def random_access(g: imagegs.Gaussians, points: int, runs: int, seed: int = 0) -> dict:
    xy = torch.rand(points, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        total, times, cpu = median_ms(lambda: imagegs.decode_pixels(g, xy), runs)
        means, conics, radii = project(g.xy, g.scale, g.rot, height=g.height, width=g.width,
                                       native_height=g.height, native_width=g.width)
        pts = (xy * torch.tensor([g.width, g.height], dtype=torch.float64)).to(g.xy.dtype)
        stats: dict = {}
        points_forward(means, conics, g.color, radii, pts, g.height, g.width, top_k=DEFAULT_TOP_K, eps=BLEND_EPS, stats=stats)
    return {"points": points, "total_ms": round(total, 2), "runs_ms": times, "cpu_ms": round(cpu, 2),
            "points_per_s": points / total * 1000, "points_per_cpu_s": points / cpu * 1000, "counts": stats, **macs(stats, g.channels)}


def table(result: dict) -> str:
    """Markdown table of a result (one row per model and measurement)."""
    lines = [f"Decode speed, {result['threads']} threads, medians of {result['runs']} runs (load average at the end: "
             f"{', '.join(result['machine']['loadavg_at_end'] or ['?'])})", "",
             "| model (native size) | measurement | wall (ms) | CPU, both threads (ms) | rate | MACs per pixel |",
             "|---|---|---|---|---|---|"]
    for r in result["models"]:
        name = f"{r['model']} ({r['native'][0]}x{r['native'][1]})"
        for key in ("square_2048", "long_side_2048"):
            v = r[key]
            lines.append(f"| {name} | full decode {v['width']}x{v['height']} (setup {v['projection_and_binning_ms']:.0f} ms) "
                         f"| {v['total_ms']:.0f} | {v['cpu_ms']:.0f} | {v['megapixels_per_s']:.1f} Mpixel/s "
                         f"| {v['macs_per_point']:.0f} |")
        for v in r["random_access"]:
            lines.append(f"| {name} | random access, {v['points']:,} points | {v['total_ms']:.0f} | {v['cpu_ms']:.0f} "
                         f"| {v['points_per_s'] / 1e6:.2f} M points/s ({v['points_per_cpu_s'] / 1e6:.2f} M per CPU-s) "
                         f"| {v['macs_per_point']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=Path, nargs="*", help="model files (default: the cached fits)")
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--points", type=int, nargs="+", default=[100_000, 5_000_000])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--table-only", action="store_true", help="print the table of an existing --json")
    args = ap.parse_args(argv)
    if args.table_only:
        print(table(json.loads(args.json.read_text())))
        return
    torch.set_num_threads(args.threads)
    numba.set_num_threads(args.threads)
    if args.models:
        models = [(p.stem, imagegs.load_model(p).gaussians) for p in args.models]
    else:
        models = [(p.stem, g) for p in fitcache.image_paths() if (g := fitcache.cached(p, 1)) is not None]
    rows = []
    for name, g in models:
        g = g.to(torch.float32)
        long = 2048 / max(g.height, g.width)
        row = {"model": name, "native": [g.width, g.height], "gaussians": g.num,
               "square_2048": full_decode(g, 2048, 2048, args.runs),
               "long_side_2048": full_decode(g, round(g.height * long), round(g.width * long), args.runs),
               "random_access": [random_access(g, p, args.runs) for p in args.points]}
        rows.append(row)
        sq, ra = row["square_2048"], row["random_access"][-1]
        print(f"{name}: 2048x2048 {sq['total_ms']:.1f} ms (CPU {sq['cpu_ms']:.1f} ms, setup "
              f"{sq['projection_and_binning_ms']:.1f}), "
              f"{row['long_side_2048']['width']}x{row['long_side_2048']['height']} "
              f"{row['long_side_2048']['total_ms']:.1f} ms; random access {ra['points_per_s'] / 1e6:.2f} M points/s; "
              f"{sq['macs_per_point']:.0f} MACs/pixel at 2048^2, {ra['macs_per_point']:.0f} per random point", flush=True)
    summary = {
        "square_2048_ms": float(np.median([r["square_2048"]["total_ms"] for r in rows])),
        "square_2048_cpu_ms": float(np.median([r["square_2048"]["cpu_ms"] for r in rows])),
        "long_side_2048_ms": float(np.median([r["long_side_2048"]["total_ms"] for r in rows])),
        "random_points_per_s": float(np.median([r["random_access"][-1]["points_per_s"] for r in rows])),
        "random_points_per_cpu_s": float(np.median([r["random_access"][-1]["points_per_cpu_s"] for r in rows])),
        "macs_per_pixel_2048": float(np.median([r["square_2048"]["macs_per_point"] for r in rows])),
        "macs_per_random_point": float(np.median([r["random_access"][-1]["macs_per_point"] for r in rows])),
    }
    load = Path("/proc/loadavg").read_text().split()[:3] if Path("/proc/loadavg").exists() else None
    result = {"name": "imagegs-decode-speed", "threads": args.threads, "runs": args.runs,
              "machine": {"cpu": platform.processor() or platform.machine(), "loadavg_at_end": load},
              "version": imagegs.__version__, "models": rows, "median": summary}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.json, lambda p: Path(p).write_text(json.dumps(result, indent=1)))
    print(json.dumps(summary, indent=1))
    print(table(json.loads(json.dumps(result))))


if __name__ == "__main__":
    main()
