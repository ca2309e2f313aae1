"""The model file (``.gsm``): a simple, lossless, versioned binary file for a fitted model.

This format is meant to stay readable forever, so it is deliberately plain: a fixed preamble, a
JSON header that spells out everything needed to interpret the payload, the raw arrays, and a
checksum. (A compressed format is separate; this one trades size for simplicity and exactness.)

Layout, version 1 (all integers unsigned little-endian; offsets in bytes)::

    offset  size  field
    0       8     magic            b"IMGSRAW\\0"  (49 4D 47 53 52 41 57 00)
    8       2     format version   uint16, = 1
    10      2     flags            uint16, = 0 (no flags are defined in version 1; readers reject others)
    12      4     header length L  uint32, byte length of the JSON header that follows
    16      L     header           UTF-8 JSON object (the writer emits pure ASCII), see below
    16+L    P     payload          raw IEEE-754 float32 little-endian arrays, C (row-major) order,
                                   concatenated with no padding: xy (N,2), scale (N,2), rot (N,),
                                   color (N,C); so P = 4 * N * (5 + C)
    16+L+P  4     CRC32            uint32, zlib/PNG CRC-32 of bytes [0, 16+L+P)

The header is a JSON object with exactly these keys::

    "height", "width"   int in [1, 2^20]   native resolution the model was fitted at
    "num"               int in [0, 2^31)   number of Gaussians N
    "channels"          int in [1, 2^16]   colour channels C
    "channel_names"     null or list of C strings
    "groups"            null or list of [name: string, n_channels: int >= 1], summing to C
    "dtype"             "float32"
    "byte_order"        "little"
    "arrays"            [{"name": "xy", "shape": [N, 2]}, {"name": "scale", "shape": [N, 2]},
                         {"name": "rot", "shape": [N]}, {"name": "color", "shape": [N, C]}]
                        (redundant with num/channels on purpose: it documents the payload)
    "metadata"          object: free-form, JSON-serialisable (fit settings, PSNR, bit depths, ...)

Meaning of the arrays is that of :class:`imagegs.Gaussians`: ``xy`` centres in image units,
``scale`` standard deviations in native pixels (> 0), ``rot`` radians, ``color`` unclamped. All
values must be finite. The file length must be exactly ``16 + L + P + 4``.

:func:`load_model` never trusts the file: every check above is enforced, sizes are validated against the
actual file length before anything is allocated, and every failure raises :class:`ModelFileError`
(a ``ValueError``) naming the file. Missing or unreadable files raise the usual ``OSError``.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, NoReturn

import numpy as np
import torch

from .gaussians import Gaussians
from .io import atomic_write

__all__ = ["Model", "ModelFileError", "save_model", "load_model", "MAGIC", "FORMAT_VERSION", "SUFFIX"]

MAGIC = b"IMGSRAW\0"  # kept from the first version; the file is called a model file, .gsm
SUFFIX = ".gsm"
FORMAT_VERSION = 1
_PREAMBLE = struct.Struct("<8sHHI")  # magic, version, flags, header length
_CRC = struct.Struct("<I")

# Sanity limits: far beyond any real model, small enough that nothing absurd is ever attempted.
MAX_SIDE = 2**20  # native height / width
MAX_NUM = 2**31 - 1  # Gaussians
MAX_CHANNELS = 2**16
MAX_HEADER_BYTES = 64 * 2**20

_HEADER_KEYS = frozenset({"height", "width", "num", "channels", "channel_names", "groups", "dtype",
                          "byte_order", "arrays", "metadata"})
_ARRAY_NAMES = ("xy", "scale", "rot", "color")


class ModelFileError(ValueError):
    """A file is not a valid imagegs model file (.gsm) (wrong type, unsupported, truncated, corrupt)."""


# --------------------------------------------------------------------------------------------- save


def _array_shapes(num: int, channels: int) -> list[tuple[str, tuple[int, ...]]]:
    """The payload arrays in file order with their shapes."""
    return [("xy", (num, 2)), ("scale", (num, 2)), ("rot", (num,)), ("color", (num, channels))]


def _check_json_keys(obj: Any, where: str) -> None:
    """Reject non-string dict keys, which JSON would silently turn into strings (no exact round trip)."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise ValueError(f"{where}: keys must be strings, got {k!r}")
            _check_json_keys(v, f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_json_keys(v, f"{where}[{i}]")


def _encode(gaussians: Gaussians, metadata: dict | None) -> bytes:
    """Validate ``gaussians``/``metadata`` and return the complete file contents."""
    if not isinstance(gaussians, Gaussians):
        raise TypeError(f"expected Gaussians, got {type(gaussians).__name__}")
    height, width = int(gaussians.height), int(gaussians.width)
    num, channels = gaussians.num, gaussians.channels
    if not (1 <= height <= MAX_SIDE and 1 <= width <= MAX_SIDE):
        raise ValueError(f"native size {height}x{width} outside [1, {MAX_SIDE}]")
    if num > MAX_NUM or channels > MAX_CHANNELS:
        raise ValueError(f"{num} Gaussians x {channels} channels exceeds the format limits")

    names = None
    if gaussians.channel_names is not None:
        names = list(gaussians.channel_names)
        if not all(isinstance(n, str) for n in names):
            raise ValueError(f"channel names must be strings, got {names!r}")
    groups = None
    if gaussians.groups is not None:
        groups = [[g[0], g[1]] for g in gaussians.groups]
        if not all(isinstance(n, str) and type(c) is int and c >= 1 for n, c in groups):
            raise ValueError(f"groups must be (str, positive int) pairs, got {gaussians.groups!r}")
    metadata = {} if metadata is None else metadata
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    _check_json_keys(metadata, "metadata")

    arrays = []
    for name, shape in _array_shapes(num, channels):
        # float32 on purpose: the format stores float32 (a float32 model round-trips bit-exactly).
        a = getattr(gaussians, name).detach().to("cpu", torch.float32).contiguous().numpy()
        if a.shape != shape:  # pragma: no cover - Gaussians.__post_init__ guarantees this
            raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains non-finite values (after conversion to float32)")
        arrays.append(a.astype("<f4", copy=False))
    if not (arrays[1] > 0).all():
        raise ValueError("scale must be > 0 everywhere")

    header = {
        "height": height, "width": width, "num": num, "channels": channels,
        "channel_names": names, "groups": groups, "dtype": "float32", "byte_order": "little",
        "arrays": [{"name": n, "shape": list(s)} for n, s in _array_shapes(num, channels)],
        "metadata": metadata,
    }
    try:
        text = json.dumps(header, ensure_ascii=True, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:  # non-serialisable object, NaN/inf, absurdly large int
        raise ValueError(f"metadata is not JSON-serialisable: {e}") from None
    head = text.encode("ascii")
    if len(head) > MAX_HEADER_BYTES:
        raise ValueError(f"header is {len(head)} bytes, more than {MAX_HEADER_BYTES} (metadata too large)")

    body = b"".join([_PREAMBLE.pack(MAGIC, FORMAT_VERSION, 0, len(head)), head,
                     *(a.tobytes(order="C") for a in arrays)])
    return body + _CRC.pack(zlib.crc32(body))


def save_model(gaussians: Gaussians, path: str | os.PathLike, *, metadata: dict | None = None) -> Path:
    """Write ``gaussians`` (and optional JSON-serialisable ``metadata``) to ``path`` atomically.

    Tensors are stored as float32 (float32 models round-trip bit-exactly). Metadata comes back from
    :func:`load_model` as plain JSON types (tuples become lists); its dict keys must be strings and its
    floats finite. Raises ``ValueError``/``TypeError`` for a model :func:`load_model` would reject
    (non-finite values, non-positive scales, sizes beyond the format limits); nothing is written then.
    Missing parent folders are created. Returns the path written.
    """
    data = _encode(gaussians, metadata)
    # io.atomic_write: temp file in the same folder, fsync, os.replace, fsync of the folder; readers
    # see the old file or the complete new one, and on any failure (Ctrl-C included) the temp file
    # is removed.
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


# --------------------------------------------------------------------------------------------- load


def _is_int(v: Any) -> bool:
    return type(v) is int  # excludes bool


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict:
    d = dict(pairs)
    if len(d) != len(pairs):
        raise ValueError(f"duplicate keys in a JSON object: {[k for k, _ in pairs]}")
    return d


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"non-standard JSON constant {name}")


def _finite_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):  # e.g. 1e999: JSON has no infinities, save() never writes one
        raise ValueError(f"number {text[:50]} overflows a float")
    return v


