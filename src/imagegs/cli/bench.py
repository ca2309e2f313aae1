"""``imagegs bench rd | sr | speed | semantic | restore | textures``: the benchmarks, each registered the same way.

Each benchmark is a library module under :mod:`imagegs.bench` with a ``run``-style function that
takes plain arguments; this module only declares its options and prints what it returns.
``--workers N`` / ``--scheduler ADDRESS`` (rd, sr) run the per-image work through
:func:`imagegs.batch.map_tasks`; without them everything runs in this process, as before.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..defaults import DEFAULT_NUM_GAUSSIANS, DEFAULT_TOP_K
from ._common import (CLIError, add_quiet, add_threads, check_output, importance_strength, int_list, name_list,
                      positive_int, set_threads, top_k_value)
from .batch import add_executor_options, executor_options


def cmd_rd(args: argparse.Namespace) -> int:
    """``imagegs bench rd``."""
    from ..bench.rd import run_rd

    executor = executor_options(args, local_default=False)
    set_threads(args.threads)
    summary = run_rd(args.images, args.out, bpp=args.bpp, codecs=args.codecs,
                     max_side=args.max_side, schedule=args.schedule, progress=not args.quiet, executor=executor)
    for line in summary.get("lines", []):
        print(line)
    return 0


def cmd_sr(args: argparse.Namespace) -> int:
    """``imagegs bench sr``: run, write the outputs, print the table."""
    from ..bench.sr import format_table, run
    from ..liif.weights import cache_dir

    executor = executor_options(args, local_default=False)
    set_threads(args.threads)
    work_dir = Path(args.work_dir) if args.work_dir else cache_dir() / "bench-sr"
    summary = run(images=args.images, samples=args.samples, scales=args.scales, methods=args.methods,
                  work_dir=work_dir, out_dir=Path(args.out_dir), weights=args.weights,
                  max_gaussians=args.max_gaussians, crop=args.crop, gaussian_scales=args.gaussian_scales,
                  gaussian_images=args.gaussian_images, fit_steps=args.fit_steps,
                  cached_only=args.cached_only, progress=not args.quiet, executor=executor)
    print(format_table(summary))
    return 0


def cmd_textures(args: argparse.Namespace) -> int:
    """``imagegs bench textures``."""
    from ..bench.textures import run_textures

    set_threads(args.threads)
    summary = run_textures(args.stacks, args.out, rates=args.rates, methods=args.methods,
                           max_side=args.max_side, schedule=args.schedule, map_weights=args.map_weights,
                           steps=args.steps, progress=not args.quiet,
                           executor=executor_options(args, local_default=False))
    for line in summary.get("lines", []):
        print(line)
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    """``imagegs bench speed``: time the fit step and the forward render."""
    from ..bench.speed import format_table, run
    from ..io import atomic_write

    if args.json:
        check_output(args.json, "the JSON record")
    if args.gaussians > args.height * args.width:
        raise CLIError(f"--gaussians {args.gaussians} is more than the {args.width}x{args.height} "
                       "image has pixels")
    set_threads(args.threads)
    result = run(height=args.height, width=args.width, gaussians=args.gaussians, backend=args.backend,
                 steps=args.steps, top_k=args.top_k or None, channels=args.channels,
                 repeats=args.repeats, image=args.image, seed=args.seed)
    print(format_table(result))
    if args.json:
        text = json.dumps(result, indent=1)
        atomic_write(args.json, lambda tmp: Path(tmp).write_text(text + "\n"))
        print(f"wrote {args.json}")
    return 0


def cmd_semantic(args: argparse.Namespace) -> int:
    """``imagegs bench semantic``: run or continue, write the outputs, print the table."""
    from ..bench.semantic import format_table, run

    executor = executor_options(args, local_default=False)
    set_threads(args.threads)
    summary = run(args.images, args.out, bpp=args.bpp, methods=args.methods, max_side=args.max_side or None,
                  importance=args.importance, strength=args.importance_strength, schedule=args.schedule,
                  steps=args.steps, progress=not args.quiet, executor=executor)
    print(format_table(summary))
    print(f"wrote {Path(args.out) / 'semantic.json'}, semantic.md and semantic.png")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """``imagegs bench restore``: run or resume, print the table and the targets."""
    from ..bench.restore import RestoreBenchError, format_table, run

    executor = executor_options(args, local_default=False)
    set_threads(args.threads)
    options = {"schedule": args.schedule, **({"max_steps": args.steps} if args.steps else {})}
    try:
        summary = run(out=args.out, images=args.images, samples=args.samples, degradations=args.degradations,
                      methods=args.methods, max_side=args.max_side, seed=args.seed, options=options,
                      progress=not args.quiet, cached_only=args.cached_only, executor=executor)
    except RestoreBenchError as e:
        raise CLIError(str(e)) from None
    print(format_table(summary))
    for deg, targets in summary["targets"].items():
        for name, t in targets.items():
            if t["got_db"] is not None:
                print(f"{deg} restore {name.replace('_', ' ')}: {t['got_db']:+.2f} dB "
                      f"(target {t['want_db']:+.1f}: {'met' if t['met'] else 'missed'})")
    print(f"wrote {Path(args.out) / 'summary.json'}")
    return 0


def _add_run_options(p: argparse.ArgumentParser, func, *, cached: str | None = None) -> None:
    """What the resumable benchmarks share: --cached-only (``cached`` names what it summarises;
    None: no such option), --threads, --workers/--scheduler (the batch executor), --quiet, and
    the command's function."""
    if cached is not None:
        p.add_argument("--cached-only", action="store_true",
                       help=f"compute nothing: summarise the results already in {cached}")
    add_threads(p)
    add_executor_options(p, local_default=False)
    add_quiet(p)
    p.set_defaults(func=func)


