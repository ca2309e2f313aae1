"""Pure-PyTorch tile-based top-K rasteriser: the specification, and the GPU path.

Written for clarity, not speed: every tile's Gaussian list is padded to the longest one and all
pixel/Gaussian pairs are evaluated at once. Autograd provides the backward pass. The fused CPU
kernels in ``_kernels.py`` must match this function (forward and gradients).
"""

from __future__ import annotations

import math

import torch

from .project import TILE


def tile_lists(means: torch.Tensor, radii: torch.Tensor, height: int, width: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Which Gaussians touch each 16x16 tile.

    A Gaussian belongs to a tile when the circle of radius ``radii`` around its mean meets the
    tile's rectangle (clipped to the image).
    Returns ``ids`` (T, L) Gaussian indices in increasing order, padded with 0, and ``valid`` (T, L).
    """
    nty, ntx = math.ceil(height / TILE), math.ceil(width / TILE)
    dev = means.device
    ty, tx = torch.meshgrid(torch.arange(nty, device=dev), torch.arange(ntx, device=dev), indexing="ij")
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


def rasterize(means: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor, radii: torch.Tensor,
              height: int, width: int, *, top_k: int | None = 10, eps: float = 1e-4) -> torch.Tensor:
    """Render (C, height, width): per pixel, blend the K tile Gaussians with the largest value.

    c(x) = sum_k G_k(x) c_k / (sum_k G_k(x) + eps), G = exp(-q/2) with q = max(d^T conic d, 0);
    ``top_k=None`` sums all of the
    tile's Gaussians. The selection is not differentiated; gradients flow through the kept ones.
    """
    nty, ntx = math.ceil(height / TILE), math.ceil(width / TILE)
    ncol = colors.shape[1]
    ids, valid = tile_lists(means, radii, height, width)  # (T, L)
    num_tiles, length = ids.shape
    dev, dt = means.device, means.dtype
    # pixel centres of every tile, (T, P) with P = TILE^2 (the padding past the image is cut at the end)
    ly, lx = torch.meshgrid(torch.arange(TILE, device=dev), torch.arange(TILE, device=dev), indexing="ij")
    ty, tx = torch.meshgrid(torch.arange(nty, device=dev), torch.arange(ntx, device=dev), indexing="ij")
    py = ty.reshape(-1, 1) * TILE + ly.reshape(1, -1)
    px = tx.reshape(-1, 1) * TILE + lx.reshape(1, -1)
    if length == 0:
        return torch.zeros(ncol, height, width, dtype=dt, device=dev) + 0.0 * colors.sum()
    m = means[ids]  # (T, L, 2)
    con = conics[ids]  # (T, L, 3)
    dx = (px.to(dt) + 0.5)[:, :, None] - m[:, None, :, 0]  # (T, P, L)
    dy = (py.to(dt) + 0.5)[:, :, None] - m[:, None, :, 1]
    q = con[:, None, :, 0] * dx * dx + 2.0 * con[:, None, :, 1] * dx * dy + con[:, None, :, 2] * dy * dy
    # q >= 0 in exact arithmetic; rounding can make a needle's conic indefinite, so clamp (w <= 1)
    q = q.clamp(min=0.0)
    ok = valid[:, None, :].expand_as(q)
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
    out = (w[..., None] * col).sum(2) / (w.sum(2)[..., None] + eps)  # (T, P, C)
    img = torch.zeros(nty * TILE, ntx * TILE, ncol, dtype=dt, device=dev)
    img = img.index_put((py.reshape(-1), px.reshape(-1)), out.reshape(-1, ncol))
    return img[:height, :width].permute(2, 0, 1)
