"""torch.autograd.Function around the Numba kernels (the ``cpu`` backend).

The forward is the decode kernel (``_forward.forward``), which also keeps what the backward needs
(per lane the blended colour, sum(w) + eps and the K-th key, per tile entry a winner flag);
the backward is ``_backward.backward``.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from . import _backward, _forward
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
