"""``imagegs encode | decode``, and the .igs half of ``imagegs info``.

    imagegs encode photo.png -o photo.igs --bpp 0.3          # rate control: whole file <= 0.3 bpp
    imagegs encode photo.png -o photo.igs --gaussians 5000 --bits 12,8,8,8
    imagegs encode rock_albedo.png rock_normal.png rock_gloss.png -o rock.igs --bpp 1 --map-weights normal:2
    imagegs decode photo.igs -o photo.png --scale 2 --lod 3
    imagegs info photo.igs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import _jit
from ..defaults import DEFAULT_NUM_GAUSSIANS, DEFAULT_TOP_K
from ..io import read_source, write_images
from ..metrics import map_quality, quality_8bit
from ..textures import DEFAULT_KIND_WEIGHTS, finish_maps, parse_map_weights
from ._common import (add_fit_options, fit_kwargs, CLIError, add_decode_options, add_size_options, check_output,
                      decode_kwargs, format_bytes, fraction, nonnegative_int, output_depths, positive_float,
                      positive_int, resolve_importance, set_threads, size_from_args, top_k_arg)


def cmd_encode(args: argparse.Namespace) -> int:
    """``imagegs encode``: fit, quantise and write an .igs file; report its size and quality."""
    import torch

    from .. import codec
    from ..renderer import render

    out = check_output(args.output, "the .igs file")
    options = encode_options(args)
    if args.map_weights is not None:
        options["map_weights"] = parse_map_weights(args.map_weights)
    set_threads(args.threads)
    image = read_source(args.images, alpha=args.alpha, maps=args.maps)
    options = resolve_importance(options, image.pixels)
    if not args.quiet:
        target = f"{args.bpp} bpp" if args.bpp is not None else f"{args.gaussians or DEFAULT_NUM_GAUSSIANS} Gaussians"
        print(f"encoding {', '.join(map(str, image.source))}: {image.width}x{image.height}, "
              f"{len(image.channel_names)} channels, {target}, schedule {args.schedule}", file=sys.stderr)
    enc = codec.compress(image, **options)
    codec.save_igs(enc.data, out)
    with torch.no_grad():
        rendering = render(enc.gaussians, top_k=options.get("top_k", DEFAULT_TOP_K)).clamp_(0, 1)
    rendering = finish_maps(rendering, image.groups, image.map_kinds())
    psnr, ssim = quality_8bit(rendering, image.pixels)
    print(f"file       {out} ({format_bytes(len(enc.data))}, {enc.bpp:.4f} bpp, {enc.bppc:.4f} BPPC)")
    print(f"Gaussians  {enc.num} in {len(enc.levels)} levels ({', '.join(map(str, enc.levels))})")
    print(f"bits       {enc.bits}")
    print(f"fit        {enc.fit_info.get('steps', '?')} steps, {enc.fits} fit(s)")
    print(f"PSNR       {psnr:.2f} dB (8-bit, decoded)")
    print(f"SSIM       {ssim:.4f} (8-bit, decoded)")
    if len(image.groups) > 1 or image.map_kinds():
        for row in map_quality(image.pixels, rendering, image.groups, image.kinds):
            angle = f", {row['angle']:.2f} deg mean angular error" if "angle" in row else ""
            print(f"map        {row['map']} ({row['kind']}): PSNR {row['psnr']:.2f} dB, SSIM {row['ssim']:.4f}{angle}")
    return 0


def encode_options(args: argparse.Namespace) -> dict:
    """:func:`imagegs.codec.compress`'s keyword arguments from the options of
    :func:`add_encode_options` (and of ``add_fit_settings``, --top-k)."""
    from ..quantize import Bits

    options = dict(fit_kwargs(args), bpp=args.bpp, num_gaussians=args.gaussians,
                   lod_training=args.lod_training, polish_steps=args.polish_steps)
    if args.bits is not None:
        try:
            options["bits"] = Bits.parse(args.bits)
        except ValueError as e:
            raise CLIError(f"--bits {args.bits}: {e}") from None
    if args.qat is not None:
        options["qat"] = args.qat
    return options


def cmd_decode(args: argparse.Namespace) -> int:
    """``imagegs decode``: an .igs file to image file(s) at any size, level of detail or region."""
    import torch

    from .. import codec
    from ..renderer import render

    out = check_output(args.output, "the decoded image", image=True, bit_depth=args.bit_depth)
    set_threads(args.threads)
    header = codec.read_igs_header(args.file)
    h, w = size_from_args(args, header.height, header.width)  # refuse a huge size before decoding
    g = codec.decode_gaussians(args.file, lod=args.lod)
    top_k = top_k_arg(args.top_k, header.top_k)
    options = decode_kwargs(args, h, w)
    if args.backend != "reference":
        _jit.prepare("render", notice=True)  # a one-line notice when the kernels must be compiled
    with torch.no_grad():
        pixels = render(g, h, w, top_k=top_k, backend=args.backend, **options).clamp_(0, 1)
    pixels = finish_maps(pixels, header.groups, header.kinds)  # normal maps back to unit vectors
    groups = header.groups or [("image", header.channels)]
    depths = output_depths(groups, header.metadata.get("bit_depths"), args.bit_depth)
    for p in write_images(pixels, out, groups=groups, bit_depths=depths):
        print(f"{p} ({pixels.shape[2]}x{pixels.shape[1]}, {format_bytes(p.stat().st_size)}, {g.num} Gaussians)")
    return 0


def print_igs_info(path: Path) -> int:
    """``imagegs info`` for an .igs file: header, levels and the bytes spent on each."""
    from .. import codec, igsfile
    from ..bitstream import CODER_NAMES

    data = path.read_bytes()
    h = codec.read_igs_header(path)
    size = len(data)
    pixels = h.width * h.height
    version = data[len(igsfile.MAGIC)]
    print(f"file       {path} ({format_bytes(size)}, {8 * size / pixels:.4f} bpp, "
          f"{8 * size / (pixels * h.channels):.4f} BPPC, .igs v{version})")
    print(f"size       {h.width}x{h.height} (width x height)")
    print(f"Gaussians  {h.num}, top-k {h.top_k or 'all'}")
    print(f"channels   {h.channels}" + (f": {', '.join(h.channel_names)}" if h.channel_names else ""))
    if h.groups:
        print("groups     " + ", ".join(f"{n} ({c})" for n, c in h.groups))
    if h.kinds:
        names = [n for n, _ in h.groups] if h.groups else ["image"]
        print("map kinds  " + ", ".join(f"{n}: {k}" for n, k in zip(names, h.kinds)))
    print(f"bits       {h.bits} (official payload formula: {h.bits.payload_bits(h.channels)} bits/Gaussian)")
    official = h.bits.payload_bits(h.channels) * h.num / 8
    print(f"coder      {CODER_NAMES[h.coder]}; file is {size / official:.1%} of the official payload formula")
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


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser,
                schedules: list[str]) -> None:
    """Register ``encode`` and ``decode``; ``common`` holds
    --top-k, --backend and --threads."""
    from ..codec import RATE_TOLERANCE
    from ..defaults import ENCODE_SCHEDULE

    about = (f"Fit Gaussians, quantise them and write a compressed .igs file. --bpp sets the whole-file "
             f"size (rate control: the file lands within {RATE_TOLERANCE:.0%} below the target). The "
             "default encoder, c2f, fits most steps at 1/4 and 1/2 size, prunes to the rate and refines "
             "the bit depth predicted to decode closest at full size (about 55 s for a 1024-px image "
             "at 0.3 bpp on two cores).")
    p = sub.add_parser("encode", parents=[common], help="fit and compress an image to an .igs file",
                       description=about)
    add_fit_options(p, schedules, output="OUT.igs", what=".igs file", schedule=ENCODE_SCHEDULE)
    add_encode_options(p)
    p.add_argument("--map-weights", metavar="NAME:W,...",
                   help="texture sets: loss weight per map name or kind, e.g. normal:2,gloss:0.5 (default: "
                        + ", ".join(f"{k} {w:g}" for k, w in DEFAULT_KIND_WEIGHTS.items()) + ")")
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", parents=[common], help="decode an .igs file to image file(s)",
                       description="Decode an .igs file at any size, level of detail or region.")
    p.add_argument("file", metavar="FILE.igs", help=".igs file")
    p.add_argument("-o", "--output", required=True, metavar="PNG", help="output image")
    add_render_file_options(p)
    p.set_defaults(func=cmd_decode)


def add_encode_options(p: argparse.ArgumentParser) -> None:
    """What ``encode`` and ``batch encode`` take besides the fit settings: --bpp or --gaussians,
    --bits, --qat, --polish-steps, --lod-training."""
    from ..codec import POLISH_STEPS

    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--bpp", type=positive_float, metavar="B", help="target bits per pixel of the whole file")
    rate.add_argument("--gaussians", type=positive_int, metavar="N",
                      help=f"fixed number of Gaussians (default {DEFAULT_NUM_GAUSSIANS})")
    p.add_argument("--bits", metavar="BITS",
                   help="bits per value: 16, or position,scale,rotation,colour e.g. 12,8,8,8 "
                        "(default: chosen from the Gaussians' spacing: positions 10..16 bits, the "
                        "others 6..8)")
    p.add_argument("--qat", type=fraction, metavar="F",
                   help="quantisation-aware fitting from this share of the steps on (0 = throughout); "
                        "default: fit in float, quantise after")
    p.add_argument("--polish-steps", type=nonnegative_int, default=POLISH_STEPS, metavar="S",
                   help="conjugate-gradient iterations re-fitting the colours on the quantised "
                        f"geometry (least squares; default {POLISH_STEPS}; 0: none)")
    p.add_argument("--lod-training", action="store_true",
                   help="make every level of detail good on its own (costs some final quality)")


def add_render_file_options(p: argparse.ArgumentParser) -> None:
    """What ``decode`` and ``batch decode`` take besides the file and -o: the size, --lod,
    --bit-depth and the anti-aliasing and region options."""
    add_size_options(p)
    p.add_argument("--lod", type=positive_int, metavar="L", help="levels of detail to use (default all)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16),
                   help="bits per sample (default: the source's; 16 needs .png or .tif)")
    add_decode_options(p)
