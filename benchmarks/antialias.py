"""Rendering at other sizes: anti-aliased downscaling, and Gaussian upscaling vs Lanczos.

    nice -n 10 python benchmarks/fitcache.py --factors 1 2 3 4     # the fits (cached, slow)
    nice -n 10 python benchmarks/antialias.py --json benchmarks/results/antialias.json

Uses the cached fits of ``fitcache.py`` that exist (it says which). 8-bit PSNR throughout.

Downscaling (``downscale``): the default fit of each image (long side 1024, 10k Gaussians) rendered
at 1/2, 1/3, 1/4 and 1/8 of its size, against the original Lanczos-downscaled (PIL) to that size:
point sampling (``antialias=False``), the default (sub-samples of prefiltered Gaussians), the
prefilter alone (``supersample=1``) at several filter widths sigma (native pixels), and at 1/8 the
default sub-sampling with each sigma; for reference, the native decode Lanczos- or box-downscaled.

Upscaling (``upscale``): there is no high-resolution truth, so the original is downscaled by f
(Lanczos), that image is fitted (10000 / f^2 Gaussians: the native fits' density), and the model is
rendered at the original size and compared with the original; against Lanczos and bicubic
upscaling of the same model's native decode, and of the downscaled image itself.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import imagegs
from imagegs import metrics
from imagegs.io import atomic_write, to_uint8
from imagegs.renderer import FILTER_SIGMA

import fitcache

FACTORS = (2, 3, 4)
DOWN_FACTORS = (2, 3, 4, 8)


def psnr8(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB) of two uint8 (H, W, 3) images."""
    return metrics.psnr(torch.from_numpy(a).double() / 255, torch.from_numpy(b).double() / 255)


def decode8(g: imagegs.Gaussians, height: int, width: int, **options) -> np.ndarray:
    with torch.no_grad():
        return to_uint8(imagegs.render(g, height, width, **options).clamp(0, 1))


def resize8(img: np.ndarray, width: int, height: int, method) -> np.ndarray:
    return np.asarray(Image.fromarray(img).resize((width, height), method))


def downscale(path: Path, g: imagegs.Gaussians, sigmas: list[float]) -> list[dict]:
    original = fitcache.original(path)
    native = decode8(g, g.height, g.width)
    rows = []
    for f in DOWN_FACTORS:
        w, h = round(original.width / f), round(original.height / f)
        target = np.asarray(original.resize((w, h), Image.LANCZOS))
        row = {"image": path.stem, "factor": f, "width": w, "height": h,
               "point_sampled": psnr8(decode8(g, h, w, antialias=False), target),
               "default": psnr8(decode8(g, h, w), target),
               "native_then_lanczos": psnr8(resize8(native, w, h, Image.LANCZOS), target),
               "native_then_box": psnr8(resize8(native, w, h, Image.BOX), target)}
        # the prefilter alone (one sample per pixel), and with the default sub-sampling (at most 4 x 4:
        # the filter width only matters beyond a factor of 4)
        row["prefiltered"] = {f"{s:g}": psnr8(decode8(g, h, w, filter_sigma=s, supersample=1), target)
                              for s in sigmas}
        if f > 4:
            row["supersampled"] = {f"{s:g}": psnr8(decode8(g, h, w, filter_sigma=s), target) for s in sigmas}
        rows.append(row)
    return rows


def upscale(path: Path) -> list[dict]:
    original = np.asarray(fitcache.original(path))
    height, width = original.shape[:2]
    rows = []
    for f in FACTORS:
        g = fitcache.cached(path, f)
        if g is None:
            continue
        small = np.asarray(fitcache.downscaled(path, f))
        native = decode8(g, g.height, g.width)
        rows.append({"image": path.stem, "factor": f, "gaussians": g.num, "fit_size": [g.width, g.height],
                     "gaussians_at_size": psnr8(decode8(g, height, width), original),
                     "native_decode_lanczos": psnr8(resize8(native, width, height, Image.LANCZOS), original),
                     "native_decode_bicubic": psnr8(resize8(native, width, height, Image.BICUBIC), original),
                     "image_lanczos": psnr8(resize8(small, width, height, Image.LANCZOS), original),
                     "image_bicubic": psnr8(resize8(small, width, height, Image.BICUBIC), original),
                     "native_decode_psnr": psnr8(native, small)})
    return rows


