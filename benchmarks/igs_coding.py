"""What the .igs file costs and saves, on fitted models (no fitting here: give models and sources).

For each model (a raw ``.gsm``/``.gsm`` container written by ``imagegs fit``) and its source image:
- quality of the float model and of the decoded file at 16 bits, the default bits and others
  (8-bit PSNR against the source), the whole-file size against the official payload formula
  (2 b_pos + 2 b_scale + b_rot + C b_col) N / 8 bytes;
- the bit budget per attribute at 16 bits (each attribute's streams compressed on their own);
- the entropy coders compared on the same transformed streams: the range coder (the format's), brotli, lzma,
  zstd, and constriction (a static categorical model of the top 8 bits of every stream's values,
  ANS coded, model cost counted as 2 bytes per used symbol, low bits raw);
- PSNR of every level-of-detail prefix;
- "the same quality": the smallest file whose PSNR is within EQUAL_DB of the 16-bit file's, and
  its saving against the official 16-bit payload.

    python benchmarks/igs_coding.py --model astro.gsm --image astronaut [--model M --image I ...]
        [--json benchmarks/results/igs_coding.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

import imagegs
from imagegs import bitstream, igsfile, rangecoder
from imagegs.io import atomic_write, read_source
from imagegs.metrics import quality_8bit
from imagegs.quantize import Bits, dequantize, quantize
from imagegs.ratecontrol import default_bits


def psnr8(g, target) -> float:
    """8-bit PSNR of the rendering of ``g`` against ``target`` (C, H, W), as ``imagegs fit`` reports."""
    with torch.no_grad():
        return quality_8bit(imagegs.render(g), target)[0]


def levels_of(meta: dict, n: int) -> list[int]:
    """Level sizes of a fit: stored, or re-derived from its settings (half first, adds split evenly)."""
    if isinstance(meta.get("levels"), list):
        return meta["levels"]
    cfg = meta.get("fit", {})
    adds = [s for s in cfg.get("add_steps", (50, 100, 150, 200)) if s < cfg.get("max_steps", 1200)]
    n0 = math.ceil(cfg.get("init_ratio", 0.5) * n) if adds else n
    return [n0] + [((n - n0) * (i + 1)) // len(adds) - ((n - n0) * i) // len(adds) for i in range(len(adds))]


def level_streams(q, levels) -> list[list[tuple[np.ndarray, int]]]:
    """Per level, the streams the .igs file codes (exactly those of ``bitstream.encode_level``)."""
    cols = igsfile.columns(q)
    widths, groups = igsfile.column_layout(q.bits, q.channels)
    preds = bitstream.choose_predictors(cols, widths, groups)
    out, start = [], 0
    for n in levels:
        sl = slice(start, start + n)
        start += n
        streams, _ = bitstream.level_streams(q.pos[sl], [c[sl] for c in cols], pos_bits=q.bits.position,
                                             bits=widths, preds=preds)
        out.append(streams)
    return out


def constriction_bytes(q, levels) -> int:
    """Size of the same streams coded with constriction (static top-8 categorical + raw low bits)."""
    import constriction

    total = 0
    for streams in level_streams(q, levels):
        for v, _ in streams:
            if len(v) == 0:
                continue
            width = max(int(v.max()).bit_length(), 1)  # the values' own width (gaps use few of 32 bits)
            shift = max(width - 8, 0)
            top = (v >> shift).astype(np.int32)
            counts = np.bincount(top, minlength=int(top.max()) + 1).astype(np.float64)
            coded = 0
            if (counts > 0).sum() > 1:  # a single symbol costs nothing but its model entry
                model = constriction.stream.model.Categorical(counts / counts.sum(), perfect=False)
                enc = constriction.stream.stack.AnsCoder()
                enc.encode_reverse(top, model)
                coded = enc.get_compressed().nbytes
            total += coded + 2 * int((counts > 0).sum()) + math.ceil(shift * len(v) / 8)
    return total + 100  # + header


def attribute_budget(q, levels) -> dict:
    """Bits per Gaussian of each attribute: its streams coded alone with the format's range coder."""
    per_level = level_streams(q, levels)
    # stream 0: position gaps; then scale major, minor, rotation, colours (igsfile.columns)
    parts = {"position": [0], "scale": [1, 2], "rotation": [3], "color": list(range(4, 4 + q.channels))}
    raw_bits = {"position": 2 * q.bits.position, "scale": 2 * q.bits.scale,
                "rotation": q.bits.rotation, "color": q.channels * q.bits.color}
    out = {}
    for name, idx in parts.items():
        models = rangecoder.Models([per_level[0][i][1] for i in idx],
                                   [rangecoder.GAP if i == 0 else rangecoder.COLUMN for i in idx])
        size = sum(len(rangecoder.encode(np.stack([streams[i][0] for i in idx]), models))
                   for streams in per_level)
        out[name] = {"bits_per_gaussian": 8 * size / q.num, "raw_bits": raw_bits[name]}
    out["file_bits_per_gaussian"] = 8 * len(igsfile.pack(q, levels)[0]) / q.num
    return out