def _read_exact(f: BinaryIO, n: int) -> bytes | None:
    """Read exactly ``n`` bytes, or ``None`` if the file ends first."""
    data = f.read(n)
    return data if len(data) == n else None


def _parse_header(raw: bytes, fail: Callable[[str], NoReturn]) -> dict:
    """Decode and validate the JSON header (types, ranges, consistency); ``fail(msg)`` raises."""
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates,
                            parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, RecursionError) as e:  # bad UTF-8, bad JSON, duplicates, NaN, huge ints, deep nesting
        fail(f"header is not valid JSON ({type(e).__name__}: {str(e)[:200]})")
    if not isinstance(header, dict):
        fail(f"header must be a JSON object, got {type(header).__name__}")
    missing, extra = _HEADER_KEYS - header.keys(), header.keys() - _HEADER_KEYS
    if missing or extra:
        fail(f"header keys wrong: missing {sorted(missing)}, unexpected {sorted(extra)[:10]}")

    for key, lo, hi in (("height", 1, MAX_SIDE), ("width", 1, MAX_SIDE), ("num", 0, MAX_NUM),
                        ("channels", 1, MAX_CHANNELS)):
        v = header[key]
        if not _is_int(v) or not lo <= v <= hi:
            fail(f"header {key!r} must be an integer in [{lo}, {hi}], got {str(v)[:50]}")
    num, channels = header["num"], header["channels"]
    if header["dtype"] != "float32":
        fail(f"unsupported dtype {str(header['dtype'])[:50]!r} (version 1 stores 'float32')")
    if header["byte_order"] != "little":
        fail(f"unsupported byte order {str(header['byte_order'])[:50]!r} (version 1 stores 'little')")
    expected = [{"name": n, "shape": list(s)} for n, s in _array_shapes(num, channels)]
    if header["arrays"] != expected:
        fail(f"header 'arrays' {str(header['arrays'])[:200]} does not match num={num}, "
             f"channels={channels} (expected {expected})")

    names = header["channel_names"]
    if names is not None:
        if not (isinstance(names, list) and len(names) == channels and all(isinstance(n, str) for n in names)):
            fail(f"header 'channel_names' must be null or {channels} strings, got {str(names)[:200]}")
    groups = header["groups"]
    if groups is not None:
        ok = isinstance(groups, list) and all(
            isinstance(g, list) and len(g) == 2 and isinstance(g[0], str) and _is_int(g[1]) and g[1] >= 1
            for g in groups)
        if not ok or sum(g[1] for g in groups) != channels:
            fail(f"header 'groups' must be null or [name, count] pairs summing to {channels}, "
                 f"got {str(groups)[:200]}")
    if not isinstance(header["metadata"], dict):
        fail(f"header 'metadata' must be a JSON object, got {type(header['metadata']).__name__}")
    return header


