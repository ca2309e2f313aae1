"""The rate-distortion benchmark: codecs, bpp search, texture padding, metrics, BD, runner, report."""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

import imagegs
from imagegs import metrics
from imagegs.bench import rd
from imagegs.bench.bd import BDError, bd_psnr, bd_rate
from imagegs.bench.codecs import (BASELINES, TEXTURES, Codec, CodecError, ImagegsCodec, bpp_of,
                                  get_codec, pad_to_blocks, search_quality)
from imagegs.bench.measures import flip, ms_ssim, quality, ssim
from imagegs.cli import main


@pytest.fixture(scope="module")
def photo():
    """A 70x93 crop of the astronaut (sides not multiples of 4, 5, 6, 8, 10 or 12)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:170, 150:243])


@pytest.fixture(scope="module")
def photo_big():
    """A 176x200 crop (MS-SSIM needs sides > 160)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[20:196, 140:340])


def _psnr(a, b):
    return metrics.psnr(a.astype(np.float64), b.astype(np.float64), data_range=255.0)


# ------------------------------------------------------------------------------------ codecs


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_round_trip(photo, name):
    c = get_codec(name)
    assert c.kind == "search" and c.description and c.label
    q = c.qualities[int(len(c.qualities) * 0.7)]
    data = c.encode(photo, quality=q)
    out = c.decode(data, height=70, width=93)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert 22 < _psnr(photo, out) < 60


@pytest.mark.parametrize("name", TEXTURES)
def test_texture_round_trip_pads_and_crops(photo, name):
    c = get_codec(name)
    bh, bw = c.block
    data = c.encode(photo)
    blocks = math.ceil(70 / bh) * math.ceil(93 / bw)
    assert len(data) == blocks * c.block_bytes  # raw block data, padding blocks included
    assert bpp_of(data, 70, 93) > c.nominal_bpp  # counted over the original pixels
    out = c.decode(data, height=70, width=93)
    assert out.shape == photo.shape and out.dtype == np.uint8
    assert _psnr(photo, out) > (30 if c.nominal_bpp >= 4 else 20)
    with pytest.raises(CodecError, match="do not hold"):
        c.decode(data[:-16], height=70, width=93)


def test_texture_formats_at_nominal_rate_on_whole_blocks():
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[:120, :240])  # multiple of 4, 5, 6, 8, 10, 12
    for name in TEXTURES:
        c = get_codec(name)
        assert bpp_of(c.encode(img), 120, 240) == pytest.approx(c.nominal_bpp)
    assert get_codec("bc1").nominal_bpp == 4 and get_codec("bc7").nominal_bpp == 8
    assert get_codec("astc-12x12").nominal_bpp == pytest.approx(128 / 144)


def test_pad_to_blocks_replicates_edges():
    img = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    p = pad_to_blocks(img, (4, 4))
    assert p.shape == (8, 8, 3)
    np.testing.assert_array_equal(p[:5, :7], img)
    np.testing.assert_array_equal(p[5:, :7], np.broadcast_to(img[4], (3, 7, 3)))
    np.testing.assert_array_equal(p[:, 7], p[:, 6])
    assert pad_to_blocks(img, (5, 7)) is img


def test_flat_colour_survives_every_texture_format():
    img = np.empty((9, 11, 3), np.uint8)
    img[:] = (200, 40, 90)
    for name in TEXTURES:
        c = get_codec(name)
        out = c.decode(c.encode(img), height=9, width=11)
        # BC1 stores 5:6:5 endpoints (steps of 8.2 in red), the others near-exact colours
        assert np.abs(out.astype(int) - img).max() <= (8 if name == "bc1" else 2), name


def test_codecs_reject_bad_images():
    c = get_codec("jpeg-420")
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 4), np.uint8),
                np.zeros((8, 8, 3), np.float32)):
        with pytest.raises(CodecError, match=r"\(H, W, 3\) uint8"):
            c.encode(bad, quality=50)
    with pytest.raises(CodecError, match="unknown codec 'jpg'"):
        get_codec("jpg")
    with pytest.raises(CodecError, match="decoded 93x70, expected"):
        c.decode(c.encode(np.zeros((70, 93, 3), np.uint8), quality=50), height=71, width=93)


