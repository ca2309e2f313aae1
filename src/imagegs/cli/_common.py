"""What the command groups share: the parser class, option types, shared options, output checks.

Every check here fails with a :class:`CLIError` (or argparse's error) whose message names the
option or the file the user typed; :func:`imagegs.cli.main` prints it as one line.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

from ..codec import output_depths  # noqa: F401 - the commands import it from here
from ..defaults import DEFAULT_TOP_K, MAX_PIXELS, MAX_TOP_K, check_top_k, output_size
from ..importance import DEFAULT_IMPORTANCE_STRENGTH, MAX_IMPORTANCE_STRENGTH, SOURCES
from ..io import ALPHA_POLICIES, check_image_path
from ..renderer import BACKENDS, FILTER_SIGMA, SUPERSAMPLE, check_region
from ..textures import KINDS

PROG = "imagegs"
EXIT_ERROR = 2  # argparse's status for usage errors; used for every expected failure
EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell convention
SCHEDULE_HELP = ("c2f (encode's default: coarse to fine, most steps at 1/4 and 1/2 size, then 400 "
                 "full-size steps, which encode runs after pruning to the rate), fast (fit's default: "
                 "1200 full-size steps, tuned for time-to-quality on a CPU), quality (2400 full-size "
                 "steps, what the figures published before c2f used) or official (the authors', ~7.5k "
                 "steps); default %(default)s")


class CLIError(ValueError):
    """An expected failure with a message for the user (printed as one line, exit status 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, with usage errors as one line naming the command and the option, not a usage dump."""

    def error(self, message: str):  # noqa: D102 - argparse's hook
        raise CLIError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------------------- option types


def _number(kind: type, test, wanted: str):
    """An argparse type: ``kind(text)`` that passes ``test``, else '<wanted>, got <text>'."""
    def convert(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text!r}") from None
        if not test(value):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value
    convert.__name__ = wanted  # argparse names the type in some messages
    return convert


positive_int = _number(int, lambda v: v >= 1, "a positive integer")
nonnegative_int = _number(int, lambda v: v >= 0, "a non-negative integer")
positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
nonnegative_float = _number(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
fraction = _number(float, lambda v: 0 <= v <= 1, "a number from 0 to 1")
importance_strength = _number(float, lambda v: math.isfinite(v) and 0 <= v <= MAX_IMPORTANCE_STRENGTH,
                              f"a number from 0 to {MAX_IMPORTANCE_STRENGTH:g}")
top_k_value = _number(int, lambda v: 0 <= v <= MAX_TOP_K, f"an integer from 0 (whole tile) to {MAX_TOP_K}")


def int_list(text: str) -> list[int]:
    """'1,2,3' -> [1, 2, 3]."""
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers, got {text!r}") from None


def name_list(text: str) -> list[str]:
    """'a, b' -> ['a', 'b']."""
    return [v.strip() for v in text.split(",") if v.strip()]


# -------------------------------------------------------------------------------- shared options


def render_options() -> argparse.ArgumentParser:
    """A parent parser with --top-k, --backend and --threads (commands that fit or render)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--top-k", type=top_k_value, metavar="K",
                        help=f"Gaussians blended per pixel, 1..{MAX_TOP_K}; 0 = all in the tile "
                             f"(fit default {DEFAULT_TOP_K}; render/decode default: the file's)")
    common.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="renderer: cpu (Numba), reference (pure PyTorch) or auto (default)")
    add_threads(common)
    return common


def add_threads(p: argparse.ArgumentParser) -> None:
    """--threads."""
    p.add_argument("--threads", type=positive_int, metavar="T", help="torch and numba thread count")


def add_alpha(p: argparse.ArgumentParser, what: str = "fit it") -> None:
    """--alpha."""
    p.add_argument("--alpha", choices=ALPHA_POLICIES, default="keep",
                   help=f"alpha channel: keep ({what}, default), drop, or composite on white/black")


