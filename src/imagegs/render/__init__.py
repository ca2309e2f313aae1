"""Differentiable tile-based top-K rendering of 2D Gaussians at any output size.

``render(g, H, W)`` projects the Gaussians to the requested size (positions scale with the output,
covariances with the per-axis resolution ratio, so non-integer scales and other aspect ratios work)
and rasterises them with one of two backends that compute the same function:

- ``reference``: pure PyTorch, any device (the specification, and the GPU path for now);
- ``cpu``: fused, parallel Numba kernels with a hand-written backward (fast on a CPU).
"""

from __future__ import annotations

import torch

from ..gaussians import Gaussians
from . import reference
from .project import TILE, project

__all__ = ["render", "rasterize", "project", "TILE", "BACKENDS"]

BACKENDS = ("auto", "cpu", "reference")


def _check_size(height: int, width: int) -> tuple[int, int]:
    try:
        h, w = int(height), int(width)
    except (TypeError, ValueError):
        raise ValueError(f"output size must be integers, got {height!r} x {width!r}") from None
    if h != height or w != width or h < 1 or w < 1:
        raise ValueError(f"output size must be positive integers, got {height!r} x {width!r}")
    if h * w > 2**31 - 1:
        raise ValueError(f"output size {h}x{w} is too large (more than 2^31 pixels)")
    return h, w


def rasterize(means: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor, radii: torch.Tensor,
              height: int, width: int, *, top_k: int | None = 10, eps: float = 1e-4,
              backend: str = "auto") -> torch.Tensor:
    """Rasterise projected Gaussians: means (N, 2) px, conics (N, 3), colors (N, C), radii (N,) -> (C, H, W).

    ``top_k=None`` (or 0) sums every Gaussian of a pixel's tile (the official ablation mode).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if top_k is not None and (int(top_k) != top_k or top_k < 0):
        raise ValueError(f"top_k must be a non-negative integer or None, got {top_k!r}")
    k = int(top_k or 0)
    if backend == "auto":
        backend = "cpu" if means.device.type == "cpu" else "reference"
    if backend == "reference":
        return reference.rasterize(means, conics, colors, radii, height, width, top_k=k or None, eps=eps)
    if means.device.type != "cpu":
        raise ValueError("the 'cpu' backend needs CPU tensors; use backend='reference' on other devices")
    from ._autograd import RasterizeCPU  # imports numba lazily

    return RasterizeCPU.apply(means, conics, colors, radii, height, width, k, float(eps))


def render(gaussians: Gaussians, height: int | None = None, width: int | None = None, *,
           top_k: int | None = 10, eps: float = 1e-4, backend: str = "auto") -> torch.Tensor:
    """Render Gaussians to a (C, height, width) tensor, differentiable w.r.t. every parameter.

    Args:
        gaussians: the model; its tensors may require grad.
        height, width: output size (default: the native size). Any size and aspect ratio.
        top_k: Gaussians blended per pixel (K=10 as in Image-GS); ``None`` sums the whole tile.
        eps: the blend's normaliser offset (official: 1e-4).
        backend: "auto" (``cpu`` on CPU tensors, ``reference`` elsewhere), "cpu" or "reference".
    Returns:
        (C, height, width) tensor in the dtype of ``gaussians.xy``.
    """
    height = gaussians.height if height is None else height
    width = gaussians.width if width is None else width
    h, w = _check_size(height, width)
    g = gaussians
    for name in ("xy", "scale", "rot", "color"):
        t = getattr(g, name)
        if not torch.isfinite(t).all():
            raise ValueError(f"Gaussian {name} contains NaN or infinite values")
    if g.num and not (g.scale > 0).all():
        raise ValueError("Gaussian scales must be positive")
    means, conics, radii = project(g.xy, g.scale, g.rot, height=h, width=w,
                                   native_height=g.height, native_width=g.width)
    return rasterize(means, conics, g.color.to(g.xy.dtype), radii, h, w, top_k=top_k, eps=eps,
                     backend=backend)