def add_parsers(bench_sub: argparse._SubParsersAction) -> None:
    """Register ``rd``, ``sr``, ``speed``, ``semantic``, ``restore`` and ``textures`` in the ``bench`` group."""
    from ..bench.codecs import CODECS
    from ..bench.rd import DEFAULT_BPP, DEFAULT_SCHEDULE
    from ..bench.speed import IMAGES
    from ..bench.sr import METHODS, SAMPLES, SCALES
    from ..fitting import SCHEDULES

    p = bench_sub.add_parser(
        "rd", help="rate-distortion benchmark against JPEG, WebP, AVIF, JPEG 2000, JPEG XL, BC, ASTC",
        description="Encode every image of a folder with each codec at each target bpp (the "
                    "largest quality whose whole-file bpp <= the target), measure PSNR, SSIM, "
                    "MS-SSIM and FLIP on the 8-bit decoded images, and write JSON, BD-rate, "
                    "plots and a markdown table. Resumable: rerun the same command to continue.")
    p.add_argument("--images", required=True, metavar="DIR",
                   help="folder of images; file name prefixes photo-, painting-, art-, anime-, "
                        "vector- give the categories")
    p.add_argument("--bpp", default=",".join(f"{b:g}" for b in DEFAULT_BPP), metavar="LIST",
                   help="target bits per pixel, comma-separated (default %(default)s)")
    p.add_argument("--codecs", default="all", metavar="LIST",
                   help="codecs or groups, comma-separated: all (default), baselines, textures, "
                        f"or any of {', '.join(CODECS)}")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (also the cache)")
    p.add_argument("--max-side", type=positive_int, metavar="N",
                   help="downscale images so the long side is at most N pixels")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default=DEFAULT_SCHEDULE,
                   help=f"imagegs fit schedule (default {DEFAULT_SCHEDULE}, the encoder's; quality: "
                        "2400 full-size steps, the figures published before; fast: 1200; official: the "
                        "authors', ~7.5k steps)")
    _add_run_options(p, cmd_rd)

    p = bench_sub.add_parser("sr", help="arbitrary-scale super-resolution benchmark (LIIF protocol)",
                             description="PSNR of LIIF, bicubic, Lanczos and Image-GS upscaling "
                                         "of bicubically downsampled images (LIIF's DIV2K protocol).")
    p.add_argument("--images", metavar="DIR", help="folder of high-resolution test images")
    p.add_argument("--samples", type=name_list, default=list(SAMPLES), metavar="NAMES",
                   help=f"scikit-image photographs, comma-separated (default {','.join(SAMPLES)}; "
                        "'' for none)")
    p.add_argument("--scales", type=int_list, default=list(SCALES), metavar="LIST",
                   help=f"integer scales (default {','.join(map(str, SCALES))})")
    p.add_argument("--methods", type=name_list, default=list(METHODS), metavar="LIST",
                   help=f"default {','.join(METHODS)}")
    p.add_argument("--weights", metavar="PATH", help="LIIF checkpoint (default: the official one)")
    p.add_argument("--crop", type=int, default=0, metavar="N",
                   help="evaluate the central N x N part of each image (0, the default: all of it)")
    p.add_argument("--max-gaussians", type=positive_int, default=DEFAULT_NUM_GAUSSIANS, metavar="N",
                   help=f"Image-GS budget cap (also at most half the LR pixels; default {DEFAULT_NUM_GAUSSIANS})")
    p.add_argument("--fit-steps", type=positive_int, metavar="S",
                   help="Image-GS fit steps (default: the fast schedule's 1200)")
    p.add_argument("--gaussian-scales", type=int_list, metavar="LIST",
                   help="run Image-GS only at these scales (default: all)")
    p.add_argument("--gaussian-images", type=name_list, metavar="NAMES",
                   help="run Image-GS only on these images (default: all)")
    p.add_argument("--work-dir", metavar="DIR",
                   help="per-item results and Image-GS fits, for resuming (default: "
                        "<cache>/bench-sr, the cache of 'imagegs liif weights')")
    p.add_argument("--out-dir", default="benchmarks/results", metavar="DIR",
                   help="where sr_*.json and sr_psnr.png go (default benchmarks/results)")
    _add_run_options(p, cmd_sr, cached="--work-dir")

    p = bench_sub.add_parser("speed", help="time the fit step and the forward render",
                             description="Median time of one fit step (projection, render, loss, "
                                         "backward, Adam) and of one forward render, after the "
                                         "first (compiling) calls.")
    p.add_argument("--height", type=positive_int, default=256)
    p.add_argument("--width", type=positive_int, default=256)
    p.add_argument("--gaussians", type=positive_int, default=5000)
    p.add_argument("--backend", choices=("cpu", "reference"), default="cpu")
    p.add_argument("--steps", type=positive_int, default=20, help="timed calls per round (default 20)")
    p.add_argument("--top-k", type=top_k_value, default=DEFAULT_TOP_K, help="0 = every Gaussian of the tile")
    p.add_argument("--channels", type=positive_int, default=3)
    p.add_argument("--repeats", type=positive_int, default=1, help="timing rounds (default 1)")
    p.add_argument("--image", choices=IMAGES, default="astronaut")
    p.add_argument("--seed", type=int, default=0)
    add_threads(p)
    p.add_argument("--json", type=Path, metavar="PATH", help="write the full record here")
    p.set_defaults(func=cmd_speed)

    from ..bench import semantic
    from ..importance import DEFAULT_IMPORTANCE_STRENGTH

    p = bench_sub.add_parser(
        "semantic", help="semantics-aware compression: quality inside and outside the important region",
        description="At equal file size, PSNR and SSIM inside the important region (face boxes, or the "
                    "top 20% of the saliency map) and outside it, for imagegs with and without "
                    "--importance, JPEG and AVIF. Resumable: rerun the same command to continue.")
    p.add_argument("--images", nargs="+", default=list(semantic.SAMPLES), metavar="IMAGE",
                   help="image files, 'astronaut' or skimage:NAME (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (also the cache)")
    p.add_argument("--bpp", default=",".join(f"{b:g}" for b in semantic.DEFAULT_BPP), metavar="LIST",
                   help="target bits per pixel, comma-separated (default %(default)s)")
    p.add_argument("--methods", type=name_list, default=list(semantic.METHODS), metavar="LIST",
                   help=f"comma-separated, from {','.join(semantic.METHODS)} (default: all)")
    p.add_argument("--max-side", type=int, default=semantic.DEFAULT_MAX_SIDE, metavar="N",
                   help="downscale images so the long side is at most N pixels (default %(default)s; 0: none)")
    p.add_argument("--importance", choices=semantic.IMPORTANCE_CHOICES, default="auto",
                   help="the importance map and region: auto (default: faces where one is found, else "
                        "saliency), faces or saliency")
    p.add_argument("--importance-strength", type=importance_strength, default=DEFAULT_IMPORTANCE_STRENGTH,
                   metavar="S", help="strength of imagegs-importance (default %(default)g)")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default=semantic.DEFAULT_SCHEDULE,
                   help="imagegs fit schedule (default %(default)s)")
    p.add_argument("--steps", type=positive_int, metavar="S",
                   help="imagegs's maximum fit steps (default: the schedule's; fewer for a quick look)")
    _add_run_options(p, cmd_semantic)

    from ..bench import textures

    p = bench_sub.add_parser(
        "textures", help="texture sets: imagegs joint/separate against BC, ASTC, JPEG, AVIF per map",
        description="Encode every texture set (sub-folder) of --stacks with imagegs (one file for the "
                    "set, and one file per map at the same total bytes), BC1, BC7, ASTC 4x4..12x12, "
                    "JPEG and AVIF per map; measure PSNR/SSIM per map and the normal maps' angular "
                    "error; write JSON, a plot and a markdown table. Resumable: rerun to continue.")
    p.add_argument("--stacks", required=True, metavar="DIR", help="folder of texture-set folders")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (also the cache)")
    p.add_argument("--rates", default=",".join(f"{r:g}" for r in textures.DEFAULT_RATES), metavar="LIST",
                   help="bits per texel of the whole set, comma-separated (default %(default)s)")
    p.add_argument("--methods", default="all", metavar="LIST",
                   help=f"all (default) or any of {', '.join(textures.METHODS)}")
    p.add_argument("--max-side", type=positive_int, metavar="N",
                   help="downscale the maps (Lanczos) so the long side is at most N pixels")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default=textures.DEFAULT_SCHEDULE,
                   help=f"imagegs fit schedule (default {textures.DEFAULT_SCHEDULE})")
    p.add_argument("--steps", type=positive_int, metavar="S", help="cap on the imagegs fit steps (quick checks)")
    p.add_argument("--map-weights", metavar="NAME:W,...",
                   help="loss weights of the joint fit per map name or kind (default: the library's)")
    _add_run_options(p, cmd_textures)
    _add_restore(bench_sub)


