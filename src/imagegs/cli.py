"""Command-line interface: ``imagegs fit | render | encode | decode | info`` (also ``python -m imagegs``).

    imagegs fit photo.png -o photo.imgs --gaussians 10000 --render photo_gs.png
    imagegs fit textures/ -o material.imgs            # a folder is a texture stack
    imagegs fit astronaut -o astronaut.imgs           # a scikit-image sample (also skimage:coffee)
    imagegs render photo.imgs -o big.png --scale 2.5
    imagegs render photo.imgs -o crop.png --scale 4 --region 0,0,512,512   # a window only
    imagegs info photo.imgs

Every expected failure (unreadable image or model, bad option, missing file, unwritable output)
prints one line ``imagegs: error: <message>`` to stderr and exits with status 2, like argparse's
usage errors; Ctrl-C exits with 130 and leaves no partial file (all writes are atomic).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from . import __version__, cli_codec, metrics
from .container import load, save
from .fit import SCHEDULES, FitConfig, fit
from .init import as_image
from .io import ALPHA_POLICIES, Image, read_image, to_uint8, write_images
from .io import _LETTERS_BY_CHANNELS, _Decoded, _apply_alpha, _write_format
from .renderer import BACKENDS, render
from .renderer.options import add_decode_options, decode_kwargs

__all__ = ["main", "build_parser", "output_size", "read_source", "set_threads", "SAMPLES"]

PROG = "imagegs"
EXIT_ERROR = 2  # argparse's status for usage errors; used for every expected failure
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention
MAX_PIXELS = 2**28  # largest rendering the CLI agrees to produce
DEFAULT_TOP_K = 10
SAMPLE_PREFIX = "skimage:"
# scikit-image sample images that ship inside its wheel (no download needed).
SAMPLES = ("astronaut", "brick", "camera", "cat", "cell", "chelsea", "checkerboard", "clock",
           "coffee", "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
           "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
           "shepp_logan_phantom", "text")


class CLIError(ValueError):
    """An expected failure with a message for the user (printed as one line, exit status 2)."""


# ------------------------------------------------------------------------------------ helpers


def set_threads(threads: int | None) -> None:
    """Set the torch and numba thread counts (``None``: leave the defaults)."""
    if threads is None:
        return
    import numba  # only here: plain imports of imagegs stay numba-free

    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= threads <= limit:
        raise CLIError(f"--threads must be between 1 and {limit} (numba's limit, set by "
                       f"NUMBA_NUM_THREADS), got {threads}")
    torch.set_num_threads(threads)
    numba.set_num_threads(threads)


def _sample_name(arg: str) -> str | None:
    """The scikit-image sample an IMAGE argument names, or None for a path.

    ``skimage:NAME`` always names a sample; a bare ``astronaut`` does unless such a file exists.
    """
    if arg.startswith(SAMPLE_PREFIX):
        return arg[len(SAMPLE_PREFIX):]
    if arg == "astronaut" and not Path(arg).exists():
        return arg
    return None


def _read_sample(name: str, alpha: str) -> Image:
    """A scikit-image sample image as an :class:`Image` (8 bits, 16 for float samples)."""
    if name not in SAMPLES:
        raise CLIError(f"unknown scikit-image sample {name!r}; choose one of {', '.join(SAMPLES)}")
    from skimage import data

    arr = getattr(data, name)()
    pixels = as_image(arr)  # (C, H, W) float32 in [0, 1]
    depth = 16 if arr.dtype.kind == "f" or arr.dtype.itemsize > 1 else 8
    dec = _apply_alpha(_Decoded(pixels.permute(1, 2, 0).numpy(), _LETTERS_BY_CHANNELS[len(pixels)],
                                depth), alpha)
    return Image(pixels=torch.from_numpy(np.ascontiguousarray(dec.pixels.transpose(2, 0, 1))),
                 groups=[(name, len(dec.letters))], channel_names=tuple(dec.letters),
                 bit_depths=[depth], source=[Path(SAMPLE_PREFIX + name)])


def read_source(images: Sequence[str], *, alpha: str = "keep") -> Image:
    """What ``imagegs fit`` fits: one file, a folder or several files (a stack), or a sample."""
    samples = [_sample_name(a) for a in images]
    if any(s is not None for s in samples):
        if len(images) > 1:
            raise CLIError("a scikit-image sample must be the only IMAGE (no stacks of samples)")
        return _read_sample(samples[0], alpha)
    return read_image(images[0] if len(images) == 1 else list(images), alpha=alpha)


def _check_output(path: Path, what: str, *, image: bool = False) -> None:
    """Fail early (before a long fit) on an output path that cannot be written."""
    if image:
        _write_format(path)  # ValueError for an extension no writer handles
    if path.is_dir():
        raise CLIError(f"{path}: is a folder; give a file name for {what}")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # atomic_write creates missing folders
        folder = folder.parent
    if not folder.is_dir():
        raise CLIError(f"{folder}: is not a folder, cannot write {what} to {path}")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CLIError(f"{folder}: folder is not writable, cannot write {what}")


def output_size(height: int, width: int, *, out_width: int | None = None,
                out_height: int | None = None, scale: float | None = None) -> tuple[int, int]:
    """The (height, width) to render a ``height`` x ``width`` model at.

    ``scale`` multiplies both sides; one of ``out_width`` / ``out_height`` alone keeps the aspect
    ratio; both set the size exactly; nothing keeps the native size. Raises CLIError for
    non-positive or non-finite values, ``scale`` together with a width/height, and results over
    ``MAX_PIXELS`` pixels.
    """
    if scale is not None:
        if out_width is not None or out_height is not None:
            raise CLIError("give either --scale or --width/--height, not both")
        if not (math.isfinite(scale) and scale > 0):
            raise CLIError(f"--scale must be a finite number > 0, got {scale}")
        fh, fw = height * scale, width * scale
    else:
        for flag, v in (("--width", out_width), ("--height", out_height)):
            if v is not None and v < 1:
                raise CLIError(f"{flag} must be a positive integer, got {v}")
        fh = out_height if out_height is not None else (
            height * out_width / width if out_width is not None else height)
        fw = out_width if out_width is not None else width * fh / height
    if fh * fw > MAX_PIXELS:  # checked on floats first: no giant ints, no round(inf)
        size = f"{fw:.0f}x{fh:.0f}" if math.isfinite(fh * fw) else "infinite"
        raise CLIError(f"the requested output size ({size}) is over the limit of 2^28 pixels")
    h, w = max(1, round(fh)), max(1, round(fw))
    if h * w > MAX_PIXELS:
        raise CLIError(f"output size {w}x{h} is over the limit of 2^28 pixels")
    return h, w


def output_depths(groups: list, stored, override: int | None = None) -> list[int]:
    """Bits per sample to write each channel group with: ``override``, else the source's depths
    stored with the model when they are valid, else 8."""
    if override is not None:
        return [override] * len(groups)
    if isinstance(stored, list) and len(stored) == len(groups) and all(d in (8, 16) for d in stored):
        return stored
    return [8] * len(groups)


def _top_k_arg(top_k: int) -> int | None:
    """--top-k value -> render/fit top_k (0 = every Gaussian of the tile, i.e. None)."""
    if not 0 <= top_k <= 64:
        raise CLIError(f"--top-k must be between 0 (whole tile) and 64, got {top_k}")
    return top_k or None


def quality_8bit(rendering: torch.Tensor, source: torch.Tensor) -> tuple[float, float]:
    """PSNR (dB) and SSIM of a rendering against its source, both as 8-bit images.

    Both go through ``io.to_uint8`` (round(clip(x, 0, 1) * 255)): an 8-bit source comes back
    exactly; a 16-bit (or float) source is quantised to 8 bits the same way as the rendering, so
    the figures describe the 8-bit images one views, whatever the source depth.
    """
    a, b = (torch.from_numpy(to_uint8(x)).permute(2, 0, 1).double() / 255 for x in (rendering, source))
    return metrics.psnr(a, b), float(metrics.ssim(a, b))


def _format_bytes(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def _fit_top_k(metadata: dict) -> tuple[bool, int | None]:
    """(found, top_k) of the fit that made a model, from its metadata."""
    settings = metadata.get("fit")
    if isinstance(settings, dict) and "top_k" in settings:
        k = settings["top_k"]
        if k is None or (type(k) is int and 1 <= k <= 64):
            return True, k
    return False, None


# ----------------------------------------------------------------------------------- commands


def cmd_fit(args: argparse.Namespace) -> int:
    """``imagegs fit``: fit Gaussians to an image or stack, save the model, report quality."""
    out = Path(args.output)
    _check_output(out, "the model")
    if args.render:
        _check_output(Path(args.render), "the rendering", image=True)
    options: dict = {"seed": args.seed, "backend": args.backend}
    if args.top_k is not None:
        options["top_k"] = _top_k_arg(args.top_k)
    if args.steps is not None:
        if args.steps < 1:
            raise CLIError(f"--steps must be at least 1, got {args.steps}")
        options["max_steps"] = args.steps
    num = args.gaussians if args.gaussians is not None else FitConfig(**SCHEDULES[args.schedule]).num_gaussians
    if num < 1:
        raise CLIError(f"--gaussians must be at least 1, got {num}")
    options["num_gaussians"] = num
    set_threads(args.threads)

    image = read_source(args.images, alpha=args.alpha)
    if num > image.height * image.width:
        raise CLIError(f"--gaussians {num} is more than the {image.width}x{image.height} image has "
                       "pixels; use fewer Gaussians")
    label = ", ".join(str(p) for p in image.source)
    if not args.quiet:
        print(f"fitting {label}: {image.width}x{image.height}, {len(image.channel_names)} channels, "
              f"{num} Gaussians, schedule {args.schedule}", file=sys.stderr)

    g = fit(image.pixels, schedule=args.schedule, progress=not args.quiet, **options)
    info = getattr(g, "fit_info", {})
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
    save(g, out, metadata=metadata)
    written = (write_images(rendering, args.render, groups=image.groups, bit_depths=image.bit_depths)
               if args.render else [])

    seconds = info.get("seconds")
    print(f"Gaussians  {g.num}")
    print(f"steps      {info.get('steps', '?')}" + (f" in {seconds:.1f} s" if seconds is not None else ""))
    print(f"PSNR       {psnr:.2f} dB (8-bit)")
    print(f"SSIM       {ssim:.4f} (8-bit)")
    print(f"model      {out} ({_format_bytes(out.stat().st_size)})")
    for p in written:
        print(f"rendering  {p}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    """``imagegs render``: render a model at any size to one image file per channel group."""
    out = Path(args.output)
    _check_output(out, "the rendering", image=True)
    set_threads(args.threads)
    g, metadata = load(args.model)
    h, w = output_size(g.height, g.width, out_width=args.width, out_height=args.height,
                       scale=args.scale)
    if args.top_k is not None:
        top_k = _top_k_arg(args.top_k)
    else:  # blend as many Gaussians per pixel as the fit did
        found, top_k = _fit_top_k(metadata)
        top_k = top_k if found else DEFAULT_TOP_K
    groups = g.groups or [("image", g.channels)]
    depths = output_depths(groups, metadata.get("bit_depths"), args.bit_depth)
    options = decode_kwargs(args, h, w)
    with torch.no_grad():
        pixels = render(g, h, w, top_k=top_k, backend=args.backend, **options).clamp_(0, 1)
    for p in write_images(pixels, out, groups=groups, bit_depths=depths):
        print(f"{p} ({pixels.shape[2]}x{pixels.shape[1]}, {_format_bytes(p.stat().st_size)})")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """``imagegs info``: describe a model file (raw container or .igs)."""
    path = Path(args.model)
    if cli_codec.is_igs(path):
        return cli_codec.print_igs_info(path)
    g, meta = load(path)
    print(f"model      {path} ({_format_bytes(path.stat().st_size)})")
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
    found, k = _fit_top_k(meta)
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


# ------------------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The ``imagegs`` argument parser (subcommands fit, render, info)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="Image-GS: fit images with 2D Gaussians and render them at any size.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)  # rendering/threading options of fit and render
    common.add_argument("--top-k", type=int, metavar="K",
                        help="Gaussians blended per pixel, 1..64; 0 = all in the tile "
                             f"(fit default: {FitConfig.top_k}; render default: the fit's)")
    common.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="renderer: cpu (Numba), reference (pure PyTorch) or auto (default)")
    common.add_argument("--threads", type=int, metavar="T", help="torch and numba thread count")

    p = sub.add_parser("fit", parents=[common], help="fit Gaussians to an image or texture stack",
                       description="Fit Gaussians to an image, a folder or list of images (a "
                                   "texture stack), or a scikit-image sample ('astronaut', "
                                   "'skimage:coffee'), and save the model.")
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image file, folder (texture stack), several files (stack), 'astronaut' "
                        "or skimage:NAME")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="model file to write")
    p.add_argument("--gaussians", type=int, metavar="N",
                   help=f"number of Gaussians (default {FitConfig.num_gaussians})")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default="fast",
                   help="fast (default, tuned for time-to-quality on a CPU) or official")
    p.add_argument("--steps", type=int, metavar="S",
                   help="maximum optimisation steps (the official schedule may extend it)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--alpha", choices=ALPHA_POLICIES, default="keep",
                   help="alpha channel: keep (fit it, default), drop, or composite on white/black")
    p.add_argument("--render", metavar="PNG",
                   help="also write the rendering (one file per map for stacks)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("render", parents=[common], help="render a model to image file(s)",
                       description="Render a model at its native size or any other; texture "
                                   "stacks give one file per map (OUT_<map>.png).")
    p.add_argument("model", metavar="MODEL", help="model file written by 'imagegs fit'")
    p.add_argument("-o", "--output", required=True, metavar="PNG",
                   help="output image (.png, .tif, .jpg, .webp)")
    p.add_argument("--width", type=int, metavar="W", help="output width (alone: keep aspect ratio)")
    p.add_argument("--height", type=int, metavar="H", help="output height (alone: keep aspect ratio)")
    p.add_argument("--scale", type=float, metavar="S", help="scale factor > 0, e.g. 2 or 0.5")
    p.add_argument("--bit-depth", type=int, choices=(8, 16),
                   help="bits per sample (default: the source's; 16 needs PNG or TIFF)")
    add_decode_options(p)  # --region, --no-antialias, --filter-sigma
    p.set_defaults(func=cmd_render)

    cli_codec.add_parsers(sub, common, alpha_policies=ALPHA_POLICIES)

    p = sub.add_parser("info", help="describe a model file")
    p.add_argument("model", metavar="MODEL", help="model file")
    p.set_defaults(func=cmd_info)

    from .bench import rd as _bench_rd  # here, not at the top: bench imports from cli
    from .liif.cli import add_bench_commands as add_liif_bench, add_commands as add_liif_commands

    add_liif_commands(sub)  # upscale, liif weights, liif train
    bench = sub.add_parser("bench", help="benchmarks (sr: super-resolution, rd: rate-distortion)",
                           description="Benchmarks; each is a subcommand.")
    bench_sub = bench.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    add_liif_bench(bench_sub)  # bench sr
    _bench_rd.add_parser(bench_sub)  # bench rd
    return parser


def _message(exc: BaseException) -> str:
    """One line describing an expected failure."""
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename if exc.filename is not None else ""
        text = f"{name}: {exc.strerror}" if name != "" else exc.strerror
    elif isinstance(exc, MemoryError):
        text = "out of memory" + (f" ({exc})" if str(exc) else "")
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, usage errors (status 2)
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_ERROR)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, MemoryError) as e:  # ImageReadError, ModelFileError, CLIError...
        print(f"{PROG}: error: {_message(e)}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
