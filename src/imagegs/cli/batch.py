"""``imagegs batch encode | decode``: whole folders, on this machine's cores or a Dask cluster.

    imagegs batch encode photos/ -o out/ --bpp 0.3                 # LocalCluster sized to this machine
    imagegs batch encode photos/ -o out/ --bpp 0.3 --workers 2 -v
    imagegs batch encode photos/ -o out/ --bpp 0.3 --scheduler tcp://10.0.0.5:8786
    imagegs batch decode out/ -o decoded/ --scale 2

The options are those of ``imagegs encode`` / ``decode`` (the same builders); the work is
:func:`imagegs.batch.encode_folder` / ``decode_folder``. Exit status 0 when every file is done,
1 when some failed (one summary line on stderr; the manifest has each error), 2 for bad input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ._common import (PROG, CLIError, add_fit_settings, add_quiet, format_bytes, nonnegative_int, region_arg,
                      set_threads, top_k_arg)
from .codec import add_encode_options, add_render_file_options, encode_options

EXIT_FAILED = 1  # some files failed; the others were written


def executor_options(args: argparse.Namespace, *, local_default: bool = True) -> dict | None:
    """Where the tasks run (:func:`imagegs.batch.map_tasks`'s keywords), from --workers,
    --threads and --scheduler. Neither --workers nor --scheduler: the default LocalCluster, or
    None (this process, as before) where ``local_default`` is False (the benchmarks)."""
    if args.scheduler is not None and (args.workers is not None or args.threads is not None):
        raise CLIError("--workers and --threads size the local cluster; with --scheduler the workers are "
                       "the ones 'dask worker' started (give them --nthreads and NUMBA_NUM_THREADS there)")
    if args.scheduler is None and args.workers is None and not local_default:
        return None
    if args.workers == 0:
        set_threads(args.threads)  # in this process
    return {"workers": args.workers, "threads": args.threads, "scheduler": args.scheduler}


def _output_folder(path: str) -> Path:
    """-o OUTDIR: a folder that exists or can be made."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise CLIError(f"-o {out}: is a file; give a folder for the outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CLIError(f"-o {out}: cannot create the folder ({e.strerror or e})") from None
    return out


def _report(records: list[dict], wall: float, out: Path) -> int:
    """Print the summary table; one stderr line and EXIT_FAILED if some files failed."""
    from ..batch import MANIFEST, summarize

    s = summarize(records, wall)
    rate = f"{s['images_per_minute']:.2f} images/minute" if s["images_per_minute"] is not None else ""
    print(f"files      {s['files']}: {s['done']} done ({s['resumed']} from an earlier run), "
          f"{s['failed']} failed, {s['skipped']} skipped")
    print(f"bytes      {format_bytes(s['bytes'])}")
    if s["mean_bpp"] is not None:
        print(f"mean bpp   {s['mean_bpp']:.4f}")
    if s["mean_psnr"] is not None:
        print(f"mean PSNR  {s['mean_psnr']:.2f} dB (8-bit, decoded)")
    print(f"wall       {wall:.1f} s, {rate}")
    print(f"manifest   {out / MANIFEST}")
    skipped = [r for r in records if r.get("status") == "skipped"]
    if skipped:
        print("skipped    " + "; ".join(f"{r['source']} ({r['error']})" for r in skipped))
    failed = [r for r in records if r.get("status") == "failed"]
    if failed:
        print(f"{PROG}: error: {len(failed)} of {s['done'] + len(failed)} files failed (first: "
              f"{failed[0]['error']}); see {out / MANIFEST}", file=sys.stderr)
        return EXIT_FAILED
    return 0


def cmd_encode(args: argparse.Namespace) -> int:
    """``imagegs batch encode``."""
    from ..batch import encode_folder

    options = encode_options(args)
    options.pop("progress")  # the batch's bar, not each fit's
    engine = executor_options(args)
    out = _output_folder(args.output)
    t0 = time.perf_counter()
    records = encode_folder(args.folder, out, alpha=args.alpha, progress=not args.quiet, verbose=args.verbose,
                            **engine, **options)
    return _report(records, time.perf_counter() - t0, out)


def cmd_decode(args: argparse.Namespace) -> int:
    """``imagegs batch decode``."""
    from ..batch import decode_folder

    engine = executor_options(args)
    out = _output_folder(args.output)
    t0 = time.perf_counter()
    records = decode_folder(args.folder, out, fmt=args.format, width=args.width, height=args.height,
                            scale=args.scale, lod=args.lod, top_k=top_k_arg(args.top_k, "file"),
                            bit_depth=args.bit_depth, backend=args.backend, region=region_arg(args.region),
                            antialias=args.antialias, supersample=args.supersample,
                            filter_sigma=args.filter_sigma, progress=not args.quiet, verbose=args.verbose,
                            **engine)
    return _report(records, time.perf_counter() - t0, out)


def add_executor_options(p: argparse.ArgumentParser, *, local_default: bool = True) -> None:
    """--workers and --scheduler (--threads, threads per worker, comes with the render options)."""
    from ..batch import MEMORY_LIMIT

    default = ("default: one per core, as many as fit in memory at "
               f"{MEMORY_LIMIT / 2**30:g} GiB each" if local_default else "default: none, all in this process")
    p.add_argument("--workers", type=nonnegative_int, metavar="N",
                   help=f"worker processes of a local Dask cluster ({default}); --threads T each, default "
                        "cores / N; 0 = in this process, without Dask")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (see README, Batch)")


def add_parsers(sub: argparse._SubParsersAction, common: argparse.ArgumentParser, schedules: list[str]) -> None:
    """Register ``batch encode`` and ``batch decode``; ``common`` holds --top-k, --backend and
    --threads (here: threads per worker)."""
    from ..batch import DEFAULT_FORMAT
    from ..defaults import ENCODE_SCHEDULE

    group = sub.add_parser("batch", help="encode or decode whole folders (this machine's cores or a Dask cluster)",
                           description="Encode or decode every file of a folder (subfolders too) in "
                                       "parallel, with a manifest, resume and a summary.")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("encode", parents=[common], help="every image of DIR to OUTDIR/<relative path>.igs",
                           description="Encode every image under DIR to OUTDIR/<relative path>.igs (hidden "
                                       "files and non-images are skipped and listed). OUTDIR/manifest.jsonl "
                                       "gets a record per file; a rerun skips the files done with the same "
                                       "settings. 'imagegs encode DIR' is something else: one texture stack.")
    p.add_argument("folder", metavar="DIR", help="folder of images")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the .igs files")
    add_fit_settings(p, schedules, schedule=ENCODE_SCHEDULE)
    add_encode_options(p)
    add_executor_options(p)
    p.add_argument("-v", "--verbose", action="store_true", help="a line per file as it finishes")
    p.set_defaults(func=cmd_encode)

    p = actions.add_parser("decode", parents=[common], help="every .igs file of DIR to an image in OUTDIR",
                           description="Decode every .igs file under DIR to OUTDIR (a/photo.png.igs -> "
                                       "a/photo.png, a/x.igs -> a/x.png), with a manifest and resume.")
    p.add_argument("folder", metavar="DIR", help="folder of .igs files")
    p.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="folder for the images")
    p.add_argument("--format", default=DEFAULT_FORMAT, choices=("png", "tif", "webp", "jpg"),
                   help=f"image format written (default {DEFAULT_FORMAT})")
    add_render_file_options(p)
    add_quiet(p)
    add_executor_options(p)
    p.add_argument("-v", "--verbose", action="store_true", help="a line per file as it finishes")
    p.set_defaults(func=cmd_decode)
