"""The .igs file: round trips, level-of-detail prefixes, and never trusting the bytes."""

import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import random_gaussians
from imagegs import igsfile
from imagegs.igsfile import IGSFileError, pack, read_header, unpack
from imagegs.quantize import Bits, quantize


def _model(n=300, channels=3, bits=(12, 8, 7, 9), seed=0, **kw):
    g = random_gaussians(n, 48, 80, channels=channels, seed=seed, dtype=torch.float32, **kw)
    return quantize(g, Bits(*bits))


def _same(a, b):
    for name in ("pos", "log_scale", "rot", "color"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    for name in ("pos_range", "scale_range", "color_range"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name


@pytest.mark.parametrize("channels", [1, 3, 9])
@pytest.mark.parametrize("levels", [[300], [150, 50, 50, 50]])
def test_round_trip(channels, levels):
    q = _model(channels=channels)
    data, order = pack(q, levels, top_k=7, metadata={"bit_depths": [16]})
    q2, h = unpack(data)
    _same(q.take(order), q2)
    assert (h.width, h.height, h.channels, h.top_k, h.levels) == (80, 48, channels, 7, levels)
    assert h.metadata == {"bit_depths": [16]} and q2.bits == q.bits
    assert sum(h.block_bytes) + h.header_bytes == len(data)
    for i in range(len(levels)):  # every level is a permutation of the same Gaussians
        s = slice(sum(levels[:i]), sum(levels[:i + 1]))
        assert sorted(order[s]) == list(range(s.start, s.stop))


def test_names_groups_and_plain_sum():
    q = _model(channels=4)
    q.channel_names = ("albedo.R", "albedo.G", "albedo.B", "gloss.L")
    q.groups = [("albedo", 3), ("gloss", 1)]
    data, _ = pack(q, [100, 200], top_k=None)
    q2, h = unpack(data)
    assert q2.channel_names == q.channel_names and q2.groups == q.groups and h.top_k is None


def test_lod_prefix_decodes_alone():
    q = _model()
    data, order = pack(q, [100, 100, 100])
    q_all, h = unpack(data)
    cut = h.header_bytes + sum(h.block_bytes[:2])
    q2, _ = unpack(data[:cut], lod=2)
    _same(q_all.take(np.arange(200)), q2)
    with pytest.raises(IGSFileError, match="2 of 3 levels complete; decode with lod <= 2"):
        unpack(data[:cut])
    with pytest.raises(IGSFileError, match="level of detail must be 1..3"):
        unpack(data, lod=4)
    assert read_header(data[:cut]).block_bytes == h.block_bytes[:2]


def test_empty_levels_and_bad_levels_rejected_on_write():
    q = _model(n=10)
    for levels in ([5, 4], [10, 0], []):
        with pytest.raises(ValueError):
            pack(q, levels)


def test_wrong_magic_version_crc_and_trailing():
    data, _ = pack(_model(), [300])
    with pytest.raises(IGSFileError, match="magic"):
        unpack(b"\x89PNG\r\n\x1a\n" + data[8:])
    with pytest.raises(IGSFileError, match="version 3"):
        unpack(data[:8] + b"\x03" + data[9:])
    bad = bytearray(data)
    bad[12] ^= 0x40  # inside the header
    with pytest.raises(IGSFileError, match="CRC"):
        unpack(bytes(bad))
    bad = bytearray(data)
    bad[-3] ^= 0x01  # inside the block
    with pytest.raises(IGSFileError, match="CRC"):
        unpack(bytes(bad))
    with pytest.raises(IGSFileError, match="unexpected bytes"):
        unpack(data + b"\0")
    with pytest.raises(IGSFileError):
        unpack(b"")


def _rebuild(fields: list[tuple[int, bytes]], blocks: bytes = b"") -> bytes:
    head = b"".join(igsfile._varint(f) + igsfile._varint(len(b)) + b for f, b in fields)
    return (igsfile.MAGIC + bytes([igsfile.VERSION]) + igsfile._varint(len(head)) + head
            + struct.pack("<I", zlib.crc32(head)) + blocks)


def _fields(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    r = igsfile._Reader(data, len(igsfile.MAGIC) + 1)
    n = r.varint()
    hr = igsfile._Reader(r.take(n))
    out = []
    while not hr.done():
        f = hr.varint()
        out.append((f, hr.take(hr.varint())))
    r.take(4)
    return out, data[r.pos:]


@pytest.mark.parametrize("fid, value, match", [
    (igsfile.F_WIDTH, igsfile._varint(0), "width"),
    (igsfile.F_HEIGHT, igsfile._varint(2**21), "height"),
    (igsfile.F_CHANNELS, igsfile._varint(5000), "channel count"),
    (igsfile.F_BITS, bytes([12, 8, 3, 9]), "bit depths"),
    (igsfile.F_BITS, bytes([12, 8, 9]), "bit depths"),
    (igsfile.F_TOPK, igsfile._varint(65), "top-K"),
    (igsfile.F_CODER, igsfile._varint(9), "coder"),
    (igsfile.F_LEVELS, igsfile._varint(1) + igsfile._varint(2**25), "limit|level"),
    (igsfile.F_LEVELS, igsfile._varint(2) + igsfile._varint(0) + igsfile._varint(300), "level sizes"),
    (igsfile.F_RANGES, b"\0" * 12, "ranges field"),
    (igsfile.F_PREDICTORS, bytes([0, 5, 0, 0, 0, 0]), "predictors"),
    (igsfile.F_METADATA, b"[1]", "JSON object"),
    (igsfile.F_METADATA, b"\xff", "corrupt text"),
    (igsfile.F_CHANNEL_NAMES, b"a\0b", "channel names"),
])
def test_bad_fields(fid, value, match):
    data, _ = pack(_model(), [300])
    fields, blocks = _fields(data)
    fields = [(f, value if f == fid else b) for f, b in fields]
    if fid not in [f for f, _ in fields]:
        fields.append((fid, value))
    with pytest.raises(IGSFileError, match=match):
        unpack(_rebuild(fields, blocks))


def test_missing_unknown_duplicate_fields():
    data, _ = pack(_model(), [300])
    fields, blocks = _fields(data)
    with pytest.raises(IGSFileError, match="lacks"):
        unpack(_rebuild(fields[1:], blocks))
    with pytest.raises(IGSFileError, match="unknown header field 99"):
        unpack(_rebuild(fields + [(99, b"")], blocks))
    with pytest.raises(IGSFileError, match="twice"):
        unpack(_rebuild(fields + fields[:1], blocks))


def test_inconsistent_count_is_caught_before_allocating():
    data, _ = pack(_model(), [300])
    fields, blocks = _fields(data)
    fields = [(f, igsfile._varint(1) + igsfile._varint(2**24) if f == igsfile.F_LEVELS else b) for f, b in fields]
    with pytest.raises(IGSFileError, match="inconsistent"):
        unpack(_rebuild(fields, blocks))


def test_every_truncation_fails_cleanly():
    data, _ = pack(_model(n=40), [20, 20])
    for cut in range(len(data)):
        with pytest.raises(IGSFileError):
            unpack(data[:cut])


_VALID, _ = pack(_model(n=60, bits=(10, 6, 5, 6)), [30, 15, 15])
_FUZZ = settings(max_examples=300, deadline=3000, suppress_health_check=[HealthCheck.too_slow])


@_FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(1, 255)), min_size=1, max_size=6),
       cut=st.integers(0, len(_VALID)))
def test_fuzz_byte_flips_and_cuts(flips, cut):
    data = bytearray(_VALID)
    for i, x in flips:
        data[i] ^= x
    data = bytes(data[:cut]) if cut < len(_VALID) else bytes(data)
    try:
        q, h = unpack(data)
    except IGSFileError:
        return
    assert q.num == h.num <= igsfile.MAX_GAUSSIANS  # a flip the CRCs cannot see still decodes sanely


@_FUZZ
@given(rest=st.binary(max_size=400))
def test_fuzz_valid_magic_random_rest(rest):
    with pytest.raises(IGSFileError):
        unpack(igsfile.MAGIC + bytes([igsfile.VERSION]) + rest)


@_FUZZ
@given(fields=st.lists(st.tuples(st.integers(1, 12), st.binary(max_size=40)), max_size=12),
       blocks=st.binary(max_size=100))
def test_fuzz_structured_headers(fields, blocks):
    try:
        q, h = unpack(_rebuild(fields, blocks))
    except IGSFileError:
        return
    assert q.num == h.num
