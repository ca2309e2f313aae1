"""Forward-only Numba kernels for decoding: whole images, regions and arbitrary points.

Same function as ``reference.rasterize`` (and the training kernel ``_kernels.forward``), plus an
optional per-Gaussian offset ``o`` >= 0 of the quadratic form: w = exp(-(max(q, 0) + o) / 2), i.e.
an amplitude exp(-o / 2) <= 1 (the anti-aliasing prefilter's). No selection is stored and nothing
is differentiated, so the kernels only keep what the blend needs.

Both kernels evaluate *chunks* of up to 64 points of one tile as SIMD lanes, against contiguous
copies of the tile's Gaussians:
1. Exact pruning over the chunk's bounding box: q is convex, so its maximum over the box is at a
   corner; a count-bisection finds G such that >= K Gaussians have (max q) + o <= G, which bounds
   every lane's K-th best key; a Gaussian whose lower bound lambda_min * dist^2 + o exceeds G cannot
   enter any lane's top K and is dropped.
2. Selection on packed int64 keys (q + o as float64 bits, lowest bits = candidate index), sorted
   per lane by a branch-free min/max network; exp only for the K survivors.
``decode`` uses the 8x8 pixel blocks of the tile grid as chunks (lanes = pixel centres, in absolute
output-pixel coordinates); ``decode_points`` groups queries by tile and 8x8 sub-block (a counting
sort) and takes consecutive runs of 64. A point at a pixel centre is evaluated with the same
arithmetic as that pixel in ``decode``, so the two agree to the last bit unless two keys tie to
within 2^-40 (the candidate index then breaks the tie).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._kernels import _EMPTY, FASTMATH, TILE, _exp_neg_half, _gather_tile

BLOCK = 8  # pixel block edge for whole-image decoding
LANES = BLOCK * BLOCK  # points per chunk (64 lanes fill LLVM's vector loops, see docs/NOTES.md)
SUB = TILE // BLOCK  # 8x8 sub-blocks per tile side (query grouping)


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _tile(means, conics, qoff, colors, ids, start, length):
    """A tile's Gaussians as contiguous float64 arrays: x, y, A, 2B, C, offset, lambda_min, colours."""
    gx, gy, ga, gb, gc, gcol = _gather_tile(means, conics, colors, ids, start, length)
    go = np.zeros(length, np.float64)
    if qoff.shape[0] > 0:
        for j in range(length):
            go[j] = qoff[ids[start + j]]
    glam = np.empty(length, np.float64)
    for j in range(length):
        gb[j] *= 2.0  # q = A dx^2 + (2B) dx dy + C dy^2
        half = 0.5 * (ga[j] - gc[j])
        hb = 0.5 * gb[j]
        glam[j] = max(0.5 * (ga[j] + gc[j]) - math.sqrt(half * half + hb * hb), 0.0) * 0.999
    return gx, gy, ga, gb, gc, go, glam, gcol


