"""Pure-PyTorch tile-based top-K rasteriser: the specification, and the GPU path.

Written for clarity, not speed: every tile's Gaussian list is padded to the longest one and all
pixel/Gaussian pairs are evaluated at once. Autograd provides the backward pass. The fused CPU
kernels in ``_kernels.py`` must match this function (forward and gradients).
"""

from __future__ import annotations

import math

import torch

from ..defaults import BLEND_EPS, DEFAULT_TOP_K
from .project import TILE


def tile_lists(means: torch.Tensor, radii: torch.Tensor, height: int, width: int,
               tiles: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Which Gaussians touch each 16x16 tile.

    A Gaussian belongs to a tile when the circle of radius ``radii`` around its mean meets the
    tile's rectangle (clipped to the image). ``tiles``: optional (T,) row-major tile numbers to list
    (default: every tile of the image).
    Returns ``ids`` (T, L) Gaussian indices in increasing order, padded with 0, and ``valid`` (T, L).
    """
    ntx = math.ceil(width / TILE)
    dev = means.device
    if tiles is None:
        tiles = torch.arange(math.ceil(height / TILE) * ntx, device=dev)
    ty, tx = tiles // ntx, tiles % ntx
    x0, y0 = (tx * TILE).reshape(-1, 1).to(means.dtype), (ty * TILE).reshape(-1, 1).to(means.dtype)
    x1, y1 = (x0 + TILE).clamp(max=width), (y0 + TILE).clamp(max=height)
    m = means.detach()
    dx = torch.clamp(torch.maximum(x0 - m[:, 0], m[:, 0] - x1), min=0.0)
    dy = torch.clamp(torch.maximum(y0 - m[:, 1], m[:, 1] - y1), min=0.0)
    hit = dx * dx + dy * dy <= (radii * radii)[None, :]  # (T, N)
    length = int(hit.sum(1).max().item()) if hit.numel() else 0
    order = torch.argsort((~hit).to(torch.int8), dim=1, stable=True)[:, :length]
    valid = torch.gather(hit, 1, order)
    return torch.where(valid, order, 0), valid


def _blend(px: torch.Tensor, py: torch.Tensor, ids: torch.Tensor, valid: torch.Tensor, means: torch.Tensor,
           conics: torch.Tensor, colors: torch.Tensor, qoff: torch.Tensor | None, top_k: int | None,
           eps: float) -> torch.Tensor:
    """Blend at points (px, py) (T, P) in output pixels, each against its row's list ``ids`` (T, L).

    Returns (T, P, C): sum_k w_k c_k / (sum_k w_k + eps) over the K largest w = exp(-(q + o) / 2).
    """
    dt = means.dtype
    m = means[ids]  # (T, L, 2)
    con = conics[ids]  # (T, L, 3)
    dx = px.to(dt)[:, :, None] - m[:, None, :, 0]  # (T, P, L)
    dy = py.to(dt)[:, :, None] - m[:, None, :, 1]
    q = con[:, None, :, 0] * dx * dx + 2.0 * con[:, None, :, 1] * dx * dy + con[:, None, :, 2] * dy * dy
    # q >= 0 in exact arithmetic; rounding can make a needle's conic indefinite, so clamp (w <= 1)
    q = q.clamp(min=0.0)
    if qoff is not None:  # amplitude exp(-o / 2): selection and weight on q + o
        q = q + qoff[ids][:, None, :]
    ok = valid[:, None, :].expand_as(q)
    ncol = colors.shape[1]
    length = ids.shape[1]
    if top_k is not None and top_k < length:
        key = torch.where(ok, q.detach(), torch.full_like(q, math.inf))
        sel = torch.topk(key, top_k, dim=2, largest=False).indices  # (T, P, K)
        q = torch.gather(q, 2, sel)
        ok = torch.gather(ok, 2, sel)
        col = torch.gather(colors[ids][:, None].expand(-1, q.shape[1], -1, -1), 2,
                           sel[..., None].expand(-1, -1, -1, ncol))  # (T, P, K, C)
    else:
        col = colors[ids][:, None].expand(-1, q.shape[1], -1, -1)
    w = torch.where(ok, torch.exp(-0.5 * torch.where(ok, q, torch.zeros_like(q))), torch.zeros_like(q))
    return (w[..., None] * col).sum(2) / (w.sum(2)[..., None] + eps)


def rasterize(means: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor, radii: torch.Tensor,
              height: int, width: int, *, top_k: int | None = DEFAULT_TOP_K, eps: float = BLEND_EPS,
              qoff: torch.Tensor | None = None, region: tuple[int, int, int, int] | None = None
              ) -> torch.Tensor:
    """Render (C, height, width): per pixel, blend the K tile Gaussians with the largest value.

    c(x) = sum_k w_k(x) c_k / (sum_k w_k(x) + eps), w = exp(-(q + o)/2) with q = max(d^T conic d, 0)
    and o = ``qoff`` (N,) >= 0 (an amplitude exp(-o/2); default 0); ``top_k=None`` sums all of the
    tile's Gaussians. The selection is not differentiated; gradients flow through the kept ones.
    ``region`` = (x0, y0, x1, y1): render only that half-open window, (C, y1 - y0, x1 - x0).
    """
    x0, y0, x1, y1 = region if region is not None else (0, 0, width, height)
    ntx = math.ceil(width / TILE)
    dev, dt = means.device, means.dtype
    ncol = colors.shape[1]
    # the tiles that meet the region, and the pixel centres of each, (T, P) with P = TILE^2
    ty, tx = torch.meshgrid(torch.arange(y0 // TILE, (y1 - 1) // TILE + 1, device=dev),
                            torch.arange(x0 // TILE, (x1 - 1) // TILE + 1, device=dev), indexing="ij")
    nty_r, ntx_r = ty.shape
    ids, valid = tile_lists(means, radii, height, width, (ty * ntx + tx).reshape(-1))  # (T, L)
    ly, lx = torch.meshgrid(torch.arange(TILE, device=dev), torch.arange(TILE, device=dev), indexing="ij")
    py = ty.reshape(-1, 1) * TILE + ly.reshape(1, -1)
    px = tx.reshape(-1, 1) * TILE + lx.reshape(1, -1)
    if ids.shape[1] == 0:
        return torch.zeros(ncol, y1 - y0, x1 - x0, dtype=dt, device=dev) + 0.0 * colors.sum()
    out = _blend(px.to(dt) + 0.5, py.to(dt) + 0.5, ids, valid, means, conics, colors, qoff, top_k, eps)  # (T, P, C)
    img = torch.zeros(nty_r * TILE, ntx_r * TILE, ncol, dtype=dt, device=dev)
    oy, ox = ty[0, 0] * TILE, tx[0, 0] * TILE
    img = img.index_put(((py - oy).reshape(-1), (px - ox).reshape(-1)), out.reshape(-1, ncol))
    return img[y0 - oy:y1 - oy, x0 - ox:x1 - ox].permute(2, 0, 1)


def rasterize_points(means: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor, radii: torch.Tensor,
                     points: torch.Tensor, height: int, width: int, *, top_k: int | None = DEFAULT_TOP_K,
                     eps: float = BLEND_EPS, qoff: torch.Tensor | None = None) -> torch.Tensor:
    """The blend of ``rasterize`` at arbitrary points (P, 2) = (x, y) in output pixels -> (P, C).

    Each point uses the Gaussian list of the height x width grid's tile that contains it (points
    on the far edge, x = width or y = height, belong to the last tile), so at a pixel centre
    (j + 0.5, i + 0.5) the value is that of pixel (i, j).
    """
    ntx, nty = math.ceil(width / TILE), math.ceil(height / TILE)
    tx = (points[:, 0].detach().floor().long() // TILE).clamp(0, ntx - 1)
    ty = (points[:, 1].detach().floor().long() // TILE).clamp(0, nty - 1)
    tiles, inverse = torch.unique(ty * ntx + tx, return_inverse=True)
    ids, valid = tile_lists(means, radii, height, width, tiles)
    if ids.shape[1] == 0:
        return torch.zeros(points.shape[0], colors.shape[1], dtype=means.dtype, device=means.device) \
            + 0.0 * colors.sum()
    # one row per point, against its tile's list
    out = _blend(points[:, 0:1], points[:, 1:2], ids[inverse], valid[inverse], means, conics, colors,
                 qoff, top_k, eps)
    return out[:, 0]
