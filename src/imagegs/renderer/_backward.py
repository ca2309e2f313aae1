"""The training backward of the ``cpu`` backend: gradients of the tile-based top-K blend.

The forward is the decode kernel (``_forward.forward``) with its training outputs: per lane the
blended colour, the normaliser sum(w) + eps and the K-th selection key, and per tile-list entry a flag "is a
winner in some lane". The backward revisits, tile by tile, only the flagged Gaussians, densely:
for each one it recomputes q at all 256 lanes of the tile with the forward's own code
(``_lane_qo``, so the keys match bit for bit), keeps the lanes where its key is <= the lane's K-th
key (exactly the lanes where it was blended), and reduces the gradient over the lanes in vector
loops. There is no per-(pixel, k) scatter and no stored weight.

For one Gaussian and the pixels p where it is blended (w_p = exp(-q_p / 2), image
I_p = sum_g w_g c_g / W_p, W_p = sum_g w_g + eps, upstream gradient G_p):
    dL/dc = sum_p w_p G_p / W_p
    dL/dw_p = (G_p . c - G_p . I_p) / W_p,   dL/dq_p = -w_p / 2 dL/dw_p  (0 where q is clamped)
and the conic and mean gradients follow from q = A dx^2 + 2B dx dy + C dy^2 as sums of dL/dq_p
times dx^2, dx dy, dy^2, dx, dy. Tiles are dealt round-robin to workers, each accumulating into
its own buffer; the buffers are summed at the end (deterministic, no atomics).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._forward import BLOCK, LANES, SUB, _copy, _exp, _key_mask, _lane_qo, _pixel_lanes, _tile, _tile_buffers
from .._workers import run_workers
from ._kernels import FASTMATH, TILE, region_tiles


def backward(means, conics, colors, offsets, ids, height, width, grad_out, blend, kth, won, lanes,
             nworkers, counts):
    """Gradients (means (N, 2), conics (N, 3), colors (N, C)) for ``grad_out`` (C, H, W).

    ``blend``, ``kth``, ``won``: the training forward's outputs (``_forward.forward``) for the
    same inputs; all float arrays share the model's dtype, ``kth`` holds keys of the same width.
    ``lanes`` = LANES at run time, as passed to the forward: the q and key loops must compile to
    the forward's vector code (a constant trip count can change the rounding) so that the
    recomputed keys equal the forward's bit for bit.
    ``counts``: (H, W) int32 zeros, or an empty (0, 0) array: if given, receives per pixel how many
    Gaussians the backward selected, min(K, tile-list length) exactly when its keys match the
    forward's (the consistency the gradients rely on; for tests). Run with one worker then.
    """
    n = means.shape[0]
    ncol = colors.shape[1]
    dt = means.dtype
    buf_m = np.zeros((nworkers, n, 2), dt)
    buf_c = np.zeros((nworkers, n, 3), dt)
    buf_col = np.zeros((nworkers, n, ncol), dt)
    maxlen = region_tiles(offsets, width, 0, 0, width, height)[1]
    run_workers(_backward_worker, nworkers, means, conics, colors, offsets, ids, height, width, grad_out, blend, kth,
                won, lanes, counts, maxlen, buf_m, buf_c, buf_col)
    # the workers' sums added in worker order (numpy adds the rows of axis 0 one after another)
    return buf_m.sum(axis=0), buf_c.sum(axis=0), buf_col.sum(axis=0)


@njit(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _backward_worker(wk, nworkers, means, conics, colors, offsets, ids, height, width, grad_out, blend, kth,
                     won, lanes, counts, maxlen, buf_m, buf_c, buf_col):
    """Worker ``wk`` of ``backward``: tiles wk, wk + nworkers, ... into buf_*[wk] (see there)."""
    ntx = (width + TILE - 1) // TILE
    nty = (height + TILE - 1) // TILE
    num_tiles = ntx * nty
    ncol = colors.shape[1]
    dt = means.dtype
    f = dt.type
    it = kth.dtype.type
    noff = np.empty(0, dt)
    buf = _tile_buffers(maxlen, ncol, dt)
    lx = np.empty(LANES, dt)
    ly = np.empty(LANES, dt)
    qv = np.empty(LANES, dt)
    qi = qv.view(kth.dtype)
    wv = np.empty(LANES, dt)
    dwv = np.empty(LANES, dt)
    gov = np.empty((ncol, LANES), dt)
    base = np.empty(LANES, dt)
    ev = np.empty(LANES, kth.dtype)
    x64 = np.empty(LANES, np.float64)
    n64 = np.empty(LANES, np.float64)
    p64 = np.empty(LANES, np.float64)
    e64 = np.empty(LANES, np.int64)
    for t in range(wk, num_tiles, nworkers):
        start = offsets[t]
        length = offsets[t + 1] - start
        if length == 0:
            continue
        ty = t // ntx
        tx = t - ty * ntx
        gx, gy, ga, gb, gc, go, glam, gcol = _tile(buf, means, conics, noff, colors, ids, start, length)
        himask = _key_mask(length, it)  # the forward's key layout
        for blk in range(SUB * SUB):
            by0 = ty * TILE + (blk // SUB) * BLOCK
            bx0 = tx * TILE + (blk % SUB) * BLOCK
            if by0 >= height or bx0 >= width:
                continue
            _pixel_lanes(lx, ly, bx0, by0)
            krow = kth[t * SUB * SUB + blk]
            # per lane: G / W and G . I / W (G read row by row; zero for lanes outside the image)
            for ch in range(ncol):
                row = gov[ch]
                for l in range(LANES):
                    row[l] = f(0.0)
            nx = min(bx0 + BLOCK, width) - bx0
            for py in range(by0, min(by0 + BLOCK, height)):
                o = (py - by0) * BLOCK
                for ch in range(ncol):
                    _copy(grad_out[ch, py, bx0:bx0 + nx], gov[ch, o:o + nx], nx)
            bl = blend[t * SUB * SUB + blk]
            ws = bl[ncol]
            for l in range(LANES):
                base[l] = f(0.0)
            for ch in range(ncol):
                row = gov[ch]
                img = bl[ch]
                for l in range(LANES):
                    g = row[l] / ws[l]
                    row[l] = g
                    base[l] += g * img[l]
            for j in range(length):
                if won[start + j] == 0:
                    continue
                _lane_qo(lx, ly, gx[j], gy[j], ga[j], gb[j], gc[j], f(0.0), qv, lanes)
                _exp(qv, wv, ev, x64, n64, p64, e64, lanes)
                jj = it(j)
                for l in range(lanes):  # blended here iff its key is within the lane's K best
                    wv[l] = wv[l] if np.bitwise_or(np.bitwise_and(qi[l], himask), jj) <= krow[l] else f(0.0)
                if counts.shape[0] > 0:
                    for l in range(LANES):
                        py = by0 + l // BLOCK
                        px = bx0 + l % BLOCK
                        if py < height and px < width:
                            counts[py, px] += np.bitwise_or(np.bitwise_and(qi[l], himask), jj) <= krow[l]
                g = ids[start + j]
                if ncol == 3:  # RGB: one pass over the lanes instead of four
                    r0, r1, r2 = gov[0], gov[1], gov[2]
                    c0, c1, c2 = gcol[j, 0], gcol[j, 1], gcol[j, 2]
                    s0 = f(0.0)
                    s1 = f(0.0)
                    s2 = f(0.0)
                    for l in range(lanes):
                        g0 = r0[l]
                        g1 = r1[l]
                        g2 = r2[l]
                        dwv[l] = g0 * c0 + g1 * c1 + g2 * c2 - base[l]
                        s0 += wv[l] * g0
                        s1 += wv[l] * g1
                        s2 += wv[l] * g2
                    buf_col[wk, g, 0] += s0
                    buf_col[wk, g, 1] += s1
                    buf_col[wk, g, 2] += s2
                else:
                    for l in range(lanes):
                        dwv[l] = -base[l]
                    for ch in range(ncol):
                        col = gcol[j, ch]
                        row = gov[ch]
                        s = f(0.0)
                        for l in range(lanes):
                            dwv[l] += row[l] * col
                            s += wv[l] * row[l]
                        buf_col[wk, g, ch] += s
                xa, ya = gx[j], gy[j]
                sxx = f(0.0)
                sxy = f(0.0)
                syy = f(0.0)
                sx = f(0.0)
                sy = f(0.0)
                for l in range(lanes):
                    dq = f(-0.5) * wv[l] * dwv[l] if qv[l] > f(0.0) else f(0.0)
                    dx = lx[l] - xa
                    dy = ly[l] - ya
                    dqx = dq * dx
                    dqy = dq * dy
                    sxx += dqx * dx
                    sxy += dqx * dy
                    syy += dqy * dy
                    sx += dqx
                    sy += dqy
                buf_c[wk, g, 0] += sxx
                buf_c[wk, g, 1] += f(2.0) * sxy
                buf_c[wk, g, 2] += syy
                # dq/dmean = -(2A dx + 2B dy, 2B dx + 2C dy); gb holds 2B
                buf_m[wk, g, 0] -= f(2.0) * ga[j] * sx + gb[j] * sy
                buf_m[wk, g, 1] -= gb[j] * sx + f(2.0) * gc[j] * sy
