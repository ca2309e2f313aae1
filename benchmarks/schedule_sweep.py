"""The learning-rate / budget sweep behind the default "fast" schedule (astronaut, 10k Gaussians).

    python benchmarks/schedule_sweep.py [NAME ...]      # default: all variants, ~1 min each

Every variant starts from the "official" settings and overrides the fields below; prints wall
time, steps, final 8-bit PSNR and the PSNR every 300 steps.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import torch
from skimage import data

import imagegs
from imagegs import metrics
from imagegs.io import to_uint8

_BASE = dict(add_steps=(50, 100, 150, 200), min_steps_after_add=0, plateau_steps=10**6, eval_every=100)
VARIANTS = {  # name: (max_steps, decay step, lr_xy, lr_color, lr_scale, lr_rot)
    "official-rates-1500": (1500, 1200, 5e-4, 5e-3, 2e-3, 2e-3),
    "2x-xy-colour-1500": (1500, 1200, 1e-3, 1e-2, 2e-3, 2e-3),
    "2x-all-1200": (1200, 950, 1e-3, 1e-2, 4e-3, 4e-3),
    "2x-xy-colour-4x-shape": (1200, 950, 1e-3, 1e-2, 8e-3, 8e-3),
    "4x-xy-2x-colour-4x-shape": (1200, 950, 2e-3, 1e-2, 8e-3, 8e-3),
    "4x-xy-colour-8x-shape": (1200, 950, 2e-3, 2e-2, 1.6e-2, 1.6e-2),
    "2x-xy-4x-colour-8x-shape": (1200, 950, 1e-3, 2e-2, 1.6e-2, 1.6e-2),  # the default "fast"
    "4x-xy-colour-16x-shape": (1200, 950, 2e-3, 2e-2, 3.2e-2, 3.2e-2),
}


def main(names: list[str]) -> None:
    img = data.astronaut()
    ref = torch.from_numpy(img.astype(np.float32) / 255).permute(2, 0, 1)
    for name in names or list(VARIANTS):
        steps, decay, lxy, lcol, lsc, lrot = VARIANTS[name]
        hist: list = []
        t0 = time.perf_counter()
        g = imagegs.fit(img, schedule="official", history=hist, max_steps=steps, decay_steps=(decay,),
                        lr_xy=lxy, lr_color=lcol, lr_scale=lsc, lr_rot=lrot, **_BASE)
        secs = time.perf_counter() - t0
        dec = torch.from_numpy(to_uint8(imagegs.render(g).clamp(0, 1)).astype(np.float32) / 255).permute(2, 0, 1)
        curve = [(r["step"], round(r["psnr"], 2)) for r in hist if r["step"] % 300 == 0]
        print(f"{name}: {secs:.1f} s, {g.fit_info['steps']} steps, PSNR {metrics.psnr(dec, ref):.2f} dB; {curve}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
