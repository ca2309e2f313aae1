"""Lossless coding of one level of quantised Gaussians into bytes (the .igs payload blocks).

What the codes look like decides the transform, and an adaptive range coder (coder 4, the
format's coder, :mod:`imagegs.rangecoder`) does the entropy coding. The byte coders the format
started with (brotli, then lzma and zstd as measured alternatives) are still read, and written on
request (``igsfile.pack(..., coder=)``); ``benchmarks/igs_coding.py`` compares them all on fitted models:

1. Positions: the Gaussians of a level are put in Morton (Z-curve) order of their position codes,
   which costs nothing (the blend does not depend on order within the set) and turns two b-bit
   coordinates into the gaps between consecutive 2b-bit Morton codes, ~log2(area / N) + 1.5 bits
   instead of 2b.
2. Other columns (log-scales, rotation, colours): each column may be coded as its difference to an
   earlier column of the same attribute (G - R, B - G, minor - major scale ...); the encoder picks,
   per column, the predictor with the lowest order-0 cost and the choice is stored in the header.
3. Entropy coding. The default (coder 4, :mod:`imagegs.rangecoder`) codes the streams with
   adaptive models carried from level to level: the Morton gaps by their bit length, each column
   by its top 8 bits. The older byte coders (brotli, lzma, zstd; still read) split every column
   into byte planes, the first holding its top 8 bits, and compress each level on its own. On
   0.3 bpp files brotli paid table and framing overhead that the range coder does not (see
   ``rangecoder``); at 16 bits the two are within a few percent (``benchmarks/igs_coding.py``).

The decoder is told how many Gaussians a block holds and how many bytes it must expand to, and
refuses anything else: corrupt input is an error, never a runaway allocation.
"""

from __future__ import annotations

import lzma

import numpy as np

from . import rangecoder

__all__ = ["CODERS", "RANGE", "CODER_NAMES", "DEFAULT_CODER", "new_models", "plausible", "morton_encode", "morton_decode", "choose_predictors",
           "byte_planes", "level_streams", "encode_level", "decode_level", "raw_size", "BitstreamError"]


class BitstreamError(ValueError):
    """A payload block does not decode to what its header announces."""


def _brotli():
    import brotli

    return brotli


def _zstd():
    import zstandard

    return zstandard


def _brotli_compress(raw: bytes) -> bytes:
    return _brotli().compress(raw, quality=11, lgwin=24)


def _brotli_decompress(data: bytes, size: int) -> bytes:
    brotli = _brotli()
    d = brotli.Decompressor()
    try:
        out = d.process(data, output_buffer_limit=size + 1)
    except brotli.error as e:
        raise BitstreamError(f"corrupt payload ({e})") from None
    if len(out) != size or not d.is_finished():
        raise BitstreamError(f"payload expands to {'more than ' if len(out) > size else ''}"
                             f"{len(out)} bytes, expected {size}")
    return out


_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME}]


def _lzma_compress(raw: bytes) -> bytes:
    return lzma.compress(raw, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)


def _lzma_decompress(data: bytes, size: int) -> bytes:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)
    try:
        out = d.decompress(data, max_length=size + 1)
    except lzma.LZMAError as e:
        raise BitstreamError(f"corrupt payload ({e})") from None
    if len(out) != size:
        raise BitstreamError(f"payload expands to {len(out)} bytes, expected {size}")
    return out


def _zstd_compress(raw: bytes) -> bytes:
    return _zstd().ZstdCompressor(level=22).compress(raw)


def _zstd_decompress(data: bytes, size: int) -> bytes:
    zstd = _zstd()
    try:
        out = zstd.ZstdDecompressor().decompress(data, max_output_size=size + 1)
    except zstd.ZstdError as e:
        raise BitstreamError(f"corrupt payload ({e})") from None
    if len(out) != size:
        raise BitstreamError(f"payload expands to {len(out)} bytes, expected {size}")
    return out


# Fixed ids (stored in files; never renumber). The byte coders compress a level's byte planes;
# RANGE codes its streams directly with models shared across levels. Only DEFAULT_CODER is
# written by default; the others stay readable (1 was the default of the first files).
CODERS: dict[int, tuple[str, object, object]] = {
    1: ("brotli", _brotli_compress, _brotli_decompress),
    2: ("lzma", _lzma_compress, _lzma_decompress),
    3: ("zstd", _zstd_compress, _zstd_decompress),
}
RANGE = 4
CODER_NAMES = {**{cid: name for cid, (name, _, _) in CODERS.items()}, RANGE: "range"}
DEFAULT_CODER = RANGE


