"""The adaptive range coder (coder 4): kernels against the plain-Python twin, round trips, and
refusal of corrupt or inconsistent blocks."""

import numpy as np
import pytest

from imagegs import bitstream, igsfile, rangecoder as R
from imagegs.quantize import Bits, QuantizedGaussians


def _streams(rng, widths, kinds, n):
    rows = []
    for w, k in zip(widths, kinds):
        if k == R.GAP:
            rows.append(np.minimum(rng.geometric(0.003, n), 2**w - 1))
        else:
            rows.append(np.clip(rng.normal(2 ** (w - 1), 2 ** (w - 3), n).astype(np.int64), 0, 2**w - 1))
    v = np.stack(rows)
    v[-1, : n // 3] = 1  # a run the model must adapt to
    return v


CASES = [([22, 6, 6, 6, 7, 7, 7], 400), ([32, 16, 16, 9, 17], 150), ([8, 4, 4, 4], 60), ([2, 1], 1)]


@pytest.mark.parametrize("widths,n", CASES)
def test_kernels_match_reference(widths, n):
    rng = np.random.default_rng(len(widths) * n)
    kinds = [R.GAP] + [R.COLUMN] * (len(widths) - 1)
    v = _streams(rng, widths, kinds, n)
    m_ref, m_fast = R.Models(widths, kinds), R.Models(widths, kinds)
    data = R.encode_reference(v, m_ref)
    assert R.encode(v, m_fast) == data
    assert (m_ref.counts == m_fast.counts).all() and (m_ref.totals == m_fast.totals).all()
    assert (R.decode(data, n, R.Models(widths, kinds)) == v).all()
    assert (R.decode_reference(data, n, R.Models(widths, kinds)) == v).all()


def test_models_carry_across_blocks():
    """Levels share models: the second block decodes only with the state the first one left."""
    rng = np.random.default_rng(3)
    widths, kinds = [20, 6, 6], [R.GAP, R.COLUMN, R.COLUMN]
    a, b = _streams(rng, widths, kinds, 300), _streams(rng, widths, kinds, 100)
    enc = R.Models(widths, kinds)
    da, db = R.encode(a, enc), R.encode(b, enc)
    dec = R.Models(widths, kinds)
    assert (R.decode(da, 300, dec) == a).all() and (R.decode(db, 100, dec) == b).all()
    assert len(db) < len(R.encode(b, R.Models(widths, kinds)))  # the learnt models pay off
    try:  # with fresh models the second block is garbage (or refused), never the data
        assert not (R.decode(db, 100, R.Models(widths, kinds)) == b).all()
    except R.RangeCoderError:
        pass


def test_skewed_streams_compress_near_their_entropy():
    rng = np.random.default_rng(4)
    p = np.array([0.5, 0.25, 0.125, 0.0625] + [0.0625 / 60] * 60)
    v = rng.choice(64, size=(1, 20000), p=p)
    data = R.encode(v, R.Models([6], [R.COLUMN]))
    entropy = -(p * np.log2(p)).sum() * v.size / 8
    assert entropy < len(data) < 1.03 * entropy + 64


def test_corrupt_and_inconsistent_blocks_are_refused():
    rng = np.random.default_rng(5)
    widths, kinds = [22, 6, 6, 6], [R.GAP, R.COLUMN, R.COLUMN, R.COLUMN]
    v = _streams(rng, widths, kinds, 500)
    data = R.encode(v, R.Models(widths, kinds))
    for bad, n in [(data[:-1], 500), (data + b"\0", 500), (data, 501), (data[: len(data) // 2], 500)]:
        with pytest.raises(R.RangeCoderError):
            R.decode(bad, n, R.Models(widths, kinds))
    # a tiny block cannot claim millions of values (checked before anything is allocated)
    with pytest.raises(R.RangeCoderError, match="cannot fit"):
        R.decode(b"\0" * 10, 10**7, R.Models(widths, kinds))
    flipped = bytearray(data)
    flipped[len(data) // 3] ^= 0x40
    try:
        out = R.decode(bytes(flipped), 500, R.Models(widths, kinds))
    except R.RangeCoderError:
        return
    assert not (out == v).all()  # garbage, never a crash or hang (the file's CRC catches it)


def test_every_symbol_costs_the_floor():
    """No model gives a symbol more than 15/16: the bound the file reader relies on."""
    v = np.zeros((2, 50000), np.int64)
    data = R.encode(v, R.Models([8, 6], [R.GAP, R.COLUMN]))
    assert len(data) * 8 >= v.size * R.MIN_SYMBOL_BITS - 32
    assert v.size <= R.max_values(len(data))


def test_range_files_are_smaller_and_old_coders_still_read():
    rng = np.random.default_rng(6)
    n, bits = 900, Bits(11, 6, 6, 6)
    pos = rng.integers(0, 2**11, (n, 2))
    col = np.clip(rng.normal(40, 6, (n, 3)), 0, 63).astype(np.int64)
    q = QuantizedGaussians(pos=pos, log_scale=np.clip(rng.normal(30, 5, (n, 2)), 0, 63).astype(np.int64),
                           rot=rng.integers(0, 64, n), color=col,
                           pos_range=np.array([[0, 1], [0, 1]], np.float32),
                           scale_range=np.array([[0, 3], [0, 3]], np.float32),
                           color_range=np.array([[0, 1]] * 3, np.float32), bits=bits, height=300, width=400)
    levels = [450, 150, 150, 150]
    sizes = {}
    for coder in sorted(bitstream.CODER_NAMES):
        data, order = igsfile.pack(q, levels, coder=coder)
        sizes[coder] = len(data)
        for lod in (2, 4):
            back, h = igsfile.unpack(data, lod=lod)
            k = sum(levels[:lod])
            assert h.coder == coder and (back.pos == q.pos[order][:k]).all()
            assert (back.color == q.color[order][:k]).all()
    assert sizes[bitstream.RANGE] < 0.93 * sizes[1]  # brotli
