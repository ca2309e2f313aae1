"""Does the default bit rule pick good bit depths? Rate-controlled encodes at fixed budgets with the
default bits and with neighbouring bit depths (each a full fit at the count its bits allow).

    python benchmarks/bits_sweep.py --image astronaut --bpp 0.3 1.0 \
        [--json benchmarks/results/bits_sweep.json]

For each budget: the default (``codec.default_bits`` at the planned count) and its neighbours
(position +-1 bit, the other attributes +-1 bit); per encode the Gaussian count, the whole-file bpp
and the 8-bit PSNR of the decoded file against the source. The default is good if no neighbour
beats it by much.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from imagegs import codec, metrics
from imagegs.cli import read_source
from imagegs.io import atomic_write, to_uint8
from imagegs.quantize import Bits


def psnr_of(data: bytes, target: np.ndarray) -> float:
    dec = codec.decode(data)
    a, b = (torch.from_numpy(x).permute(2, 0, 1).double() / 255 for x in (dec, to_uint8(target)))
    return metrics.psnr(a, b)


def neighbours(b: Bits) -> list[Bits]:
    """The default and its +-1 neighbours per group (position; scale, rotation and colour together)."""
    out = [b]
    for dp, do in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        p, o = b.position + dp, b.scale + do
        if 4 <= p <= 16 and 4 <= o <= 16:
            out.append(Bits(p, o, o, o))
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="astronaut")
    ap.add_argument("--bpp", type=float, nargs="+", default=[0.3, 1.0])
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/bits_sweep.json"))
    args = ap.parse_args(argv)
    src = read_source([args.image]).pixels
    h, w = src.shape[:2]
    rows = []
    for bpp in args.bpp:
        default = codec.compress(src, bpp=bpp)
        rows.append({"bpp_target": bpp, "bits": str(default.bits), "default": True, "gaussians": default.num,
                     "bpp": default.bpp, "psnr": psnr_of(default.data, src)})
        print(json.dumps(rows[-1]), flush=True)
        for bits in neighbours(default.bits)[1:]:
            t0 = time.perf_counter()
            enc = codec.compress(src, bpp=bpp, bits=bits)
            rows.append({"bpp_target": bpp, "bits": str(bits), "default": False, "gaussians": enc.num,
                         "bpp": enc.bpp, "psnr": psnr_of(enc.data, src),
                         "seconds": time.perf_counter() - t0})
            print(json.dumps(rows[-1]), flush=True)
    doc = {"image": args.image, "size": [w, h], "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(doc, indent=1) + "\n"))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
