"""Fused Numba kernels of the tile-based top-K rasteriser (the ``cpu`` backend).

Semantics are those of ``reference.rasterize``; tests compare the two. Design notes:
- Binning is a two-pass count/fill over each Gaussian's tile range (exact circle/rectangle test),
  giving CSR arrays ``offsets`` (T + 1) and ``ids`` with ids sorted per tile.
- The forward pass works tile by tile (in parallel) on contiguous copies of the tile's Gaussians, so
  the per-pixel quadratic forms vectorise. It selects on the quadratic form q (exp is monotone) and
  evaluates exp only for the K survivors. It stores the survivors' tile-local positions and weights,
  so the backward pass neither re-selects nor re-evaluates exp.
- The backward pass accumulates per tile into tile-local arrays, then into one buffer per worker
  (tiles are dealt round-robin to workers), summed at the end: no atomics, deterministic.
fastmath excludes nnan/ninf so comparisons with infinity stay exact.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

TILE = 16
BLOCK = 4  # pixel block edge for top-K pruning (divides TILE)
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(cache=True)
def bin_tiles(means, radii, height, width):
    """CSR tile lists: Gaussians whose radius circle meets each tile. Returns (offsets, ids)."""
    ntx = (width + TILE - 1) // TILE
    nty = (height + TILE - 1) // TILE
    num_tiles = ntx * nty
    n = means.shape[0]
    counts = np.zeros(num_tiles + 1, np.int64)
    ids = np.empty(0, np.int32)
    for rnd in range(2):  # round 0 counts, round 1 fills
        if rnd == 1:
            for t in range(num_tiles):
                counts[t + 1] += counts[t]
            ids = np.empty(counts[num_tiles], np.int32)
            cursor = counts[:num_tiles].copy()
        for i in range(n):
            mx, my, r = means[i, 0], means[i, 1], radii[i]
            if not (r > 0.0) or not (abs(mx) < 1e30) or not (abs(my) < 1e30) or r > 1e30:
                continue
            fx0 = max(math.floor((mx - r) / TILE), 0.0)
            fx1 = min(math.floor((mx + r) / TILE), ntx - 1.0)
            fy0 = max(math.floor((my - r) / TILE), 0.0)
            fy1 = min(math.floor((my + r) / TILE), nty - 1.0)
            if fx0 > fx1 or fy0 > fy1:
                continue
            r2 = r * r
            for ty in range(int(fy0), int(fy1) + 1):
                y0 = ty * TILE
                y1 = min(y0 + TILE, height)
                dy = max(max(y0 - my, my - y1), 0.0)
                for tx in range(int(fx0), int(fx1) + 1):
                    x0 = tx * TILE
                    x1 = min(x0 + TILE, width)
                    dx = max(max(x0 - mx, mx - x1), 0.0)
                    if dx * dx + dy * dy <= r2:
                        t = ty * ntx + tx
                        if rnd == 0:
                            counts[t + 1] += 1
                        else:
                            ids[cursor[t]] = i
                            cursor[t] += 1
    return counts, ids


@njit(inline="always")
def _insert(bq, bj, n, k, q, j):
    """Insert (q, j) into the ascending top-k arrays holding n entries; returns the new n."""
    if n < k:
        pos = n
        n += 1
    elif q < bq[k - 1]:
        pos = k - 1
    else:
        return n
    while pos > 0 and bq[pos - 1] > q:
        bq[pos] = bq[pos - 1]
        bj[pos] = bj[pos - 1]
        pos -= 1
    bq[pos] = q
    bj[pos] = j
    return n


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def forward(means, conics, colors, offsets, ids, height, width, top_k, eps,
            out, sel_pos, sel_w, wsum):
    """Render into ``out`` (C, H, W). With top_k > 0 also fill ``sel_pos``/``sel_w`` (H*W, K):
    tile-local positions (-1 = none) and weights of the kept Gaussians, and ``wsum`` (H*W) = sum w + eps.

    Each tile is processed in BLOCK x BLOCK pixel blocks:
    1. Exact pruning: q is convex, so its maximum over the block is at a corner; the K-th smallest
       of those maxima, T, bounds every pixel's K-th best q. A Gaussian whose minimum over the
       block (>= lambda_min(conic) * dist^2) exceeds T enters no pixel's top K and is skipped.
    2. Each pixel evaluates q for the survivors in one contiguous (vectorised) loop, then inserts
       them, sorted by q at the block centre, into its top-K list: most inserts append, and
       later candidates fail a single compare.
    """
    ntx = (width + TILE - 1) // TILE
    nty = (height + TILE - 1) // TILE
    ncol = colors.shape[1]
    kk = max(top_k, 1)
    nb = TILE // BLOCK
    for t in prange(nty * ntx):
        ty = t // ntx
        tx = t - ty * ntx
        start = offsets[t]
        length = offsets[t + 1] - start
        gx = np.empty(length, means.dtype)
        gy = np.empty(length, means.dtype)
        ga = np.empty(length, means.dtype)
        gb = np.empty(length, means.dtype)
        gc = np.empty(length, means.dtype)
        glam = np.empty(length, means.dtype)
        gcol = np.empty((length, ncol), colors.dtype)
        for j in range(length):
            g = ids[start + j]
            gx[j] = means[g, 0]
            gy[j] = means[g, 1]
            a = conics[g, 0]
            b = conics[g, 1]
            c = conics[g, 2]
            ga[j] = a
            gb[j] = 2.0 * b
            gc[j] = c
            half = 0.5 * (a - c)
            glam[j] = max(0.5 * (a + c) - math.sqrt(half * half + b * b), 0.0) * 0.999
            for ch in range(ncol):
                gcol[j, ch] = colors[g, ch]
        qhi = np.empty(length, means.dtype)
        cand = np.empty(length, np.int32)
        ckey = np.empty(length, means.dtype)
        cx = np.empty(length, means.dtype)
        cy = np.empty(length, means.dtype)
        ca = np.empty(length, means.dtype)
        cb = np.empty(length, means.dtype)
        cc = np.empty(length, means.dtype)
        qrow = np.empty(length, means.dtype)
        bq = np.empty(kk, means.dtype)
        bj = np.empty(kk, np.int32)
        acc = np.empty(ncol, colors.dtype)
        for blk in range(nb * nb):
            by0 = ty * TILE + (blk // nb) * BLOCK
            bx0 = tx * TILE + (blk % nb) * BLOCK
            if by0 >= height or bx0 >= width:
                continue
            by1 = min(by0 + BLOCK, height)
            bx1 = min(bx0 + BLOCK, width)
            if top_k > 0 and length > top_k:
                xlo = np.float32(bx0 + 0.5)  # the block's pixel-centre rectangle
                xhi = np.float32(bx1 - 0.5)
                ylo = np.float32(by0 + 0.5)
                yhi = np.float32(by1 - 0.5)
                for j in range(length):
                    dx0 = xlo - gx[j]
                    dx1 = xhi - gx[j]
                    dy0 = ylo - gy[j]
                    dy1 = yhi - gy[j]
                    ax0 = ga[j] * dx0 * dx0
                    ax1 = ga[j] * dx1 * dx1
                    cy0 = gc[j] * dy0 * dy0
                    cy1 = gc[j] * dy1 * dy1
                    q00 = ax0 + gb[j] * dx0 * dy0 + cy0
                    q01 = ax1 + gb[j] * dx1 * dy0 + cy0
                    q10 = ax0 + gb[j] * dx0 * dy1 + cy1
                    q11 = ax1 + gb[j] * dx1 * dy1 + cy1
                    qhi[j] = max(max(q00, q01), max(q10, q11))
                n = 0
                for j in range(length):
                    n = _insert(bq, bj, n, top_k, qhi[j], j)
                thresh = bq[top_k - 1] * 1.0001 + 1e-6
                xm = np.float32(0.5) * (xlo + xhi)
                ym = np.float32(0.5) * (ylo + yhi)
                ncand = 0
                for j in range(length):
                    ddx = max(max(xlo - gx[j], gx[j] - xhi), 0.0)
                    ddy = max(max(ylo - gy[j], gy[j] - yhi), 0.0)
                    if glam[j] * (ddx * ddx + ddy * ddy) <= thresh:
                        # insertion-sort survivors by q at the block centre, so that each
                        # pixel's inserts mostly append and later candidates fail one compare
                        dx = xm - gx[j]
                        dy = ym - gy[j]
                        key = ga[j] * dx * dx + gb[j] * dx * dy + gc[j] * dy * dy
                        pos = ncand
                        while pos > 0 and ckey[pos - 1] > key:
                            ckey[pos] = ckey[pos - 1]
                            cand[pos] = cand[pos - 1]
                            pos -= 1
                        ckey[pos] = key
                        cand[pos] = j
                        ncand += 1
            else:
                for j in range(length):
                    cand[j] = j
                ncand = length
            for ci in range(ncand):  # contiguous copies of the candidates, in order
                j = cand[ci]
                cx[ci] = gx[j]
                cy[ci] = gy[j]
                ca[ci] = ga[j]
                cb[ci] = gb[j]
                cc[ci] = gc[j]
            for py in range(by0, by1):
                yc = np.float32(py + 0.5)
                for px in range(bx0, bx1):
                    xc = np.float32(px + 0.5)
                    for ci in range(ncand):
                        dx = xc - cx[ci]
                        dy = yc - cy[ci]
                        qrow[ci] = ca[ci] * dx * dx + cb[ci] * dx * dy + cc[ci] * dy * dy
                    acc[:] = 0.0
                    ssum = 0.0
                    pix = py * width + px
                    if top_k > 0:
                        n = 0
                        for ci in range(ncand):
                            n = _insert(bq, bj, n, top_k, qrow[ci], ci)
                        for k in range(n):
                            w = math.exp(-0.5 * bq[k])
                            j = cand[bj[k]]
                            ssum += w
                            for ch in range(ncol):
                                acc[ch] += w * gcol[j, ch]
                            sel_pos[pix, k] = j
                            sel_w[pix, k] = w
                        for k in range(n, top_k):
                            sel_pos[pix, k] = -1
                            sel_w[pix, k] = 0.0
                    else:
                        for ci in range(ncand):
                            w = math.exp(-0.5 * qrow[ci])
                            ssum += w
                            for ch in range(ncol):
                                acc[ch] += w * gcol[cand[ci], ch]
                    denom = ssum + eps
                    wsum[pix] = denom
                    for ch in range(ncol):
                        out[ch, py, px] = acc[ch] / denom


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def backward(means, conics, colors, offsets, ids, height, width, top_k,
             grad_out, out, sel_pos, sel_w, wsum, nworkers):
    """Gradients w.r.t. means (N, 2), conics (N, 3) and colors (N, C) for ``grad_out`` (C, H, W)."""
    ntx = (width + TILE - 1) // TILE
    nty = (height + TILE - 1) // TILE
    num_tiles = ntx * nty
    n = means.shape[0]
    ncol = colors.shape[1]
    buf_m = np.zeros((nworkers, n, 2), means.dtype)
    buf_c = np.zeros((nworkers, n, 3), means.dtype)
    buf_col = np.zeros((nworkers, n, ncol), colors.dtype)
    for wk in prange(nworkers):
        go = np.empty(ncol, colors.dtype)
        for t in range(wk, num_tiles, nworkers):
            ty = t // ntx
            tx = t - ty * ntx
            start = offsets[t]
            length = offsets[t + 1] - start
            gx = np.empty(length, means.dtype)
            gy = np.empty(length, means.dtype)
            ga = np.empty(length, means.dtype)
            gb = np.empty(length, means.dtype)
            gc = np.empty(length, means.dtype)
            gcol = np.empty((length, ncol), colors.dtype)
            for j in range(length):
                g = ids[start + j]
                gx[j] = means[g, 0]
                gy[j] = means[g, 1]
                ga[j] = conics[g, 0]
                gb[j] = conics[g, 1]
                gc[j] = conics[g, 2]
                for ch in range(ncol):
                    gcol[j, ch] = colors[g, ch]
            lm = np.zeros((length, 2), means.dtype)
            lc = np.zeros((length, 3), means.dtype)
            lcol = np.zeros((length, ncol), colors.dtype)
            nk = top_k if top_k > 0 else length
            for ly in range(TILE):
                py = ty * TILE + ly
                if py >= height:
                    break
                yc = py + 0.5
                for lx in range(TILE):
                    px = tx * TILE + lx
                    if px >= width:
                        break
                    xc = px + 0.5
                    pix = py * width + px
                    inv = 1.0 / wsum[pix]
                    base = 0.0
                    for ch in range(ncol):
                        go[ch] = grad_out[ch, py, px] * inv
                        base += go[ch] * out[ch, py, px]
                    for k in range(nk):
                        if top_k > 0:
                            j = sel_pos[pix, k]
                            if j < 0:
                                break
                            w = sel_w[pix, k]
                        else:
                            j = k
                        dx = xc - gx[j]
                        dy = yc - gy[j]
                        if top_k == 0:
                            w = math.exp(-0.5 * (ga[j] * dx * dx + 2.0 * gb[j] * dx * dy + gc[j] * dy * dy))
                        dw = -base
                        for ch in range(ncol):
                            dw += go[ch] * gcol[j, ch]
                            lcol[j, ch] += w * go[ch]
                        dq = -0.5 * w * dw
                        lc[j, 0] += dq * dx * dx
                        lc[j, 1] += 2.0 * dq * dx * dy
                        lc[j, 2] += dq * dy * dy
                        lm[j, 0] -= 2.0 * dq * (ga[j] * dx + gb[j] * dy)
                        lm[j, 1] -= 2.0 * dq * (gb[j] * dx + gc[j] * dy)
            for j in range(length):
                g = ids[start + j]
                buf_m[wk, g, 0] += lm[j, 0]
                buf_m[wk, g, 1] += lm[j, 1]
                for c3 in range(3):
                    buf_c[wk, g, c3] += lc[j, c3]
                for ch in range(ncol):
                    buf_col[wk, g, ch] += lcol[j, ch]
    gm = np.zeros((n, 2), means.dtype)
    gcon = np.zeros((n, 3), means.dtype)
    gcolor = np.zeros((n, ncol), colors.dtype)
    for i in prange(n):
        for wk in range(nworkers):
            gm[i, 0] += buf_m[wk, i, 0]
            gm[i, 1] += buf_m[wk, i, 1]
            for c3 in range(3):
                gcon[i, c3] += buf_c[wk, i, c3]
            for ch in range(ncol):
                gcolor[i, ch] += buf_col[wk, i, ch]
    return gm, gcon, gcolor