# ------------------------------------------------------------------------------------ search


class SizeCodec(Codec):
    """A codec whose file for quality q has exactly sizes[q] bytes (and decodes to grey)."""

    name, label, kind = "fake", "Fake", "search"

    def __init__(self, sizes, name="fake"):
        self.sizes, self.qualities, self.calls, self.name = list(sizes), tuple(range(len(sizes))), [], name
        self.description = "test codec"

    def encode(self, image, *, quality=None):
        self.calls.append(quality)
        return bytes([quality % 256]) * self.sizes[quality]

    def decode(self, data, *, height, width):
        return np.full((height, width, 3), 128, np.uint8)


def test_search_picks_largest_quality_under_target():
    img = np.zeros((10, 10, 3), np.uint8)  # 100 pixels: bpp = 8 * bytes / 100
    c = SizeCodec([5 * (i + 1) for i in range(40)])  # bpp 0.4, 0.8, ..., 16
    memo: dict = {}
    r = search_quality(c, img, 3.0, memo=memo)
    assert (r.quality, r.bpp, r.reached) == (6, 2.8, True)  # 3.2 > 3 at quality 7
    assert r.trials == len(c.calls) <= 2 + 2 * math.ceil(math.log2(40))  # ends + bracketing
    n = len(c.calls)
    r2 = search_quality(c, img, 3.0, memo=memo)  # memo: no new encodes
    assert (r2.quality, r2.trials, len(c.calls)) == (6, 0, n)
    assert search_quality(c, img, 2.8).quality == 6  # equal counts as under
    top = search_quality(c, img, 100.0)
    assert (top.quality, top.bpp, top.reached) == (39, 16.0, True)
    floor = search_quality(c, img, 0.1)
    assert (floor.quality, floor.bpp, floor.reached) == (0, 0.4, False)
    with pytest.raises(CodecError, match="finite number > 0"):
        search_quality(c, img, 0.0)


def test_search_on_jpeg_matches_brute_force(photo):
    c = get_codec("jpeg-420")
    h, w = photo.shape[:2]
    sizes = [bpp_of(c.encode(photo, quality=q), h, w) for q in c.qualities]
    assert all(b2 >= b1 for b1, b2 in zip(sizes, sizes[1:]))  # monotone here: bisection is exact
    for target in (0.8, 1.5, 3.0):
        r = search_quality(c, photo, target)
        best = max(q for q, b in zip(c.qualities, sizes) if b <= target)
        assert r.quality == best and r.reached
        assert r.bpp == bpp_of(r.data, h, w) == sizes[best - 1] <= target
        assert r.trials <= 9
    floor = search_quality(c, photo, 0.01)  # below JPEG's floor: reported, not faked
    assert not floor.reached and floor.quality == 1 and floor.bpp == sizes[0] > 0.01


def test_jpeg2000_rate_grid_lands_close(photo_big):
    c = get_codec("jpeg2000")
    for target in (0.3, 0.5):  # a 0.25 % grid; OpenJPEG lands within ~0.5 % on 1024-px images,
        # coarser on this small crop (few code-blocks), where sizes also wobble between grid steps
        r = search_quality(c, photo_big, target)
        assert r.reached and 0.95 * target < r.bpp <= target


def _j2k_main_header(data: bytes) -> dict[bytes, bytes]:
    """The marker segments of a raw J2K codestream's main header: {marker: segment body}."""
    assert data[:2] == b"\xff\x4f", "no SOC marker: not a raw codestream"
    segments, pos = {}, 2
    while data[pos:pos + 2] != b"\xff\x90":  # up to the first tile-part (SOT)
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        segments[data[pos:pos + 2]] = data[pos + 4:pos + 2 + length]
        pos += 2 + length
    return segments


