"""NumPy/torch glue around the forward-only decode kernels (``_decode.py``)."""

from __future__ import annotations

import numpy as np
import torch

from . import _decode, _kernels


def _np(t: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)


def prepare(means: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor, radii: torch.Tensor,
            qoff: torch.Tensor | None, height: int, width: int) -> tuple:
    """NumPy arrays in the means' dtype plus the CSR tile lists: (m, con, qo, col, offsets, ids)."""
    dt = np.float32 if means.dtype == torch.float32 else np.float64
    m, con, col = _np(means, dt), _np(conics, dt), _np(colors, dt)
    qo = _np(qoff, dt) if qoff is not None else np.empty(0, dt)
    offsets, ids = _kernels.bin_tiles(m, _np(radii, dt), height, width)
    return m, con, qo, col, offsets, ids


def rasterize_decode(means: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor, radii: torch.Tensor,
                     height: int, width: int, *, top_k: int, eps: float, qoff: torch.Tensor | None = None,
                     region: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """Forward-only rasterisation (no autograd) of the whole image or a checked ``region``."""
    x0, y0, x1, y1 = region if region is not None else (0, 0, width, height)
    m, con, qo, col, offsets, ids = prepare(means, conics, colors, radii, qoff, height, width)
    out = np.empty((col.shape[1], y1 - y0, x1 - x0), m.dtype)
    _decode.decode(m, con, qo, col, offsets, ids, height, width, top_k, float(eps), x0, y0, x1, y1, out)
    return torch.from_numpy(out)


def points_decode(means: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor, radii: torch.Tensor,
                  points: torch.Tensor, height: int, width: int, *, top_k: int, eps: float,
                  qoff: torch.Tensor | None = None) -> torch.Tensor:
    """Forward-only evaluation at points (P, 2) in output pixels -> (P, C)."""
    m, con, qo, col, offsets, ids = prepare(means, conics, colors, radii, qoff, height, width)
    px = _np(points[:, 0], m.dtype)
    py = _np(points[:, 1], m.dtype)
    order, starts = _decode.group_points(px, py, height, width)
    out = np.empty((px.shape[0], col.shape[1]), m.dtype)
    _decode.decode_points(m, con, qo, col, offsets, ids, top_k, float(eps), px, py, order, starts, out)
    return torch.from_numpy(out)
