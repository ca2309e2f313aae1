"""Which bit depth to finish: for one c2f fit at a rate, each candidate depth's decoded MSE after
pruning to the budget, after 50, 100 and 400 refine steps, and after the colour polish.

This is the measurement behind ``codec._to_budget``'s probe and ``_predicted_error``, the colour
polish guard, and ``ratecontrol.neighbour_depths`` (docs/NOTES.md, "Probing the bit depths"). It
replaces ``codec._at_rate`` to measure every depth to the end (the encoder finishes only one).
Where the rate has one default depth, the next one up is measured beside it. One record per run:

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/depth_probe.py photo-dragonfly 0.3 \
        benchmarks/results/encoder/depth_probe.jsonl

It was run at commit 8382382 (before the probe existed), on the 10 images at 0.3 bpp and 4 at 0.2.
"""
import json
import sys
import time

import numpy as np
from PIL import Image
import imagegs.codec as codec
from imagegs.fitting import finished
from imagegs.quantize import Bits
from imagegs.ratecontrol import fit_budget, decoded_mse

name, bpp = sys.argv[1], float(sys.argv[2])
out = sys.argv[3]
x = np.array(Image.open(f"/work/shared/data/images/{name}.png").convert("RGB"))

def refine_chunks(job, g, chunks):
    """``g`` after each chunk of refine steps (one refiner: the Adam moments carry over)."""
    st = codec._refiners(job, [g])[0]
    for n in chunks:
        for _ in range(n):
            st.step()
        yield finished(g, st)

def at_rate(job, depths, n_plan, budget, max_fits):
    if len(depths) == 1:
        b = depths[0]
        depths = [b, Bits(b.position, b.scale + 1, b.rotation + 1, b.color + 1)]
    t = time.process_time()
    g = codec._fit_named(job, n_plan, depths[0])
    rec = dict(image=name, bpp=bpp, fitted=g.num, fit_cpu=time.process_time() - t, depths={})
    for bits in depths:
        got = fit_budget(g, job.target, g.fit_info["levels"], budget, job.packer(bits), job.top_k)
        data, gq, levels, kept = got
        r = dict(n=gq.num, mse0=decoded_mse(gq, job.target, job.top_k))
        steps_done = 0
        for chunk, gr in zip((50, 50, 300), refine_chunks(job, kept, (50, 50, 300))):
            steps_done += chunk
            _, gqr = job.packer(bits)(gr, levels)
            r[f"mse{steps_done}"] = decoded_mse(gqr, job.target, job.top_k)
        gp, grid = codec._polished(job, gr, bits)
        got2 = fit_budget(gp, job.target, levels, budget, job.packer(bits, grid), job.top_k)
        r["final"] = decoded_mse(got2[1], job.target, job.top_k)
        r["bytes"] = len(got2[0])
        rec["depths"][str(bits)] = r
    rec["cpu"] = time.process_time() - t
    with open(out, "a") as f:
        f.write(json.dumps(rec) + "\n")
    raise SystemExit(0)

codec._at_rate = at_rate
codec.compress(x, bpp=bpp, schedule="c2f", one_fit=True)
