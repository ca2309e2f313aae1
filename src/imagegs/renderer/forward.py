"""NumPy/torch glue around the forward-only decode kernels (``_forward.py``)."""

from __future__ import annotations

import numba
import numpy as np
import torch

from . import _forward, _kernels


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


def training_outputs(m: np.ndarray, ncol: int, ntiles: int, nentries: int
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(blend, kth, won) for ``_forward.forward`` to keep what the backward needs: per block (tile x
    SUB^2) the blended colour and normaliser (ncol + 1 rows) and the K-th keys, in lane order, and
    a zeroed winner flag per tile-list entry (``nentries``)."""
    nblk = ntiles * _forward.SUB ** 2
    return (np.empty((nblk, ncol + 1, _forward.LANES), m.dtype),
            np.empty((nblk, _forward.LANES), _key_proto(m).dtype), np.zeros(nentries, np.uint8))


def no_training_outputs(m: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty (blend, kth, won) for ``_forward.forward``: keep nothing for a backward pass."""
    return training_outputs(m, ncol=-1, ntiles=0, nentries=0)  # shapes (0, 0, LANES), (0, LANES), (0,)


def _key_proto(m: np.ndarray) -> np.ndarray:
    """An empty integer array as wide as the model's floats: the dtype of the selection keys."""
    return np.empty(0, np.int32 if m.dtype == np.float32 else np.int64)


def rasterize_forward(means: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor, radii: torch.Tensor,
                     height: int, width: int, *, top_k: int, eps: float, qoff: torch.Tensor | None = None,
                     region: tuple[int, int, int, int] | None = None, stats: dict | None = None
                     ) -> torch.Tensor:
    """Forward-only rasterisation (no autograd) of the whole image or a checked ``region``.

    ``stats``: if a dict, receives the kernel's work counts (see ``work_counts``).
    """
    x0, y0, x1, y1 = region if region is not None else (0, 0, width, height)
    m, con, qo, col, offsets, ids = prepare(means, conics, colors, radii, qoff, height, width)
    out = np.empty((col.shape[1], y1 - y0, x1 - x0), m.dtype)
    tiles = ((x1 - 1) // _forward.TILE - x0 // _forward.TILE + 1) * ((y1 - 1) // _forward.TILE - y0 // _forward.TILE + 1)
    counts = np.empty((tiles, _forward.NSTATS), np.int64)
    _forward.forward(m, con, qo, col, offsets, ids, height, width, top_k, float(eps), x0, y0, x1, y1, out,
                   counts, _key_proto(m), _forward.LANES, numba.get_num_threads(), *no_training_outputs(m))
    if stats is not None:
        stats.update(work_counts(counts, (x1 - x0) * (y1 - y0)))
    return torch.from_numpy(out)


def work_counts(counts: np.ndarray, points: int) -> dict:
    """Totals of a kernel's per-tile counts: chunks, tile-list entries scanned by the pruning,
    (candidate, lane) evaluations, candidates that entered a top K, lanes evaluated; and points."""
    total = counts.sum(0)
    return {"points": int(points), "chunks": int(total[0]), "list_entries": int(total[1]),
            "candidate_lanes": int(total[2]), "insertions": int(total[3]), "lanes": int(total[4])}


def points_forward(means: torch.Tensor, conics: torch.Tensor, colors: torch.Tensor, radii: torch.Tensor,
                  points: torch.Tensor | tuple[np.ndarray, np.ndarray], height: int, width: int, *,
                  top_k: int, eps: float, qoff: torch.Tensor | None = None, stats: dict | None = None
                  ) -> torch.Tensor:
    """Forward-only evaluation at points -> (P, C) (``stats`` as above).

    ``points``: (P, 2) tensor (x, y) in output pixels, or the pair of coordinate arrays (px, py).
    """
    m, con, qo, col, offsets, ids = prepare(means, conics, colors, radii, qoff, height, width)
    if isinstance(points, tuple):
        px, py = (np.ascontiguousarray(a, dtype=m.dtype) for a in points)
    else:
        px = _np(points[:, 0], m.dtype)
        py = _np(points[:, 1], m.dtype)
    order, starts = _forward.group_points(px, py, height, width)
    out = np.empty((px.shape[0], col.shape[1]), m.dtype)
    counts = np.empty((len(starts) - 1, _forward.NSTATS), np.int64)
    _forward.forward_points(m, con, qo, col, offsets, ids, top_k, float(eps), px, py, order, starts, out, counts,
                          _key_proto(m), _forward.LANES, numba.get_num_threads())
    if stats is not None:
        stats.update(work_counts(counts, px.shape[0]))
    return torch.from_numpy(out)
