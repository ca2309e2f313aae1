"""The one home of imagegs's shared defaults and limits, and the checks that enforce them.

Every module that needs one of these values imports it from here, so a default or a limit is
changed in one place and every entry point (API, CLI, file formats) agrees on it.
"""

from __future__ import annotations

import math

__all__ = ["DEFAULT_TOP_K", "MAX_TOP_K", "DEFAULT_NUM_GAUSSIANS", "MAX_PIXELS", "BLEND_EPS", "ENCODE_SCHEDULE",
           "check_top_k", "check_pixels", "output_size"]

DEFAULT_TOP_K = 10  # Gaussians blended per pixel (Image-GS's K)
MAX_TOP_K = 64  # largest K the kernels and the .igs header accept
DEFAULT_NUM_GAUSSIANS = 10_000  # Image-GS's default budget
MAX_PIXELS = 2**28  # largest image decoded or rendered unless the caller raises it (max_pixels=)
BLEND_EPS = 1e-4  # the blend's normaliser offset: sum(w c) / (sum(w) + eps) (the official value)
# The encoder's default schedule (compress, imagegs encode, batch encode, bench rd): c2f decodes at
# least as close as "quality" at every rate from 0.05 to 1 bpp, with a quarter of its CPU time at
# 0.3 bpp (docs/results.md). "fast" stays the default of a plain fit (imagegs.fit, imagegs fit).
ENCODE_SCHEDULE = "c2f"


def check_top_k(top_k: int | None, *, name: str = "top_k") -> int | None:
    """``top_k`` checked: an integer in 1..MAX_TOP_K, or None (or 0) for every Gaussian of the tile.

    The one check of every entry point that takes a K (render, decode_pixels, fit/FitConfig,
    compress, the .igs writer and reader, benchmarks): everywhere the same range, and 0 and None
    mean the same (the whole tile, Image-GS's ablation mode; the .igs header stores it as 0).
    Returns the normalised value (0 becomes None). ``name`` is what the error message calls the
    value (e.g. ``--top-k`` on the command line).
    """
    if top_k is None:
        return None
    if isinstance(top_k, bool) or not isinstance(top_k, int) and not (
            hasattr(top_k, "__index__") and int(top_k) == top_k):
        raise ValueError(f"{name} must be an integer from 1 to {MAX_TOP_K}, or 0/None for the whole "
                         f"tile, got {top_k!r}")
    k = int(top_k)
    if not 0 <= k <= MAX_TOP_K:
        raise ValueError(f"{name} must be an integer from 1 to {MAX_TOP_K}, or 0/None for the whole "
                         f"tile, got {k}")
    return k or None


def check_pixels(height: int, width: int, *, max_pixels: int = MAX_PIXELS, what: str = "output") -> None:
    """Refuse an image of ``height`` x ``width`` pixels over ``max_pixels`` (checked before anything
    is allocated). ``what`` names the image in the message."""
    if height * width > max_pixels:
        raise ValueError(f"{what} of {width}x{height} = {height * width:,} pixels is over the limit of "
                         f"{max_pixels:,} pixels (max_pixels={max_pixels}; raise it deliberately)")


def output_size(height: int, width: int, *, out_height: int | None = None, out_width: int | None = None,
                scale: float | None = None, max_pixels: int = MAX_PIXELS,
                names: tuple[str, str, str] = ("scale", "width", "height")) -> tuple[int, int]:
    """The (height, width) to resize or render a ``height`` x ``width`` image to.

    ``scale`` multiplies both sides; one of ``out_width`` / ``out_height`` alone keeps the aspect
    ratio; both set the size exactly; nothing keeps the size. ``names`` are what messages call the
    three options (the command line passes ``--scale``, ``--width``, ``--height``). Raises
    ValueError for non-positive or non-finite values, ``scale`` together with a width/height, and
    results over ``max_pixels``.
    """
    n_scale, n_width, n_height = names
    if scale is not None:
        if out_width is not None or out_height is not None:
            raise ValueError(f"give either {n_scale} or {n_width}/{n_height}, not both")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"{n_scale} must be a finite number > 0, got {scale}")
        fh, fw = height * scale, width * scale
    else:
        for flag, v in ((n_width, out_width), (n_height, out_height)):
            if v is not None and v < 1:
                raise ValueError(f"{flag} must be a positive integer, got {v}")
        fh = out_height if out_height is not None else (
            height * out_width / width if out_width is not None else height)
        fw = out_width if out_width is not None else width * fh / height
    if not fh * fw <= max_pixels:  # checked on floats first: no giant ints, no round(inf)
        size = f"{fw:.0f}x{fh:.0f}" if math.isfinite(fh * fw) else "infinite"
        raise ValueError(f"the requested output size ({size}) is over the limit of {max_pixels:,} pixels")
    h, w = max(1, round(fh)), max(1, round(fw))
    check_pixels(h, w, max_pixels=max_pixels)
    return h, w
