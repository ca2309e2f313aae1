"""Command-line options shared by the commands that render a model (``render``, ``decode``).

    add_decode_options(parser)   # --region X0,Y0,X1,Y1  --no-antialias  --supersample N  --filter-sigma S
    kwargs = decode_kwargs(args, h, w)    # -> dict(region=..., antialias=..., filter_sigma=...)
    pixels = render(g, h, w, top_k=k, **kwargs)
"""

from __future__ import annotations

import argparse

from . import FILTER_SIGMA, SUPERSAMPLE, check_region

__all__ = ["add_decode_options", "decode_kwargs", "parse_region"]


def add_decode_options(parser: argparse.ArgumentParser) -> None:
    """Register --region, --no-antialias, --supersample and --filter-sigma on ``parser``."""
    parser.add_argument("--region", metavar="X0,Y0,X1,Y1",
                        help="render only this window of the output image (pixels, x0/y0 included, "
                             "x1/y1 excluded), e.g. 0,0,256,256")
    parser.add_argument("--no-antialias", dest="antialias", action="store_false",
                        help="point-sample below the native size instead of averaging sub-samples "
                             "of prefiltered Gaussians (no effect at or above the native size)")
    parser.add_argument("--supersample", type=int, default=SUPERSAMPLE, metavar="N",
                        help=f"anti-aliasing: at most N x N sub-samples per output pixel (default "
                             f"{SUPERSAMPLE}; 1 = the prefilter alone)")
    parser.add_argument("--filter-sigma", type=float, default=FILTER_SIGMA, metavar="S",
                        help=f"anti-aliasing pixel filter std in native pixels (default {FILTER_SIGMA})")


def parse_region(text: str, height: int, width: int) -> tuple[int, int, int, int]:
    """'x0,y0,x1,y1' -> a checked half-open window of a height x width image (ValueError if bad)."""
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        raise ValueError(f"--region must be four integers X0,Y0,X1,Y1, got {text!r}") from None
    if len(values) != 4:
        raise ValueError(f"--region must be four integers X0,Y0,X1,Y1, got {text!r}")
    return check_region(values, height, width)


def decode_kwargs(args: argparse.Namespace, height: int, width: int) -> dict:
    """``render`` keyword arguments from the parsed options, for a height x width output."""
    region = parse_region(args.region, height, width) if args.region is not None else None
    return {"region": region, "antialias": args.antialias, "filter_sigma": args.filter_sigma,
            "supersample": args.supersample}
