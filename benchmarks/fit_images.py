"""Fit every image of a folder with the default settings; report PSNR/SSIM (8-bit), steps, time.

    python benchmarks/fit_images.py --images ../shared/data/images --json benchmarks/results/fit_images.json

Images are downscaled (Lanczos) so the long side is at most --long-side (1024 by default). Writes
JSON (one record per image plus medians) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import imagegs
from imagegs import metrics
from imagegs.defaults import DEFAULT_NUM_GAUSSIANS
from imagegs.io import atomic_write, to_uint8


def load(path: Path, long_side: int) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    s = long_side / max(im.size)
    if s < 1:
        im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
    return np.asarray(im)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--long-side", type=int, default=1024)
    ap.add_argument("--gaussians", type=int, default=DEFAULT_NUM_GAUSSIANS)
    ap.add_argument("--schedule", default="fast")
    args = ap.parse_args(argv)
    rows = []
    for path in sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        img = load(path, args.long_side)
        t0 = time.perf_counter()
        g = imagegs.fit(img, num_gaussians=args.gaussians, schedule=args.schedule)
        secs = time.perf_counter() - t0
        out8 = to_uint8(imagegs.render(g).clamp(0, 1))
        ref = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)
        dec = torch.from_numpy(out8.astype(np.float32) / 255).permute(2, 0, 1)
        row = dict(image=path.stem, height=img.shape[0], width=img.shape[1], gaussians=g.num,
                   steps=g.fit_info["steps"], seconds=round(secs, 2),
                   psnr=round(metrics.psnr(dec, ref), 3), ssim=round(float(metrics.ssim(dec, ref)), 4))
        rows.append(row)
        print(row, flush=True)
    summary = {k: float(np.median([r[k] for r in rows])) for k in ("psnr", "ssim", "seconds", "steps")}
    result = dict(name="imagegs-fit", schedule=args.schedule, gaussians=args.gaussians,
                  long_side=args.long_side, machine=dict(cpu=platform.processor() or platform.machine(),
                  threads=torch.get_num_threads()), version=imagegs.__version__, images=rows, median=summary)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.json, lambda p: Path(p).write_text(json.dumps(result, indent=1)))
    print("\n| image | size | steps | time (s) | PSNR (dB) | SSIM |\n|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['image']} | {r['width']}x{r['height']} | {r['steps']} | {r['seconds']:.1f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
    print(f"| **median** | | {summary['steps']:.0f} | {summary['seconds']:.1f} | {summary['psnr']:.2f} | {summary['ssim']:.4f} |")


if __name__ == "__main__":
    main()