def test_jpeg2000_is_a_raw_codestream_with_the_colour_transform(photo_big):
    data = get_codec("jpeg2000").encode(photo_big, quality=0.5)
    assert data[:4] == b"\xff\x4f\xff\x51"  # SOC then SIZ: no JP2 signature box (00 00 00 0C jP)
    cod = _j2k_main_header(data)[b"\xff\x52"]
    # COD: Scod, progression order, layers (2 bytes), MCT, then levels, code-block w/h, style,
    # wavelet (0 = irreversible 9/7, 1 = reversible 5/3)
    assert int.from_bytes(cod[2:4], "big") == 1  # one quality layer
    assert cod[4] == 1  # the multi-component (colour) transform is on
    assert cod[9] == 0  # 9/7 wavelet
    siz = _j2k_main_header(data)[b"\xff\x51"]
    assert int.from_bytes(siz[34:36], "big") == 3  # Csiz: three components


def test_codec_settings_describe_what_decides_the_bytes():
    j2k = get_codec("jpeg2000")
    assert '"mct": 1' in j2k.settings and '"no_jp2": true' in j2k.settings
    names = list(BASELINES) + list(TEXTURES)
    assert len({get_codec(n).settings for n in names}) == len(names)  # all set, all distinct
    c = get_codec("jpeg-420")
    before = c.settings
    c.options["optimize"] = False
    assert c.settings != before
    assert get_codec("imagegs", schedule="fast").settings != get_codec("imagegs").settings


# ------------------------------------------------------------------------------------ metrics


def test_ssim_twin_matches_imagegs_metrics(photo_big):
    noisy = np.clip(photo_big + np.random.default_rng(0).normal(0, 12, photo_big.shape), 0, 255).astype(np.uint8)
    ref = metrics.ssim(torch.from_numpy(photo_big.transpose(2, 0, 1) / 255.0),
                       torch.from_numpy(noisy.transpose(2, 0, 1) / 255.0))
    assert ssim(photo_big, noisy) == pytest.approx(float(ref), abs=1e-10)