def morton_encode(x: np.ndarray, y: np.ndarray, bits: int) -> np.ndarray:
    """Interleave the ``bits`` low bits of x (even positions) and y (odd positions) -> int64."""
    m = np.zeros(x.shape, np.int64)
    x, y = x.astype(np.int64), y.astype(np.int64)
    for i in range(bits):
        m |= ((x >> i) & 1) << (2 * i) | ((y >> i) & 1) << (2 * i + 1)
    return m


def morton_decode(m: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`morton_encode`."""
    x = np.zeros(m.shape, np.int64)
    y = np.zeros(m.shape, np.int64)
    for i in range(bits):
        x |= ((m >> (2 * i)) & 1) << i
        y |= ((m >> (2 * i + 1)) & 1) << i
    return x, y


def byte_planes(v: np.ndarray, width: int) -> bytes:
    """Byte planes of non-negative ints < 2^width, MSB-aligned: plane 0 holds the top 8 bits."""
    nb = (width + 7) // 8
    v = v.astype(np.int64) << (8 * nb - width)
    return b"".join(((v >> (8 * (nb - 1 - i))) & 255).astype(np.uint8).tobytes() for i in range(nb))


def _from_planes(raw: bytes, n: int, width: int) -> np.ndarray:
    nb = (width + 7) // 8
    a = np.frombuffer(raw, np.uint8).reshape(nb, n).astype(np.int64)
    v = np.zeros(n, np.int64)
    for i in range(nb):
        v = (v << 8) | a[i]
    return v >> (8 * nb - width)


def _order0_cost(v: np.ndarray, width: int) -> float:
    """Bits to code v with a static order-0 model of its top 8 bits and raw low bits (an estimate)."""
    if v.size == 0:
        return 0.0
    shift = max(width - 8, 0)
    _, counts = np.unique(v >> shift, return_counts=True)
    p = counts / v.size
    return float(-(counts * np.log2(p)).sum() + shift * v.size)


def choose_predictors(columns: list[np.ndarray], bits: list[int], groups: list[int]) -> list[int]:
    """For each column, -1 (code as is) or the index of an earlier column of the same group whose
    difference is cheapest to code (columns: (N,) codes; bits: their widths; groups: attribute ids)."""
    preds = []
    for i, (v, b, grp) in enumerate(zip(columns, bits, groups)):
        best, best_cost = -1, _order0_cost(v, b)
        for j in range(i):
            if groups[j] != grp or bits[j] != b:
                continue
            c = _order0_cost(v - columns[j] + (1 << b) - 1, b + 1)
            if c < best_cost:
                best, best_cost = j, c
        preds.append(best)
    return preds


def _residual_width(bits: int, pred: int) -> int:
    return bits + 1 if pred >= 0 else bits


def raw_size(n: int, pos_bits: int, bits: list[int], preds: list[int]) -> int:
    """Bytes a level of n Gaussians expands to before compression."""
    return n * sum((w + 7) // 8 for w in _widths(pos_bits, bits, preds))


def _widths(pos_bits: int, bits: list[int], preds: list[int]) -> list[int]:
    return [2 * pos_bits] + [_residual_width(b, p) for b, p in zip(bits, preds)]


def new_models(coder: int, *, pos_bits: int, bits: list[int], preds: list[int]) -> rangecoder.Models | None:
    """Fresh adaptive models for a file's levels (RANGE), or None (byte coders keep no state)."""
    if coder != RANGE:
        return None
    widths = _widths(pos_bits, bits, preds)
    return rangecoder.Models(widths, [rangecoder.GAP] + [rangecoder.COLUMN] * (len(widths) - 1))


def plausible(n: int, size: int, *, pos_bits: int, bits: list[int], preds: list[int], coder: int) -> bool:
    """Whether a block of ``size`` bytes can hold n Gaussians (checked before anything is allocated)."""
    if coder == RANGE:
        return n * (1 + len(bits)) <= rangecoder.max_values(size)
    return raw_size(n, pos_bits, bits, preds) <= MAX_EXPANSION * size + 4096


MAX_EXPANSION = 64  # a byte coder's block may expand at most this many times (+4 KiB)


def level_streams(pos: np.ndarray, columns: list[np.ndarray], *, pos_bits: int, bits: list[int],
                  preds: list[int]) -> tuple[list[tuple[np.ndarray, int]], np.ndarray]:
    """What a level block stores, before byte planes and compression.

    pos: (n, 2) position codes; columns: the other columns, each (n,) codes of ``bits`` bits,
    coded against ``preds``. Returns ``[(values (n,), width), ...]`` (the Morton gaps first,
    2 pos_bits wide, then one stream per column) and the order (n,) in which the Gaussians are
    stored (Morton order of their positions).
    """
    morton = morton_encode(pos[:, 0], pos[:, 1], pos_bits)
    order = np.argsort(morton, kind="stable")
    m = morton[order]
    streams = [(np.diff(m, prepend=np.int64(0)), 2 * pos_bits)]
    cols = [c[order].astype(np.int64) for c in columns]
    for v, b, p in zip(cols, bits, preds):
        streams.append((v - cols[p] + (1 << b) - 1 if p >= 0 else v, _residual_width(b, p)))
    return streams, order


def encode_level(pos: np.ndarray, columns: list[np.ndarray], *, pos_bits: int, bits: list[int],
                 preds: list[int], coder: int = DEFAULT_CODER, models: rangecoder.Models | None = None
                 ) -> tuple[bytes, np.ndarray]:
    """Code one level: pos (n, 2) codes and the other columns (each (n,)).

    ``models``: for RANGE, the models left by the file's previous levels (updated in place; None
    starts fresh ones). Returns the compressed block and the order (n,) in which the Gaussians
    were stored (Morton order of their positions), so the caller can keep its own arrays in the
    decoder's order.
    """
    streams, order = level_streams(pos, columns, pos_bits=pos_bits, bits=bits, preds=preds)
    if coder == RANGE:
        if models is None:
            models = new_models(coder, pos_bits=pos_bits, bits=bits, preds=preds)
        values = np.stack([v for v, _ in streams]) if streams[0][0].size else np.zeros((len(streams), 0), np.int64)
        return rangecoder.encode(values, models), order
    return CODERS[coder][1](b"".join(byte_planes(v, w) for v, w in streams)), order


def _decode_streams(data: bytes, n: int, widths: list[int], coder: int,
                    models: rangecoder.Models | None) -> list[np.ndarray]:
    if coder == RANGE:
        if models is None:
            models = rangecoder.Models(widths, [rangecoder.GAP] + [rangecoder.COLUMN] * (len(widths) - 1))
        try:
            return list(rangecoder.decode(data, n, models))
        except rangecoder.RangeCoderError as e:
            raise BitstreamError(str(e)) from None
    if coder not in CODERS:
        raise BitstreamError(f"unknown entropy coder id {coder}")
    raw = CODERS[coder][2](data, n * sum((w + 7) // 8 for w in widths))
    out, off = [], 0
    for w in widths:
        nb = n * ((w + 7) // 8)
        out.append(_from_planes(raw[off:off + nb], n, w))
        off += nb
    return out


def decode_level(data: bytes, n: int, *, pos_bits: int, bits: list[int], preds: list[int],
                 coder: int = DEFAULT_CODER, models: rangecoder.Models | None = None
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Inverse of :func:`encode_level`: (pos (n, 2), columns) in stored order. Validates ranges.
    ``models``: as in :func:`encode_level` (the decoder's own copy, updated in place)."""
    streams = _decode_streams(data, n, _widths(pos_bits, bits, preds), coder, models)
    m = np.cumsum(streams[0])
    if n and (m[-1] >= (1 << (2 * pos_bits))):
        raise BitstreamError("position codes out of range")
    x, y = morton_decode(m, pos_bits)
    cols: list[np.ndarray] = []
    for v, b, p in zip(streams[1:], bits, preds):
        if p >= 0:
            v = v + cols[p] - ((1 << b) - 1)
        if n and (v.min() < 0 or v.max() >= (1 << b)):
            raise BitstreamError("attribute codes out of range")
        cols.append(v)
    return np.stack([x, y], axis=1), cols
