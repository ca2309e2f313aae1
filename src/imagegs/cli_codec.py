"""``imagegs encode | decode`` and the .igs half of ``imagegs info`` (registered by cli.py).

    imagegs encode photo.png -o photo.igs --bpp 0.3          # rate control: whole file <= 0.3 bpp
    imagegs encode photo.png -o photo.igs --gaussians 5000 --bits 12,8,8,8
    imagegs decode photo.igs -o photo.png --scale 2 --lod 3
    imagegs info photo.igs
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from . import codec, igsfile
from .fit import SCHEDULES

__all__ = ["add_parsers", "is_igs", "print_igs_info"]


def is_igs(path: str | Path) -> bool:
    """Whether a file starts with the .igs magic number."""
    try:
        with open(path, "rb") as f:
            return f.read(len(igsfile.MAGIC)) == igsfile.MAGIC
    except OSError:
        return False


def _names_metadata(image) -> tuple[tuple[str, ...] | None, list | None, dict]:
    """Channel names / groups / bit depths worth storing (defaults cost no bytes)."""
    from .io import _LETTERS_BY_CHANNELS

    c = len(image.channel_names)
    single = len(image.groups) == 1
    names = None if single and "".join(image.channel_names) == _LETTERS_BY_CHANNELS.get(c) else image.channel_names
    groups = None if single else [list(gr) for gr in image.groups]
    meta = {} if all(d == 8 for d in image.bit_depths) else {"bit_depths": list(image.bit_depths)}
    return names, groups, meta


def cmd_encode(args: argparse.Namespace) -> int:
    from .cli import CLIError, _check_output, _format_bytes, _top_k_arg, quality_8bit, read_source, set_threads
    from .renderer import render

    out = Path(args.output)
    _check_output(out, "the .igs file")
    options: dict = {"seed": args.seed, "schedule": args.schedule, "lod_training": args.lod_training,
                     "progress": not args.quiet}
    if args.top_k is not None:
        options["top_k"] = _top_k_arg(args.top_k)
    if args.steps is not None:
        if args.steps < 1:
            raise CLIError(f"--steps must be at least 1, got {args.steps}")
        options["max_steps"] = args.steps
    if args.bits is not None:
        options["bits"] = args.bits
    if args.qat is not None:
        options["qat"] = args.qat
    if args.polish_steps < 0:
        raise CLIError(f"--polish-steps must be at least 0, got {args.polish_steps}")
    options["polish_steps"] = args.polish_steps
    if args.gaussians is not None and args.gaussians < 1:
        raise CLIError(f"--gaussians must be at least 1, got {args.gaussians}")
    set_threads(args.threads)
    image = read_source(args.images, alpha=args.alpha)
    names, groups, meta = _names_metadata(image)
    if not args.quiet:
        target = f"{args.bpp} bpp" if args.bpp is not None else f"{args.gaussians or 10000} Gaussians"
        print(f"encoding {', '.join(map(str, image.source))}: {image.width}x{image.height}, "
              f"{len(image.channel_names)} channels, {target}", file=sys.stderr)
    enc = codec.compress(image.pixels, bpp=args.bpp, num_gaussians=args.gaussians, metadata=meta,
                         channel_names=names, groups=groups, **options)
    codec.save_igs(enc.data, out)
    g = replace(enc.gaussians, channel_names=None, groups=None)
    with torch.no_grad():
        rendering = render(g, top_k=options.get("top_k", 10)).clamp_(0, 1)
    psnr, ssim = quality_8bit(rendering, image.pixels)
    print(f"file       {out} ({_format_bytes(len(enc.data))}, {enc.bpp:.4f} bpp)")
    print(f"Gaussians  {enc.num} in {len(enc.levels)} levels ({', '.join(map(str, enc.levels))})")
    print(f"bits       {enc.bits}")
    print(f"fit        {enc.fit_info.get('steps', '?')} steps, {enc.fits} fit(s)")
    print(f"PSNR       {psnr:.2f} dB (8-bit, decoded)")
    print(f"SSIM       {ssim:.4f} (8-bit, decoded)")
    return 0


def cmd_decode(args: argparse.Namespace) -> int:
    from .cli import _check_output, _format_bytes, _top_k_arg, output_depths, output_size, set_threads
    from .io import write_images

    out = Path(args.output)
    _check_output(out, "the decoded image", image=True)
    set_threads(args.threads)
    data = Path(args.file).read_bytes()
    g, header = codec.decode_gaussians(data, lod=args.lod)
    h, w = output_size(g.height, g.width, out_width=args.width, out_height=args.height, scale=args.scale)
    top_k = _top_k_arg(args.top_k) if args.top_k is not None else header.top_k
    from .renderer import render
    from .renderer.options import decode_kwargs

    options = decode_kwargs(args, h, w)
    with torch.no_grad():
        pixels = render(g, h, w, top_k=top_k, backend=args.backend, **options).clamp_(0, 1)
    groups = header.groups or [("image", header.channels)]
    depths = output_depths(groups, header.metadata.get("bit_depths"))
    for p in write_images(pixels, out, groups=groups, bit_depths=depths):
        print(f"{p} ({pixels.shape[2]}x{pixels.shape[1]}, {_format_bytes(p.stat().st_size)}, {g.num} Gaussians)")
    return 0


def print_igs_info(path: Path) -> int:
    """``imagegs info`` for an .igs file: header, levels and the bytes spent on each."""
    from .cli import _format_bytes

    data = path.read_bytes()
    h = igsfile.read_header(data)
    size = len(data)
    pixels = h.width * h.height
    print(f"file       {path} ({_format_bytes(size)}, {8 * size / pixels:.4f} bpp, .igs v{igsfile.VERSION})")
    print(f"size       {h.width}x{h.height} (width x height)")
    print(f"Gaussians  {h.num}, top-k {h.top_k or 'all'}")
    print(f"channels   {h.channels}" + (f": {', '.join(h.channel_names)}" if h.channel_names else ""))
    if h.groups:
        print("groups     " + ", ".join(f"{n} ({c})" for n, c in h.groups))
    print(f"bits       {h.bits} (official payload formula: {h.bits.payload_bits(h.channels)} bits/Gaussian)")
    official = h.bits.payload_bits(h.channels) * h.num / 8
    print(f"coder      {codec_name(h.coder)}; file is {size / official:.1%} of the official payload formula")
    print(f"header     {h.header_bytes} bytes")
    cum = h.header_bytes
    for i, (n, b) in enumerate(zip(h.levels, h.block_bytes + [None] * len(h.levels))):
        if b is None:
            print(f"level {i + 1:<4} {n} Gaussians: MISSING (file truncated)")
            continue
        cum += b
        print(f"level {i + 1:<4} {n} Gaussians, {b} bytes ({8 * b / max(n, 1):.1f} bits each); "
              f"levels 1..{i + 1}: {8 * cum / pixels:.4f} bpp")
    if len(h.block_bytes) == len(h.levels) and cum != size:
        print(f"warning    {size - cum} unexpected bytes after the last level")
    return 0


def codec_name(coder: int) -> str:
    from .bitstream import CODER_NAMES

    return CODER_NAMES[coder]


def add_parsers(sub, common: argparse.ArgumentParser, *, alpha_policies) -> None:
    """Register ``encode`` and ``decode`` on the main parser's subparsers."""
    p = sub.add_parser("encode", parents=[common], help="fit and compress an image to an .igs file",
                       description="Fit Gaussians, quantise them and write "
                                   "a compressed .igs file. --bpp sets the whole-file size (rate "
                                   "control: within 5%% below the target).")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image, folder/files (stack) or sample")
    p.add_argument("-o", "--output", required=True, metavar="OUT.igs", help="file to write")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--bpp", type=float, metavar="B", help="target bits per pixel of the whole file")
    rate.add_argument("--gaussians", type=int, metavar="N", help="fixed number of Gaussians (default 10000)")
    p.add_argument("--bits", metavar="BITS",
                   help="bits per value: 16, or position,scale,rotation,colour e.g. 12,8,8,8 "
                        "(default: position ~1/4 px, others 8)")
    p.add_argument("--qat", type=float, metavar="F",
                   help="quantisation-aware fitting from this share of the steps on (0 = throughout); "
                        "default: fit in float, quantise after")
    p.add_argument("--polish-steps", type=int, default=codec.POLISH_STEPS, metavar="S",
                   help="steps re-fitting the colours on the quantised geometry "
                        f"(default {codec.POLISH_STEPS}; 0: none)")
    p.add_argument("--lod-training", action="store_true",
                   help="make every level of detail good on its own (costs some final quality)")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default="fast", help="fit schedule")
    p.add_argument("--steps", type=int, metavar="S", help="maximum optimisation steps")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--alpha", choices=alpha_policies, default="keep", help="alpha channel policy")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", parents=[common], help="decode an .igs file to image file(s)",
                       description="Decode an .igs file at any size and level of detail.")
    p.add_argument("file", metavar="FILE", help=".igs file")
    p.add_argument("-o", "--output", required=True, metavar="PNG", help="output image")
    p.add_argument("--width", type=int, metavar="W", help="output width (alone: keep aspect ratio)")
    p.add_argument("--height", type=int, metavar="H", help="output height (alone: keep aspect ratio)")
    p.add_argument("--scale", type=float, metavar="S", help="scale factor > 0")
    p.add_argument("--lod", type=int, metavar="L", help="levels of detail to use (default all)")
    from .renderer.options import add_decode_options

    add_decode_options(p)  # --region, --no-antialias, --supersample, --filter-sigma
    p.set_defaults(func=cmd_decode)
