"""Choose imagegs's default importance strength: the semantic benchmark's task at one rate, for a
sweep of strengths, on small downscales (CPU is scarce). Resumable: one JSON line per point in
benchmarks/results/semantic/strength.jsonl; prints a table of the gain inside and the loss
outside the important region against the plain encode (strength 0).

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/semantic_strength.py [--max-side 256]
        [--bpp 0.2] [--strengths 0,1,2,4,8,16] [--images astronaut,skimage:chelsea,skimage:coffee]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from imagegs.bench.semantic import make_tasks, run_task

OUT = Path(__file__).parent / "results" / "semantic" / "strength.jsonl"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-side", type=int, default=256)
    p.add_argument("--bpp", type=float, default=0.2)
    p.add_argument("--strengths", default="0,1,2,4,8,16")
    p.add_argument("--images", default="astronaut,skimage:chelsea,skimage:coffee")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    done = {}
    if args.out.exists():
        for line in args.out.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[(r["image"], r["strength"], r["max_side"], r["target_bpp"])] = r
    args.out.parent.mkdir(parents=True, exist_ok=True)
    images = args.images.split(",")
    strengths = [float(s) for s in args.strengths.split(",")]
    for s in strengths:
        method = "imagegs" if s == 0 else "imagegs-importance"
        for task in make_tasks(images, bpp=[args.bpp], methods=[method], max_side=args.max_side, strength=s):
            key = (task["name"], s, args.max_side, args.bpp)
            if key in done:
                continue
            rec = dict(run_task(task), strength=s, max_side=args.max_side)
            done[key] = rec
            with open(args.out, "a") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
            print(f"{task['name']} s={s:g}: in {rec['psnr_in']:.2f} out {rec['psnr_out']:.2f} "
                  f"bpp {rec['bpp']:.3f} ({rec['seconds']:.0f} s, cpu {rec['cpu_seconds']:.0f} s)", flush=True)
    print("strength | d PSNR in | d PSNR out | d SSIM in | d SSIM out (means over images vs strength 0)")
    for s in strengths:
        d = {f: [] for f in ("psnr_in", "psnr_out", "ssim_in", "ssim_out")}
        for name in {k[0] for k in done}:
            a, b = done.get((name, 0.0, args.max_side, args.bpp)), done.get((name, s, args.max_side, args.bpp))
            if a and b:
                for f in d:
                    d[f].append(b[f] - a[f])
        if d["psnr_in"]:
            print(f"{s:g} | " + " | ".join(f"{np.mean(v):+.3f}" for v in d.values()) + f" ({len(d['psnr_in'])} images)")


if __name__ == "__main__":
    main()
