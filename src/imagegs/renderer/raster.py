"""Rendering whole images and regions: checks, backend choice, anti-aliasing, ``render`` and
``rasterize``. See the package docstring (:mod:`imagegs.renderer`)."""

from __future__ import annotations

import math

import torch

from ..defaults import BLEND_EPS, DEFAULT_TOP_K, MAX_PIXELS, check_pixels, check_top_k
from ..gaussians import Gaussians
from . import reference
from .project import TILE, prefilter, project

__all__ = ["render", "rasterize", "project", "prefilter", "check_region", "TILE",
           "BACKENDS", "FILTER_SIGMA", "SUPERSAMPLE"]

BACKENDS = ("auto", "cpu", "reference")
# Std of the pixel filter (native pixels) of the anti-aliasing prefilter, chosen by measurement:
# PSNR against the Lanczos-downscaled original over 10 images at 1/2, 1/3, 1/4 (benchmarks/antialias.py).
FILTER_SIGMA = 0.3
# Below the native size, at most this many sub-samples per axis and output pixel (averaged).
SUPERSAMPLE = 4


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


def check_region(region, height: int, width: int) -> tuple[int, int, int, int]:
    """Validate a half-open output-pixel window (x0, y0, x1, y1) inside a height x width image."""
    try:
        x0, y0, x1, y1 = (int(v) for v in region)
        exact = all(int(v) == v for v in region)
    except (TypeError, ValueError):
        raise ValueError(f"region must be four integers (x0, y0, x1, y1), got {region!r}") from None
    if not exact:
        raise ValueError(f"region must be four integers (x0, y0, x1, y1), got {region!r}")
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(f"region {(x0, y0, x1, y1)} is empty or outside the {width}x{height} image "
                         f"(need 0 <= x0 < x1 <= {width} and 0 <= y0 < y1 <= {height})")
    return x0, y0, x1, y1


def _check_top_k(top_k) -> int:
    """:func:`imagegs.defaults.check_top_k`, as the kernels take it (0 = whole tile)."""
    return check_top_k(top_k) or 0


