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

from imagegs import codec
from imagegs.io import read_source
from imagegs.metrics import quality_8bit
from imagegs.io import atomic_write
from imagegs.quantize import Bits


def neighbours(b: Bits) -> list[Bits]:
    """The +-1 neighbours of ``b`` per group (position; scale, rotation and colour together)."""
    out = []
    for dp, do in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        p, o = b.position + dp, b.scale + do
        if 4 <= p <= 16 and 4 <= o <= 16:
            out.append(Bits(p, o, o, o))
    return out


def _row(bpp: float, enc: codec.Encoded, image, seconds: float, *, default: bool) -> dict:
    """One encode's figures (PSNR and SSIM of the decoded file, 8-bit), printed as it comes."""
    psnr, ssim = quality_8bit(codec.decode(enc.data, as_uint8=False), image.pixels)
    row = {"bpp_target": bpp, "bits": str(enc.bits), "default": default, "gaussians": enc.num,
           "bpp": enc.bpp, "psnr": psnr, "ssim": ssim, "seconds": seconds}
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--image", default="astronaut")
    ap.add_argument("--bpp", type=float, nargs="+", default=[0.3, 1.0])
    ap.add_argument("--json", type=Path, default=Path("benchmarks/results/bits_sweep.json"))
    args = ap.parse_args(argv)
    image = read_source([args.image])
    rows = []
    for bpp in args.bpp:
        t0 = time.perf_counter()
        default = codec.compress(image.pixels, bpp=bpp)
        rows.append(_row(bpp, default, image, time.perf_counter() - t0, default=True))
        for bits in neighbours(default.bits):
            t0 = time.perf_counter()
            enc = codec.compress(image.pixels, bpp=bpp, bits=bits)
            rows.append(_row(bpp, enc, image, time.perf_counter() - t0, default=False))
    doc = {"image": args.image, "size": [image.width, image.height], "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(doc, indent=1) + "\n"))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