@pytest.mark.parametrize("shape", [(176, 200), (171, 203)])  # even and odd sides (pool padding)
def test_ms_ssim_twin_matches_pytorch_msssim(shape):
    from pytorch_msssim import ms_ssim as reference
    from skimage import data

    a = np.ascontiguousarray(data.astronaut()[:shape[0], 100:100 + shape[1]])
    b = np.clip(a + np.random.default_rng(1).normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    t = lambda x: torch.from_numpy(x.transpose(2, 0, 1).astype(np.float64))[None]  # noqa: E731
    assert ms_ssim(a, b) == pytest.approx(float(reference(t(a), t(b), data_range=255)), abs=1e-5)
    assert ms_ssim(a, a) == pytest.approx(1.0)
    assert ms_ssim(a[:160], b[:160]) is None  # too small for five scales


def test_quality_report(photo_big):
    q = quality(photo_big, photo_big)
    assert q["psnr-rgb"] is None and q["ssim"] == pytest.approx(1) and q["flip"] == 0
    dark = (photo_big // 2).astype(np.uint8)
    q = quality(photo_big, dark)
    assert q["psnr-rgb"] == pytest.approx(_psnr(photo_big, dark))
    assert 0 < q["flip"] < 1 and q["ms-ssim"] < 1
    assert flip(photo_big, dark) == q["flip"]
    with pytest.raises(ValueError, match="one shape"):
        quality(photo_big, photo_big[1:])


# ----------------------------------------------------------------------------------------- BD


def test_bd_on_parallel_curves():
    rates = [0.1, 0.2, 0.4, 0.8]
    psnr = [30 + 10 * math.log10(r) for r in rates]
    for method in ("pchip", "cubic"):
        assert bd_psnr(rates, psnr, rates, [p + 1.5 for p in psnr], method=method) == pytest.approx(1.5)
        # 1.5 dB more at the same rate = the same PSNR at 10**-0.15 of the rate
        assert bd_rate(rates, psnr, rates, [p + 1.5 for p in psnr], method=method) == \
            pytest.approx((10 ** -0.15 - 1) * 100)
        shifted = [r * 0.9 for r in rates]
        assert bd_rate(rates, psnr, shifted, psnr, method=method) == pytest.approx(-10.0)


def test_bd_hand_checked_partial_overlap():
    # anchor: PSNR = 30 + 10 x on x = log10 r in [0, 1]; test: PSNR = 28 + 10 x on [0.5, 1.5].
    # Common x range [0.5, 1]: mean gap = -2 dB. Common PSNR range [33, 40]: x_test - x_anchor
    # = 0.2 everywhere, so the test needs 10**0.2 = 1.585 times the rate: +58.49 %.
    ra, pa = [1, 10], [30, 40]
    rb, pb = [10 ** 0.5, 10 ** 1.5], [33, 43]
    assert bd_psnr(ra, pa, rb, pb) == pytest.approx(-2.0)
    assert bd_rate(ra, pa, rb, pb) == pytest.approx((10 ** 0.2 - 1) * 100)
    # restricted to rates 5..8: still a constant -2 dB gap
    assert bd_psnr(ra, pa, rb, pb, rate_range=(5, 8)) == pytest.approx(-2.0)


def test_bd_curved_pchip_against_numeric_integral():
    from scipy.interpolate import PchipInterpolator

    ra, pa = [0.1, 0.25, 0.5, 1.0], [26.0, 29.5, 32.0, 34.0]
    rb, pb = [0.12, 0.3, 0.6, 1.2], [28.0, 31.0, 33.2, 35.5]
    xa, xb = np.log10(ra), np.log10(rb)
    grid = np.linspace(max(xa[0], xb[0]), min(xa[-1], xb[-1]), 200001)
    gap = PchipInterpolator(xb, pb)(grid) - PchipInterpolator(xa, pa)(grid)
    assert bd_psnr(ra, pa, rb, pb) == pytest.approx(np.trapezoid(gap, grid) / (grid[-1] - grid[0]), abs=1e-6)


def test_bd_errors():
    with pytest.raises(BDError, match="do not overlap"):
        bd_psnr([0.1, 0.2], [20, 25], [1, 2], [30, 35])
    with pytest.raises(BDError, match="at least 2"):
        bd_psnr([0.1], [20], [0.1, 0.2], [20, 25])
    with pytest.raises(BDError, match="4 points"):
        bd_psnr([0.1, 0.2], [20, 25], [0.1, 0.2], [21, 26], method="cubic")
    with pytest.raises(BDError, match="rates must be > 0"):
        bd_rate([0, 0.2], [20, 25], [0.1, 0.2], [21, 26])


# ------------------------------------------------------------------------------------- runner


@pytest.fixture
def folder(tmp_path):
    """Three small images: two categories and one uncategorised."""
    from skimage import data

    d = tmp_path / "imgs"
    d.mkdir()
    Image.fromarray(data.astronaut()[::4, ::4]).save(d / "photo-astronaut.png")
    Image.fromarray(data.coffee()[::4, ::4]).save(d / "anime-coffee.png")
    Image.fromarray(data.chelsea()[::3, ::3]).save(d / "cat.png")
    (d / "notes.txt").write_text("not an image")
    return d


def _factory(made: dict):
    """Real Pillow JPEG/WebP plus a fake texture codec, counting encodes."""
    def make(name):
        c = get_codec(name)
        calls = made.setdefault(name, [])
        encode = c.encode

        def counted(image, *, quality=None):
            calls.append(quality)
            return encode(image, quality=quality)

        c.encode = counted
        return c
    return make


def _strip(recs):
    return sorted((r["codec"], r["image"], str(r["target_bpp"]), r["quality"], r["bytes"], r["psnr-rgb"])
                  for r in recs)


def test_run_resumes_after_interruption(folder, tmp_path, monkeypatch):
    kw = dict(bpp="0.5,1,2", codecs="jpeg-420,webp,bc1", progress=False, report=False)
    full = tmp_path / "full"
    rd.run_rd(folder, full, codec_factory=_factory({}), **kw)
    expected = [json.loads(x) for x in (full / "records.jsonl").read_text().splitlines()]
    assert len(expected) == 3 * (3 + 3 + 1)

    out = tmp_path / "interrupted"
    real, count = rd.quality, [0]

    def flaky(a, b):
        count[0] += 1
        if count[0] == 5:
            raise KeyboardInterrupt
        return real(a, b)

    monkeypatch.setattr(rd, "quality", flaky)
    with pytest.raises(KeyboardInterrupt):
        rd.run_rd(folder, out, codec_factory=_factory({}), **kw)
    assert len((out / "records.jsonl").read_text().splitlines()) == 4
    with open(out / "records.jsonl", "a") as f:  # an interrupted write: a partial last line
        f.write('{"codec": "jpeg-420", "ima')
    monkeypatch.setattr(rd, "quality", real)
    made: dict = {}
    rd.run_rd(folder, out, codec_factory=_factory(made), **kw)
    got = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert _strip(got) == _strip(expected)
    # every record is appended once: the 4 finished before the interruption were not redone
    # (a redone one would be a second line with the same key), and a third run encodes nothing
    assert len(got) == len(expected)
    assert len({(r["codec"], r["image"], r["target_bpp"]) for r in got}) == len(got)
    made.clear()
    rd.run_rd(folder, out, codec_factory=_factory(made), **kw)
    assert sum(len(v) for v in made.values()) == 0


def test_records_are_reused_only_with_the_same_settings(folder, tmp_path):
    out, kw = tmp_path / "out", dict(bpp="0.5,1", codecs="jpeg-420,bc1", progress=False, report=False)
    made: dict = {}
    rd.run_rd(folder, out, codec_factory=_factory(made), **kw)
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert {r["codec"]: r["settings"] for r in recs} == {n: get_codec(n).settings for n in ("jpeg-420", "bc1")}

    def tweaked(made):  # JPEG without Huffman optimisation: another setting, other bytes
        base = _factory(made)

        def make(name):
            c = base(name)
            if name == "jpeg-420":
                c.options["optimize"] = False
            return c
        return make

    made.clear()
    rd.run_rd(folder, out, codec_factory=tweaked(made), **kw)
    assert len(made["jpeg-420"]) >= 6 and made["bc1"] == []  # every JPEG point redone, BC1 not
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == 9 + 6  # the new records are appended ...
    cache = rd.Cache(out, {"max_side": None, "schedule": rd.DEFAULT_SCHEDULE})
    lines = (out / "records.jsonl").read_text().splitlines()
    assert len(lines) == len(cache.records) == 9  # ... and loading drops the superseded ones
    new = {r["image"]: r for r in map(json.loads, lines) if r["codec"] == "jpeg-420" and r["target_bpp"] == 1}
    assert all(r["settings"] == tweaked({})("jpeg-420").settings for r in new.values())
    # the report takes only records made with the current settings: none of JPEG's now
    assert {r["codec"] for r in cache.current(get_codec)} == {"bc1"}
    assert {r["codec"] for r in cache.current(tweaked({}))} == {"bc1", "jpeg-420"}

    # a record from before settings were recorded is never re-used
    recs = [json.loads(x) for x in lines]
    old = next(r for r in recs if r["codec"] == "bc1")
    del old["settings"]
    (out / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in recs))
    made.clear()
    rd.run_rd(folder, out, codec_factory=tweaked(made), **kw)
    assert len(made["bc1"]) == 1 and made["jpeg-420"] == []


def test_run_writes_report(folder, tmp_path):
    out = tmp_path / "out"
    summary = rd.run_rd(folder, out, bpp=[0.5, 1, 2, 3], codecs="jpeg-420,jpeg-444,bc1,astc-8x8",
                        progress=False)
    assert summary["datasets"] == {"all": ["anime-coffee", "cat", "photo-astronaut"],
                                   "stylised": ["anime-coffee"], "photo": ["photo-astronaut"],
                                   "anime": ["anime-coffee"], "other": ["cat"]}
    doc = json.loads((out / "json" / "all" / "jpeg-444.json").read_text())
    assert doc["name"] == "JPEG 4:4:4" and "4:4:4" in doc["description"]
    res = doc["results"]
    for key in ("bpp", "psnr-rgb", "ssim", "ms-ssim", "flip", "encoding_time", "decoding_time", "target_bpp"):
        assert len(res[key]) == len(res["bpp"]) == 4, key
    assert all(b <= t for b, t in zip(res["bpp"], res["target_bpp"]))
    assert res["psnr-rgb"] == sorted(res["psnr-rgb"])
    assert "LPIPS" in doc["notes"]
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    mine = [r for r in recs if r["codec"] == "jpeg-444" and r["target_bpp"] == 1.0]
    assert res["bpp"][1] == pytest.approx(np.mean([r["bpp"] for r in mine]))
    assert res["psnr-rgb"][1] == pytest.approx(np.mean([r["psnr-rgb"] for r in mine]))
    bc1 = json.loads((out / "json" / "photo" / "bc1.json").read_text())
    assert bc1["kind"] == "fixed" and len(bc1["results"]["bpp"]) == 1
    assert "jpeg-444" in summary["bd"]["all"] and "bd_psnr_db" in summary["bd"]["all"]["jpeg-444"]
    table = (out / "table.md").read_text()
    assert "| JPEG 4:4:4 |" in table and "| ASTC 8x8 |" in table and "anchor" in table
    for p in summary["plots"]:
        assert (out / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert summary["imagegs_targets"] == {"status": "imagegs not in these records"}


def test_target_below_floor_is_left_out(folder, tmp_path):
    out = tmp_path / "out"
    rd.run_rd(folder, out, bpp="0.01,1", codecs="jpeg-420", progress=False)
    doc = json.loads((out / "json" / "all" / "jpeg-420.json").read_text())
    assert doc["results"]["target_bpp"] == [1.0]
    (miss,) = doc["missing"]
    assert miss["target_bpp"] == 0.01 and "cannot go below" in miss["reason"]
    assert len(miss["floor_bpp"]) == 3 and min(miss["floor_bpp"]) > 0.01
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    low = [r for r in recs if r["target_bpp"] == 0.01]
    assert len(low) == 3 and not any(r["reached"] for r in low)


# ------------------------------------------------------------------------------------ imagegs


def _fake_igs(monkeypatch, calls):
    """A stand-in imagegs.codec with the agreed contract (encode(image, bpp=...), decode)."""
    mod = types.ModuleType("imagegs.codec")

    def encode(image, *, bpp=None, num_gaussians=None, **options):
        calls.append((image.shape, bpp, options))
        n = int(bpp * image.shape[0] * image.shape[1] / 8)
        return bytes([image[0, 0, 0]]) * max(n - 3, 1)  # an encoder landing a bit under

    def decode(data, *, height=None, width=None):
        return np.full((height, width, 3), data[0], np.uint8)

    mod.encode, mod.decode = encode, decode
    monkeypatch.setitem(sys.modules, "imagegs.codec", mod)
    monkeypatch.setattr(imagegs, "codec", mod, raising=False)


def test_imagegs_adapter_uses_direct_rate_control(folder, tmp_path, monkeypatch):
    calls = []
    _fake_igs(monkeypatch, calls)
    c = get_codec("imagegs", seed=3)
    assert c.kind == "direct"
    img = np.full((40, 50, 3), 7, np.uint8)
    r = search_quality(c, img, 0.3)
    assert r.quality == 0.3 and r.bpp == bpp_of(r.data, 40, 50) < 0.3 and r.trials == 1
    assert calls == [((40, 50, 3), 0.3, {"seed": 3})]
    np.testing.assert_array_equal(c.decode(r.data, height=40, width=50), img)
    summary = rd.run_rd(folder, tmp_path / "o", bpp="0.5,1,2", codecs="imagegs,jpeg-420,bc1", progress=False)
    assert len(calls) == 1 + 9  # one encode per (image, target): no search
    assert all(options == {"schedule": "c2f"} for _, _, options in calls[1:])  # the encoder's default
    assert "imagegs" in summary["bd"]["all"]
    assert set(summary["imagegs_targets"]) >= {"bc1_at_0.5"}


def test_schedule_reaches_imagegs_and_settings(folder, tmp_path, monkeypatch):
    calls = []
    _fake_igs(monkeypatch, calls)
    out = tmp_path / "o"
    rd.run_rd(folder, out, bpp="1", codecs="imagegs,bc1", schedule="fast", progress=False, report=False)
    assert [options for _, _, options in calls] == [{"schedule": "fast"}] * 3
    assert json.loads((out / "settings.json").read_text()) == {"max_side": None, "schedule": "fast"}
    with pytest.raises(rd.RDError, match="use another --out"):  # never mix two schedules' results
        rd.run_rd(folder, out, bpp="1", codecs="imagegs", progress=False, report=False)
    # a folder from before the schedule was recorded holds "fast" results
    (out / "settings.json").write_text('{"max_side": null}\n')
    rd.run_rd(folder, out, bpp="1,2", codecs="bc1", schedule="fast", progress=False, report=False)
    with pytest.raises(rd.RDError, match="c2f"):
        rd.run_rd(folder, out, bpp="1", codecs="bc1", progress=False, report=False)
    with pytest.raises(rd.RDError, match="unknown --schedule 'slow'"):
        rd.run_rd(folder, tmp_path / "p", codecs="bc1", schedule="slow", progress=False)


def test_imagegs_adapter_without_codec_module(monkeypatch):
    monkeypatch.delattr(imagegs, "codec", raising=False)
    monkeypatch.setitem(sys.modules, "imagegs.codec", None)  # import fails
    c = ImagegsCodec()
    with pytest.raises(CodecError, match="imagegs.codec. is not available"):
        c.check_available()
    with pytest.raises(CodecError, match="not available"):
        c.encode(np.zeros((8, 8, 3), np.uint8), quality=0.3)


# ---------------------------------------------------------------------------------- bad input


def test_bad_inputs(folder, tmp_path):
    run = lambda **kw: rd.run_rd(kw.pop("images", folder), tmp_path / "o", progress=False, **kw)  # noqa: E731
    with pytest.raises(rd.RDError, match="unknown codec 'jpg'"):
        run(codecs="jpeg-420,jpg")
    for bad, msg in (("0.1,abc", "'abc' is not a number"), ("-1", "must be > 0"), ("", "not a number"),
                     ("0.1,inf", "must be > 0"), ([], "at least one")):
        with pytest.raises(rd.RDError, match=msg):
            run(bpp=bad)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(rd.RDError, match="no images"):
        run(images=empty)
    with pytest.raises(rd.RDError, match="not a folder"):
        run(images=tmp_path / "missing")
    with pytest.raises(rd.RDError, match="--max-side"):
        run(max_side=4)
    rd.run_rd(folder, tmp_path / "o", bpp="1", codecs="bc1", progress=False, report=False)
    with pytest.raises(rd.RDError, match="use another --out"):
        rd.run_rd(folder, tmp_path / "o", bpp="1", codecs="bc1", max_side=64, progress=False)


def test_parse_and_categories():
    assert rd.parse_bpp("0.3, 0.1,0.3") == (0.1, 0.3)
    assert rd.parse_codecs("textures,jpeg-420") == ("jpeg-420",) + TEXTURES
    assert "imagegs" in rd.parse_codecs("all") and "imagegs" not in rd.parse_codecs("baselines")
    assert [rd.category_of(n) for n in ("anime-club.png", "Vector-x.png", "kodim01.png", "art.png")] == \
        ["anime", "vector", "other", "other"]


def test_cli_bench_rd(folder, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["bench", "rd", "--images", str(folder), "--bpp", "1,2", "--codecs", "jpeg-420,bc7",
                 "--out", str(out), "--max-side", "64", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "JPEG 4:2:0" in text and "BC7" in text and "table.md" in text
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert max(max(r["width"], r["height"]) for r in recs) == 64
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["bench", "rd", "--images", str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("imagegs: error: ") and "no images" in err and err.count("\n") == 1
    assert main(["bench", "rd", "--images", str(folder), "--out", str(out), "--codecs", "png"]) == 2
    assert "unknown codec 'png'" in capsys.readouterr().err
    assert main(["bench", "rd", "--images", str(folder), "--out", str(out), "--schedule", "slow"]) == 2
    assert "argument --schedule: invalid choice: 'slow'" in capsys.readouterr().err


def test_report_skips_records_of_unknown_codecs(folder, tmp_path):
    from imagegs.bench.report import write_report

    out = tmp_path / "o"
    rd.run_rd(folder, out, bpp="1,2", codecs="jpeg-420", progress=False, report=False)
    recs = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    recs.append(dict(recs[0], codec="retired-codec"))
    summary = write_report(recs, out, images=sorted({r["image"] for r in recs}), targets=(1.0, 2.0))
    assert not (out / "json" / "all" / "retired-codec.json").exists()
    assert (out / "json" / "all" / "jpeg-420.json").exists() and summary["bd"]["all"] == {}