@dataclass(frozen=True)
class Model:
    """A model file's contents: the Gaussians and the metadata stored beside them (fit settings,
    source, quality...)."""

    gaussians: Gaussians
    metadata: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        g = self.gaussians
        keys = ", ".join(sorted(self.metadata)) or "none"
        return (f"Model({g.num} Gaussians, {g.width}x{g.height}, {g.channels} channels; "
                f"metadata: {keys})")


def load_model(path: str | os.PathLike) -> Model:
    """Read a model file written by :func:`save_model`.

    Tensors are float32 on the CPU. Any malformed, unsupported, truncated or corrupt file raises
    :class:`ModelFileError` with the path and the reason (see the module docstring for the checks).
    """
    path = Path(path)

    def fail(msg: str) -> NoReturn:
        raise ModelFileError(f"{path}: {msg}")

    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        pre = f.read(_PREAMBLE.size)
        if not pre:
            fail("empty file, not an imagegs model file (.gsm)")
        if pre[: len(MAGIC)] != MAGIC[: len(pre)]:
            hint = "; it is an .igs file: use 'imagegs decode'" if pre[1:4] == b"IGS" else ""
            fail(f"not an imagegs model file (.gsm){hint}")
        if len(pre) < _PREAMBLE.size:
            fail(f"truncated: {size} bytes, shorter than the {_PREAMBLE.size}-byte preamble")
        _, version, flags, header_len = _PREAMBLE.unpack(pre)
        if version != FORMAT_VERSION:
            fail(f"unsupported format version {version} (this version of imagegs reads version "
                 f"{FORMAT_VERSION})")
        if flags != 0:
            fail(f"unknown flags 0x{flags:04x} (format version {FORMAT_VERSION} defines none)")
        # Bound the header by the real file size before reading (allocating) it.
        room = size - _PREAMBLE.size - _CRC.size
        if header_len > MAX_HEADER_BYTES or header_len > room:
            fail(f"header length {header_len} impossible for a {size}-byte file "
                 f"(at most {max(room, 0)} bytes available)")
        raw_header = _read_exact(f, header_len)
        if raw_header is None:
            fail("truncated while reading the header (file changed while reading?)")
        header = _parse_header(raw_header, fail)

        num, channels = header["num"], header["channels"]
        payload_len = 4 * num * (5 + channels)  # Python ints: no overflow
        expected_size = _PREAMBLE.size + header_len + payload_len + _CRC.size
        if size != expected_size:
            fail(f"{'truncated' if size < expected_size else 'trailing bytes'}: header describes "
                 f"{num} Gaussians x {channels} channels ({payload_len} payload bytes, "
                 f"{expected_size} bytes in all), file has {size} bytes")
        rest = _read_exact(f, payload_len + _CRC.size)
        if rest is None or f.read(1):
            fail("file size changed while reading")

    payload = memoryview(rest)[:payload_len]
    (stored_crc,) = _CRC.unpack_from(rest, payload_len)
    crc = zlib.crc32(payload, zlib.crc32(raw_header, zlib.crc32(pre)))
    if crc != stored_crc:
        fail(f"corrupt: CRC32 mismatch (stored 0x{stored_crc:08x}, computed 0x{crc:08x})")

    tensors = {}
    offset = 0
    for name, shape in _array_shapes(num, channels):
        count = math.prod(shape)
        a = np.frombuffer(payload, dtype="<f4", count=count, offset=offset).reshape(shape)
        offset += 4 * count
        a = a.astype(np.float32)  # native order, writable copy
        if not np.isfinite(a).all():
            fail(f"{name} contains non-finite values")
        tensors[name] = torch.from_numpy(a)
    if not (tensors["scale"] > 0).all():
        fail("scale must be > 0 everywhere (found a non-positive scale)")

    names = header["channel_names"]
    groups = header["groups"]
    try:
        g = Gaussians(tensors["xy"], tensors["scale"], tensors["rot"], tensors["color"],
                      header["height"], header["width"],
                      channel_names=None if names is None else tuple(names),
                      groups=None if groups is None else [(n, c) for n, c in groups])
    except ValueError as e:  # pragma: no cover - the header checks above already cover this
        fail(f"inconsistent model: {e}")
    return Model(g, header["metadata"])
