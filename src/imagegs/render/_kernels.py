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
BLOCK = 8  # pixel block edge (divides TILE); 8x8 = 64 SIMD lanes fill LLVM's vector loops
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


_EMPTY = np.iinfo(np.int64).max  # an empty top-K slot (larger than every packed key)


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _exp_neg_half(q, nv, pv, ev, out, n):
    """out[:n] = exp(-max(q[:n], 0) / 2), in loops LLVM vectorises (libm's exp is scalar here).

    Range reduction x = n ln2 + r, |r| <= ln2 / 2, then a degree-12 Taylor polynomial (relative
    error < 2e-16) scaled by 2^n built from exponent bits. ``nv``, ``pv``: float64 scratch;
    ``ev``: int64 scratch viewed as float64 in ``out``'s computation.
    """
    for l in range(n):
        nv[l] = math.floor(min(max(-0.5 * q[l], -708.0), 0.0) * _LOG2E + 0.5)
    for l in range(n):
        x = min(max(-0.5 * q[l], -708.0), 0.0)
        r = (x - nv[l] * _LN2_HI) - nv[l] * _LN2_LO
        pv[l] = 1.0 + r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (
            1.0 / 720 + r * (1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (
                1.0 / 3628800 + r * (1.0 / 39916800 + r * (1.0 / 479001600))))))))))))
    for l in range(n):
        ev[l] = (np.int64(nv[l]) + 1023) << 52
    scale = ev.view(np.float64)
    for l in range(n):
        out[l] = pv[l] * scale[l]


@njit(inline="always")
def _longest(offsets, tiles):
    """The longest tile list among ``tiles`` (at least 1): the size of a worker's tile buffers,
    allocated once per worker instead of once per tile (which cost ~10 % of a kernel)."""
    n = 1
    for t in tiles:
        n = max(n, offsets[t + 1] - offsets[t])
    return n


@njit(inline="always")
def _tile_buffers(maxlen, ncol):
    """One worker's float64 arrays for ``_gather_tile``: x, y, A, B, C and colours."""
    return (np.empty(maxlen, np.float64), np.empty(maxlen, np.float64), np.empty(maxlen, np.float64),
            np.empty(maxlen, np.float64), np.empty(maxlen, np.float64), np.empty((maxlen, ncol), np.float64))


@njit(inline="always")
def _gather_tile(buf, means, conics, colors, ids, start, length):
    """Contiguous float64 copies of one tile's Gaussians (views of the worker's ``buf``): x, y,
    conic A, B, C and colours."""
    ncol = colors.shape[1]
    gx, gy, ga, gb, gc, gcol = (buf[0][:length], buf[1][:length], buf[2][:length], buf[3][:length],
                                buf[4][:length], buf[5][:length])
    for j in range(length):
        g = ids[start + j]
        gx[j] = means[g, 0]
        gy[j] = means[g, 1]
        ga[j] = conics[g, 0]
        gb[j] = conics[g, 1]
        gc[j] = conics[g, 2]
        for ch in range(ncol):
            gcol[j, ch] = colors[g, ch]
    return gx, gy, ga, gb, gc, gcol


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _lane_q(lox, loy, xa, ya, a, b, c, out, n):
    """out[:n] = q of one Gaussian (block-relative centre xa, ya; conic a, 2b, c) at n lane pixels."""
    for l in range(n):
        dx = lox[l] - xa
        dy = loy[l] - ya
        out[l] = a * dx * dx + b * dx * dy + c * dy * dy


