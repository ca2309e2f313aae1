"""Numba kernels of :mod:`imagegs.rangecoder` (see there for the format; the plain-Python
``encode_reference`` / ``decode_reference`` are the twins these are tested against).

The format's constants are defined here (and re-exported by ``rangecoder``) because Numba's
cache is keyed on this file. The coder state (low, range, output position) lives in locals of one loop; ``_put`` / ``_take``
return it updated so LLVM keeps it in registers. Cumulative frequencies are found by a linear
scan of the model (<= 256 counts): cheap next to everything else an encode does.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GAP, COLUMN = 0, 1  # stream kinds
MASK = 0xFFFFFFFF
TOP, BOT = 1 << 24, 1 << 16
INC = 16
LIMIT = 1 << 13  # INC 16 / LIMIT 2^13 beat 24-48 / 2^16 by 0.1-1.6% on three fitted models
CAP_NUM, CAP_DEN = 15, 16  # no symbol gets more than 15/16 of its model's total
MODEL_BITS = 8  # a column's top bits that get a model; the rest are raw
RAW_CHUNK = 16  # raw bits coded per range-coder step (tot = 2^16 = BOT at most)


@njit(cache=True, inline="always")
def _alphabet(width, kind):
    return width + 1 if kind == GAP else 1 << min(width, MODEL_BITS)


@njit(cache=True, inline="always")
def _update(counts, totals, s, sym, a):
    c = counts[s, sym]
    t = totals[s]
    if (c + INC) * CAP_DEN <= CAP_NUM * (t + INC):
        counts[s, sym] = c + INC
        t += INC
        if t > LIMIT:
            t = 0
            for j in range(a):
                counts[s, j] = (counts[s, j] + 1) >> 1
                t += counts[s, j]
        totals[s] = t


@njit(cache=True, inline="always")
def _shift_range(low, rng):
    """The range to continue with once the top byte of low is shifted out, or -1 if no byte is
    due: the byte is due when it is settled (low and low + range agree on it), or forced, with the
    range cut to what keeps it settled, when the range fell below BOT (the carry-less rule)."""
    if (low ^ ((low + rng) & MASK)) < TOP:
        return rng
    if rng < BOT:
        return (-low) & (BOT - 1)
    return -1


@njit(cache=True, inline="always")
def _put(low, rng, out, pos, cum, freq, tot):
    r = rng // tot
    low = (low + r * cum) & MASK
    rng = r * freq
    r = _shift_range(low, rng)
    while r >= 0:
        if pos >= out.shape[0]:
            return low, rng, -1
        out[pos] = low >> 24
        pos += 1
        low = (low << 8) & MASK
        rng = (r << 8) & MASK
        r = _shift_range(low, rng)
    return low, rng, pos


@njit(cache=True)
def encode(values, widths, kinds, counts, totals, out):
    """Code values (S, n) into out (uint8); returns the byte count (-1: out too small)."""
    low = np.int64(0)
    rng = np.int64(MASK)
    pos = 0
    for s in range(values.shape[0]):
        w = widths[s]
        kind = kinds[s]
        a = _alphabet(w, kind)
        for i in range(values.shape[1]):
            v = values[s, i]
            if kind == GAP:
                sym = 0
                while (v >> sym) > 0:
                    sym += 1
                nraw = max(sym - 1, 0)
            else:
                nraw = max(w - MODEL_BITS, 0)
                sym = v >> nraw
            cum = 0
            for j in range(sym):
                cum += counts[s, j]
            low, rng, pos = _put(low, rng, out, pos, cum, counts[s, sym], totals[s])
            if pos < 0:
                return -1
            _update(counts, totals, s, sym, a)
            while nraw > 0:
                k = min(nraw, RAW_CHUNK)
                nraw -= k
                low, rng, pos = _put(low, rng, out, pos, (v >> nraw) & ((1 << k) - 1), 1, 1 << k)
                if pos < 0:
                    return -1
    for _ in range(4):
        if pos >= out.shape[0]:
            return -1
        out[pos] = low >> 24
        pos += 1
        low = (low << 8) & MASK
    return pos


@njit(cache=True, inline="always")
def _take(low, rng, code, data, pos, r, cum, freq):
    low = (low + r * cum) & MASK
    rng = r * freq
    r = _shift_range(low, rng)
    while r >= 0:
        b = data[pos] if pos < data.shape[0] else 0
        pos += 1
        code = ((code << 8) | b) & MASK
        low = (low << 8) & MASK
        rng = (r << 8) & MASK
        r = _shift_range(low, rng)
    return low, rng, code, pos


@njit(cache=True)
def decode(data, widths, kinds, counts, totals, values):
    """Fill values (S, n) from data; returns the bytes consumed (-1: ran past the end)."""
    pos = 0
    code = np.int64(0)
    for _ in range(4):
        b = data[pos] if pos < data.shape[0] else 0
        pos += 1
        code = (code << 8) | b
    low = np.int64(0)
    rng = np.int64(MASK)
    for s in range(values.shape[0]):
        w = widths[s]
        kind = kinds[s]
        a = _alphabet(w, kind)
        for i in range(values.shape[1]):
            tot = totals[s]
            r = rng // tot
            target = min(((code - low) & MASK) // r, tot - 1)
            sym = 0
            cum = 0
            while cum + counts[s, sym] <= target:
                cum += counts[s, sym]
                sym += 1
            low, rng, code, pos = _take(low, rng, code, data, pos, r, cum, counts[s, sym])
            _update(counts, totals, s, sym, a)
            if kind == GAP:
                nraw = max(sym - 1, 0)
                v = 1 if sym > 0 else 0
            else:
                nraw = max(w - MODEL_BITS, 0)
                v = sym
            while nraw > 0:
                k = min(nraw, RAW_CHUNK)
                nraw -= k
                r = rng // (1 << k)
                bits = min(((code - low) & MASK) // r, (1 << k) - 1)
                low, rng, code, pos = _take(low, rng, code, data, pos, r, bits, 1)
                v = (v << k) | bits
            values[s, i] = v
        if pos > data.shape[0]:
            return -1
    return pos if pos <= data.shape[0] else -1
