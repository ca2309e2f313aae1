"""PSNR against wall time for the "fast" (default) and "official" schedules on one image.

    python benchmarks/schedule_curve.py --json benchmarks/results/schedule_astronaut.json --plot benchmarks/results/schedule_astronaut.png

Default image: skimage.data.astronaut() (512x512), 10k Gaussians. The PSNR here is measured on the
float render at each evaluation; the final figures are on the 8-bit rendering.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from skimage import data

import imagegs
from imagegs import metrics
from imagegs.defaults import DEFAULT_NUM_GAUSSIANS
from imagegs.io import atomic_write, to_uint8


def run(img: np.ndarray, schedule: str, gaussians: int) -> dict:
    hist: list = []
    t0 = time.perf_counter()
    g = imagegs.fit(img, num_gaussians=gaussians, schedule=schedule, history=hist, progress=True)
    secs = time.perf_counter() - t0
    ref = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)
    dec = torch.from_numpy(to_uint8(imagegs.render(g).clamp(0, 1)).astype(np.float32) / 255).permute(2, 0, 1)
    return dict(schedule=schedule, seconds=secs, steps=g.fit_info["steps"], psnr8=metrics.psnr(dec, ref),
                ssim8=float(metrics.ssim(dec, ref)), history=hist)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--plot", type=Path)
    ap.add_argument("--gaussians", type=int, default=DEFAULT_NUM_GAUSSIANS)
    ap.add_argument("--schedules", default="fast,official")
    ap.add_argument("--include", type=Path, nargs="*", default=[],
                    help="earlier JSON outputs whose runs are added to this one (e.g. a long official run)")
    args = ap.parse_args(argv)
    img = data.astronaut()
    runs = [run(img, s, args.gaussians) for s in args.schedules.split(",") if s]
    for path in args.include:
        runs += json.loads(path.read_text())["runs"]
    for r in runs:
        print(f"{r['schedule']}: {r['steps']} steps, {r['seconds']:.1f} s, PSNR {r['psnr8']:.2f} dB, SSIM {r['ssim8']:.4f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.json, lambda p: Path(p).write_text(json.dumps(dict(image="astronaut", runs=runs), indent=1)))
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for r in runs:
            ax.plot([h["seconds"] for h in r["history"]], [h["psnr"] for h in r["history"]], label=r["schedule"])
        ax.set_xlabel("wall time (s)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"astronaut 512x512, {args.gaussians} Gaussians")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        atomic_write(args.plot, lambda p: fig.savefig(p, format="png", dpi=120))


if __name__ == "__main__":
    main()
