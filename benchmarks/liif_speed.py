"""LIIF upscaling speed and memory on the CPU (2 torch threads), official weights.

    python benchmarks/liif_speed.py [--repeats 3] [--weights PATH]

Cases: scikit-image's astronaut resized to 256x256 and 512x512, upscaled x4 (to 1024x1024 and
2048x2048) with ``imagegs.liif.liif_upscale`` (encoder + first-layer projection per latent +
batched decoding). Each case runs in its own process so that its peak RSS (ru_maxrss) is its own;
times are medians over the timed runs (3 for 256, 1 for 512: the machine is shared), after a
small warm-up run. Also timed, on one batch of 32768
queries of the 256 case: the official query path (unfolded 580-dim decoder input) against the fast
one, and their largest difference. Process CPU time (both threads) is recorded too: on a busy shared machine the wall time mostly
measures the other jobs, and CPU time / 2 approximates the wall time of an idle 2-core machine.
``--cases 256`` runs only some cases. Writes benchmarks/results/liif_speed.json.
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
import time
from pathlib import Path

CASES = [(256, 4, 3), (512, 4, 1)]  # (input side, scale, timed runs)
OUT = Path(__file__).resolve().parent / "results" / "liif_speed.json"


def run_case(size: int, scale: int, repeats: int, weights: str | None) -> dict:
    import numpy as np
    import torch
    from skimage import data, transform

    from imagegs.liif import liif_upscale, load_weights
    from imagegs.liif.models import make_coord

    torch.set_num_threads(2)
    t0 = time.perf_counter()
    model = load_weights(weights)
    load_s = time.perf_counter() - t0
    img = transform.resize(data.astronaut(), (size, size), anti_aliasing=True)
    x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
    out_size = size * scale
    liif_upscale(model, x[:, :64, :64], 256, 256)  # warm-up: allocator, oneDNN kernels
    times, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        liif_upscale(model, x, out_size, out_size)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    result = {"input": [size, size], "output": [out_size, out_size], "scale": scale,
              "seconds_median": statistics.median(times), "seconds": times,
              "cpu_seconds_median": statistics.median(cpu), "load_average_after": os.getloadavg(),
              "model_load_seconds": load_s,
              "megapixels_per_second": out_size * out_size / 1e6 / statistics.median(times)}
    if size == CASES[0][0]:  # official vs fast query path on one batch
        with torch.inference_mode():
            feat = model.encode(((x - 0.5) / 0.5)[None])
            coord = make_coord((out_size, out_size))[None, :32768]
            cell = torch.full_like(coord, 2 / out_size)
            lat = model.prepare(feat)
            ref_t, fast_t = [], []
            for _ in range(3):
                t0 = time.perf_counter()
                ref = model.query_reference(feat, coord, cell)
                ref_t.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                fast = model.query(lat, coord, cell)
                fast_t.append(time.perf_counter() - t0)
        result["batch_32768"] = {"official_path_ms": 1000 * statistics.median(ref_t),
                                 "fast_path_ms": 1000 * statistics.median(fast_t),
                                 "max_abs_difference": float((ref - fast).abs().max())}
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, help="timed runs per case (default 3 for 256, 1 for 512)")
    ap.add_argument("--weights")
    ap.add_argument("--cases", default="256,512", help="input sides to run (default 256,512)")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        size, scale = map(int, args.case.split("x"))
        print(json.dumps(run_case(size, scale, args.repeats or 1, args.weights)))
        return 0
    results = []
    wanted = {int(v) for v in args.cases.split(",")}
    for size, scale, repeats in (c for c in CASES if c[0] in wanted):
        repeats = args.repeats or repeats
        cmd = [sys.executable, __file__, "--case", f"{size}x{scale}", "--repeats", str(repeats)]
        if args.weights:
            cmd += ["--weights", args.weights]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{size}x{size} -> {r['output'][0]}x{r['output'][1]}: {r['seconds_median']:.1f} s "
              f"(median of {repeats}; process CPU time {r['cpu_seconds_median']:.1f} s), "
              f"peak RSS {r['peak_rss_mb']:.0f} MB")
        if "batch_32768" in r:
            b = r["batch_32768"]
            print(f"  32768 queries: official path {b['official_path_ms']:.0f} ms, fast path "
                  f"{b['fast_path_ms']:.0f} ms, max |difference| {b['max_abs_difference']:.2e}")
    if OUT.exists():  # keep the cases not run this time
        ran = {r["input"][0] for r in results}
        results += [r for r in json.loads(OUT.read_text())["results"] if r["input"][0] not in ran]
        results.sort(key=lambda r: r["input"][0])
    doc = {"benchmark": "LIIF x4 upscaling, official EDSR-baseline-LIIF weights, torch threads 2",
           "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "load_average": os.getloadavg(), "torch_threads": 2,
                       "note": "medians; load_average says how busy the machine was"},
           "results": results}
    from imagegs.io import atomic_write  # imagegs is imported late here: the cases run in subprocesses

    atomic_write(OUT, lambda tmp: tmp.write_text(json.dumps(doc, indent=1)))
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
