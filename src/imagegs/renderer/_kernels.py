"""Shared pieces of the ``cpu`` backend's Numba kernels: tile binning and the vector primitives
that the forward (``_forward``) and backward (``_backward``) kernels are built from.

- Binning tests each Gaussian's circle against the tiles of its range once (exact
  circle/rectangle test) and sorts the hits by tile, giving CSR arrays ``offsets`` (T + 1) and
  ``ids`` with ids sorted per tile.
- The primitives work on SIMD lanes (points of one tile) with loops LLVM vectorises: a polynomial
  exp, the min/max top-K insertion network, the weight/colour accumulation and the exact pruning.
fastmath excludes nnan/ninf so comparisons with infinity stay exact.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from .constants import TILE  # the one definition; see there about Numba's cache

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(cache=True)
def region_tiles(offsets, width, x0, y0, x1, y1):
    """The tiles (row-major indices) meeting the region [x0, x1) x [y0, y1) of a ``width``-wide
    image, and the longest of their lists (``_longest``)."""
    ntx = (width + TILE - 1) // TILE
    tx0 = x0 // TILE
    ty0 = y0 // TILE
    rtx = (x1 - 1) // TILE - tx0 + 1
    rty = (y1 - 1) // TILE - ty0 + 1
    tiles = np.empty(rtx * rty, np.int64)
    for r in range(rtx * rty):
        tiles[r] = (ty0 + r // rtx) * ntx + tx0 + r % rtx
    return tiles, _longest(offsets, tiles)


@njit(cache=True)
def bin_tiles(means, radii, height, width):
    """CSR tile lists: Gaussians whose radius circle meets each tile. Returns (offsets, ids).

    One pass of exact circle/rectangle tests over each Gaussian's tile range records the (tile)
    of every hit, in Gaussian order; a stable counting sort by tile then lists each tile's ids in
    ascending order (the order the kernels' keys and sums rely on)."""
    ntx = (width + TILE - 1) // TILE
    nty = (height + TILE - 1) // TILE
    num_tiles = ntx * nty
    n = means.shape[0]
    span = np.zeros((n, 4), np.int64)  # tile range tx0, tx1, ty0, ty1 (tx1 < tx0: none)
    cap = 0
    for i in range(n):
        mx, my, r = means[i, 0], means[i, 1], radii[i]
        span[i, 1] = -1
        if not (r > 0.0) or not (abs(mx) < 1e30) or not (abs(my) < 1e30) or r > 1e30:
            continue
        fx0 = max(math.floor((mx - r) / TILE), 0.0)
        fx1 = min(math.floor((mx + r) / TILE), ntx - 1.0)
        fy0 = max(math.floor((my - r) / TILE), 0.0)
        fy1 = min(math.floor((my + r) / TILE), nty - 1.0)
        if fx0 > fx1 or fy0 > fy1:
            continue
        span[i, 0], span[i, 1], span[i, 2], span[i, 3] = int(fx0), int(fx1), int(fy0), int(fy1)
        cap += (span[i, 1] - span[i, 0] + 1) * (span[i, 3] - span[i, 2] + 1)
    pair_tile = np.empty(cap, np.int32)
    pair_id = np.empty(cap, np.int32)
    counts = np.zeros(num_tiles + 1, np.int64)
    npair = 0
    for i in range(n):
        mx, my, r = means[i, 0], means[i, 1], radii[i]
        r2 = r * r
        for ty in range(span[i, 2], span[i, 3] + 1):
            y0 = ty * TILE
            y1 = min(y0 + TILE, height)
            dy = max(max(y0 - my, my - y1), 0.0)
            for tx in range(span[i, 0], span[i, 1] + 1):
                x0 = tx * TILE
                x1 = min(x0 + TILE, width)
                dx = max(max(x0 - mx, mx - x1), 0.0)
                if dx * dx + dy * dy <= r2:
                    t = ty * ntx + tx
                    pair_tile[npair] = t
                    pair_id[npair] = i
                    npair += 1
                    counts[t + 1] += 1
    for t in range(num_tiles):
        counts[t + 1] += counts[t]
    ids = np.empty(counts[num_tiles], np.int32)
    cursor = counts[:num_tiles].copy()
    for p in range(npair):
        t = pair_tile[p]
        ids[cursor[t]] = pair_id[p]
        cursor[t] += 1
    return counts, ids


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


def _make_insert(kk: int, lanes: int):
    """``_insert`` for a compile-time K and row length ``lanes`` (``best`` flat, (K * lanes,)):
    the K rows are unrolled inside the lane loop, so each lane's key stays in a register and only
    ``best`` is loaded and stored (1.6x faster than ``_insert``'s row-by-row passes)."""
    @njit(inline="always")
    def insert(best, key, n):
        for l in range(n):
            kv = key[l]
            for k in range(kk):
                bv = best[k * lanes + l]
                best[k * lanes + l] = min(bv, kv)
                kv = max(bv, kv)
    return insert


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
def _fmax(a, b):
    """max as a compare-and-select: vectorises (Python's ``max`` on floats does not without nnan)."""
    return a if a > b else b


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _prune(xlo, xhi, ylo, yhi, gx, gy, ga, gb, gc, go, glam, top_k, rel, tol, qhi, qlo, qmid, cand):
    """Exact top-K pruning for the points of the box [xlo, xhi] x [ylo, yhi] (shared by all
    forward kernels); returns n and writes the surviving tile positions to cand[:n]. ``cand``
    needs length + 1 entries: the branch-free compaction may write one past the last.

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
        qhi[j] = _fmax(_fmax(q00, q01), _fmax(q10, q11)) + go[j]
    for j in range(length):
        ddx = _fmax(_fmax(xlo - gx[j], gx[j] - xhi), f(0.0))
        ddy = _fmax(_fmax(ylo - gy[j], gy[j] - yhi), f(0.0))
        qlo[j] = glam[j] * (ddx * ddx + ddy * ddy) + go[j]
    for j in range(length):
        dx = xm - gx[j]
        dy = ym - gy[j]
        qmid[j] = ga[j] * dx * dx + gb[j] * dx * dy + gc[j] * dy * dy + go[j]
    lo = 0.0  # bisection for G (float64): hi stays valid (>= K maxima <= hi), lo invalid
    hi = 0.0
    for j in range(length):
        hi = _fmax(hi, np.float64(qhi[j]))
    for rnd in range(12):
        mid = 0.5 * (lo + hi) if rnd < 4 else math.sqrt(max(lo, 1e-12) * hi)
        fmid = f(mid)  # counted in the model's precision (vectorises); hi takes the value counted
        cnt = 0
        for j in range(length):
            cnt += qhi[j] <= fmid
        if cnt >= top_k:
            hi = np.float64(fmid)
        else:
            lo = mid
    thresh = f(hi * rel + tol)
    n = 0
    for j in range(length):  # likely winners first (key at the centre within G) ...
        cand[n] = j  # branch-free compaction: always write, advance if kept
        n += (qlo[j] <= thresh) & (qmid[j] <= thresh)
    for j in range(length):  # ... then the other survivors
        cand[n] = j
        n += (qlo[j] <= thresh) & (qmid[j] > thresh)
    return n