def add_quiet(p: argparse.ArgumentParser) -> None:
    """--quiet."""
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_fit_options(p: argparse.ArgumentParser, schedules: list[str], *, output: str, what: str,
                    schedule: str = "fast") -> None:
    """What every command that fits one image (or one texture set) takes (fit, encode): the images,
    -o, :func:`add_fit_settings` and --maps (texture-set map kinds, given to ``read_source``)."""
    p.add_argument("images", nargs="+", metavar="IMAGE",
                   help="image file, folder (texture stack), several files (stack), 'astronaut' "
                        "or skimage:NAME")
    p.add_argument("-o", "--output", required=True, metavar=output, help=f"{what} to write")
    add_fit_settings(p, schedules, schedule=schedule)
    p.add_argument("--maps", metavar="NAME:KIND,...",
                   help=f"map kinds of a texture set ({', '.join(KINDS)}) by map name (file stem), "
                        "overriding the file-name suffixes (_albedo, _normal/_nrm/_n, _gloss/_rough/"
                        "_metal/_ao/_height...); scalar maps are fitted as one channel")


def add_fit_settings(p: argparse.ArgumentParser, schedules: list[str], *, schedule: str = "fast") -> None:
    """How to fit (fit, encode, batch encode): --schedule (default ``schedule``), --steps, --seed,
    --alpha and --quiet."""
    p.add_argument("--schedule", choices=schedules, default=schedule, help=SCHEDULE_HELP)
    p.add_argument("--steps", type=positive_int, metavar="S",
                   help="maximum optimisation steps (the official schedule may extend it)")
    p.add_argument("--seed", type=nonnegative_int, default=0, help="random seed (default 0)")
    p.add_argument("--importance", metavar="MAP|" + "|".join(SOURCES),
                   help="semantics-aware fitting: spend more of the budget where this map is bright: "
                        "a grey image of any size (resized), 'saliency' (OpenCV's spectral residual) "
                        "or 'faces' (OpenCV's face detector); the last two need the 'semantic' extra")
    p.add_argument("--importance-strength", type=importance_strength, metavar="S",
                   help=f"how strongly --importance steers: each pixel weighs 1 + S * importance in "
                        f"the loss, the initial sampling and the additions (default "
                        f"{DEFAULT_IMPORTANCE_STRENGTH:g}; 0 = none)")
    add_alpha(p)
    add_quiet(p)


def fit_kwargs(args: argparse.Namespace) -> dict:
    """The fit's keyword arguments from the options of :func:`add_fit_options` and --top-k
    (--importance still as typed: :func:`resolve_importance` turns it into a map)."""
    options: dict = {"seed": args.seed, "schedule": args.schedule, "progress": not args.quiet}
    if args.importance is not None:
        options["importance"] = args.importance
        options["importance_strength"] = args.importance_strength
    elif args.importance_strength is not None:
        raise CLIError("--importance-strength needs --importance (a map file, saliency or faces)")
    if args.top_k is not None:
        options["top_k"] = top_k_arg(args.top_k, DEFAULT_TOP_K)
    if args.steps is not None:
        options["max_steps"] = args.steps
    return options


def resolve_importance(options: dict, image) -> dict:
    """``options`` with --importance computed on ``image`` (before the long fit, so that an
    unreadable map fails at once, naming the file); a note on stderr when it marks nothing."""
    if options.get("importance") is None:
        return options
    from ..importance import importance_map

    spec = options["importance"]
    m = importance_map(image, spec)
    if not m.any():
        what = "no face was found" if spec == "faces" else "the map is all zeros"
        print(f"{PROG}: note: --importance {spec}: {what}; the fit is not steered", file=sys.stderr)
    return dict(options, importance=m)


def add_size_options(p: argparse.ArgumentParser) -> None:
    """--width, --height, --scale (see :func:`size_from_args`)."""
    p.add_argument("--width", type=positive_int, metavar="W", help="output width (alone: keep aspect ratio)")
    p.add_argument("--height", type=positive_int, metavar="H", help="output height (alone: keep aspect ratio)")
    p.add_argument("--scale", type=positive_float, metavar="S", help="scale factor > 0, e.g. 2 or 0.5")


def size_from_args(args: argparse.Namespace, height: int, width: int) -> tuple[int, int]:
    """The output (height, width) that --width/--height/--scale ask for (at most 2^28 pixels)."""
    return output_size(height, width, out_width=args.width, out_height=args.height, scale=args.scale,
                       max_pixels=MAX_PIXELS, names=("--scale", "--width", "--height"))


