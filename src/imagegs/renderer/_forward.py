"""The forward Numba kernels: whole images, regions and arbitrary points, and the training forward.

Same function as ``reference.rasterize``, plus an optional per-Gaussian offset ``o`` >= 0 of the
quadratic form: w = exp(-(max(q, 0) + o) / 2), i.e. an amplitude exp(-o / 2) <= 1 (the
anti-aliasing prefilter's). The kernels compute in the model's dtype: float32 models run 16 SIMD
lanes per vector (float32 values, int32 keys), float64 ones 8. ``decode`` is also the training
forward: it can keep the little that the backward (``_backward``) needs to recompute the
selection (per lane the blended colour, the normaliser and the K-th key; which Gaussians won where).

Both kernels evaluate *chunks* of up to 256 points of one tile as SIMD lanes, against contiguous
copies of the tile's Gaussians:
1. Exact pruning over the chunk's bounding box: q is convex, so its maximum over the box is at a
   corner; a count-bisection finds G such that >= K Gaussians have (max q) + o <= G, which bounds
   every lane's K-th best key; a Gaussian whose lower bound lambda_min * dist^2 + o exceeds G cannot
   enter any lane's top K and is dropped.
2. Selection on packed integer keys: the bits of q + o (>= 0, so they order like the value) with
   the lowest bits replaced by the Gaussian's position in the tile list, kept sorted per lane by a
   branch-free min/max network. The exact q + o of each (candidate, lane) is kept, and exp is
   evaluated only for the K winners. The key's index bits are the tile-list position (not the
   candidate number), so a point's selection does not depend on which chunk it is evaluated in.
``decode`` uses whole 16x16 tiles as chunks (lanes = pixel centres, in absolute output-pixel
coordinates; 8x8 blocks pruned a little better but cost 25-30 % more in per-candidate overheads);
``decode_points`` groups queries by tile (a counting sort) and takes consecutive runs of up to 256
(evaluating a multiple of 64 lanes). A point at a pixel centre is evaluated with the same
arithmetic as that pixel in ``decode``: the two agree to the last bit.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ..defaults import DEFAULT_TOP_K
from .._workers import run_workers
from ._kernels import (FASTMATH, TILE, _accumulate, _exp_neg_half, _insert, _longest, _make_insert, _prune,
                       region_tiles)

BLOCK = 16  # pixel block edge for whole-image decoding: a whole tile (256 lanes) per chunk
LANES = BLOCK * BLOCK  # points per chunk (8x8 blocks were 31 % slower: per-candidate overheads)
SUB = TILE // BLOCK  # sub-blocks per tile side (query grouping; 1 with whole-tile chunks)
NSTATS = 5  # per-tile work counts (see ``decode``)
FAST_K = DEFAULT_TOP_K  # the K with an unrolled insertion network; others take the generic one
_insert_fast = _make_insert(FAST_K, LANES)

_LOG2E = 1.4426950408889634
_LN2_HI32 = 0.693145751953125  # ln 2 split for float32 range reduction
_LN2_LO32 = 1.428606765330187e-06


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _exp_neg_half32(q, nv, ev, out, n):
    """out[:n] = exp(-q[:n] / 2) for float32 q >= 0 (relative error < 1e-7), vectorised.

    x = n ln2 + r, |r| <= ln2 / 2, degree-7 Taylor polynomial times 2^n from exponent bits;
    ``nv`` float32 and ``ev`` int32 scratch (``ev`` is viewed as float32).
    """
    f = q.dtype.type
    for l in range(n):
        nv[l] = np.floor(max(f(-0.5) * q[l], f(-87.0)) * f(_LOG2E) + f(0.5))  # float floor: no int64 round trip
    for l in range(n):
        x = max(f(-0.5) * q[l], f(-87.0))
        r = (x - nv[l] * f(_LN2_HI32)) - nv[l] * f(_LN2_LO32)
        out[l] = f(1.0) + r * (f(1.0) + r * (f(1 / 2) + r * (f(1 / 6) + r * (f(1 / 24) + r * (
            f(1 / 120) + r * (f(1 / 720) + r * f(1 / 5040)))))))
    for l in range(n):
        ev[l] = np.left_shift(np.add(np.int32(nv[l]), np.int32(127)), np.int32(23))  # int32 ufuncs stay int32
    scale = ev.view(np.float32)
    for l in range(n):
        out[l] = out[l] * scale[l]


@njit(inline="always")
def _tile_buffers(maxlen, ncol, dt):
    """One worker's arrays for the Gaussians of any tile with up to ``maxlen`` entries (``_tile``)."""
    return (np.empty(maxlen, dt), np.empty(maxlen, dt), np.empty(maxlen, dt), np.empty(maxlen, dt),
            np.empty(maxlen, dt), np.empty(maxlen, dt), np.empty(maxlen, dt), np.empty((maxlen, ncol), dt))


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _tile(buf, means, conics, qoff, colors, ids, start, length):
    """A tile's Gaussians as contiguous arrays (views of the worker's ``buf``) in the model's dtype:
    x, y, A, 2B, C, offset, lambda_min (slightly shrunk: a safe lower bound) and colours."""
    f = means.dtype.type
    ncol = colors.shape[1]
    gx, gy, ga, gb, gc, go, glam, gcol = (buf[0][:length], buf[1][:length], buf[2][:length], buf[3][:length],
                                          buf[4][:length], buf[5][:length], buf[6][:length], buf[7][:length])
    for j in range(length):
        g = ids[start + j]
        gx[j] = means[g, 0]
        gy[j] = means[g, 1]
        ga[j] = conics[g, 0]
        gb[j] = f(2.0) * conics[g, 1]  # q = A dx^2 + (2B) dx dy + C dy^2
        gc[j] = conics[g, 2]
        for ch in range(ncol):
            gcol[j, ch] = colors[g, ch]
    if qoff.shape[0] > 0:
        for j in range(length):
            go[j] = qoff[ids[start + j]]
    else:
        for j in range(length):
            go[j] = f(0.0)
    for j in range(length):
        half = f(0.5) * (ga[j] - gc[j])
        hb = f(0.5) * gb[j]
        glam[j] = max(f(0.5) * (ga[j] + gc[j]) - math.sqrt(half * half + hb * hb), f(0.0)) * f(0.999)
    return gx, gy, ga, gb, gc, go, glam, gcol


