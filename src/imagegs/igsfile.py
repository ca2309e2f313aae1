"""The .igs file: quantised Gaussians, entropy coded, ordered by level of detail (spec: docs/format.md).

``pack`` turns :class:`~imagegs.quantize.QuantizedGaussians` plus level sizes into bytes;
``unpack`` reads them back, optionally only the first ``lod`` levels (a prefix of the file is
enough for that). ``unpack`` never trusts its input: every field is range-checked against the
format's limits and against the others before anything is allocated, each block carries a CRC-32,
and a block may not expand to more than it announces. Every failure is an :class:`IGSFileError`.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np

from . import bitstream
from .defaults import DEFAULT_TOP_K, MAX_TOP_K, check_top_k
from .quantize import MAX_BITS, MIN_BITS, Bits, QuantizedGaussians

__all__ = ["IGSFileError", "IGSHeader", "MAGIC", "VERSION", "pack", "unpack", "read_header", "columns",
           "column_layout"]

MAGIC = b"\x89IGS\r\n\x1a\n"  # PNG-style: non-ASCII first byte, CR-LF and ^Z catch text-mode mangling
VERSION = 2  # the newest version this module reads and writes (see WRITTEN_VERSION)
READABLE_VERSIONS = (1, 2)  # 2 = 1 + the map-kinds field 13; files without that field stay version 1

# Field ids (fixed forever; see docs/format.md).
F_WIDTH, F_HEIGHT, F_CHANNELS, F_BITS, F_TOPK, F_CODER, F_LEVELS, F_RANGES, F_PREDICTORS = range(1, 10)
F_CHANNEL_NAMES, F_GROUPS, F_METADATA = 10, 11, 12
F_MAP_KINDS = 13  # version 2
_REQUIRED = (F_WIDTH, F_HEIGHT, F_CHANNELS, F_BITS, F_TOPK, F_CODER, F_LEVELS, F_RANGES, F_PREDICTORS)
_KNOWN = {1: set(_REQUIRED) | {F_CHANNEL_NAMES, F_GROUPS, F_METADATA}}
_KNOWN[2] = _KNOWN[1] | {F_MAP_KINDS}
# Map kind codes of field 13, one byte per channel group (texture map), and the channels each needs.
KIND_CODES = ("colour", "normal", "scalar")
_KIND_CHANNELS = {"normal": 3, "scalar": 1}

MAX_SIDE = 2**20
MAX_CHANNELS = 1024
MAX_LEVELS = 64
MAX_GAUSSIANS = 2**24
MAX_HEADER = 2**20
_CRC = struct.Struct("<I")


class IGSFileError(ValueError):
    """Not a valid .igs file: wrong type, unsupported version, truncated, corrupt or inconsistent."""


@dataclass
class IGSHeader:
    """Everything before the payload blocks."""

    width: int
    height: int
    channels: int
    bits: Bits
    top_k: int | None
    coder: int
    levels: list[int]  # Gaussians per level, coarse to fine
    pos_range: np.ndarray  # (2, 2) float32
    scale_range: np.ndarray  # (2, 2)
    color_range: np.ndarray  # (C, 2)
    predictors: list[int]  # per non-position column (2 scale, rotation, C colour): -1 or earlier column
    channel_names: tuple[str, ...] | None = None
    groups: list[tuple[str, int]] | None = None
    metadata: dict = field(default_factory=dict)
    kinds: list[str] | None = None  # one of KIND_CODES per group (the whole image if no groups); None: colour
    header_bytes: int = 0  # size of magic + version + header + CRC in the file
    block_bytes: list[int] = field(default_factory=list)  # stored size of each level block (with framing)

    @property
    def num(self) -> int:
        return sum(self.levels)

    def column_bits(self) -> list[int]:
        return column_layout(self.bits, self.channels)[0]

    def column_groups(self) -> list[int]:
        return column_layout(self.bits, self.channels)[1]


def columns(q: QuantizedGaussians) -> list[np.ndarray]:
    """The non-position columns of a model in file order: scale major, minor, rotation, colours."""
    return [q.log_scale[:, 0], q.log_scale[:, 1], q.rot] + [q.color[:, c] for c in range(q.channels)]


def column_layout(bits: Bits, channels: int) -> tuple[list[int], list[int]]:
    """Bit depth and attribute group (0 scale, 1 rotation, 2 colour) of each of :func:`columns`."""
    return ([bits.scale, bits.scale, bits.rotation] + [bits.color] * channels,
            [0, 0, 1] + [2] * channels)


# -- varints ------------------------------------------------------------------------------------

def _varint(v: int) -> bytes:
    if v < 0:
        raise ValueError("varint of a negative number")
    out = bytearray()
    while True:
        byte = v & 0x7F
        v >>= 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


class _Reader:
    """Bounds-checked reads from a bytes object; every overrun is an IGSFileError."""

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None, what: str = "file"):
        self.data, self.pos, self.end, self.what = data, pos, len(data) if end is None else end, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise IGSFileError(f"truncated {self.what}: needs {n} more bytes at offset {self.pos}, "
                               f"{self.end - self.pos} left")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def varint(self, limit: int = 2**63) -> int:
        v = shift = 0
        while True:
            byte = self.take(1)[0]
            v |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
            shift += 7
            if shift > 63:
                raise IGSFileError(f"corrupt {self.what}: varint too long at offset {self.pos}")
        if v > limit:
            raise IGSFileError(f"corrupt {self.what}: value {v} exceeds the limit {limit}")
        return v

    def done(self) -> bool:
        return self.pos >= self.end


# -- writing ------------------------------------------------------------------------------------

def _field(fid: int, payload: bytes) -> bytes:
    return _varint(fid) + _varint(len(payload)) + payload


def _header_bytes(h: IGSHeader) -> bytes:
    f32 = lambda a: np.ascontiguousarray(a, dtype="<f4").tobytes()  # noqa: E731
    parts = [
        _field(F_WIDTH, _varint(h.width)), _field(F_HEIGHT, _varint(h.height)),
        _field(F_CHANNELS, _varint(h.channels)), _field(F_BITS, bytes(h.bits.as_tuple())),
        _field(F_TOPK, _varint(h.top_k or 0)), _field(F_CODER, _varint(h.coder)),
        _field(F_LEVELS, _varint(len(h.levels)) + b"".join(_varint(n) for n in h.levels)),
        _field(F_RANGES, f32(h.pos_range) + f32(h.scale_range) + f32(h.color_range)),
        _field(F_PREDICTORS, bytes(p + 1 for p in h.predictors)),
    ]
    if h.channel_names is not None:
        parts.append(_field(F_CHANNEL_NAMES, "\0".join(h.channel_names).encode()))
    if h.groups is not None:
        parts.append(_field(F_GROUPS, b"".join(n.encode() + b"\0" + _varint(c) for n, c in h.groups)))
    if h.metadata:
        parts.append(_field(F_METADATA, json.dumps(h.metadata, separators=(",", ":")).encode()))
    if h.kinds is not None:
        parts.append(_field(F_MAP_KINDS, bytes(KIND_CODES.index(k) for k in h.kinds)))
    return b"".join(parts)


def check_kinds(kinds, groups: list[tuple[str, int]] | None, channels: int) -> list[str] | None:
    """``kinds`` as a list, after checking it has one known kind per group (one for the whole
    image without groups) and that normal / scalar groups have 3 / 1 channels; None stays None."""
    if kinds is None:
        return None
    kinds = [str(k) for k in kinds]
    sizes = [c for _, c in groups] if groups else [channels]
    if len(kinds) != len(sizes) or any(k not in KIND_CODES for k in kinds):
        raise ValueError(f"map kinds {kinds} must be one of {KIND_CODES} per channel group ({len(sizes)})")
    for k, c in zip(kinds, sizes):
        if _KIND_CHANNELS.get(k, c) != c:
            raise ValueError(f"a {k} map has {_KIND_CHANNELS[k]} channel(s), not {c}")
    return kinds


def pack(q: QuantizedGaussians, levels: list[int], *, top_k: int | None = DEFAULT_TOP_K,
         coder: int = bitstream.DEFAULT_CODER, metadata: dict | None = None, kinds: list[str] | None = None
         ) -> tuple[bytes, np.ndarray]:
    """Encode quantised Gaussians, split into consecutive ``levels`` (sizes, coarse to fine).

    ``kinds``: the map kind of each channel group (texture sets; see :data:`KIND_CODES`); a file
    with kinds is version 2, one without stays version 1 (readable by every reader).

    Returns the file bytes and the permutation (N,) giving the stored order of the Gaussians (each
    level is stored in Morton order), so that ``q.take(order)`` is what :func:`unpack` returns.
    """
    if sum(levels) != q.num or any(n < 1 for n in levels) or not 1 <= len(levels) <= MAX_LEVELS:
        raise ValueError(f"levels {levels} must be 1..{MAX_LEVELS} positive sizes summing to {q.num}")
    if q.num > MAX_GAUSSIANS or q.channels > MAX_CHANNELS:
        raise ValueError(f"too many Gaussians ({q.num} > {MAX_GAUSSIANS}) or channels ({q.channels})")
    cols = columns(q)
    h = IGSHeader(q.width, q.height, q.channels, q.bits, check_top_k(top_k), coder, list(levels), q.pos_range,
                  q.scale_range, q.color_range, [], q.channel_names, q.groups, metadata or {},
                  check_kinds(kinds, q.groups, q.channels))
    h.predictors = bitstream.choose_predictors(cols, h.column_bits(), h.column_groups())
    head = _header_bytes(h)
    out = [MAGIC, bytes([1 if h.kinds is None else 2]), _varint(len(head)), head, _CRC.pack(zlib.crc32(head))]
    orders, start = [], 0
    models = bitstream.new_models(coder, pos_bits=q.bits.position, bits=h.column_bits(), preds=h.predictors)
    for n in levels:
        sl = slice(start, start + n)
        block, order = bitstream.encode_level(q.pos[sl], [c[sl] for c in cols], pos_bits=q.bits.position,
                                              bits=h.column_bits(), preds=h.predictors, coder=coder,
                                              models=models)
        out += [_varint(len(block)), _CRC.pack(zlib.crc32(block)), block]
        orders.append(order + start)
        start += n
    return b"".join(out), np.concatenate(orders)


# -- reading ------------------------------------------------------------------------------------

def _parse_header(data: bytes) -> tuple[IGSHeader, int]:
    if len(data) < len(MAGIC) or data[:len(MAGIC)] != MAGIC:
        raise IGSFileError("not an .igs file (wrong magic number)")
    r = _Reader(data, len(MAGIC), what="header")
    version = r.take(1)[0]
    if version not in READABLE_VERSIONS:
        raise IGSFileError(f"unsupported .igs version {version} (this imagegs reads versions "
                           f"{', '.join(map(str, READABLE_VERSIONS))})")
    n = r.varint(MAX_HEADER)
    raw = r.take(n)
    (crc,) = _CRC.unpack(r.take(4))
    if zlib.crc32(raw) != crc:
        raise IGSFileError("corrupt header (CRC mismatch)")
    fields: dict[int, bytes] = {}
    hr = _Reader(raw, what="header")
    while not hr.done():
        fid = hr.varint()
        body = hr.take(hr.varint(len(raw)))
        if fid not in _KNOWN[version]:
            raise IGSFileError(f"unknown header field {fid} (written by a newer imagegs?)")
        if fid in fields:
            raise IGSFileError(f"header field {fid} appears twice")
        fields[fid] = body
    missing = [f for f in _REQUIRED if f not in fields]
    if missing:
        raise IGSFileError(f"header lacks required field(s) {missing}")

    def one_varint(fid: int, lo: int, hi: int, name: str) -> int:
        fr = _Reader(fields[fid], what=f"{name} field")
        v = fr.varint()
        if not fr.done() or not lo <= v <= hi:
            raise IGSFileError(f"invalid {name} {v} (allowed {lo}..{hi})")
        return v

    width = one_varint(F_WIDTH, 1, MAX_SIDE, "width")
    height = one_varint(F_HEIGHT, 1, MAX_SIDE, "height")
    channels = one_varint(F_CHANNELS, 1, MAX_CHANNELS, "channel count")
    top_k = one_varint(F_TOPK, 0, MAX_TOP_K, "top-K")
    coder = one_varint(F_CODER, 1, 255, "coder id")
    if coder not in bitstream.CODER_NAMES:
        raise IGSFileError(f"unknown entropy coder id {coder}")
    bits_raw = fields[F_BITS]
    if len(bits_raw) != 4 or not all(MIN_BITS <= b <= MAX_BITS for b in bits_raw):
        raise IGSFileError(f"invalid bit depths {list(bits_raw)} (4 values in {MIN_BITS}..{MAX_BITS})")
    bits = Bits(*bits_raw)
    lr = _Reader(fields[F_LEVELS], what="levels field")
    nlev = lr.varint(MAX_LEVELS)
    levels = [lr.varint(MAX_GAUSSIANS) for _ in range(nlev)]
    if not lr.done() or nlev < 1 or min(levels) < 1 or sum(levels) > MAX_GAUSSIANS:
        raise IGSFileError(f"invalid level sizes {levels[:8]} (1..{MAX_LEVELS} levels, "
                           f"each >= 1, at most {MAX_GAUSSIANS} Gaussians)")
    rng = fields[F_RANGES]
    if len(rng) != 4 * (8 + 2 * channels):
        raise IGSFileError(f"ranges field has {len(rng)} bytes, expected {4 * (8 + 2 * channels)}")
    arr = np.frombuffer(rng, "<f4").astype(np.float32)
    if not np.isfinite(arr).all() or (arr[1::2] < arr[0::2]).any():
        raise IGSFileError("invalid quantisation ranges (non-finite or lo > hi)")
    pos_range, scale_range, color_range = arr[:4].reshape(2, 2), arr[4:8].reshape(2, 2), arr[8:].reshape(-1, 2)
    if np.abs(scale_range).max() > 30:
        raise IGSFileError("invalid scale range (log scale beyond +-30)")
    preds_raw = fields[F_PREDICTORS]
    h = IGSHeader(width, height, channels, bits, top_k or None, coder, levels, pos_range, scale_range,
                  color_range, [p - 1 for p in preds_raw])
    groups = h.column_groups()
    if len(preds_raw) != 3 + channels or any(
            p >= 0 and (p >= i or groups[p] != groups[i] or h.column_bits()[p] != h.column_bits()[i])
            for i, p in enumerate(h.predictors)):
        raise IGSFileError("invalid column predictors")
    try:
        if F_CHANNEL_NAMES in fields:
            names = tuple(fields[F_CHANNEL_NAMES].decode("utf-8").split("\0"))
            if len(names) != channels:
                raise IGSFileError(f"{len(names)} channel names for {channels} channels")
            h.channel_names = names
        if F_GROUPS in fields:
            gr = _Reader(fields[F_GROUPS], what="groups field")
            groups_list = []
            while not gr.done():
                name = bytearray()
                while (c := gr.take(1)) != b"\0":
                    name += c
                groups_list.append((name.decode("utf-8"), gr.varint(MAX_CHANNELS)))
            if sum(c for _, c in groups_list) != channels or any(c < 1 for _, c in groups_list):
                raise IGSFileError(f"channel groups {groups_list} do not add up to {channels} channels")
            h.groups = groups_list
        if F_METADATA in fields:
            meta = json.loads(fields[F_METADATA].decode("utf-8"))
            if not isinstance(meta, dict):
                raise IGSFileError("metadata is not a JSON object")
            h.metadata = meta
        if F_MAP_KINDS in fields:
            codes = fields[F_MAP_KINDS]
            if any(c >= len(KIND_CODES) for c in codes):
                raise IGSFileError(f"unknown map kind code in {list(codes)}")
            try:
                h.kinds = check_kinds([KIND_CODES[c] for c in codes], h.groups, channels)
            except ValueError as e:
                raise IGSFileError(f"invalid map kinds field: {e}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IGSFileError(f"corrupt text field in header ({e.__class__.__name__})") from None
    h.header_bytes = r.pos
    return h, r.pos


def read_header(data: bytes) -> IGSHeader:
    """Parse and check the header only (and the framing of every block present)."""
    h, pos = _parse_header(data)
    r = _Reader(data, pos, what="file")
    for i, _ in enumerate(h.levels):
        if r.done():  # a file cut between levels: the levels present still decode
            break
        start = r.pos
        try:
            size = r.varint(len(data))
            r.take(4 + size)
        except IGSFileError:
            raise _truncated(i, len(h.levels)) from None
        h.block_bytes.append(r.pos - start)
    return h


def _truncated(complete: int, levels: int) -> IGSFileError:
    """The error for a file cut inside level ``complete + 1``, the same for every reader."""
    return IGSFileError(f"truncated file: {complete} of {levels} levels complete"
                        + (f"; decode with lod <= {complete}" if complete else ""))


def unpack(data: bytes, *, lod: int | None = None) -> tuple[QuantizedGaussians, IGSHeader]:
    """Decode the first ``lod`` levels (default: all) of an .igs file's bytes.

    A file cut after level L decodes with ``lod <= L``; asking for more is an error that says how
    many complete levels there are. Bytes after the last level are an error.
    """
    h, pos = _parse_header(data)
    nlev = len(h.levels)
    if lod is None:
        lod = nlev
    if not isinstance(lod, (int, np.integer)) or not 1 <= lod <= nlev:
        raise IGSFileError(f"level of detail must be 1..{nlev}, got {lod!r}")
    r = _Reader(data, pos, what="file")
    pos_codes, cols = [], []
    bits = h.column_bits()
    models = bitstream.new_models(h.coder, pos_bits=h.bits.position, bits=bits, preds=h.predictors)
    for i in range(lod):
        n = h.levels[i]
        start = r.pos
        try:
            size = r.varint(len(data))
            (crc,) = _CRC.unpack(r.take(4))
            block = r.take(size)
        except IGSFileError:
            raise _truncated(i, nlev) from None
        if zlib.crc32(block) != crc:
            raise IGSFileError(f"corrupt level {i + 1} (CRC mismatch)")
        if not bitstream.plausible(n, size, pos_bits=h.bits.position, bits=bits, preds=h.predictors,
                                   coder=h.coder):
            raise IGSFileError(f"level {i + 1} claims {n} Gaussians in {size} bytes: inconsistent")
        try:
            p, c = bitstream.decode_level(block, n, pos_bits=h.bits.position, bits=bits,
                                          preds=h.predictors, coder=h.coder, models=models)
        except bitstream.BitstreamError as e:
            raise IGSFileError(f"level {i + 1}: {e}") from None
        pos_codes.append(p)
        cols.append(c)
        h.block_bytes.append(r.pos - start)
    if lod == nlev and not r.done():
        raise IGSFileError(f"{r.end - r.pos} unexpected bytes after the last level")
    pos_all = np.concatenate(pos_codes)
    col = [np.concatenate([c[j] for c in cols]) for j in range(3 + h.channels)]
    q = QuantizedGaussians(pos=pos_all, log_scale=np.stack(col[:2], axis=1), rot=col[2],
                           color=np.stack(col[3:], axis=1), pos_range=h.pos_range,
                           scale_range=h.scale_range, color_range=h.color_range, bits=h.bits,
                           height=h.height, width=h.width, channel_names=h.channel_names, groups=h.groups)
    return q, h
