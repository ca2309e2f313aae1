"""The one home of imagegs's shared defaults and limits, and the checks that enforce them.

Every module that needs one of these values imports it from here, so a default or a limit is
changed in one place and every entry point (API, CLI, file formats) agrees on it.
"""

from __future__ import annotations

__all__ = ["DEFAULT_TOP_K", "MAX_TOP_K", "DEFAULT_NUM_GAUSSIANS", "MAX_PIXELS", "BLEND_EPS", "check_top_k"]

DEFAULT_TOP_K = 10  # Gaussians blended per pixel (Image-GS's K)
MAX_TOP_K = 64  # largest K the kernels and the .igs header accept
DEFAULT_NUM_GAUSSIANS = 10_000  # Image-GS's default budget
MAX_PIXELS = 2**28  # largest image decoded or rendered unless the caller raises it (max_pixels=)
BLEND_EPS = 1e-4  # the blend's normaliser offset: sum(w c) / (sum(w) + eps) (the official value)


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