def _needs_grad(*tensors: torch.Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _resolve_backend(backend: str, device: torch.device, grad: bool, special: str | None) -> str:
    """'reference', 'cpu' (training kernel, differentiable) or 'decode' (forward-only kernel).

    ``special`` names a feature the training kernel lacks (a region, amplitudes): with a gradient
    it needs the reference backend ('auto' picks it; an explicit 'cpu' is an error).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {BACKENDS}")
    if backend == "auto":
        backend = "cpu" if device.type == "cpu" else "reference"
        if backend == "cpu" and grad and special:
            backend = "reference"
    if backend == "reference":
        return backend
    if device.type != "cpu":
        raise ValueError("the 'cpu' backend needs CPU tensors; use backend='reference' on other devices")
    if not grad:
        return "forward"
    if special:
        raise ValueError(f"the 'cpu' backend cannot differentiate {special}; use backend='reference' "
                         "or torch.no_grad()")
    return "cpu"


def rasterize(means: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor, radii: torch.Tensor,
              height: int, width: int, *, top_k: int | None = DEFAULT_TOP_K, eps: float = BLEND_EPS,
              backend: str = "auto", qoff: torch.Tensor | None = None,
              region: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """Rasterise projected Gaussians: means (N, 2) px, conics (N, 3), colors (N, C), radii (N,) -> (C, H, W).

    ``top_k=None`` (or 0) sums every Gaussian of a pixel's tile (the official ablation mode).
    ``qoff`` (N,) >= 0: optional offsets of the quadratic form (amplitudes exp(-qoff/2)).
    ``region`` (x0, y0, x1, y1): only that half-open window, (C, y1 - y0, x1 - x0).
    Without a gradient on CPU the forward-only decode kernel runs (same values).
    """
    k = _check_top_k(top_k)
    if region is not None:
        region = check_region(region, height, width)
    special = "a region" if region is not None else "amplitudes (antialias)" if qoff is not None else None
    backend = _resolve_backend(backend, means.device, _needs_grad(means, conics, colors, qoff), special)
    if backend == "reference":
        return reference.rasterize(means, conics, colors, radii, height, width, top_k=k or None, eps=eps,
                                   qoff=qoff, region=region)
    if backend == "forward":
        from .forward import rasterize_forward  # imports numba lazily

        return rasterize_forward(means, conics, colors, radii, height, width, top_k=k, eps=eps,
                                qoff=qoff, region=region)
    from ._autograd import RasterizeCPU  # imports numba lazily

    return RasterizeCPU.apply(means, conics, colors, radii, height, width, k, float(eps))


def _check_gaussians(g: Gaussians) -> None:
    for name in ("xy", "scale", "rot", "color"):
        t = getattr(g, name)
        if not torch.isfinite(t).all():
            raise ValueError(f"Gaussian {name} contains NaN or infinite values")
    if g.num and not (g.scale > 0).all():
        raise ValueError("Gaussian scales must be positive")


def project_for(g: Gaussians, height: int, width: int, *, antialias: bool = True,
                filter_sigma: float = FILTER_SIGMA):
    """(means, conics, radii, qoff) of ``g`` rendered at height x width (``project``/``prefilter``)."""
    try:
        ok = math.isfinite(filter_sigma) and filter_sigma >= 0
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"filter_sigma must be a finite number >= 0, got {filter_sigma!r}")
    if antialias:
        return prefilter(g.xy, g.scale, g.rot, height=height, width=width, native_height=g.height,
                         native_width=g.width, sigma=filter_sigma)
    return (*project(g.xy, g.scale, g.rot, height=height, width=width, native_height=g.height,
                     native_width=g.width), None)


def supersampling(g: Gaussians, height: int, width: int, *, antialias: bool = True,
                  supersample: int = SUPERSAMPLE) -> tuple[int, int]:
    """Sub-samples (sy, sx) per output pixel: ceil(native / output) per axis below the native size,
    at most ``supersample``, with ``antialias``; (1, 1) otherwise."""
    if int(supersample) != supersample or supersample < 1:
        raise ValueError(f"supersample must be a positive integer, got {supersample!r}")
    if not antialias:
        return 1, 1
    sy = min(int(supersample), max(1, math.ceil(g.height / height - 1e-9)))
    sx = min(int(supersample), max(1, math.ceil(g.width / width - 1e-9)))
    return sy, sx


def average_subsamples(sub: torch.Tensor, sy: int, sx: int) -> torch.Tensor:
    """Mean over sub-sample axes (..., sy, sx, C-last or not): ``sub`` (A, sy, B, sx) -> (A, B),
    summed in one fixed order (so that ``render`` and ``decode_pixels`` round alike)."""
    total = sub[:, 0, :, 0].clone()
    for a in range(sy):
        for b in range(sx):
            if a or b:
                total = total + sub[:, a, :, b]
    return total / (sy * sx)


def render(gaussians: Gaussians, height: int | None = None, width: int | None = None, *,
           top_k: int | None = DEFAULT_TOP_K, eps: float = BLEND_EPS, backend: str = "auto",
           region: tuple[int, int, int, int] | None = None, antialias: bool = True,
           filter_sigma: float = FILTER_SIGMA, supersample: int = SUPERSAMPLE,
           max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """Render Gaussians to a (C, height, width) tensor, differentiable w.r.t. every parameter.

    Args:
        gaussians: the model; its tensors may require grad.
        height, width: output size (default: the native size). Any size and aspect ratio.
        top_k: Gaussians blended per pixel (K=10 as in Image-GS); ``None`` sums the whole tile.
        eps: the blend's normaliser offset (official: 1e-4).
        backend: "auto" (``cpu`` on CPU tensors, ``reference`` elsewhere), "cpu" or "reference".
        region: (x0, y0, x1, y1) output pixels, half-open: render only that window (equal to the
            crop of the whole rendering; the cost is proportional to the window).
        antialias: below the native size, average sy x sx sub-samples per output pixel (up to
            ``supersample`` per axis, ceil(native / output)) rendered with each Gaussian widened by
            the sub-sample's footprint (``project.prefilter``), instead of point-sampling; no
            effect at or above the native size.
        filter_sigma: the prefilter's pixel-filter std in native pixels.
        supersample: most sub-samples per axis (1: the prefilter alone).
        max_pixels: refuse a height x width over this many pixels (default 2^28, as the command
            line): a guard against exhausting memory by mistake; raise it deliberately.
    Returns:
        (C, height, width) tensor (or (C, y1 - y0, x1 - x0) for a region) in the dtype of ``gaussians.xy``.
    """
    height = gaussians.height if height is None else height
    width = gaussians.width if width is None else width
    h, w = _check_size(height, width)
    check_pixels(h, w, max_pixels=max_pixels, what="rendering")
    g = gaussians
    _check_gaussians(g)
    if region is not None:
        region = check_region(region, h, w)
    sy, sx = supersampling(g, h, w, antialias=antialias, supersample=supersample)
    hs, ws = _check_size(h * sy, w * sx)
    means, conics, radii, qoff = project_for(g, hs, ws, antialias=antialias, filter_sigma=filter_sigma)
    if region is not None:
        x0, y0, x1, y1 = region
        region = (x0 * sx, y0 * sy, x1 * sx, y1 * sy)
    out = rasterize(means, conics, g.color.to(g.xy.dtype), radii, hs, ws, top_k=top_k, eps=eps,
                    backend=backend, qoff=qoff, region=region)
    if sy * sx == 1:
        return out
    c, hh, ww = out.shape
    return average_subsamples(out.reshape(c * hh // sy, sy, ww // sx, sx), sy, sx).reshape(c, hh // sy, ww // sx)