@njit(inline="always")
def _insert(best, key, top_k, lanes):
    """Insert each lane's key into its sorted K smallest (rows of ``best``), branch-free: a
    min/max network that vectorises over the lanes (``key`` is clobbered)."""
    for k in range(top_k):
        row_b = best[k]
        for l in range(lanes):
            bv = row_b[l]
            kv = key[l]
            row_b[l] = min(bv, kv)
            key[l] = max(bv, kv)


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _accumulate(w, color, sv, acc, lanes):
    """Add one Gaussian's weights w[:lanes] to the weight sums ``sv`` and w * its colour
    (``color`` (C,), one value per channel broadcast over the lanes) to ``acc`` (C, lanes)."""
    for l in range(lanes):
        sv[l] += w[l]
    for ch in range(acc.shape[0]):
        col = color[ch]
        row = acc[ch]
        for l in range(lanes):
            row[l] += w[l] * col


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _prune(xlo, xhi, ylo, yhi, gx, gy, ga, gb, gc, go, glam, top_k, rel, tol, qhi, qlo, qmid, cand):
    """Exact top-K pruning for the points of the box [xlo, xhi] x [ylo, yhi] (shared by the
    training and decode kernels); returns n and writes the surviving tile positions to cand[:n].

    Keys are q + go (go: per-Gaussian offsets, zeros without amplitudes), q = a dx^2 + b dx dy
    + c dy^2 (b already doubled). q is convex, so its maximum over the box is at a corner: a
    threshold G with >= K corner maxima <= G bounds every point's K-th best key (found by
    bisection, widened by ``rel`` and ``tol`` for rounding), and a Gaussian whose lower bound
    glam * dist^2 + go exceeds G cannot win anywhere. Likely winners (key at the centre <= G)
    come first. Without pruning (top_k 0 or a short list) every Gaussian is a candidate.
    """
    f = gx.dtype.type
    length = gx.shape[0]
    if not (top_k > 0 and length > top_k):
        for j in range(length):
            cand[j] = j
        return length
    xm = f(0.5) * (xlo + xhi)
    ym = f(0.5) * (ylo + yhi)
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
        qhi[j] = max(max(q00, q01), max(q10, q11)) + go[j]
    for j in range(length):
        ddx = max(max(xlo - gx[j], gx[j] - xhi), f(0.0))
        ddy = max(max(ylo - gy[j], gy[j] - yhi), f(0.0))
        qlo[j] = glam[j] * (ddx * ddx + ddy * ddy) + go[j]
    for j in range(length):
        dx = xm - gx[j]
        dy = ym - gy[j]
        qmid[j] = ga[j] * dx * dx + gb[j] * dx * dy + gc[j] * dy * dy + go[j]
    lo = 0.0  # bisection for G (float64): hi stays valid (>= K maxima <= hi), lo invalid
    hi = 0.0
    for j in range(length):
        hi = max(hi, np.float64(qhi[j]))
    for rnd in range(12):
        mid = 0.5 * (lo + hi) if rnd < 4 else math.sqrt(max(lo, 1e-12) * hi)
        cnt = 0
        for j in range(length):
            cnt += qhi[j] <= mid
        if cnt >= top_k:
            hi = mid
        else:
            lo = mid
    thresh = hi * rel + tol
    n = 0
    for j in range(length):  # likely winners first (key at the centre within G) ...
        if qlo[j] <= thresh and qmid[j] <= thresh:
            cand[n] = j
            n += 1
    for j in range(length):  # ... then the other survivors
        if qlo[j] <= thresh and qmid[j] > thresh:
            cand[n] = j
            n += 1
    return n


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def forward(means, conics, colors, offsets, ids, height, width, top_k, eps, block, store,
            out, sel_pos, sel_w, wsum, nworkers):
    """Render into ``out`` (C, H, W) and ``wsum`` (H*W) = sum w + eps. With top_k > 0 and ``store``
    also fill, block-major, ``sel_pos``/``sel_w`` (tiles * blocks per tile, K, block^2): the
    tile-local positions (-1 = none) and weights of each pixel's kept Gaussians, for the backward.

    Each tile is processed in ``block`` x ``block`` pixel blocks whose pixels are SIMD lanes
    (``block`` is a run-time argument so that LLVM vectorises the lane loops instead of unrolling):
    1. Exact pruning. q is convex, so its maximum over the block is at a corner. Any G such that at
       least K Gaussians have corner maximum <= G bounds every pixel's K-th best q; G is found by a
       vectorised count-bisection. A Gaussian whose minimum over the block
       (>= lambda_min(conic) * dist^2) exceeds G enters no pixel's top K and is skipped.
    2. Selection. q (float64, >= 0, so its bit pattern orders like its value) has its lowest bits
       replaced by the candidate's index: one int64 key per (pixel, candidate). Each lane keeps its
       K smallest keys sorted, updated by a branch-free min/max network; a candidate that improves
       no lane costs one vector compare, so candidates likely to win go first. The ordering error
       is below 2^-40 relative; weights are recomputed exactly from the winners' q.
    """
    ntx = (width + TILE - 1) // TILE
    nty = (height + TILE - 1) // TILE
    ncol = colors.shape[1]
    kk = max(top_k, 1)
    nb = TILE // block
    lanes = block * block
    num_tiles = nty * ntx
    maxlen = _longest(offsets, np.arange(num_tiles))
    for wkr in prange(nworkers):  # tiles dealt round-robin; work arrays allocated once per worker
        buf = _tile_buffers(maxlen, ncol)
        lam = np.empty(maxlen, np.float64)
        qhi = np.empty(maxlen, np.float64)
        qlo = np.empty(maxlen, np.float64)
        qmid = np.empty(maxlen, np.float64)
        cand = np.empty(maxlen, np.int32)
        zeros = np.zeros(maxlen, np.float64)
        cx = np.empty(maxlen, np.float64)
        cy = np.empty(maxlen, np.float64)
        ca = np.empty(maxlen, np.float64)
        cb = np.empty(maxlen, np.float64)
        cc = np.empty(maxlen, np.float64)
        lox = np.empty(lanes, np.float64)
        loy = np.empty(lanes, np.float64)
        for l in range(lanes):
            lox[l] = l % block + 0.5
        for l in range(lanes):
            loy[l] = l // block + 0.5
        ccol = np.empty((maxlen, ncol), np.float64)
        civ = np.empty((kk, lanes), np.int64)
        wk = np.empty((kk, lanes), np.float64)
        xq = np.empty(lanes, np.float64)
        nv = np.empty(lanes, np.float64)
        pv = np.empty(lanes, np.float64)
        ev = np.empty(lanes, np.int64)
        best = np.empty((kk, lanes), np.int64)
        kq = np.empty(lanes, np.float64)
        ki = kq.view(np.int64)
        key = np.empty(lanes, np.int64)
        sv = np.empty(lanes, np.float64)
        acc = np.empty((ncol, lanes), np.float64)
        for t in range(wkr, num_tiles, nworkers):
            ty = t // ntx
            tx = t - ty * ntx
            start = offsets[t]
            length = offsets[t + 1] - start
            gx, gy, ga, gb, gc, gcol = _gather_tile(buf, means, conics, colors, ids, start, length)
            for j in range(length):
                gb[j] *= 2.0  # the forward uses q = A dx^2 + (2B) dx dy + C dy^2
            glam = lam[:length]
            gzero = zeros[:length]
            for j in range(length):
                half = 0.5 * (ga[j] - gc[j])
                hb = 0.5 * gb[j]
                glam[j] = max(0.5 * (ga[j] + gc[j]) - math.sqrt(half * half + hb * hb), 0.0) * 0.999
            for blk in range(nb * nb):
                by0 = ty * TILE + (blk // nb) * block
                bx0 = tx * TILE + (blk % nb) * block
                if by0 >= height or bx0 >= width:
                    continue
                by1 = min(by0 + block, height)
                bx1 = min(bx0 + block, width)
                # the block's pixel-centre rectangle; no key offsets in training (zeros)
                ncand = _prune(bx0 + 0.5, bx1 - 0.5, by0 + 0.5, by1 - 0.5, gx, gy, ga, gb, gc, gzero, glam,
                               top_k, 1.0001, 1e-9, qhi, qlo, qmid, cand)
                for ci in range(ncand):  # contiguous, block-relative copies of the candidates
                    j = cand[ci]
                    cx[ci] = gx[j] - bx0
                    cy[ci] = gy[j] - by0
                    ca[ci] = ga[j]
                    cb[ci] = gb[j]
                    cc[ci] = gc[j]
                for ci in range(ncand):
                    for ch in range(ncol):
                        ccol[ci, ch] = gcol[cand[ci], ch]
                bidx = t * nb * nb + blk
                for ch in range(ncol):
                    row = acc[ch]
                    for l in range(lanes):
                        row[l] = 0.0
                for l in range(lanes):
                    sv[l] = 0.0
                if top_k > 0:
                    nbits = 1
                    while (1 << nbits) < ncand:
                        nbits += 1
                    lowmask = np.int64((1 << nbits) - 1)
                    himask = ~lowmask
                    for k in range(top_k):
                        row_b = best[k]
                        for l in range(lanes):
                            row_b[l] = _EMPTY
                    worst = best[top_k - 1]
                    for ci in range(ncand):
                        _lane_q(lox, loy, cx[ci], cy[ci], ca[ci], cb[ci], cc[ci], xq, lanes)
                        for l in range(lanes):
                            kq[l] = xq[l] if xq[l] > 0.0 else 0.0
                        better = 0
                        for l in range(lanes):
                            kv = (ki[l] & himask) | ci
                            key[l] = kv
                            better += kv < worst[l]
                        if better == 0:
                            continue
                        _insert(best, key, top_k, lanes)
                    if ncand == 0 and store:  # nothing touches this block: no winners
                        for k in range(top_k):
                            sel_w[bidx, k, :] = 0.0
                            sel_pos[bidx, k, :] = -1
                    for k in range(top_k if ncand > 0 else 0):  # winners' weights, per lane
                        row_b = best[k]
                        row_c = civ[k]
                        for l in range(lanes):
                            row_c[l] = min(row_b[l] & lowmask, ncand - 1)
                        for l in range(lanes):
                            ci = row_c[l]
                            dx = lox[l] - cx[ci]
                            dy = loy[l] - cy[ci]
                            xq[l] = ca[ci] * dx * dx + cb[ci] * dx * dy + cc[ci] * dy * dy
                        _exp_neg_half(xq, nv, pv, ev, kq, lanes)
                        row_w = wk[k]
                        for l in range(lanes):
                            row_w[l] = kq[l] if row_b[l] != _EMPTY else 0.0
                        for l in range(lanes):
                            sv[l] += row_w[l]
                        for ch in range(ncol):
                            row = acc[ch]
                            for l in range(lanes):
                                row[l] += row_w[l] * ccol[row_c[l], ch]
                        if store:
                            out_w = sel_w[bidx, k]
                            for l in range(lanes):
                                out_w[l] = row_w[l]
                            out_p = sel_pos[bidx, k]
                            for l in range(lanes):
                                out_p[l] = cand[row_c[l]] if row_b[l] != _EMPTY else -1
                else:
                    for ci in range(ncand):
                        _lane_q(lox, loy, cx[ci], cy[ci], ca[ci], cb[ci], cc[ci], xq, lanes)
                        _exp_neg_half(xq, nv, pv, ev, kq, lanes)
                        _accumulate(kq, ccol[ci], sv, acc, lanes)
                for l in range(lanes):
                    py = by0 + l // block
                    px = bx0 + l % block
                    if py < by1 and px < bx1:
                        denom = sv[l] + eps
                        wsum[py * width + px] = denom
                        for ch in range(ncol):
                            out[ch, py, px] = acc[ch, l] / denom


@njit(parallel=True, fastmath=FASTMATH, cache=True)
def backward(means, conics, colors, offsets, ids, height, width, top_k, block,
             grad_out, out, sel_pos, sel_w, wsum, nworkers):
    """Gradients w.r.t. means (N, 2), conics (N, 3) and colors (N, C) for ``grad_out`` (C, H, W).

    Reads the forward's block-major selection (top_k > 0) or re-evaluates every tile Gaussian
    (plain sum). Tiles are dealt round-robin to ``nworkers`` workers, each accumulating into its
    own buffer; the buffers are summed at the end (deterministic, no atomics).
    """
    ntx = (width + TILE - 1) // TILE
    nty = (height + TILE - 1) // TILE
    num_tiles = ntx * nty
    nb = TILE // block
    lanes = block * block
    n = means.shape[0]
    ncol = colors.shape[1]
    buf_m = np.zeros((nworkers, n, 2), means.dtype)
    buf_c = np.zeros((nworkers, n, 3), means.dtype)
    buf_col = np.zeros((nworkers, n, ncol), colors.dtype)
    maxlen = _longest(offsets, np.arange(num_tiles))
    for wk in prange(nworkers):
        go = np.empty(ncol, np.float64)
        buf = _tile_buffers(maxlen, ncol)
        bm = np.empty((maxlen, 2), np.float64)
        bc = np.empty((maxlen, 3), np.float64)
        bcol = np.empty((maxlen, ncol), np.float64)
        for t in range(wk, num_tiles, nworkers):
            ty = t // ntx
            tx = t - ty * ntx
            start = offsets[t]
            length = offsets[t + 1] - start
            gx, gy, ga, gb, gc, gcol = _gather_tile(buf, means, conics, colors, ids, start, length)
            lm = bm[:length]
            lc = bc[:length]
            lcol = bcol[:length]
            lm[:] = 0.0
            lc[:] = 0.0
            lcol[:] = 0.0
            nk = top_k if top_k > 0 else length
            for blk in range(nb * nb):
                by0 = ty * TILE + (blk // nb) * block
                bx0 = tx * TILE + (blk % nb) * block
                bidx = t * nb * nb + blk
                for l in range(lanes):
                    py = by0 + l // block
                    px = bx0 + l % block
                    if py >= height or px >= width:
                        continue
                    yc = py + 0.5
                    xc = px + 0.5
                    inv = 1.0 / wsum[py * width + px]
                    base = 0.0
                    for ch in range(ncol):
                        go[ch] = grad_out[ch, py, px] * inv
                        base += go[ch] * out[ch, py, px]
                    for k in range(nk):
                        if top_k > 0:
                            j = sel_pos[bidx, k, l]
                            if j < 0:
                                break
                            w = np.float64(sel_w[bidx, k, l])
                        else:
                            j = k
                        dx = xc - gx[j]
                        dy = yc - gy[j]
                        q = ga[j] * dx * dx + 2.0 * gb[j] * dx * dy + gc[j] * dy * dy
                        if top_k == 0:
                            w = math.exp(-0.5 * max(q, 0.0))
                        dw = -base
                        for ch in range(ncol):
                            dw += go[ch] * gcol[j, ch]
                            lcol[j, ch] += w * go[ch]
                        dq = -0.5 * w * dw if q > 0.0 else 0.0  # q is clamped at 0 (see forward)
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