def _median(rows: list[dict], key: str, factor: int, sub: str | None = None) -> float | None:
    vals = [(r[key][sub] if sub else r[key]) for r in rows if r["factor"] == factor]
    return float(np.median(vals)) if vals else None


def table(result: dict) -> str:
    """Markdown tables of a result's medians."""
    med = result["median"]
    lines = [f"Downscaling: 8-bit PSNR (dB) against the Lanczos-downscaled original, median over "
             f"{', '.join(result['images_downscale'])} (default fits, long side 1024, 10k Gaussians)", "",
             "| factor (images) | point sampled | prefilter alone, sigma 0.3 | best prefilter alone | **default** (sub-samples) "
             "| native decode, box-downscaled | native decode, Lanczos-downscaled |", "|---|---|---|---|---|---|---|"]
    for f, v in med["downscale"].items():
        best = max(v["prefiltered"], key=lambda k: v["prefiltered"][k])
        lines.append(f"| 1/{f} ({v['images']}) | {v['point_sampled']:.2f} | {v['prefiltered']['0.3']:.2f} | "
                     f"{v['prefiltered'][best]:.2f} (sigma {best}) | **{v['default']:.2f}** | "
                     f"{v['native_then_box']:.2f} | {v['native_then_lanczos']:.2f} |")
    if med["upscale"]:
        lines += ["", f"Upscaling: the original downscaled by f, fitted (10000 / f^2 Gaussians), rendered back at the "
                      f"original size; 8-bit PSNR (dB) against the original, median over the images fitted in time "
                      f"({', '.join(result['images_upscale'])})", "",
                  "| factor (images) | Gaussians at the size | native decode, Lanczos-upscaled | native decode, bicubic "
                  "| downscaled image, Lanczos-upscaled | fit quality at its size |", "|---|---|---|---|---|---|"]
        for f, v in med["upscale"].items():
            lines.append(f"| {f}x ({v['images']}) | {v['gaussians_at_size']:.2f} | {v['native_decode_lanczos']:.2f} | "
                         f"{v['native_decode_bicubic']:.2f} | {v['image_lanczos']:.2f} | {v['native_decode_psnr']:.2f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.7])
    ap.add_argument("--table-only", action="store_true", help="print the tables of an existing --json")
    args = ap.parse_args(argv)
    if args.table_only:
        print(table(json.loads(args.json.read_text())))
        return
    down, up = [], []
    for path in fitcache.image_paths():
        g = fitcache.cached(path, 1)
        if g is not None:
            down += downscale(path, g, args.sigmas)
        up += upscale(path)
        print(f"{path.stem}: {'fit' if g is not None else 'no fit'}, "
              f"{sum(r['image'] == path.stem for r in up)} upscale fits", flush=True)
    summary: dict = {"downscale": {}, "upscale": {}}
    for f in DOWN_FACTORS:
        if any(r["factor"] == f for r in down):
            summary["downscale"][f] = {
                "images": sum(r["factor"] == f for r in down),
                **{k: _median(down, k, f) for k in ("point_sampled", "default", "native_then_lanczos",
                                                    "native_then_box")},
                "prefiltered": {s: _median(down, "prefiltered", f, s) for s in down[0]["prefiltered"]},
                "prefilter_gain_over_point_sampled": {
                    s: float(np.median([r["prefiltered"][s] - r["point_sampled"] for r in down if r["factor"] == f]))
                    for s in down[0]["prefiltered"]}}
            if f > 4:
                summary["downscale"][f]["supersampled"] = {s: _median(down, "supersampled", f, s)
                                                           for s in down[0]["prefiltered"]}
        if any(r["factor"] == f for r in up):
            summary["upscale"][f] = {"images": sum(r["factor"] == f for r in up), **{
                k: _median(up, k, f) for k in ("gaussians_at_size", "native_decode_lanczos", "native_decode_bicubic",
                                               "image_lanczos", "image_bicubic", "native_decode_psnr")}}
    result = {"name": "imagegs-antialias", "default_filter_sigma": FILTER_SIGMA,
              "images_downscale": sorted({r["image"] for r in down}), "images_upscale": sorted({r["image"] for r in up}),
              "downscale": down, "upscale": up, "median": summary}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.json, lambda p: Path(p).write_text(json.dumps(result, indent=1)))
    print(table(json.loads(json.dumps(result))))


if __name__ == "__main__":
    main()
