"""``imagegs fit | render | info``: model files (.gsm), and ``info`` for both file kinds.

    imagegs fit photo.png -o photo.gsm --gaussians 10000 --render photo_gs.png
    imagegs fit textures/ -o material.gsm            # a folder is a texture stack
    imagegs fit astronaut -o astronaut.gsm           # a scikit-image sample (also skimage:coffee)
    imagegs render photo.gsm -o big.png --scale 2.5
    imagegs render photo.gsm -o crop.png --scale 4 --region 0,0,512,512   # a window only
    imagegs info photo.gsm
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import replace
from pathlib import Path

from .. import __version__, _jit
from ..container import MAGIC as MODEL_MAGIC
from ..container import load_model, save_model
from ..defaults import DEFAULT_NUM_GAUSSIANS, DEFAULT_TOP_K, MAX_TOP_K
from ..igsfile import MAGIC as IGS_MAGIC
from ..io import read_source, write_images
from ..metrics import quality_8bit
from ._common import (add_fit_options, fit_kwargs, CLIError, add_bit_depth, add_decode_options, add_size_options,
                      check_output, decode_kwargs, format_bytes, output_depths,
                      positive_int, resolve_importance, set_threads, size_from_args, top_k_arg)



def fit_top_k(metadata: dict) -> tuple[bool, int | None]:
    """(found, top_k) of the fit that made a model, from its metadata."""
    settings = metadata.get("fit")
    if isinstance(settings, dict) and "top_k" in settings:
        k = settings["top_k"]
        if k is None or (type(k) is int and 1 <= k <= MAX_TOP_K):
            return True, k
    return False, None


def cmd_fit(args: argparse.Namespace) -> int:
    """``imagegs fit``: fit Gaussians to an image or stack, save the model, report quality."""
    import torch

    from ..fitting import fit
    from ..renderer import render

    out = check_output(args.output, "the model")
    if args.render:
        check_output(args.render, "the rendering", image=True)
    num = args.gaussians if args.gaussians is not None else DEFAULT_NUM_GAUSSIANS
    options = dict(fit_kwargs(args), backend=args.backend, num_gaussians=num)
    set_threads(args.threads)

    image = read_source(args.images, alpha=args.alpha, maps=args.maps)
    options = resolve_importance(options, image.pixels)
    if num > image.height * image.width:
        raise CLIError(f"--gaussians {num} is more than the {image.width}x{image.height} image has "
                       "pixels; use fewer Gaussians")
    if not args.quiet:
        print(f"fitting {', '.join(map(str, image.source))}: {image.width}x{image.height}, "
              f"{len(image.channel_names)} channels, {num} Gaussians, schedule {args.schedule}",
              file=sys.stderr)

    g = fit(image.pixels, **options)
    info = g.fit_info
    g = replace(g, channel_names=image.channel_names, groups=list(image.groups))
    settings = info.get("config", {})
    with torch.no_grad():
        rendering = render(g, top_k=settings.get("top_k", DEFAULT_TOP_K), backend=args.backend).clamp_(0, 1)
    psnr, ssim = quality_8bit(rendering, image.pixels)

    metadata = {
        "imagegs_version": __version__,
        "source": [str(p) for p in image.source],
        "groups": [[name, n] for name, n in image.groups],
        "bit_depths": list(image.bit_depths),
        "channel_names": list(image.channel_names),
        "schedule": args.schedule,
        "fit": settings,
        "psnr": psnr if math.isfinite(psnr) else None,  # JSON has no infinity (exact fit)
        "ssim": ssim,
        "steps": info.get("steps"),
        "seconds": info.get("seconds"),
    }
    save_model(g, out, metadata=metadata)
    written = (write_images(rendering, args.render, groups=image.groups, bit_depths=image.bit_depths)
               if args.render else [])

    seconds = info.get("seconds")
    print(f"Gaussians  {g.num}")
    print(f"steps      {info.get('steps', '?')}" + (f" in {seconds:.1f} s" if seconds is not None else ""))
    print(f"PSNR       {psnr:.2f} dB (8-bit)")
    print(f"SSIM       {ssim:.4f} (8-bit)")
    print(f"model      {out} ({format_bytes(out.stat().st_size)})")
    for p in written:
        print(f"rendering  {p}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """``imagegs render``: render a model at any size to one image file per channel group."""
    import torch

    from ..renderer import render

    out = check_output(args.output, "the rendering", image=True, bit_depth=args.bit_depth)
    set_threads(args.threads)
    model = load_model(args.model)
    g, metadata = model.gaussians, model.metadata
    h, w = size_from_args(args, g.height, g.width)
    found, fitted_k = fit_top_k(metadata)  # default: blend as many Gaussians per pixel as the fit did
    top_k = top_k_arg(args.top_k, fitted_k if found else DEFAULT_TOP_K)
    groups = g.groups or [("image", g.channels)]
    depths = output_depths(groups, metadata.get("bit_depths"), args.bit_depth)
    options = decode_kwargs(args, h, w)
    if args.backend != "reference":
        _jit.prepare("render", notice=True)  # a one-line notice when the kernels must be compiled
    with torch.no_grad():
        pixels = render(g, h, w, top_k=top_k, backend=args.backend, **options).clamp_(0, 1)
    for p in write_images(pixels, out, groups=groups, bit_depths=depths):
        print(f"{p} ({pixels.shape[2]}x{pixels.shape[1]}, {format_bytes(p.stat().st_size)})")
    return 0


def file_kind(path: Path) -> str:
    """'igs', 'model', or a CLIError naming the file if it is neither."""
    with open(path, "rb") as f:
        head = f.read(max(len(IGS_MAGIC), len(MODEL_MAGIC)))
    if head.startswith(IGS_MAGIC):
        return "igs"
    if head.startswith(MODEL_MAGIC):
        return "model"
    what = "an empty file" if not head else "not an imagegs file"
    raise CLIError(f"{path}: {what} (expected an .igs file from 'imagegs encode' or a .gsm model "
                   "file from 'imagegs fit')")


def cmd_info(args: argparse.Namespace) -> int:
    """``imagegs info``: describe an .igs file or a model file."""
    path = Path(args.file)
    if file_kind(path) == "igs":
        from .codec import print_igs_info

        return print_igs_info(path)
    model = load_model(path)
    g, meta = model.gaussians, model.metadata
    print(f"model      {path} ({format_bytes(path.stat().st_size)})")
    print(f"size       {g.width}x{g.height} (width x height)")
    print(f"Gaussians  {g.num}")
    names = f": {', '.join(g.channel_names)}" if g.channel_names else ""
    print(f"channels   {g.channels}{names}")
    if g.groups:
        print("groups     " + ", ".join(f"{name} ({n})" for name, n in g.groups))
    if meta.get("source"):
        print("source     " + ", ".join(map(str, meta["source"])))
    if isinstance(meta.get("bit_depths"), list):
        print("bit depths " + ", ".join(map(str, meta["bit_depths"])))
    fit_parts = []
    if meta.get("schedule"):
        fit_parts.append(f"schedule {meta['schedule']}")
    if isinstance(meta.get("steps"), int):
        fit_parts.append(f"{meta['steps']} steps")
    if isinstance(meta.get("seconds"), (int, float)):
        fit_parts.append(f"{meta['seconds']:.1f} s")
    found, k = fit_top_k(meta)
    if found:
        fit_parts.append(f"top-k {k if k is not None else 'all'}")
    if fit_parts:
        print("fit        " + ", ".join(fit_parts))
    if "psnr" in meta or "ssim" in meta:
        p, s = meta.get("psnr"), meta.get("ssim")
        p = f"{p:.2f} dB" if isinstance(p, (int, float)) else "inf" if "psnr" in meta else "?"
        s = f"{s:.4f}" if isinstance(s, (int, float)) else "?"
        print(f"quality    PSNR {p}, SSIM {s} (8-bit)")
    known = {"imagegs_version", "source", "groups", "bit_depths", "channel_names", "schedule", "fit",
             "psnr", "ssim", "steps", "seconds"}
    others = sorted(set(meta) - known)
    if others:
        print("metadata   also: " + ", ".join(others))
    elif not meta:
        print("metadata   none")
    return 0


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser,
                schedules: list[str]) -> None:
    """Register ``fit``, ``render`` and ``info``; ``common`` holds
    --top-k, --backend and --threads."""
    p = sub.add_parser("fit", parents=[common], help="fit Gaussians to an image or texture stack",
                       description="Fit Gaussians to an image, a folder or list of images (a "
                                   "texture stack), or a scikit-image sample ('astronaut', "
                                   "'skimage:coffee'), and save the model file (.gsm).")
    add_fit_options(p, schedules, output="OUT.gsm", what="model file")
    p.add_argument("--gaussians", type=positive_int, metavar="N",
                   help=f"number of Gaussians (default {DEFAULT_NUM_GAUSSIANS})")
    p.add_argument("--render", metavar="PNG",
                   help="also write the rendering (one file per map for stacks)")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("render", parents=[common], help="render a model file to image file(s)",
                       description="Render a model file (.gsm) at its native size or any other; "
                                   "texture stacks give one file per map (OUT_<map>.png).")
    p.add_argument("model", metavar="MODEL.gsm", help="model file written by 'imagegs fit'")
    p.add_argument("-o", "--output", required=True, metavar="PNG",
                   help="output image (.png, .tif, .jpg, .webp)")
    add_size_options(p)
    add_bit_depth(p, "the source's")
    add_decode_options(p)
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("info", help="describe an .igs file or a model file",
                       description="Describe an .igs file (header, levels, bytes) or a .gsm model file.")
    p.add_argument("file", metavar="FILE", help=".igs file or .gsm model file")
    p.set_defaults(func=cmd_info)
