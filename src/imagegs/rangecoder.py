"""Adaptive range coding of the .igs streams (coder 4): what brotli could not exploit.

The streams of a level (``bitstream.level_streams``: Morton gaps, then one stream per attribute
column) hold small integers whose distributions are far from uniform but have no repeated
strings, so an LZ coder mostly pays table overhead: on a 0.3 bpp file (805 Gaussians, bits
11,6,6,6) brotli took 5681 bytes against 3925 for the streams' order-0 entropy. Here every
stream has its own adaptive frequency model (no model is stored; the decoder learns it as it
goes), carried from one level to the next, so the small later levels cost no re-learning:

- Morton gaps (kind ``GAP``): the bit length L of the gap with an adaptive model (alphabet
  W + 1 for W-bit gaps), then the L - 1 bits below its leading one, raw. Gaps of n random points
  are roughly geometric, so L carries their information and the rest is near-uniform.
- Columns (kind ``COLUMN``): the top min(W, 8) bits with an adaptive model (alphabet <= 256),
  the bits below raw (only columns wider than 8 bits have them).

The arithmetic is D. Subbotin's carry-less range coder (32-bit low and range, byte output,
totals <= 2^16). Models start at count 1 per symbol, add ``INC`` per occurrence and halve once
their total passes ``LIMIT``; no symbol may hold more than 15/16 of a model's total, so every
coded symbol costs at least log2(16/15) = 0.093 bits. That floor bounds how many Gaussians a
block of a given size can hold (:func:`max_values`), which the file reader checks before it
allocates anything.

``encode`` / ``decode`` run the Numba kernels in ``_range_kernels``; ``encode_reference`` /
``decode_reference`` are their plain-Python twins (same bytes, tested), readable as the spec.
"""

from __future__ import annotations

import math

import numpy as np

from . import _range_kernels as K

__all__ = ["GAP", "COLUMN", "Models", "encode", "decode", "encode_reference", "decode_reference",
           "max_values", "RangeCoderError", "MIN_SYMBOL_BITS"]

# The coder's constants live with the Numba kernels: Numba's cache is keyed on the kernel file,
# so a constant changed anywhere else would leave stale compiled kernels behind.
from ._range_kernels import BOT, CAP_DEN, CAP_NUM, COLUMN, GAP, INC, LIMIT, MASK, MODEL_BITS, RAW_CHUNK, TOP

MIN_SYMBOL_BITS = math.log2(CAP_DEN / CAP_NUM)


class RangeCoderError(ValueError):
    """A block does not decode cleanly (wrong length, corrupt, or inconsistent with its header)."""


def alphabet(width: int, kind: int) -> int:
    """Symbols of the adaptive model of a stream of ``width``-bit values of this kind."""
    return width + 1 if kind == GAP else 1 << min(width, MODEL_BITS)


class Models:
    """The adaptive models of a file's streams, carried across its levels (encoder and decoder
    each keep one and update it identically)."""

    def __init__(self, widths: list[int], kinds: list[int]):
        if any(not 1 <= w <= 32 for w in widths):
            raise ValueError(f"stream widths must be 1..32 bits, got {widths}")
        self.widths = np.asarray(widths, np.int64)
        self.kinds = np.asarray(kinds, np.int64)
        self.counts = np.zeros((len(widths), 256), np.int64)
        self.totals = np.zeros(len(widths), np.int64)
        for s, (w, k) in enumerate(zip(widths, kinds)):
            a = alphabet(w, k)
            self.counts[s, :a] = 1
            self.totals[s] = a

    def copy(self) -> "Models":
        m = Models.__new__(Models)
        m.widths, m.kinds = self.widths, self.kinds
        m.counts, m.totals = self.counts.copy(), self.totals.copy()
        return m


def max_values(size: int) -> int:
    """The most values a block of ``size`` bytes can code (each costs >= MIN_SYMBOL_BITS)."""
    return int((size + 8) * 8 / MIN_SYMBOL_BITS) + 1


def _capacity(n: int, widths: np.ndarray) -> int:
    # A modelled symbol costs <= 16 bits (p >= 1 / 2^16), a raw chunk its bits, plus carry-less
    # losses (< 1 byte per forced flush, at most one per symbol): 8 bytes per value is ample.
    return 16 + 8 * n * len(widths)


def encode(values: np.ndarray, models: Models) -> bytes:
    """Code ``values`` (S, n) int64 (row s: stream s, 0 <= v < 2^width_s), updating ``models``."""
    values = np.ascontiguousarray(values, np.int64)
    if values.shape[0] != len(models.widths):
        raise ValueError(f"{values.shape[0]} streams for {len(models.widths)} models")
    if values.size and (values.min() < 0 or (values.max(axis=1) >> models.widths).any()):
        raise ValueError("stream values out of range for their widths")
    out = np.empty(_capacity(values.shape[1], models.widths), np.uint8)
    size = K.encode(values, models.widths, models.kinds, models.counts, models.totals, out)
    return out[:size].tobytes()