def _add_restore(bench_sub: argparse._SubParsersAction) -> None:
    from ..bench.restore import DEFAULT_MAX_SIDE, DEGRADATIONS, SAMPLES, available_methods
    from ..fitting import SCHEDULES

    p = bench_sub.add_parser("restore", help="joint compression and restoration against denoisers and codecs",
                             description="Degrade clean images (Gaussian noise, JPEG), restore them with "
                                         "imagegs and with dedicated denoisers, compress them with JPEG "
                                         "and AVIF at restore's size, and measure PSNR/SSIM against the "
                                         "clean images. Resumable: rerun the same command to continue.")
    p.add_argument("--images", nargs="*", default=[], metavar="PATH", help="image files or folders")
    p.add_argument("--samples", type=name_list, default=list(SAMPLES), metavar="NAMES",
                   help=f"scikit-image photographs (default {','.join(SAMPLES)}; '' for none)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: records (the cache), summary.json, restore_psnr.png")
    p.add_argument("--degradations", type=name_list, default=list(DEGRADATIONS), metavar="LIST",
                   help=f"default {','.join(DEGRADATIONS)}")
    p.add_argument("--methods", type=name_list, default=None, metavar="LIST",
                   help=f"default all available: {','.join(available_methods())}")
    p.add_argument("--max-side", type=positive_int, default=DEFAULT_MAX_SIDE, metavar="N",
                   help=f"downscale so the long side is at most N pixels (default {DEFAULT_MAX_SIDE})")
    p.add_argument("--schedule", choices=sorted(SCHEDULES), default="fast", help="imagegs fit schedule")
    p.add_argument("--steps", type=positive_int, metavar="S", help="imagegs fit steps (for quick runs)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    _add_run_options(p, cmd_restore, cached="--out")
