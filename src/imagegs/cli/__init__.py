"""The ``imagegs`` command line (also ``python -m imagegs``): the top layer, which no library
module imports.

    imagegs fit | render | info          model files (.gsm)              cli/model.py
    imagegs encode | decode              compressed files (.igs)         cli/codec.py
    imagegs batch encode | decode        whole folders, local or Dask     cli/batch.py
    imagegs restore                      denoise and compress in one      cli/restore.py
    imagegs upscale | liif ...           LIIF and resizing                cli/liif.py
    imagegs view                         the browser viewer               cli/view.py
    imagegs bench rd | sr | speed | semantic | restore   benchmarks       cli/bench.py

Every expected failure (unreadable image or file, bad option, missing file, unwritable output)
prints one line ``imagegs: error: <message>`` naming the user's file or option to stderr and
exits with status 2; Ctrl-C exits with 130 and leaves no partial file (all writes are atomic).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser", "CLIError"]


def __getattr__(name: str):
    """``CLIError``, imported on first use (this module stays light: see :func:`main`)."""
    if name == "CLIError":
        from ._common import CLIError

        return CLIError
    raise AttributeError(f"module 'imagegs.cli' has no attribute {name!r}")


def build_parser():
    """The ``imagegs`` argument parser (``_common.Parser``) with every command."""
    from .. import __version__
    from ..fitting import SCHEDULES
    from . import batch, bench, codec, liif, model, restore, view
    from ._common import PROG, Parser, render_options

    schedules = sorted(SCHEDULES)
    parser = Parser(prog=PROG, description="Image-GS: images as 2D Gaussians: fit, compress, "
                                           "decode and render at any size.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = render_options()  # --top-k, --backend, --threads: one parent for every command that renders
    model.add_parsers(sub, common, schedules)
    codec.add_parsers(sub, common, schedules)
    batch.add_parsers(sub, common, schedules)
    restore.add_parsers(sub, common, schedules)
    liif.add_parsers(sub)
    view.add_parsers(sub)
    group = sub.add_parser("bench", help="benchmarks (rd: rate-distortion, sr: super-resolution, "
                                         "speed: fit step, semantic: importance)", description="Benchmarks; each is a subcommand.")
    bench.add_parsers(group.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status.

    Run as the program (no ``argv``), a command that fits starts compiling the kernels it needs in
    the background before anything heavy is imported (:func:`imagegs._jit.start_early`)."""
    if argv is None:
        from .. import _jit

        _jit.start_early(sys.argv[1:])
    from ._common import EXIT_ERROR, EXIT_INTERRUPTED, PROG, CLIError, message

    try:
        parser = build_parser()
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version
        return e.code if isinstance(e.code, int) else (0 if e.code is None else EXIT_ERROR)
    except CLIError as e:  # a usage error, already phrased for the user
        print(f"{PROG}: error: {message(e)}", file=sys.stderr)
        return EXIT_ERROR
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError, MemoryError) as e:  # ImageReadError, ModelFileError, CLIError...
        print(f"{PROG}: error: {message(e)}", file=sys.stderr)
        return EXIT_ERROR