@njit(inline="always")
def _scratch(length, ncol, kk):
    """Per-thread work arrays for chunks of one tile (``length`` Gaussians, K = ``kk``)."""
    f = np.float64
    return (np.empty(length, f), np.empty(length, f), np.empty(length, f), np.empty(length, np.int32),
            np.empty(length, f), np.empty(length, f), np.empty(length, f), np.empty(length, f),
            np.empty(length, f), np.empty(length, f), np.empty((length, ncol), f),
            np.empty((kk, LANES), np.int64), np.empty((kk, LANES), np.int64),
            np.empty(LANES, f), np.empty(LANES, f), np.empty(LANES, f), np.empty(LANES, np.int64),
            np.empty(LANES, f), np.empty(LANES, np.int64), np.empty(LANES, f), np.empty(LANES, f),
            np.empty((ncol, LANES), f))


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _blend_chunk(lx, ly, xlo, xhi, ylo, yhi, tile, scratch, top_k):
    """Blend the tile's Gaussians at the lanes (lx, ly) (all LANES evaluated; points inside the box
    [xlo, xhi] x [ylo, yhi] are exact). Leaves sum(w) in scratch ``sv`` and sum(w c) in ``acc``."""
    gx, gy, ga, gb, gc, go, glam, gcol = tile
    (qhi, qlo, qmid, cand, cx, cy, ca, cb, cc, co, ccol, best, civ,
     xq, nv, pv, ev, kq, key, sv, wv, acc) = scratch
    length = gx.shape[0]
    ncol = gcol.shape[1]
    lanes = LANES
    ncand = 0
    if top_k > 0 and length > top_k:
        xm = 0.5 * (xlo + xhi)
        ym = 0.5 * (ylo + yhi)
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
            ddx = max(max(xlo - gx[j], gx[j] - xhi), 0.0)
            ddy = max(max(ylo - gy[j], gy[j] - yhi), 0.0)
            qlo[j] = glam[j] * (ddx * ddx + ddy * ddy) + go[j]
        for j in range(length):
            dx = xm - gx[j]
            dy = ym - gy[j]
            qmid[j] = ga[j] * dx * dx + gb[j] * dx * dy + gc[j] * dy * dy + go[j]
        lo = 0.0  # bisection for G: hi stays valid (>= K maxima <= hi), lo invalid
        hi = 0.0
        for j in range(length):
            hi = max(hi, qhi[j])
        for it in range(12):
            mid = 0.5 * (lo + hi) if it < 4 else math.sqrt(max(lo, 1e-12) * hi)
            cnt = 0
            for j in range(length):
                cnt += qhi[j] <= mid
            if cnt >= top_k:
                hi = mid
            else:
                lo = mid
        thresh = hi * 1.0001 + 1e-9
        for j in range(length):  # likely winners first (key at the centre within G) ...
            if qlo[j] <= thresh and qmid[j] <= thresh:
                cand[ncand] = j
                ncand += 1
        for j in range(length):  # ... then the other survivors
            if qlo[j] <= thresh and qmid[j] > thresh:
                cand[ncand] = j
                ncand += 1
    else:
        for j in range(length):
            cand[j] = j
        ncand = length
    for ci in range(ncand):  # contiguous copies of the candidates
        j = cand[ci]
        cx[ci] = gx[j]
        cy[ci] = gy[j]
        ca[ci] = ga[j]
        cb[ci] = gb[j]
        cc[ci] = gc[j]
        co[ci] = go[j]
    for ci in range(ncand):
        for ch in range(ncol):
            ccol[ci, ch] = gcol[cand[ci], ch]
    for ch in range(ncol):
        row = acc[ch]
        for l in range(lanes):
            row[l] = 0.0
    for l in range(lanes):
        sv[l] = 0.0
    ki = kq.view(np.int64)
    if top_k > 0:
        # the index bits depend on the tile only, so every chunk of a tile truncates q alike
        nbits = 1
        while (1 << nbits) < length:
            nbits += 1
        lowmask = np.int64((1 << nbits) - 1)
        himask = ~lowmask
        for k in range(top_k):
            row_b = best[k]
            for l in range(lanes):
                row_b[l] = _EMPTY
        worst = best[top_k - 1]
        for ci in range(ncand):
            xa, ya, a, b, c, o = cx[ci], cy[ci], ca[ci], cb[ci], cc[ci], co[ci]
            for l in range(lanes):
                dx = lx[l] - xa
                dy = ly[l] - ya
                qv = a * dx * dx + b * dx * dy + c * dy * dy
                kq[l] = (qv if qv > 0.0 else 0.0) + o
            better = 0
            for l in range(lanes):
                kv = (ki[l] & himask) | ci
                key[l] = kv
                better += kv < worst[l]
            if better == 0:
                continue
            for k in range(top_k):  # sorted insertion as a min/max network
                row_b = best[k]
                for l in range(lanes):
                    bv = row_b[l]
                    kv = key[l]
                    row_b[l] = min(bv, kv)
                    key[l] = max(bv, kv)
        xi = xq.view(np.int64)
        for k in range(top_k if ncand > 0 else 0):  # the winners' weights from their keys' q
            row_b = best[k]
            row_c = civ[k]
            for l in range(lanes):
                row_c[l] = min(row_b[l] & lowmask, ncand - 1)
            for l in range(lanes):
                xi[l] = row_b[l] & himask if row_b[l] != _EMPTY else 0x7FE0000000000000  # huge q: w = 0
            _exp_neg_half(xq, nv, pv, ev, wv, lanes)
            for l in range(lanes):
                wv[l] = wv[l] if row_b[l] != _EMPTY else 0.0
            for l in range(lanes):
                sv[l] += wv[l]
            for ch in range(ncol):
                row = acc[ch]
                for l in range(lanes):
                    row[l] += wv[l] * ccol[row_c[l], ch]
    else:
        for ci in range(ncand):
            xa, ya, a, b, c, o = cx[ci], cy[ci], ca[ci], cb[ci], cc[ci], co[ci]
            for l in range(lanes):
                dx = lx[l] - xa
                dy = ly[l] - ya
                qv = a * dx * dx + b * dx * dy + c * dy * dy
                xq[l] = (qv if qv > 0.0 else 0.0) + o
            _exp_neg_half(xq, nv, pv, ev, wv, lanes)
            for l in range(lanes):
                sv[l] += wv[l]
            for ch in range(ncol):
                col = ccol[ci, ch]
                row = acc[ch]
                for l in range(lanes):
                    row[l] += wv[l] * col


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def decode(means, conics, qoff, colors, offsets, ids, height, width, top_k, eps, x0, y0, x1, y1, out):
    """Render the region [x0, x1) x [y0, y1) of the height x width image into ``out`` (C, y1-y0, x1-x0).

    ``qoff``: (N,) offsets o >= 0, or an empty array for none. Only the tiles and 8x8 blocks that
    meet the region are evaluated; each such block is computed exactly as in a whole-image decode
    (same lanes, same pruning box), so a region equals the crop of the whole image bit for bit.
    """
    ntx = (width + TILE - 1) // TILE
    ncol = colors.shape[1]
    kk = max(top_k, 1)
    tx0 = x0 // TILE
    ty0 = y0 // TILE
    rtx = (x1 - 1) // TILE - tx0 + 1
    rty = (y1 - 1) // TILE - ty0 + 1
    for r in prange(rtx * rty):
        ty = ty0 + r // rtx
        tx = tx0 + r % rtx
        t = ty * ntx + tx
        start = offsets[t]
        length = offsets[t + 1] - start
        tile = _tile(means, conics, qoff, colors, ids, start, length)
        scratch = _scratch(length, ncol, kk)
        sv = scratch[19]
        acc = scratch[21]
        lx = np.empty(LANES, np.float64)
        ly = np.empty(LANES, np.float64)
        for blk in range(SUB * SUB):
            by0 = ty * TILE + (blk // SUB) * BLOCK
            bx0 = tx * TILE + (blk % SUB) * BLOCK
            by1 = min(by0 + BLOCK, height)
            bx1 = min(bx0 + BLOCK, width)
            if by0 >= min(y1, by1) or bx0 >= min(x1, bx1) or by1 <= y0 or bx1 <= x0:
                continue
            for l in range(LANES):
                lx[l] = bx0 + l % BLOCK + 0.5
            for l in range(LANES):
                ly[l] = by0 + l // BLOCK + 0.5
            _blend_chunk(lx, ly, bx0 + 0.5, bx1 - 0.5, by0 + 0.5, by1 - 0.5, tile, scratch, top_k)
            for l in range(LANES):
                py = by0 + l // BLOCK
                px = bx0 + l % BLOCK
                if y0 <= py < min(y1, by1) and x0 <= px < min(x1, bx1):
                    denom = sv[l] + eps
                    for ch in range(ncol):
                        out[ch, py - y0, px - x0] = acc[ch, l] / denom


@njit(cache=True)
def group_points(px, py, height, width):
    """Counting sort of points (output-pixel coordinates) by tile, then 8x8 sub-block.

    Returns (order, starts): ``order`` lists point indices grouped by tile; tile t's points are
    ``order[starts[t]:starts[t + 1]]``. Points on the far edge (x = width) belong to the last tile.
    """
    ntx = (width + TILE - 1) // TILE
    nty = (height + TILE - 1) // TILE
    nbuckets = ntx * nty * SUB * SUB
    n = px.shape[0]
    bucket = np.empty(n, np.int64)
    counts = np.zeros(nbuckets + 1, np.int64)
    for i in range(n):
        ix = min(max(int(math.floor(px[i])), 0), width - 1)
        iy = min(max(int(math.floor(py[i])), 0), height - 1)
        tx = ix // TILE
        ty = iy // TILE
        b = ((ty * ntx + tx) * SUB + (iy % TILE) // BLOCK) * SUB + (ix % TILE) // BLOCK
        bucket[i] = b
        counts[b + 1] += 1
    for b in range(nbuckets):
        counts[b + 1] += counts[b]
    order = np.empty(n, np.int64)
    cursor = counts[:nbuckets].copy()
    for i in range(n):
        b = bucket[i]
        order[cursor[b]] = i
        cursor[b] += 1
    starts = counts[:: SUB * SUB].copy()
    return order, starts


@njit(parallel=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def decode_points(means, conics, qoff, colors, offsets, ids, top_k, eps, px, py, order, starts, out):
    """Evaluate the blend at points (px, py) (output pixels) into ``out`` (P, C).

    ``order``/``starts`` from ``group_points``; each point uses its tile's Gaussian list. Runs of
    up to 64 consecutive points of a tile (sorted by sub-block) share one pruning box.
    """
    ncol = colors.shape[1]
    kk = max(top_k, 1)
    num_tiles = starts.shape[0] - 1
    for t in prange(num_tiles):
        p0 = starts[t]
        p1 = starts[t + 1]
        if p1 == p0:
            continue
        start = offsets[t]
        length = offsets[t + 1] - start
        tile = _tile(means, conics, qoff, colors, ids, start, length)
        scratch = _scratch(length, ncol, kk)
        sv = scratch[19]
        acc = scratch[21]
        lx = np.empty(LANES, np.float64)
        ly = np.empty(LANES, np.float64)
        for c0 in range(p0, p1, LANES):
            n = min(LANES, p1 - c0)
            xlo = math.inf
            xhi = -math.inf
            ylo = math.inf
            yhi = -math.inf
            for l in range(LANES):
                i = order[c0 + min(l, n - 1)]  # spare lanes repeat the last point
                lx[l] = px[i]
                ly[l] = py[i]
            for l in range(n):
                xlo = min(xlo, lx[l])
                xhi = max(xhi, lx[l])
                ylo = min(ylo, ly[l])
                yhi = max(yhi, ly[l])
            _blend_chunk(lx, ly, xlo, xhi, ylo, yhi, tile, scratch, top_k)
            for l in range(n):
                i = order[c0 + l]
                denom = sv[l] + eps
                for ch in range(ncol):
                    out[i, ch] = acc[ch, l] / denom
