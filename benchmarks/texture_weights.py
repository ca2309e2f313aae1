"""The sweep behind imagegs.textures.DEFAULT_KIND_WEIGHTS: joint texture-set fits with different
per-map loss weights, on every stack, at one rate; resumable.

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/texture_weights.py \
        [--stacks ../shared/data/textures] [--max-side 256] [--rate 1.35] \
        [--out benchmarks/results/textures/weights_sweep.jsonl]

Each variant is one :func:`imagegs.bench.textures.run_task` (method imagegs-joint) with its
``map_weights``; one JSON line per (variant, stack) is appended to --out as soon as it is done and
skipped on a rerun. Prints, per variant, the mean over stacks of the set's mean PSNR (over maps),
each kind's PSNR and the normal maps' angular error; wall and CPU seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from imagegs.bench.textures import JOINT, list_stacks, plan, run_task

VARIANTS = {  # name: map_weights (by kind); unnamed kinds keep weight 1
    "equal-per-channel": {"colour": 1, "normal": 1, "scalar": 1},
    "normal-x2": {"normal": 2},
    "scalar-x3": {"scalar": 3},  # a 1-channel map then weighs as much as a 3-channel one
    "normal-x2-scalar-x3": {"normal": 2, "scalar": 3},
    "colour-x2": {"colour": 2},
    "normal-x0.5": {"normal": 0.5},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stacks", default="../shared/data/textures")
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--rate", type=float, default=1.35, help="bits per texel of the set")
    ap.add_argument("--out", default="benchmarks/results/textures/weights_sweep.jsonl")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            if line.strip():
                rec = json.loads(line)
                done[(rec["variant"], rec["stack"])] = rec
    stacks = list_stacks(args.stacks)
    for name in args.variants.split(","):
        for task in plan(stacks, rates=[args.rate], methods=[JOINT], max_side=args.max_side,
                         map_weights=VARIANTS[name]):
            key = (name, Path(task["stack"]).name)
            if key in done:
                continue
            rec = dict(run_task(task), variant=name)
            with open(out, "a") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
            done[key] = rec
            print(f"{name:22s} {key[1]:12s} {rec['bits_per_texel']:.3f} bpt  PSNR {rec['psnr']:.2f}  "
                  f"angle {rec['normal_angle']:.2f}  {rec['wall_s']:.0f} s wall, {rec['cpu_s']:.0f} s CPU", flush=True)
    print(f"\n{'variant':22s} mean PSNR  colour  normal  scalar  angle(°)  (mean over {len(stacks)} stacks)")
    for name in args.variants.split(","):
        recs = [done[(name, s.name)] for s in stacks if (name, s.name) in done]
        if not recs:
            continue
        kind = {k: np.mean([m["psnr"] for r in recs for m in r["maps"] if m["kind"] == k])
                for k in ("colour", "normal", "scalar")}
        print(f"{name:22s} {np.mean([r['psnr'] for r in recs]):9.2f} {kind['colour']:7.2f} {kind['normal']:7.2f} "
              f"{kind['scalar']:7.2f} {np.mean([r['normal_angle'] for r in recs]):8.2f}")


if __name__ == "__main__":
    main()
