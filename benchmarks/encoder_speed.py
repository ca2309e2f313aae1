"""Encoder speed vs quality: ``imagegs.compress`` at a rate with several encoder variants.

For each image (downscaled to ``--side`` px with an area filter) and rate, every variant is run in
turn (old and new alternate, since the machine is shared and wall times drift), and one JSON
record per (image, side, bpp, variant) is written to benchmarks/results/encoder/records.jsonl:
PSNR/SSIM of the decoded 8-bit image, bpp, wall seconds, CPU seconds (user + sys, all threads),
fits, bit depths, Gaussians, the fit's PSNR history. Records already there are skipped (resumable).
Compile time is excluded by a tiny warm-up encode first.

    python benchmarks/encoder_speed.py --side 512 --bpp 0.3 --images photo-dragonfly anime-concert \\
        --variants quality c2f
    python benchmarks/encoder_speed.py --summary   # medians and mean PSNR per (side, bpp, variant)

At 1024 px the `quality` records of the RD run (benchmarks/results/rd/records.jsonl) are the
reference quality (``--summary`` prints them beside); re-running them costs ~150 s per image.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imagegs import codec, metrics

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "encoder" / "records.jsonl"
RD = HERE / "results" / "rd" / "records.jsonl"
IMAGES = Path("/work/shared/data/images")

# Each variant: the compress options that differ from the defaults.
_C2F_A = dict(schedule="fast", coarse=((4, 600), (2, 1200)), max_steps=1800, decay_steps=(1500,))
_C2F_B = dict(schedule="fast", coarse=((4, 800), (2, 1600)), max_steps=2000, decay_steps=(1700,))
VARIANTS: dict[str, dict] = {
    "default": {},  # what `imagegs encode` does (the code's defaults: see the record's commit)
    "fast": dict(schedule="fast"),
    # the default with stochastic full-size steps (FitConfig.crop: a quarter of the image per step)
    "crop25": dict(crop=0.25),
    # fixed bit depths per attribute (position, scale, rotation, colour)
    "b12776": dict(bits="12,7,7,6"),
    "crop25-r800": dict(crop=0.25, refine_steps=800),
    "quality": dict(schedule="quality"),
    "quality-onefit": dict(schedule="quality", one_fit=True),
    "c2f-a": _C2F_A,
    "c2f-b": _C2F_B,
    "c2f-a-onefit": dict(_C2F_A, one_fit=True),
    "quality-r150": dict(schedule="quality", refine_steps=150),
    "c2f-b-r150": dict(_C2F_B, refine_steps=150),
    "c2f-b-r150-onefit": dict(_C2F_B, refine_steps=150, one_fit=True),
    # prune mid-fit: the fit stops after its coarse steps, the file is pruned to the rate, and the
    # full-size steps run on the kept Gaussians (refine, at the decayed learning rates)
    "c2f-mid": dict(schedule="fast", coarse=((4, 800), (2, 1600)), max_steps=1600, decay_steps=(),
                    refine_steps=400),
    "c2f-mid-half": dict(schedule="fast", coarse=((2, 1600),), max_steps=1600, decay_steps=(), refine_steps=400),
    # c2f-mid-onefit with the coarse factors capped by the density (16 coarse pixels per Gaussian)
    "c2f-d16": dict(schedule="fast", coarse=((4, 800), (2, 1600)), coarse_density=16.0, max_steps=1600,
                    decay_steps=(), refine_steps=400, one_fit=True),
    "c2f-d32": dict(schedule="fast", coarse=((4, 800), (2, 1600)), coarse_density=32.0, max_steps=1600,
                    decay_steps=(), refine_steps=400, one_fit=True),
    # c2f-d16 with 400 full-size steps at the full learning rates before pruning (line art)
    "c2f-d16-full400": dict(schedule="fast", coarse=((4, 600), (2, 1200)), coarse_density=16.0, max_steps=1600,
                            decay_steps=(), refine_steps=400, one_fit=True),
    # c2f-d16 with its error-guided additions sampled from the full-size error (line art)
    "c2f-d16-fulladd": dict(schedule="c2f", full_additions=True),
    "c2f-half-fulladd": dict(schedule="c2f", full_additions=True, coarse=((2, 1600),)),
    "c2f-mid-onefit": dict(schedule="fast", coarse=((4, 800), (2, 1600)), max_steps=1600, decay_steps=(),
                           refine_steps=400, one_fit=True),
}


def load(name: str, side: int) -> np.ndarray:
    """The image ``name`` (a PNG of IMAGES) with its longer side resized to ``side``: area
    downscaling, Lanczos upscaling (2048 px from the 1024-px originals, for timings)."""
    im = Image.open(IMAGES / f"{name}.png").convert("RGB")
    s = side / max(im.size)
    if s != 1:
        im = im.resize((round(im.size[0] * s), round(im.size[1] * s)), Image.BOX if s < 1 else Image.LANCZOS)
    return np.array(im)


def commit() -> str:
    """The imagegs code measured: the git commit of the checkout ``imagegs`` is imported from."""
    import subprocess

    src = Path(codec.__file__).resolve().parent
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=src, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def run_one(img: np.ndarray, bpp: float, options: dict, count: int | None = None) -> dict:
    """Encode, decode and measure one image with one variant's options, at ``bpp`` or (when
    ``count`` is given) with exactly ``count`` Gaussians."""
    hist: list = []
    t0, c0 = time.perf_counter(), time.process_time()
    target = dict(num_gaussians=count) if count else dict(bpp=bpp)
    enc = codec.compress(img, history=hist, **target, **options)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    dec = codec.decode(enc.data, as_uint8=False)
    p, s = metrics.quality_8bit(dec, torch.from_numpy(img).permute(2, 0, 1).float() / 255)
    return dict(psnr=p, ssim=s, bpp=enc.bpp, bytes=len(enc.data), wall_s=wall, cpu_s=cpu, fits=enc.fits,
                bits=str(enc.bits), num=enc.num, bits_tried=enc.fit_info.get("bits_tried"),
                history=[(r["step"], round(r["seconds"], 2), round(r["psnr"], 3), r.get("factor", 1))
                         for r in hist])


def records(path: Path = OUT) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def summary(path: Path = OUT) -> None:
    """Per (side, bpp, variant): images, mean PSNR, median wall and CPU seconds; at 1024 px the
    RD run's quality-schedule PSNR and seconds on the same images beside."""
    recs = records(path)
    rd = {(r["image"], r["target_bpp"]): r for r in map(json.loads, RD.read_text().splitlines())
          if r["codec"] == "imagegs"} if RD.exists() else {}
    keys = sorted({(r["side"], r["target_bpp"]) for r in recs})
    for side, bpp in keys:
        group = [r for r in recs if (r["side"], r["target_bpp"]) == (side, bpp)]
        names = sorted({r["image"] for r in group})
        print(f"\n{side} px, {bpp} bpp, images: {', '.join(names)}")
        for v in sorted({r["variant"] for r in group}):
            rs = [r for r in group if r["variant"] == v]
            line = (f"  {v:16s} n={len(rs)} mean PSNR {statistics.mean(r['psnr'] for r in rs):.3f}  "
                    f"median wall {statistics.median(r['wall_s'] for r in rs):6.1f} s  "
                    f"cpu {statistics.median(r['cpu_s'] for r in rs):6.1f} s  "
                    f"mean bpp {statistics.mean(r['bpp'] for r in rs):.4f}")
            ref = [rd.get((r["image"], bpp)) for r in rs]
            if side == 1024 and all(ref):
                line += (f"  | RD quality on these: {statistics.mean(x['psnr-rgb'] for x in ref):.3f} dB, "
                         f"median {statistics.median(x['encode_s'] for x in ref):.1f} s")
            print(line)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--bpp", type=float, nargs="+", default=[0.3])
    ap.add_argument("--images", nargs="+", default=["photo-dragonfly", "anime-concert", "vector-park"])
    ap.add_argument("--variants", nargs="+", default=["quality", "c2f"], choices=sorted(VARIANTS))
    ap.add_argument("--threads", type=int, default=1,
                    help="Numba and torch threads (default 1: on a shared, oversubscribed machine "
                         "every parallel region waits for its threads to be scheduled)")
    ap.add_argument("--gaussians", type=int, help="a fixed Gaussian count instead of --bpp (recorded as bpp 0)")
    ap.add_argument("--out", type=Path, default=OUT, help="records file (default %(default)s)")
    ap.add_argument("--summary", action="store_true")
    a = ap.parse_args(argv)
    if a.gaussians:
        a.bpp = [0.0]
    import numba

    numba.set_num_threads(a.threads)
    torch.set_num_threads(a.threads)
    if a.summary:
        summary(a.out)
        return 0
    code = commit()
    done = {(r["image"], r["side"], r["target_bpp"], r["variant"], r.get("commit")) for r in records(a.out)}
    codec.compress(np.zeros((16, 16, 3), np.uint8) + 128, num_gaussians=20, max_steps=2)  # compile
    a.out.parent.mkdir(parents=True, exist_ok=True)
    for name in a.images:
        img = load(name, a.side)
        for bpp in a.bpp:
            for v in a.variants:
                if (name, a.side, bpp, v, code) in done:
                    continue
                rec = dict(image=name, side=a.side, target_bpp=bpp, variant=v, options=VARIANTS[v], threads=a.threads,
                           commit=code, count=a.gaussians, **run_one(img, bpp, VARIANTS[v], a.gaussians))
                print(f"{name} {a.side} {bpp} {v}: {rec['psnr']:.3f} dB {rec['bpp']:.4f} bpp "
                      f"wall {rec['wall_s']:.1f} s cpu {rec['cpu_s']:.1f} s fits {rec['fits']} {rec['bits']}",
                      flush=True)
                with a.out.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
