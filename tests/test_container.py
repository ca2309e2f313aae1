"""The raw model container: exact round trips, the documented layout, and a reader that trusts nothing."""

import json
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imagegs import Gaussians
from imagegs import container
from imagegs.container import FORMAT_VERSION, MAGIC, ModelFileError, load_model, save_model


def _gaussians(n=5, channels=3, *, names=None, groups=None, seed=0, height=48, width=64):
    gen = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=gen) * 1.2 - 0.1  # some just outside the image
    scale = 0.3 + 8 * torch.rand(n, 2, generator=gen)
    rot = (torch.rand(n, generator=gen) - 0.5) * 7
    color = torch.randn(n, channels, generator=gen)
    return Gaussians(xy, scale, rot, color, height, width, channel_names=names, groups=groups)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """Bit pattern of a float32 tensor (exact comparison, -0.0 included)."""
    assert t.dtype == torch.float32
    return t.contiguous().view(torch.int32)


def _assert_same(a: Gaussians, b: Gaussians) -> None:
    for name in ("xy", "scale", "rot", "color"):
        ta, tb = getattr(a, name), getattr(b, name)
        assert tb.dtype == torch.float32 and tb.device.type == "cpu"
        assert ta.shape == tb.shape, name
        assert torch.equal(_bits(ta.float()), _bits(tb)), name
    assert (a.height, a.width) == (b.height, b.width)
    assert a.channel_names == b.channel_names
    assert a.groups == b.groups


def _split(data: bytes) -> tuple[dict, bytes]:
    """(header, payload) of a valid file."""
    (hlen,) = struct.unpack_from("<I", data, 12)
    return json.loads(data[16:16 + hlen]), data[16 + hlen:-4]


