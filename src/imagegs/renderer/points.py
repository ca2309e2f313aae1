"""Random access: the rendered image's value at arbitrary continuous points, without rendering it."""

from __future__ import annotations

import numpy as np
import torch

from ..defaults import BLEND_EPS, DEFAULT_TOP_K
from ..gaussians import Gaussians
from . import reference
from .raster import (FILTER_SIGMA, SUPERSAMPLE, _check_gaussians, _check_size, _check_top_k, _needs_grad,
                     _resolve_backend, average_subsamples, project_for, supersampling)


def _as_points(xy, dtype: torch.dtype) -> torch.Tensor:
    """``xy`` as a (P, 2) tensor of real numbers (shape and type checked, values not yet)."""
    if isinstance(xy, np.ndarray):
        xy = torch.from_numpy(xy)
    if not isinstance(xy, torch.Tensor):
        try:
            xy = torch.as_tensor(xy, dtype=dtype)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError("xy must be a (P, 2) array of coordinates") from None
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"xy must have shape (P, 2), got {tuple(xy.shape)}")
    if not (xy.dtype.is_floating_point or xy.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"xy must hold real numbers, got {xy.dtype}")
    return xy


def _bad_values(xy: torch.Tensor, status: int | None = None) -> None:
    """Raise the ValueError for non-finite or out-of-range points (``status`` from the kernel)."""
    if status == 1 or (status is None and not torch.isfinite(xy).all()):
        raise ValueError("xy contains NaN or infinite values")
    if status == 2 or (status is None and xy.numel() and (xy.min() < 0 or xy.max() > 1)):
        raise ValueError(f"xy must lie in [0, 1]^2, got values in [{float(xy.min()):g}, {float(xy.max()):g}]")


def decode_pixels(gaussians: Gaussians, xy, *, height: int | None = None, width: int | None = None,
                  top_k: int | None = DEFAULT_TOP_K, eps: float = BLEND_EPS, antialias: bool = True,
                  filter_sigma: float = FILTER_SIGMA, supersample: int = SUPERSAMPLE,
                  backend: str = "auto") -> torch.Tensor:
    """Evaluate the model at arbitrary continuous points, without rendering the rest of the image.

    Args:
        gaussians: the model.
        xy: (P, 2) tensor or array of points in [0, 1]^2, the Gaussians' convention: x = column
            position / width (to the right), y = row position / height (down); the centre of pixel
            (i, j) of the height x width grid is ((j + 0.5) / width, (i + 0.5) / height).
        height, width: the pixel grid whose tiles (and, below the native size, whose pixel
            footprint for ``antialias``) define the evaluation; default: the native size.
        top_k, eps, antialias, filter_sigma, supersample, backend: as for ``render`` (below the
            native size each point averages sy x sx sub-points spread over its pixel's footprint,
            evaluated on the sub-sample grid's tiles).
    Returns:
        (P, C) values in the dtype of ``gaussians.xy``. At pixel centres they equal
        ``render(gaussians, height, width)`` at those pixels; elsewhere they are the same blend
        (the K largest of the tile's Gaussians) at the exact point.
    """
    height = gaussians.height if height is None else height
    width = gaussians.width if width is None else width
    h, w = _check_size(height, width)
    k = _check_top_k(top_k)
    g = gaussians
    _check_gaussians(g)
    dt = g.xy.dtype
    sy, sx = supersampling(g, h, w, antialias=antialias, supersample=supersample)
    hs, ws = _check_size(h * sy, w * sx)
    xy64 = _as_points(xy, dt).to(torch.float64)
    means, conics, radii, qoff = project_for(g, hs, ws, antialias=antialias, filter_sigma=filter_sigma)
    colors = g.color.to(dt)
    grad = _needs_grad(means, conics, colors, qoff, xy64)
    backend = _resolve_backend(backend, g.xy.device, grad, "random access")
    # Sub-points in sub-sample grid pixels: x ws + b + 0.5 - sx / 2 (likewise y), in float64, then
    # rounded once: a pixel centre (j + 0.5) / width lands on the grid's pixel centres.
    if backend == "reference":
        _bad_values(xy64)
        sub = torch.stack([xy64[:, 0] * ws, xy64[:, 1] * hs], 1)  # (P, 2)
        if sy * sx > 1:
            dev = xy64.device
            oy, ox = torch.meshgrid(torch.arange(sy, dtype=torch.float64, device=dev) + 0.5 - sy / 2,
                                    torch.arange(sx, dtype=torch.float64, device=dev) + 0.5 - sx / 2,
                                    indexing="ij")
            sub = (sub[:, None, None, :] + torch.stack([ox, oy], -1)[None]).reshape(-1, 2)  # (P sy sx, 2)
        pts = sub.to(device=g.xy.device, dtype=dt)
        vals = reference.rasterize_points(means, conics, colors, radii, pts, hs, ws, top_k=k or None,
                                          eps=eps, qoff=qoff)
    else:
        from ._forward import scale_points  # imports numba lazily
        from .forward import points_forward

        xy_np = np.ascontiguousarray(xy64.detach().cpu().numpy())
        npt = xy_np.shape[0] * sy * sx
        ndt = np.float32 if dt == torch.float32 else np.float64
        px, py = np.empty(npt, ndt), np.empty(npt, ndt)
        status = scale_points(xy_np, float(ws), float(hs), sy, sx, px, py)
        if status:
            _bad_values(xy64, status)
        vals = points_forward(means, conics, colors, radii, (px, py), hs, ws, top_k=k, eps=eps, qoff=qoff)
    if sy * sx == 1:
        return vals
    p, c = xy64.shape[0], colors.shape[1]
    # (P, sy, sx, C) -> (P C?, ...): the same summation order as ``render``
    per = vals.reshape(p, sy, sx, c).permute(0, 3, 1, 2).reshape(p * c, sy, 1, sx)
    return average_subsamples(per, sy, sx).reshape(p, c)
