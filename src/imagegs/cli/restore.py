"""``imagegs restore``: denoise and compress in one (:mod:`imagegs.restore`).

    imagegs restore noisy.png -o clean.png                    # noise estimated, budget automatic
    imagegs restore noisy.png -o clean.png --igs clean.igs    # keep the compressed file too
    imagegs restore noisy.png -o clean.png --noise 25 --bpp 0.3
"""

from __future__ import annotations

import argparse
import sys

from ._common import (
    CLIError,
    add_fit_options,
    check_output,
    fit_kwargs,
    format_bytes,
    positive_float,
    positive_int,
    set_threads,
)


def noise_value(text: str) -> str | float:
    """--noise: 'auto' or a noise std >= 0 on 8-bit values."""
    from ..restoration import check_noise

    try:
        value = check_noise(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return "auto" if value is None else value


def cmd_restore(args: argparse.Namespace) -> int:
    """``imagegs restore``: estimate the noise, fit, encode, decode, write."""
    from ..codec import save_igs
    from ..io import read_source, write_image
    from ..metrics import quality_8bit
    from ..restoration import restore

    out = check_output(args.output, "the restored image", image=True)
    igs = check_output(args.igs, "the .igs file") if args.igs else None
    set_threads(args.threads)
    image = read_source(args.images, alpha=args.alpha)
    if len(image.groups) > 1:
        raise CLIError(f"{', '.join(map(str, image.source))}: restore takes one image, not a texture stack")
    if args.gaussians is not None and args.gaussians > image.height * image.width:
        raise CLIError(f"--gaussians {args.gaussians} is more than the {image.width}x{image.height} "
                       "image has pixels; use fewer Gaussians")
    if not args.quiet:
        print(f"restoring {image.source[0]}: {image.width}x{image.height}, {len(image.channel_names)} "
              f"channels, schedule {args.schedule}", file=sys.stderr)
    r = restore(image, bpp=args.bpp, gaussians=args.gaussians, noise=args.noise, **fit_kwargs(args))
    write_image(r.image, out)
    if igs is not None:
        save_igs(r.data, igs)
    psnr, _ = quality_8bit(r.image, image.pixels)
    enc = r.encoded
    print(f"noise      {r.sigma:.2f} (std, 8-bit levels, {'estimated' if r.estimated else 'given'})")
    print(f"Gaussians  {enc.num} ({'automatic budget' if r.budget == 'auto' else '--' + r.budget})")
    print(f"file       {format_bytes(len(enc.data))}, {enc.bpp:.4f} bpp" + (f" -> {igs}" if igs else " (not kept; --igs)"))
    print(f"change     {psnr:.2f} dB PSNR against the input (what was removed)")
    print(f"wrote      {out}")
    return 0


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser,
                schedules: list[str]) -> None:
    """Register ``restore``; ``common`` holds --top-k, --backend and --threads."""
    p = sub.add_parser("restore", parents=[common], help="denoise and compress an image in one",
                       description="Estimate the noise of an image, fit it with a Gaussian budget "
                                   "that captures its content but not the noise, and write the "
                                   "decoded image (and, with --igs, the compressed file).")
    add_fit_options(p, schedules, output="CLEAN.png", what="restored image")
    rate = p.add_mutually_exclusive_group()
    rate.add_argument("--bpp", type=positive_float, metavar="B",
                      help="whole-file bits per pixel instead of the automatic budget")
    rate.add_argument("--gaussians", type=positive_int, metavar="N",
                      help="a fixed Gaussian count instead of the automatic budget")
    p.add_argument("--noise", type=noise_value, default="auto", metavar="auto|SIGMA",
                   help="noise std on 8-bit values (0..255), or auto (default: estimated)")
    p.add_argument("--igs", metavar="OUT.igs", help="also write the compressed .igs file")
    p.set_defaults(func=cmd_restore)
