"""Whole encodes with anisotropy-adaptive rotation precision, simulated (no format for it yet).

The default encoder runs unchanged except that every file it builds codes the rotation at
base = nominal - DROP bits and pays ceil(sum e / 8) more bytes for raw refinement bits, where
Gaussian i gets e_i = clip(round(log2(aspect_i)), 0, K) more angle bits (aspect from the quantised
scales, as a decoder could derive it); the model the encoder measures (pruning, probes, polish,
the reported PSNR) uses those angles. The files cannot be read by the decoder: the PSNR is the
8-bit render of the encoder's decoded model against the image (equal to the decoded file's for
the real format; checked with DROP = K = 0 on a small image: within 0.001 dB).

    python benchmarks/rotation_sim.py DROP K OUT.jsonl BPP IMAGE...
    python benchmarks/rotation_sim.py 2 5 benchmarks/results/encoder/rotation_sim.jsonl 0.3 \
        IMAGES/anime-concert.png IMAGES/photo-dragonfly.png

Compare with the same images' records of the RD run of the same code (benchmarks/results/rd-cg).
See docs/NOTES.md, "Rotation precision that follows the anisotropy".
"""
import json
import math
import sys
import time

import numpy as np
import torch
from dataclasses import replace
from imagegs import codec, igsfile, render
from imagegs.quantize import quantize as q_orig, dequantize as dq_orig, canonicalize, _values
from imagegs.io import read_image
DROP, K = int(sys.argv[1]), int(sys.argv[2])
stash = {}
def adaptive(g, q, base):
    ls = _values(q.log_scale, q.scale_range, q.bits.scale)
    d = ls[:, 0] - ls[:, 1]
    e = np.zeros(q.num, np.int64)
    for k in range(1, K + 1):
        e += d >= np.float32((k - 0.5) * math.log(2))
    _, rf = canonicalize(g.detach().scale.float(), g.detach().rot.float())
    n = 2.0 ** (base + e)
    codes = np.rint(rf.double().numpy() / math.pi * n).astype(np.int64) % n.astype(np.int64)
    return e, codes, (codes * (math.pi / n)).astype(np.float32)
def qz(g, bits, ranges=None):
    q = q_orig(g, bits, ranges=ranges); stash[id(q)] = (g, q); return q
def dqz(q):
    out = dq_orig(q)
    if id(q) in stash:
        g, _ = stash[id(q)]
        base = q.bits.rotation - DROP
        _, _, ang = adaptive(g, q, base)
        out = replace(out, rot=torch.from_numpy(ang))
    return out
def pack(g, levels, *, bits, top_k, metadata, ranges=None, kinds=None):
    q = q_orig(g, bits, ranges=ranges)
    base = bits.rotation - DROP
    e, codes, ang = adaptive(g, q, base)
    qf = replace(q, rot=codes >> e, bits=replace(bits, rotation=base))
    data, order = igsfile.pack(qf, levels, top_k=top_k, metadata=metadata, kinds=kinds)
    data = data + bytes(int(math.ceil(e.sum() / 8)))
    dq = dq_orig(q.take(order))
    return data, replace(dq, rot=torch.from_numpy(ang[order]))
codec.quantize, codec.dequantize, codec._pack = qz, dqz, pack
out = open(sys.argv[3], "a")
for path in sys.argv[5:]:
    t = time.process_time()
    enc = codec.compress(path, bpp=float(sys.argv[4]))
    img = read_image(path).pixels
    # decoded image = render of the decoder's model (the file cannot be read by the real decoder)
    x = (render(enc.gaussians).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    ref8 = (img * 255).round().byte().permute(1, 2, 0).numpy()
    p = float(10 * np.log10(255 ** 2 / np.mean((x.astype(float) - ref8.astype(float)) ** 2)))
    rec = dict(image=path.split("/")[-1][:-4], bpp=enc.bpp, psnr=p, drop=DROP, K=K, bits=str(enc.bits), n=enc.num, cpu=time.process_time() - t)
    print(json.dumps(rec), flush=True); out.write(json.dumps(rec) + "\n"); out.flush()