def decode(data: bytes, n: int, models: Models) -> np.ndarray:
    """Inverse of :func:`encode`: (S, n) values; raises RangeCoderError unless the block decodes
    to exactly its own length."""
    if len(models.widths) * n > max_values(len(data)):
        raise RangeCoderError(f"{n} Gaussians cannot fit in {len(data)} bytes")
    values = np.empty((len(models.widths), n), np.int64)
    used = K.decode(np.frombuffer(data, np.uint8), models.widths, models.kinds, models.counts,
                    models.totals, values)
    if used != len(data):
        raise RangeCoderError(f"block decodes to {'more' if used < 0 else used} of its {len(data)} bytes")
    return values


# -- plain-Python twin (the spec; tests check the kernels against it) ------------------------------

def _shift_range(low: int, rng: int) -> int:
    """Plain twin of the kernels' ``_shift_range`` (the carry-less renormalisation rule)."""
    if (low ^ ((low + rng) & MASK)) < TOP:
        return rng
    if rng < BOT:
        return -low & (BOT - 1)
    return -1


def _update(counts: np.ndarray, totals: np.ndarray, s: int, sym: int, a: int) -> None:
    c, t = int(counts[s, sym]), int(totals[s])
    if (c + INC) * CAP_DEN <= CAP_NUM * (t + INC):
        counts[s, sym] = c + INC
        t += INC
        if t > LIMIT:
            counts[s, :a] = (counts[s, :a] + 1) >> 1
            t = int(counts[s, :a].sum())
        totals[s] = t


def _split(v: int, width: int, kind: int) -> tuple[int, list[tuple[int, int]]]:
    """The modelled symbol of a value and its raw part as [(bits value, bit count), ...] chunks."""
    if kind == GAP:
        sym, nraw, raw = v.bit_length(), max(v.bit_length() - 1, 0), v
    else:
        nraw = max(width - MODEL_BITS, 0)
        sym, raw = v >> nraw, v
    chunks = []
    while nraw > 0:
        k = min(nraw, RAW_CHUNK)
        nraw -= k
        chunks.append(((raw >> nraw) & ((1 << k) - 1), k))
    return sym, chunks


def encode_reference(values: np.ndarray, models: Models) -> bytes:
    """Plain-Python :func:`encode` (same bytes, same model updates)."""
    out = bytearray()
    low, rng = 0, MASK

    def put(cum: int, freq: int, tot: int) -> None:
        nonlocal low, rng
        r = rng // tot
        low = (low + r * cum) & MASK
        rng = r * freq
        while (r := _shift_range(low, rng)) >= 0:
            out.append(low >> 24)
            low = (low << 8) & MASK
            rng = (r << 8) & MASK

    for s in range(values.shape[0]):
        w, kind = int(models.widths[s]), int(models.kinds[s])
        a = alphabet(w, kind)
        for v in values[s]:
            sym, chunks = _split(int(v), w, kind)
            cnt = models.counts[s]
            put(int(cnt[:sym].sum()), int(cnt[sym]), int(models.totals[s]))
            _update(models.counts, models.totals, s, sym, a)
            for bits, k in chunks:
                put(bits, 1, 1 << k)
    for _ in range(4):
        out.append(low >> 24)
        low = (low << 8) & MASK
    return bytes(out)


def decode_reference(data: bytes, n: int, models: Models) -> np.ndarray:
    """Plain-Python :func:`decode`."""
    pos = 0

    def byte() -> int:
        nonlocal pos
        pos += 1
        return data[pos - 1] if pos <= len(data) else 0

    code = 0
    for _ in range(4):
        code = (code << 8) | byte()
    low, rng = 0, MASK

    def get(tot: int) -> tuple[int, int]:
        r = rng // tot
        return min(((code - low) & MASK) // r, tot - 1), r

    def take(r: int, cum: int, freq: int) -> None:
        nonlocal low, rng, code
        low = (low + r * cum) & MASK
        rng = r * freq
        while (r := _shift_range(low, rng)) >= 0:
            code = ((code << 8) | byte()) & MASK
            low = (low << 8) & MASK
            rng = (r << 8) & MASK

    values = np.empty((len(models.widths), n), np.int64)
    for s in range(len(models.widths)):
        w, kind = int(models.widths[s]), int(models.kinds[s])
        a = alphabet(w, kind)
        for i in range(n):
            cnt = models.counts[s]
            target, r = get(int(models.totals[s]))
            sym, cum = 0, 0
            while cum + int(cnt[sym]) <= target:
                cum += int(cnt[sym])
                sym += 1
            take(r, cum, int(cnt[sym]))
            _update(models.counts, models.totals, s, sym, a)
            nraw = max(sym - 1, 0) if kind == GAP else max(w - MODEL_BITS, 0)
            v = (1 if sym else 0) if kind == GAP else sym
            while nraw > 0:
                k = min(nraw, RAW_CHUNK)
                nraw -= k
                bits, r = get(1 << k)
                take(r, bits, 1)
                v = (v << k) | bits
            values[s, i] = v
    if pos != len(data):
        raise RangeCoderError(f"block decodes to {pos} of its {len(data)} bytes")
    return values
