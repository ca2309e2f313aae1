"""Random access: the rendered image's value at arbitrary continuous points, without rendering it."""

from __future__ import annotations

import numpy as np
import torch

from ..gaussians import Gaussians
from . import FILTER_SIGMA, _check_gaussians, _check_size, _check_top_k, _needs_grad, _resolve_backend
from . import project_for, reference


def _check_points(xy, dtype: torch.dtype) -> torch.Tensor:
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
    if not torch.isfinite(xy).all():
        raise ValueError("xy contains NaN or infinite values")
    if xy.numel() and (xy.min() < 0 or xy.max() > 1):
        raise ValueError(f"xy must lie in [0, 1]^2, got values in [{float(xy.min()):g}, {float(xy.max()):g}]")
    return xy


def decode_pixels(gaussians: Gaussians, xy, *, height: int | None = None, width: int | None = None,
                  top_k: int | None = 10, eps: float = 1e-4, antialias: bool = True,
                  filter_sigma: float = FILTER_SIGMA, backend: str = "auto") -> torch.Tensor:
    """Evaluate the model at arbitrary continuous points, without rendering the rest of the image.

    Args:
        gaussians: the model.
        xy: (P, 2) tensor or array of points in [0, 1]^2, the Gaussians' convention: x = column
            position / width (to the right), y = row position / height (down); the centre of pixel
            (i, j) of the height x width grid is ((j + 0.5) / width, (i + 0.5) / height).
        height, width: the pixel grid whose tiles (and, below the native size, whose pixel
            footprint for ``antialias``) define the evaluation; default: the native size.
        top_k, eps, antialias, filter_sigma, backend: as for ``render``.
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
    # scaled in float64, then rounded once: a pixel centre (j + 0.5) / width lands on j + 0.5
    pts = (_check_points(xy, dt).to(torch.float64) * torch.tensor([float(w), float(h)], dtype=torch.float64))
    pts = pts.to(device=g.xy.device, dtype=dt)
    means, conics, radii, qoff = project_for(g, h, w, antialias=antialias, filter_sigma=filter_sigma)
    colors = g.color.to(dt)
    grad = _needs_grad(means, conics, colors, qoff, pts)
    backend = _resolve_backend(backend, pts.device, grad, "random access")
    if backend == "reference":
        return reference.rasterize_points(means, conics, colors, radii, pts, h, w, top_k=k or None,
                                          eps=eps, qoff=qoff)
    from .decode import points_decode  # imports numba lazily

    return points_decode(means, conics, colors, radii, pts, h, w, top_k=k, eps=eps, qoff=qoff)
