"""torch.autograd.Functions around the Numba kernels (the ``cpu`` backend): rasterisation and projection.

The forward is the decode kernel (``_forward.forward``), which also keeps what the backward needs
(per lane the blended colour, sum(w) + eps and the K-th key, per tile entry a winner flag);
the backward is ``_backward.backward``.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from . import _backward, _forward, _project_cpu
from .forward import _key_proto, no_training_outputs, prepare, training_outputs


class RasterizeCPU(torch.autograd.Function):
    """(means, conics, colors, radii) -> image (C, H, W); same contract as ``reference.rasterize``."""

    @staticmethod
    def forward(ctx, means, conics, colors, radii, height: int, width: int, top_k: int, eps: float):
        m, con, qo, col, offsets, ids = prepare(means, conics, colors, radii, None, height, width)
        ntiles = len(offsets) - 1
        if any(ctx.needs_input_grad[:3]):
            blend, kth, won = training_outputs(m, col.shape[1], ntiles, len(ids))
        else:
            blend, kth, won = no_training_outputs(m)
        out = np.empty((col.shape[1], height, width), m.dtype)
        counts = np.empty((ntiles, _forward.NSTATS), np.int64)
        _forward.forward(m, con, qo, col, offsets, ids, height, width, top_k, eps, 0, 0, width, height, out,
                       counts, _key_proto(m), _forward.LANES, numba.get_num_threads(), blend, kth, won)
        ctx.state = (m, con, col, offsets, ids, height, width, out, blend, kth, won)
        ctx.colors_dtype = colors.dtype
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out):
        m, con, col, offsets, ids, height, width, out, blend, kth, won = ctx.state
        go = grad_out.detach().to(torch.from_numpy(out).dtype).contiguous().numpy()
        gm, gcon, gcol = _backward.backward(m, con, col, offsets, ids, height, width, go, blend, kth, won,
                                            _forward.LANES, numba.get_num_threads(),
                                            np.zeros((0, 0), np.int32))
        return (torch.from_numpy(gm), torch.from_numpy(gcon),
                torch.from_numpy(gcol).to(ctx.colors_dtype), None, None, None, None, None)


class ProjectInverseCPU(torch.autograd.Function):
    """(xy, inverse scales, rot) -> (means, conics, radii) on CPU tensors; radii not differentiable."""

    @staticmethod
    def forward(ctx, xy, inv, rot, width: int, height: int, ax: float, ay: float):
        x, i, r = (t.detach().contiguous().numpy() for t in (xy, inv, rot))
        n = x.shape[0]
        means, conics, radii = np.empty((n, 2), x.dtype), np.empty((n, 3), x.dtype), np.empty(n, x.dtype)
        _project_cpu._forward(x, i, r, width, height, ax, ay, means, conics, radii)
        ctx.save_for_backward(inv, rot)
        ctx.size = (width, height, ax, ay)
        ctx.mark_non_differentiable(radii_t := torch.from_numpy(radii))
        return torch.from_numpy(means), torch.from_numpy(conics), radii_t

    @staticmethod
    def backward(ctx, gmeans, gconics, _gradii):
        inv, rot = ctx.saved_tensors
        width, height, ax, ay = ctx.size
        i, r = inv.detach().contiguous().numpy(), rot.detach().contiguous().numpy()
        n = i.shape[0]
        gm = (gmeans if gmeans is not None else torch.zeros(n, 2, dtype=inv.dtype)).contiguous().numpy()
        gc = (gconics if gconics is not None else torch.zeros(n, 3, dtype=inv.dtype)).contiguous().numpy()
        gxy, ginv, grot = np.empty((n, 2), i.dtype), np.empty((n, 2), i.dtype), np.empty(n, i.dtype)
        _project_cpu._backward(i, r, gm, gc, width, height, ax, ay, gxy, ginv, grot)
        return torch.from_numpy(gxy), torch.from_numpy(ginv), torch.from_numpy(grot), None, None, None, None