def add_decode_options(p: argparse.ArgumentParser) -> None:
    """--region, --no-antialias, --supersample and --filter-sigma (render and decode)."""
    p.add_argument("--region", metavar="X0,Y0,X1,Y1",
                   help="render only this window of the output image (pixels, x0/y0 included, "
                        "x1/y1 excluded), e.g. 0,0,256,256")
    p.add_argument("--no-antialias", dest="antialias", action="store_false",
                   help="point-sample below the native size instead of averaging sub-samples "
                        "of prefiltered Gaussians (no effect at or above the native size)")
    p.add_argument("--supersample", type=positive_int, default=SUPERSAMPLE, metavar="N",
                   help=f"anti-aliasing: at most N x N sub-samples per output pixel (default "
                        f"{SUPERSAMPLE}; 1 = the prefilter alone)")
    p.add_argument("--filter-sigma", type=nonnegative_float, default=FILTER_SIGMA, metavar="S",
                   help=f"anti-aliasing pixel filter std in native pixels (default {FILTER_SIGMA})")


def decode_kwargs(args: argparse.Namespace, height: int, width: int) -> dict:
    """``render`` keyword arguments from the decode options, for a height x width output."""
    region = region_arg(args.region)
    if region is not None:
        try:
            region = check_region(region, height, width)
        except ValueError as e:
            raise CLIError(f"--region: {e}") from None
    return {"region": region, "antialias": args.antialias, "filter_sigma": args.filter_sigma,
            "supersample": args.supersample}


def region_arg(text: str | None) -> tuple[int, int, int, int] | None:
    """--region X0,Y0,X1,Y1 as four integers (not yet checked against an image's size)."""
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        raise CLIError(f"--region must be four integers X0,Y0,X1,Y1, got {text!r}")
    return values


def add_bit_depth(p: argparse.ArgumentParser, default: str) -> None:
    """--bit-depth (8 or 16; 16 needs PNG or TIFF)."""
    p.add_argument("--bit-depth", type=int, choices=(8, 16),
                   help=f"bits per sample (default: {default}; 16 needs .png or .tif)")


# ------------------------------------------------------------------------------------ the checks


def top_k_arg(value: int | None, default: int | None) -> int | None:
    """--top-k as the library's top_k (0 = the whole tile = None); ``default`` when not given."""
    return default if value is None else check_top_k(value, name="--top-k")


def set_threads(threads: int | None) -> None:
    """Set the torch and numba thread counts (``None``: leave the defaults)."""
    if threads is None:
        return
    import numba  # only here: plain imports of imagegs stay numba-free
    import torch

    limit = numba.config.NUMBA_NUM_THREADS
    if not 1 <= threads <= limit:
        raise CLIError(f"--threads must be between 1 and {limit} (numba's limit, set by "
                       f"NUMBA_NUM_THREADS), got {threads}")
    torch.set_num_threads(threads)
    numba.set_num_threads(threads)


def check_output(path: str | os.PathLike, what: str, *, image: bool = False,
                 bit_depth: int | None = None) -> Path:
    """Fail early, before any long work, on an output path that cannot be written.

    ``image``: the extension must be an image format imagegs writes (and hold ``bit_depth`` bits
    when given). A folder, an unwritable place or a bad extension get one message naming the
    user's path; folders that do not exist yet are announced, then created when the file is written.
    """
    path = Path(path)
    if path.is_dir() or str(path).endswith(os.sep):
        raise CLIError(f"{path}: is a folder; give a file name for {what}")
    if image:
        check_image_path(path, bit_depth=bit_depth)
    folder = path.parent
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    if not folder.is_dir():
        raise CLIError(f"{path}: cannot write {what}: {folder} is not a folder")
    try:  # really try: os.access says yes to root on a read-only mount, and ACLs may say no
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise CLIError(f"{path}: cannot write {what}: folder {folder} is not writable "
                       f"({e.strerror or e})") from None
    if missing:
        print(f"{PROG}: creating folder {missing[0]} for {what}", file=sys.stderr)
    return path


def format_bytes(n: int) -> str:
    """1234567 -> '1.2 MiB'."""
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError  # pragma: no cover


def message(exc: BaseException) -> str:
    """One line describing an expected failure."""
    if isinstance(exc, OSError) and exc.strerror:
        name = exc.filename if exc.filename is not None else ""
        text = f"{name}: {exc.strerror}" if name != "" else exc.strerror
    elif isinstance(exc, MemoryError):
        text = "out of memory" + (f" ({exc})" if str(exc) else "")
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())