DEFAULT = bitstream.CODER_NAMES[bitstream.DEFAULT_CODER]
EQUAL_DB = 0.05  # "the same quality": within this many dB of the 16-bit file


def equal_quality(configs: dict) -> dict:
    """The smallest file within EQUAL_DB of the 16-bit file's PSNR, against the official 16-bit payload."""
    ref = configs["16"]
    ok = [(v["bytes"][DEFAULT], k) for k, v in configs.items() if v["psnr"] >= ref["psnr"] - EQUAL_DB]
    size, name = min(ok)
    return {"bits": name, "bytes": size, "psnr": configs[name]["psnr"], "psnr_16bit": ref["psnr"],
            "official_16bit_payload_bytes": ref["official_payload_bytes"],
            "saving_vs_official": 1 - size / ref["official_payload_bytes"]}


def summary(results: list[dict]) -> dict:
    """Means over the models of what the issue's targets name."""
    mean = lambda xs: float(np.mean(xs))
    return {"models": len(results),
            "delta_db_16bit_mean": mean([r["bits"]["16"]["delta_db"] for r in results]),
            "delta_db_16bit_worst": min(r["bits"]["16"]["delta_db"] for r in results),
            "saving_vs_official_16bit_mean": mean([r["bits"]["16"]["saving_vs_official"] for r in results]),
            "saving_vs_official_equal_quality_mean": mean([r["equal_quality"]["saving_vs_official"]
                                                           for r in results]),
            "saving_vs_official_equal_quality_min": min(r["equal_quality"]["saving_vs_official"]
                                                        for r in results)}


def run(model: str, image: str) -> dict:
    loaded = imagegs.load_model(model)
    g, meta = loaded.gaussians, loaded.metadata
    target = read_source([image]).pixels
    n, c = g.num, g.channels
    levels = levels_of(meta, n)
    rec = {"model": str(model), "image": image, "size": [g.width, g.height], "gaussians": n,
           "levels": levels, "psnr_float": psnr8(g, target)}
    configs = {"16": Bits(16, 16, 16, 16), "default": default_bits(g.height, g.width, num_gaussians=n, channels=c),
               "16,12,12,12": Bits(16, 12, 12, 12), "15,12,12,12": Bits(15, 12, 12, 12),
               "15,11,11,11": Bits(15, 11, 11, 11), "14,11,11,11": Bits(14, 11, 11, 11),
               "14,10,10,10": Bits(14, 10, 10, 10), "13,10,10,10": Bits(13, 10, 10, 10),
               "13,9,9,9": Bits(13, 9, 9, 9), "12,8,8,8": Bits(12, 8, 8, 8),
               "12,7,7,7": Bits(12, 7, 7, 7), "12,6,6,6": Bits(12, 6, 6, 6)}
    rec["bits"] = {}
    for name, bits in configs.items():
        q = quantize(g, bits)
        sizes = {}
        for cid, cname in bitstream.CODER_NAMES.items():
            data, order = igsfile.pack(q, levels, coder=cid)
            sizes[cname] = len(data)
            if cid == bitstream.DEFAULT_CODER:
                dq = dequantize(q.take(order))
        sizes["constriction"] = constriction_bytes(q, levels)
        official = bits.payload_bits(c) * n / 8
        p = psnr8(dq, target)
        rec["bits"][name] = {"bits": str(bits), "bytes": sizes, "official_payload_bytes": official,
                             "saving_vs_official": 1 - sizes[DEFAULT] / official,
                             "bpp": 8 * sizes[DEFAULT] / (g.width * g.height),
                             "psnr": p, "delta_db": p - rec["psnr_float"]}
        print(f"{Path(model).name} {name:>12}: {sizes[DEFAULT]:>7} B (official {official:>8.0f}, "
              f"{1 - sizes[DEFAULT] / official:+.1%} smaller), {p:.2f} dB ({p - rec['psnr_float']:+.3f}); "
              + ", ".join(f"{k} {v}" for k, v in sizes.items()), flush=True)
    rec["equal_quality"] = equal_quality(rec["bits"])
    rec["attribute_budget_16bit"] = attribute_budget(quantize(g, configs["16"]), levels)
    cum, lod = 0, []
    for i, lv in enumerate(levels):
        cum += lv
        lod.append({"level": i + 1, "gaussians": cum, "psnr": psnr8(g[:cum], target)})
    rec["lod_psnr"] = lod
    print("   levels: " + ", ".join(f"{r['gaussians']}: {r['psnr']:.2f}" for r in lod))
    return rec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True)
    ap.add_argument("--image", action="append", required=True)
    ap.add_argument("--json", default="benchmarks/results/igs_coding.json")
    args = ap.parse_args()
    if len(args.model) != len(args.image):
        sys.exit("give one --image per --model")
    torch.set_num_threads(2)
    results = [run(m, i) for m, i in zip(args.model, args.image)]
    summ = summary(results)
    print(json.dumps(summ, indent=1))
    doc = {"machine": "2-core AMD EPYC (shared)", "equal_db": EQUAL_DB, "summary": summ, "results": results}
    atomic_write(args.json, lambda tmp: tmp.write_text(json.dumps(doc, indent=1)))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
