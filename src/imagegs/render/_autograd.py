"""torch.autograd.Function around the Numba kernels (the ``cpu`` backend)."""

from __future__ import annotations

import numba
import numpy as np
import torch

from . import _kernels


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class RasterizeCPU(torch.autograd.Function):
    """(means, conics, colors, radii) -> image (C, H, W); same contract as ``reference.rasterize``."""

    @staticmethod
    def forward(ctx, means, conics, colors, radii, height: int, width: int, top_k: int, eps: float):
        m, con, col = _np(means), _np(conics), _np(colors.to(means.dtype))
        offsets, ids = _kernels.bin_tiles(m, _np(radii.to(means.dtype)), height, width)
        # the per-pixel selection is kept for the backward pass only when a gradient is wanted
        store = top_k > 0 and any(ctx.needs_input_grad[:3])
        lanes = _kernels.BLOCK * _kernels.BLOCK
        nblocks = (len(offsets) - 1) * (_kernels.TILE // _kernels.BLOCK) ** 2 if store else 1
        shape = (nblocks, top_k, lanes) if store else (1, 1, 1)
        out = np.empty((col.shape[1], height, width), col.dtype)
        sel_pos = np.empty(shape, np.int32)
        sel_w = np.empty(shape, col.dtype)
        wsum = np.empty(height * width, col.dtype)
        _kernels.forward(m, con, col, offsets, ids, height, width, top_k, eps, _kernels.BLOCK, store,
                         out, sel_pos, sel_w, wsum, numba.get_num_threads())
        out_t = torch.from_numpy(out)
        ctx.state = (m, con, col, offsets, ids, height, width, top_k, out, sel_pos, sel_w, wsum)
        ctx.colors_dtype = colors.dtype
        return out_t

    @staticmethod
    def backward(ctx, grad_out):
        m, con, col, offsets, ids, height, width, top_k, out, sel_pos, sel_w, wsum = ctx.state
        go = grad_out.detach().to(torch.from_numpy(out).dtype).contiguous().numpy()
        gm, gcon, gcol = _kernels.backward(m, con, col, offsets, ids, height, width, top_k, _kernels.BLOCK,
                                           go, out, sel_pos, sel_w, wsum, numba.get_num_threads())
        return (torch.from_numpy(gm), torch.from_numpy(gcon),
                torch.from_numpy(gcol).to(ctx.colors_dtype), None, None, None, None, None)