@njit(inline="always")
def _scratch(maxlen, ncol, kk, dt, it):
    """One worker's work arrays for the chunks of any tile with up to ``maxlen`` entries (K = ``kk``);
    ``dt`` the float dtype, ``it`` the key dtype of the same width. ``keep`` starts (and stays
    between chunks) all False."""
    return (np.empty(maxlen, dt), np.empty(maxlen, dt), np.empty(maxlen, dt), np.empty(maxlen + 1, np.int32),
            np.empty((maxlen, LANES), dt), np.empty((kk, LANES), it), np.zeros(maxlen, np.bool_),
            np.empty(LANES, dt), np.empty(LANES, it), np.empty(LANES, it), np.empty(LANES, dt),
            np.empty((ncol, LANES), dt),
            np.empty(LANES, np.float64), np.empty(LANES, np.float64), np.empty(LANES, np.float64),
            np.empty(LANES, np.int64))


@njit(inline="always")
def _copy(src, dst, n):
    """dst[:n] = src[:n] (a plain loop: slice assignment costs more for rows this short)."""
    for i in range(n):
        dst[i] = src[i]


@njit(inline="always")
def _pixel_lanes(lx, ly, bx0, by0):
    """The pixel centres of the BLOCK x BLOCK block at (bx0, by0) as lanes (row-major)."""
    f = lx.dtype.type
    for l in range(LANES):
        lx[l] = f(bx0 + l % BLOCK) + f(0.5)
    for l in range(LANES):
        ly[l] = f(by0 + l // BLOCK) + f(0.5)


@njit(inline="always")
def _key_mask(length, it):
    """The mask of a key's value bits: its lowest bits hold the Gaussian's position in a tile list
    of ``length`` entries (so every chunk of a tile, and the backward, pack a point's keys alike)."""
    nbits = 1
    while (1 << nbits) < length:
        nbits += 1
    return np.invert(it((1 << nbits) - 1))


@njit(error_model="numpy")
def _lane_qo(lx, ly, xa, ya, a, b, c, o, row_q, n):
    """row_q[:n] = max(q, 0) + o of one Gaussian (centre xa, ya; conic a, 2b, c; offset o) at the
    lanes (lx, ly): the selection's value. The forward and the backward both call this, so that the
    backward recomputes the forward's keys bit for bit; strict IEEE arithmetic (no fastmath, not
    inlined into a fastmath caller): no contraction or reassociation that could differ between two
    compilations."""
    f = row_q.dtype.type
    for l in range(n):
        dx = lx[l] - xa
        dy = ly[l] - ya
        qv = a * dx * dx + b * dx * dy + c * dy * dy
        row_q[l] = (qv if qv > f(0.0) else f(0.0)) + o


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _blend_chunk(lx, ly, xlo, xhi, ylo, yhi, tile, scratch, top_k, nl, won):
    """Blend the tile's Gaussians at the first ``nl`` lanes (lx, ly) (points inside the box
    [xlo, xhi] x [ylo, yhi] are exact). Leaves sum(w) in scratch ``sv`` and sum(w c) in ``acc``,
    and each lane's K-th key in ``best[K - 1]``. ``won`` (the tile's entries, or empty): set to 1
    for each Gaussian that is a winner in some lane (what the training backward revisits).

    Returns (candidates after pruning, candidates that entered some lane's top K)."""
    gx, gy, ga, gb, gc, go, glam, gcol = tile
    (qhi, qlo, qmid, cand, qmat, best, keep, wv, key, ev, sv, acc, x64, n64, p64, e64) = scratch
    f = gx.dtype.type
    it = best.dtype.type
    length = gx.shape[0]  # the worker's buffers may be longer: only the first ``length`` are used
    ncol = gcol.shape[1]
    lanes = nl
    kk = best.shape[0]
    # float32 keys: a wider margin over the rounding of the bounds
    ncand = _prune(xlo, xhi, ylo, yhi, gx, gy, ga, gb, gc, go, glam, top_k, 1.001, 1e-6, qhi, qlo, qmid, cand)
    for ch in range(ncol):
        row = acc[ch]
        for l in range(lanes):
            row[l] = f(0.0)
    for l in range(lanes):
        sv[l] = f(0.0)
    ninsert = 0
    if ncand == 0:
        return ncand, ninsert
    himask = _key_mask(length, it)
    empty = it(np.iinfo(best.dtype).max)
    for k in range(kk):
        row_b = best[k]
        for l in range(lanes):
            row_b[l] = empty
    worst = best[kk - 1]  # each lane's K-th smallest key (``empty``: every candidate counts)
    flat = best.reshape(-1)  # once per chunk: numba's reshape is a C call
    for ci in range(ncand):
        j = cand[ci]
        row_q = qmat[j]
        _lane_qo(lx, ly, gx[j], gy[j], ga[j], gb[j], gc[j], go[j], row_q, lanes)
        if top_k == 0:
            keep[j] = True
            continue
        rk = row_q.view(best.dtype)  # the bits of q + o (>= 0: ordered as the values)
        better = f(0.0)  # a float count vectorises at full width (an int one widens to int64)
        jj = it(j)
        for l in range(lanes):
            kv = np.bitwise_or(np.bitwise_and(rk[l], himask), jj)  # ufuncs keep int32 (operators widen)
            key[l] = kv
            better += f(1.0) if kv < worst[l] else f(0.0)
        if better == 0:  # not among any lane's K best so far, so not among the final ones
            continue
        keep[j] = True  # a possible winner: the blend looks at these only
        ninsert += 1
        if top_k == FAST_K and kk == FAST_K:
            _insert_fast(flat, key, lanes)
        else:
            _insert(best, key, top_k, lanes)
    # Blend, densely: a candidate is one of a lane's K winners iff its key <= the lane's K-th key.
    # Candidates go in tile-list order, so the sum's order does not depend on the pruning (the
    # non-winners add exact zeros): every chunk of a tile sums a point's winners alike.
    for j in range(length):
        if not keep[j]:
            continue
        keep[j] = False
        row_q = qmat[j]
        rk = row_q.view(best.dtype)
        jj = it(j)
        nsel = f(0.0)
        for l in range(lanes):
            sel = np.bitwise_or(np.bitwise_and(rk[l], himask), jj) <= worst[l]
            key[l] = sel
            nsel += f(1.0) if sel else f(0.0)
        if nsel == 0:  # a winner in no lane: adds zeros only
            continue
        if won.shape[0] > 0:
            won[j] = 1
        _exp(row_q, wv, ev, x64, n64, p64, e64, lanes)
        for l in range(lanes):
            wv[l] = wv[l] if key[l] != 0 else f(0.0)
        _accumulate(wv, gcol[j], sv, acc, lanes)
    return ncand, ninsert


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _normalise(acc, sv, feps, ncol, nl):
    """acc[ch, :nl] /= sv + eps, in place: the blend's result per lane (one code path for all
    kernels, so that they round alike)."""
    for l in range(nl):
        sv[l] = sv[l] + feps
    for ch in range(ncol):
        row = acc[ch]
        for l in range(nl):
            row[l] = row[l] / sv[l]


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _exp(q, out, ev, x64, n64, p64, e64, n):
    """out[:n] = exp(-q[:n] / 2) in q's precision (float32 or float64)."""
    if q.itemsize == 4:
        _exp_neg_half32(q, x64.view(np.float32), ev.view(np.int32), out, n)
    else:
        _exp_neg_half(q, n64, p64, e64, x64, n)
        for l in range(n):
            out[l] = x64[l]


@njit(fastmath=FASTMATH, error_model="numpy", inline="always")
def _chunk(lx, ly, xlo, xhi, ylo, yhi, tile, scratch, top_k, nl, feps, counts, length, won):
    """Blend and normalise one chunk of ``nl`` lanes (result in scratch ``acc``), adding its work
    to the tile's ``counts`` (NSTATS,): chunks, list entries, candidate-lanes, insertions, lanes."""
    nc, ni = _blend_chunk(lx, ly, xlo, xhi, ylo, yhi, tile, scratch, top_k, nl, won)
    counts[0] += 1
    counts[1] += length
    counts[2] += nc * nl
    counts[3] += ni
    counts[4] += nl
    _normalise(scratch[11], scratch[10], feps, scratch[11].shape[0], nl)


def forward(means, conics, qoff, colors, offsets, ids, height, width, top_k, eps, x0, y0, x1, y1, out,
            stats, kproto, lanes, nworkers, blend, kth, won):
    """Render the region [x0, x1) x [y0, y1) of the height x width image into ``out`` (C, y1-y0, x1-x0).

    Also the training forward (then on the whole image): for the backward (``_backward.backward``)
    it can keep, each only where non-empty and per block (tiles * SUB^2) in lane order (the
    backward's order: contiguous loads): ``blend`` (blocks, C + 1, LANES) the blended colour and
    the normaliser sum(w) + eps, ``kth`` (blocks, LANES) each lane's K-th key; and ``won``
    (len(ids)) uint8 flags, 1 for the tile-list entries that are a winner in some lane of their
    chunk (zeros on entry).

    ``stats`` (tiles of the region, NSTATS) int64 receives per tile, summed over its chunks: chunks,
    tile-list entries (pruned), candidates x lanes evaluated, candidates that entered a top K, lanes
    evaluated (the cost model's counts).
    All arrays share one float dtype; ``kproto`` is an empty int array of the same width (the keys').
    ``lanes`` = LANES, passed at run time: both kernels then run the same (run-time trip count)
    vector loops, so that a point rounds exactly as the pixel it sits on. ``nworkers``: the
    number of threads (each allocates its work arrays once; tiles are dealt round-robin:
    ``run_workers``).

    ``qoff``: (N,) offsets o >= 0, or an empty array for none. Only the tiles (chunks) that
    meet the region are evaluated; each such block is computed exactly as in a whole-image decode
    (same lanes, same pruning box), so a region equals the crop of the whole image bit for bit.
    """
    tiles, maxlen = region_tiles(offsets, width, x0, y0, x1, y1)
    run_workers(_forward_worker, nworkers, tiles, maxlen, means, conics, qoff, colors, offsets, ids, height, width,
                top_k, eps, x0, y0, x1, y1, out, stats, kproto, lanes, blend, kth, won)


@njit(nogil=True, fastmath=FASTMATH, error_model="numpy", cache=True)
def _forward_worker(wk, nworkers, tiles, maxlen, means, conics, qoff, colors, offsets, ids, height, width,
                    top_k, eps, x0, y0, x1, y1, out, stats, kproto, lanes, blend, kth, won):
    """Worker ``wk`` of ``forward``: the region's tiles wk, wk + nworkers, ... (see there)."""
    ntx = (width + TILE - 1) // TILE
    ncol = colors.shape[1]
    kk = max(top_k, 1)
    dt = means.dtype
    f = dt.type
    feps = f(eps)
    ntiles = tiles.shape[0]
    store = won.shape[0] > 0
    buf = _tile_buffers(maxlen, ncol, dt)
    scratch = _scratch(maxlen, ncol, kk, dt, kproto.dtype)
    acc = scratch[11]
    sv = scratch[10]
    worst = scratch[5][kk - 1]
    lx = np.empty(LANES, dt)
    ly = np.empty(LANES, dt)
    for r in range(wk, ntiles, nworkers):
        for c4 in range(NSTATS):
            stats[r, c4] = 0
        t = tiles[r]
        ty = t // ntx
        tx = t % ntx
        start = offsets[t]
        length = offsets[t + 1] - start
        tile = _tile(buf, means, conics, qoff, colors, ids, start, length)
        for blk in range(SUB * SUB):
            by0 = ty * TILE + (blk // SUB) * BLOCK
            bx0 = tx * TILE + (blk % SUB) * BLOCK
            by1 = min(by0 + BLOCK, height)
            bx1 = min(bx0 + BLOCK, width)
            if by0 >= min(y1, by1) or bx0 >= min(x1, bx1) or by1 <= y0 or bx1 <= x0:
                continue
            _pixel_lanes(lx, ly, bx0, by0)
            _chunk(lx, ly, f(bx0) + f(0.5), f(bx1) - f(0.5), f(by0) + f(0.5), f(by1) - f(0.5), tile,
                   scratch, top_k, lanes, feps, stats[r], length, won[start:start + length] if store else won)
            xa = max(bx0, x0)  # the block's pixels inside the region, row by row
            nx = min(bx1, x1) - xa
            for py in range(max(by0, y0), min(by1, y1)):
                o = (py - by0) * BLOCK + xa - bx0
                for ch in range(ncol):
                    _copy(acc[ch, o:o + nx], out[ch, py - y0, xa - x0:xa - x0 + nx], nx)
            if store:
                b = t * SUB * SUB + blk
                for ch in range(ncol):
                    _copy(acc[ch], blend[b, ch], LANES)
                _copy(sv, blend[b, ncol], LANES)  # sum(w) + eps after _normalise
                _copy(worst, kth[b], LANES)


@njit(cache=True)
def group_points(px, py, height, width):
    """Counting sort of points (output-pixel coordinates) by tile, then sub-block (``SUB``^2 per tile).

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
def forward_points(means, conics, qoff, colors, offsets, ids, top_k, eps, px, py, order, starts, out,
                  stats, kproto, lanes, nworkers):
    """Evaluate the blend at points (px, py) (output pixels) into ``out`` (P, C).

    ``stats`` (tiles, NSTATS) int64: as for ``decode`` (zero for tiles without points).

    ``order``/``starts`` from ``group_points``; each point uses its tile's Gaussian list. Runs of
    up to ``lanes`` consecutive points of a tile share one pruning box.
    """
    ncol = colors.shape[1]
    kk = max(top_k, 1)
    dt = means.dtype
    f = dt.type
    feps = f(eps)
    num_tiles = starts.shape[0] - 1
    busy = np.empty(num_tiles, np.int64)  # the tiles with points
    nbusy = 0
    for t in range(num_tiles):
        for c4 in range(NSTATS):
            stats[t, c4] = 0
        if starts[t + 1] > starts[t]:
            busy[nbusy] = t
            nbusy += 1
    maxlen = _longest(offsets, busy[:nbusy])
    nowon = np.empty(0, np.uint8)
    for wk in prange(nworkers):
        buf = _tile_buffers(maxlen, ncol, dt)
        scratch = _scratch(maxlen, ncol, kk, dt, kproto.dtype)
        acc = scratch[11]
        lx = np.empty(LANES, dt)
        ly = np.empty(LANES, dt)
        for r in range(wk, nbusy, nworkers):
            t = busy[r]
            p0 = starts[t]
            p1 = starts[t + 1]
            start = offsets[t]
            length = offsets[t + 1] - start
            tile = _tile(buf, means, conics, qoff, colors, ids, start, length)
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
                nl = min(lanes, (n + 63) // 64 * 64)  # not all LANES for few points; multiples of 64 lanes
                # run the same vector loop bodies as whole chunks, so a point rounds as in ``decode``
                _chunk(lx, ly, xlo, xhi, ylo, yhi, tile, scratch, top_k, nl, feps, stats[t], length, nowon)
                for l in range(n):
                    i = order[c0 + l]
                    for ch in range(ncol):
                        out[i, ch] = acc[ch, l]


@njit(cache=True)
def scale_points(xy, width, height, sy, sx, px, py):
    """Points (P, 2) in [0, 1]^2 (float64) -> sub-points in grid pixels, written to px, py (P*sy*sx,).

    Point p's sub-point (a, b) is (x width + b + 0.5 - sx/2, y height + a + 0.5 - sy/2), at index
    (p sy + a) sx + b; plain IEEE arithmetic (no fastmath: no fused multiply-add), so the values
    match the same formula in torch. Returns 0, or 1 for a non-finite point, 2 for one outside
    [0, 1]^2 (the first problem found).
    """
    n = xy.shape[0]
    for p in range(n):
        x = xy[p, 0]
        y = xy[p, 1]
        if not (math.isfinite(x) and math.isfinite(y)):
            return 1
        if x < 0.0 or x > 1.0 or y < 0.0 or y > 1.0:
            return 2
        gx = x * width
        gy = y * height
        for a in range(sy):
            for b in range(sx):
                i = (p * sy + a) * sx + b
                px[i] = gx + (b + 0.5 - sx / 2) if sx > 1 else gx
                py[i] = gy + (a + 0.5 - sy / 2) if sy > 1 else gy
    return 0