def _build(header, payload: bytes, *, magic=MAGIC, version=FORMAT_VERSION, flags=0, header_len=None,
           fix_crc=True) -> bytes:
    """Assemble a file from parts; the CRC is correct unless ``fix_crc`` is False (so each check is hit alone)."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = struct.pack("<8sHHI", magic, version, flags, len(head) if header_len is None else header_len)
    body += head + payload
    return body + struct.pack("<I", zlib.crc32(body) if fix_crc else zlib.crc32(body) ^ 1)


@pytest.fixture
def small(tmp_path):
    """A small valid file: (path, bytes, header, payload)."""
    g = _gaussians(3, 3, names=("R", "G", "B"), groups=[("rgb", 3)])
    p = save_model(g, tmp_path / "small.gsm", metadata={"psnr": 31.5, "bits": [8, 8, 8]})
    data = p.read_bytes()
    return p, data, *_split(data)


def _load_error(tmp_path, data: bytes, match: str) -> ModelFileError:
    p = tmp_path / "bad.gsm"
    p.write_bytes(data)
    with pytest.raises(ModelFileError, match=match) as info:
        load_model(p)
    assert str(p) in str(info.value)  # every message names the file
    return info.value


# ------------------------------------------------------------------------------------ round trip


@pytest.mark.parametrize("channels", [1, 3, 9])
@pytest.mark.parametrize("n", [0, 1, 17])
@pytest.mark.parametrize("annotated", [False, True])
def test_round_trip_exact(tmp_path, channels, n, annotated):
    names = groups = metadata = None
    if annotated:
        names = tuple(f"ch{i}-é" for i in range(channels))  # non-ASCII survives
        groups = [("a", 1)] if channels == 1 else [("albedo", channels - 1), ("gloss", 1)]
        metadata = {"psnr": 0.1 + 0.2, "steps": 2000, "source": {"bit_depths": [8, 16], "name": "x"},
                    "flag": True, "none": None}
    g = _gaussians(n, channels, names=names, groups=groups)
    if n:
        g.rot[0] = -0.0  # sign of zero survives
    p = save_model(g, tmp_path / "m.gsm", metadata=metadata)
    assert p == tmp_path / "m.gsm"
    loaded = load_model(p)
    g2, meta2 = loaded.gaussians, loaded.metadata
    _assert_same(g, g2)
    assert meta2 == (metadata or {})
    assert isinstance(g2.channel_names, tuple) or g2.channel_names is None
    # loaded tensors are ordinary writable tensors
    g2.color.add_(1.0)


def test_round_trip_str_path_grad_and_float64(tmp_path):
    g = _gaussians(4, 2)
    g64 = Gaussians(g.xy.double().requires_grad_(), g.scale.double(), g.rot.double(), g.color.double(),
                    g.height, g.width)
    p = save_model(g64, str(tmp_path / "m.gsm"))
    assert isinstance(p, Path)
    loaded = load_model(str(p))
    g2, meta = loaded.gaussians, loaded.metadata
    _assert_same(g, g2)  # stored as float32: the float32 model comes back exactly
    assert meta == {}
    # overwriting an existing file works
    save_model(_gaussians(2, 2, seed=1), p)
    assert load_model(p).gaussians.num == 2


def test_layout_is_as_documented(small):
    p, data, header, payload = small
    magic, version, flags, hlen = struct.unpack_from("<8sHHI", data, 0)
    assert magic == b"IMGSRAW\0" and version == 1 and flags == 0
    assert data[16:16 + hlen].isascii()
    assert set(header) == {"height", "width", "num", "channels", "channel_names", "groups", "dtype",
                           "byte_order", "arrays", "metadata"}
    assert header["dtype"] == "float32" and header["byte_order"] == "little"
    n, c = header["num"], header["channels"]
    assert header["arrays"] == [{"name": "xy", "shape": [n, 2]}, {"name": "scale", "shape": [n, 2]},
                                {"name": "rot", "shape": [n]}, {"name": "color", "shape": [n, c]}]
    loaded = load_model(p)
    g, _ = loaded.gaussians, loaded.metadata
    expected = b"".join(getattr(g, k).numpy().astype("<f4").tobytes() for k in ("xy", "scale", "rot", "color"))
    assert payload == expected and len(payload) == 4 * n * (5 + c)
    assert len(data) == 16 + hlen + len(payload) + 4
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])
    # a file assembled by hand from the documented parts loads too
    p2 = p.with_name("rebuilt.gsm")
    p2.write_bytes(_build(header, payload))
    _assert_same(g, load_model(p2).gaussians)


# ----------------------------------------------------------------------------- save refuses junk


@pytest.mark.parametrize("mutate, match", [
    (lambda g: g.xy.__setitem__((0, 0), float("nan")), "non-finite"),
    (lambda g: g.color.__setitem__((1, 0), float("inf")), "non-finite"),
    (lambda g: g.scale.__setitem__((0, 1), 0.0), "scale"),
    (lambda g: g.scale.__setitem__((2, 0), -1.0), "scale"),
])
def test_save_rejects_invalid_model_and_writes_nothing(tmp_path, mutate, match):
    g = _gaussians(3, 3)
    mutate(g)
    with pytest.raises(ValueError, match=match):
        save_model(g, tmp_path / "m.gsm")
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_float64_overflow(tmp_path):
    g = _gaussians(2, 1)
    g = Gaussians(g.xy.double(), g.scale.double(), g.rot.double(), g.color.double(), 4, 4)
    g.color[0, 0] = 1e300  # finite in float64, inf in float32
    with pytest.raises(ValueError, match="non-finite"):
        save_model(g, tmp_path / "m.gsm")


@pytest.mark.parametrize("metadata, exc", [
    ({"x": object()}, ValueError), ({"psnr": float("inf")}, ValueError), ({1: "a"}, ValueError),
    ({"a": [{2: 3}]}, ValueError), (["not", "a", "dict"], TypeError),
])
def test_save_rejects_bad_metadata(tmp_path, metadata, exc):
    with pytest.raises(exc):
        save_model(_gaussians(2, 1), tmp_path / "m.gsm", metadata=metadata)
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_oversized_model(tmp_path):
    g = _gaussians(1, 1)
    g.height = 2**20 + 1
    with pytest.raises(ValueError, match="native size"):
        save_model(g, tmp_path / "m.gsm")


# ------------------------------------------------------------------------- load trusts nothing


def test_not_a_model_file(tmp_path, small):
    _, data, _, _ = small
    _load_error(tmp_path, b"", "not an imagegs model file")
    _load_error(tmp_path, b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "not an imagegs model file")
    _load_error(tmp_path, b"IMGSRAX\0" + data[8:], "not an imagegs model file")
    _load_error(tmp_path, b"hello", "not an imagegs model file")


def test_unknown_version_and_flags(tmp_path, small):
    _, _, header, payload = small
    err = _load_error(tmp_path, _build(header, payload, version=2), "unsupported format version 2")
    assert "version 1" in str(err)
    _load_error(tmp_path, _build(header, payload, version=0), "unsupported format version 0")
    _load_error(tmp_path, _build(header, payload, flags=1), "unknown flags 0x0001")


@pytest.mark.parametrize("header_len", [10**6, 2**32 - 1])
def test_header_length_beyond_file(tmp_path, small, header_len):
    _, _, header, payload = small
    tracemalloc.start()
    try:
        _load_error(tmp_path, _build(header, payload, header_len=header_len), "header length")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20


@pytest.mark.parametrize("raw, match", [
    (b"{not json", "not valid JSON"),
    (b"\xff\xfe{}", "not valid JSON"),  # not UTF-8
    (b"[1, 2]", "must be a JSON object"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON|must be a JSON object"),  # deep nesting
])
def test_bad_header_bytes(tmp_path, small, raw, match):
    _load_error(tmp_path, _build(raw, small[3]), match)


def _edit(header, **changes):
    h = json.loads(json.dumps(header))
    for k, v in changes.items():
        if v is KeyError:
            del h[k]
        else:
            h[k] = v
    return h


@pytest.mark.parametrize("changes, match", [
    ({"height": KeyError}, "missing \\['height'\\]"),
    ({"extra": 1}, "unexpected \\['extra'\\]"),
    ({"height": "48"}, "'height' must be an integer"),
    ({"height": True}, "'height' must be an integer"),
    ({"height": 48.0}, "'height' must be an integer"),
    ({"width": 0}, "'width' must be an integer in \\[1, 1048576\\]"),
    ({"width": 2**20 + 1}, "'width' must be an integer"),
    ({"height": 10**40}, "'height' must be an integer"),
    ({"num": -1}, "'num' must be an integer"),
    ({"num": 2**31}, "'num' must be an integer"),
    ({"channels": 0}, "'channels' must be an integer"),
    ({"channels": 2**16 + 1}, "'channels' must be an integer"),
    ({"dtype": "float64"}, "unsupported dtype"),
    ({"byte_order": "big"}, "unsupported byte order"),
    ({"arrays": [{"name": "xy", "shape": [3, 2]}]}, "'arrays'"),
    ({"arrays": "xy scale rot color"}, "'arrays'"),
    ({"channel_names": ["R", "G"]}, "'channel_names'"),
    ({"channel_names": ["R", "G", 3]}, "'channel_names'"),
    ({"channel_names": "RGB"}, "'channel_names'"),
    ({"groups": [["rgb", 2]]}, "'groups'"),
    ({"groups": [["rgb", 3, 0]]}, "'groups'"),
    ({"groups": [["a", 4], ["b", -1]]}, "'groups'"),
    ({"groups": [["a", 3.0]]}, "'groups'"),
    ({"groups": {"rgb": 3}}, "'groups'"),
    ({"metadata": [1, 2]}, "'metadata' must be a JSON object"),
    ({"metadata": None}, "'metadata' must be a JSON object"),
])
def test_bad_header_fields(tmp_path, small, changes, match):
    _, _, header, payload = small
    _load_error(tmp_path, _build(_edit(header, **changes), payload), match)


@pytest.mark.parametrize("text, match", [
    ('{"height": 1, "height": 2}', "duplicate keys"),
    ('{"metadata": {"psnr": NaN}}', "not valid JSON"),
    ('{"metadata": {"psnr": 1e999}}', "not valid JSON"),
    ('{"metadata": {"n": ' + "9" * 5000 + "}}", "not valid JSON"),
])
def test_bad_json_values(tmp_path, small, text, match):
    _load_error(tmp_path, _build(text.encode(), small[3]), match)


def test_absurd_sizes_fail_before_allocating(tmp_path, small):
    _, _, header, payload = small
    for num, channels in [(2**31 - 1, 2**16), (10**6, 3), (4, 3), (3, 4), (2, 3)]:
        h = _edit(header, num=num, channels=channels, channel_names=None, groups=None,
                  arrays=[{"name": "xy", "shape": [num, 2]}, {"name": "scale", "shape": [num, 2]},
                          {"name": "rot", "shape": [num]}, {"name": "color", "shape": [num, channels]}])
        tracemalloc.start()
        try:
            err = _load_error(tmp_path, _build(h, payload), "truncated|trailing bytes")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert f"{num} Gaussians x {channels} channels" in str(err)
        assert peak < 2**20


def test_trailing_bytes(tmp_path, small):
    _, data, header, payload = small
    _load_error(tmp_path, data + b"\0", "trailing bytes")
    _load_error(tmp_path, _build(header, payload + b"\0" * 4), "trailing bytes")


def test_crc_mismatch(tmp_path, small):
    _, data, header, payload = small
    _load_error(tmp_path, _build(header, payload, fix_crc=False), "corrupt: CRC32 mismatch")
    flipped = bytearray(data)
    flipped[-10] ^= 0x40  # inside the payload
    _load_error(tmp_path, bytes(flipped), "corrupt")


@pytest.mark.parametrize("array, index, value, match", [
    ("xy", (0, 1), np.nan, "xy contains non-finite"),
    ("rot", (2,), np.inf, "rot contains non-finite"),
    ("color", (1, 2), -np.inf, "color contains non-finite"),
    ("scale", (0, 0), np.nan, "scale contains non-finite"),
    ("scale", (1, 1), 0.0, "non-positive scale"),
    ("scale", (2, 0), -0.0, "non-positive scale"),
    ("scale", (0, 1), -3.0, "non-positive scale"),
])
def test_bad_values(tmp_path, small, array, index, value, match):
    p, _, header, payload = small
    loaded = load_model(p)
    g, _ = loaded.gaussians, loaded.metadata
    arrays = {k: getattr(g, k).numpy().copy() for k in ("xy", "scale", "rot", "color")}
    arrays[array][index] = value
    bad = b"".join(arrays[k].astype("<f4").tobytes() for k in ("xy", "scale", "rot", "color"))
    _load_error(tmp_path, _build(header, bad), match)


def test_every_truncation_fails(tmp_path, small):
    _, data, _, _ = small
    p = tmp_path / "cut.gsm"
    for n in range(len(data)):
        p.write_bytes(data[:n])
        with pytest.raises(ModelFileError, match=str(p)):
            load_model(p)


def test_missing_file_is_an_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_model(tmp_path / "nope.gsm")


# ------------------------------------------------------------------------------------- fuzzing


_VALID = container._encode(_gaussians(4, 3, names=("R", "G", "B")), {"psnr": 30.0, "note": "fuzz"})


def _load_fuzzed(tmp_path: Path, data: bytes) -> None:
    """Load ``data``: only ModelFileError may escape, and memory stays small."""
    p = tmp_path / "fuzz.gsm"
    p.write_bytes(data)
    tracemalloc.start()
    try:
        load_model(p)  # a flip that keeps the CRC valid is (astronomically) rare; success is allowed
    except ModelFileError as e:
        assert str(p) in str(e)
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 2**20, f"{peak} bytes allocated for a {len(data)}-byte file"


_FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.integers(0, len(_VALID)), tail=st.binary(max_size=16))
def test_fuzz_byte_flips(tmp_path, flips, cut, tail):
    data = bytearray(_VALID)
    for i, b in flips:
        data[i] = b
    _load_fuzzed(tmp_path, bytes(data[:cut]) + tail)


@_FUZZ
@given(data=st.binary(max_size=512))
def test_fuzz_random_bytes(tmp_path, data):
    _load_fuzzed(tmp_path, data)


@_FUZZ
@given(version=st.sampled_from([FORMAT_VERSION, 0, 2, 0xFFFF]), flags=st.sampled_from([0, 1]),
       header_len=st.integers(0, 2**32 - 1), rest=st.binary(max_size=256))
def test_fuzz_valid_magic_random_rest(tmp_path, version, flags, header_len, rest):
    _load_fuzzed(tmp_path, struct.pack("<8sHHI", MAGIC, version, flags, header_len) + rest)


@_FUZZ
@given(header=st.recursive(
    st.none() | st.booleans() | st.integers(-3, 2**33) | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(sorted(container._HEADER_KEYS) + ["x", "name", "shape"]), inner, max_size=10),
    max_leaves=20))
def test_fuzz_structured_headers(tmp_path, header):
    """Random JSON headers with a valid CRC: the field checks alone must reject or accept cleanly."""
    _load_fuzzed(tmp_path, _build(json.dumps(header).encode(), _split(_VALID)[1]))


# --------------------------------------------------------------------------------- atomic write


def _no_temp_files(directory: Path) -> None:
    leftovers = [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def _half_write(self, data):
    """Path.write_bytes that writes half the data, then fails like a full disk."""
    with open(self, "wb") as f:
        f.write(data[: len(data) // 2])
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("failure", ["write", "fsync", "replace", "interrupt"])
def test_atomic_write_failure_keeps_old_file(tmp_path, monkeypatch, failure):
    target = tmp_path / "model.gsm"
    save_model(_gaussians(3, 3), target, metadata={"v": "old"})
    old = target.read_bytes()

    if failure == "write":
        monkeypatch.setattr(Path, "write_bytes", _half_write)
        exc = OSError
    elif failure == "fsync":
        def fsync(fd):
            raise OSError(5, "I/O error")
        monkeypatch.setattr(container.os, "fsync", fsync)
        exc = OSError
    elif failure == "replace":
        def replace(src, dst):
            raise PermissionError(13, "denied")
        monkeypatch.setattr(container.os, "replace", replace)
        exc = PermissionError
    else:
        def fsync(fd):
            raise KeyboardInterrupt
        monkeypatch.setattr(container.os, "fsync", fsync)
        exc = KeyboardInterrupt

    with pytest.raises(exc):
        save_model(_gaussians(50, 9, seed=3), target, metadata={"v": "new"})
    monkeypatch.undo()
    assert target.read_bytes() == old
    assert load_model(target).metadata == {"v": "old"}
    _no_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.gsm"]


def test_atomic_write_failure_without_old_file(tmp_path, monkeypatch):
    def replace(src, dst):
        raise OSError("boom")
    monkeypatch.setattr(container.os, "replace", replace)
    with pytest.raises(OSError, match="boom"):
        save_model(_gaussians(3, 3), tmp_path / "new.gsm")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_keeps_mode(tmp_path):
    target = tmp_path / "m.gsm"
    save_model(_gaussians(2, 1), target)
    assert target.stat().st_mode & 0o777 == 0o644
    target.chmod(0o600)
    save_model(_gaussians(2, 1), target)
    assert target.stat().st_mode & 0o777 == 0o600
    _no_temp_files(tmp_path)
