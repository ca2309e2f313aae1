"""Tests for imagegs.io: every image is made here (or taken from skimage.data) in tmp_path."""

from __future__ import annotations

import io as stdio

import numpy as np
import png
import pytest
import tifffile
import torch
from PIL import Image as PILImage
from PIL import ImageFile, ImageOps
from skimage import data

from imagegs.io import (Image, ImageReadError, atomic_write, read_image, to_uint8, write_image,
                        write_images)

LETTERS = {1: ("L",), 2: ("L", "A"), 3: ("R", "G", "B"), 4: ("R", "G", "B", "A")}


def levels(shape, bit_depth, seed=0):
    """(H, W, C) integers spanning the range; 16-bit ones are odd: 8 bits cannot hold them."""
    rng = np.random.default_rng(seed)
    if bit_depth == 8:
        return rng.integers(0, 256, shape).astype(np.uint8)
    x = rng.integers(0, 32768, shape).astype(np.uint16) * 2 + 1
    x.flat[:2] = (0, 65535)
    return x


def chw(x, bit_depth):
    """(H, W, C) integers -> (C, H, W) float32 tensor in [0, 1]."""
    return torch.from_numpy(x.transpose(2, 0, 1).astype(np.float32) / (2 ** bit_depth - 1))


def as_int(img: Image, bit_depth):
    """Pixels of a read image back to (H, W, C) integers."""
    return np.rint(img.pixels.numpy().transpose(1, 2, 0) * (2 ** bit_depth - 1)).astype(np.int64)


def astronaut(size=32):
    return data.astronaut()[100:100 + size, 180:180 + size]


def save_pil(path, arr_or_img, **options):
    im = arr_or_img if isinstance(arr_or_img, PILImage.Image) else PILImage.fromarray(arr_or_img)
    im.save(path, **options)
    return path


def files_in(folder):
    return sorted(p.name for p in folder.iterdir())


# ---------------------------------------------------------------------------------------------
# Exact round trips and 16 bits


@pytest.mark.parametrize("ext", ["png", "tif"])
@pytest.mark.parametrize("bit_depth", [8, 16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_round_trip_exact(tmp_path, ext, bit_depth, channels):
    x = levels((5, 7, channels), bit_depth)
    path = write_image(chw(x, bit_depth), tmp_path / f"img.{ext}", bit_depth=bit_depth)
    img = read_image(path)
    assert img.pixels.dtype == torch.float32 and img.pixels.shape == (channels, 5, 7)
    assert img.channel_names == LETTERS[channels]
    assert img.groups == [("img", channels)] and img.bit_depths == [bit_depth]
    assert img.source == [path]
    np.testing.assert_array_equal(as_int(img, bit_depth), x)


def test_16bit_files_from_other_writers(tmp_path):
    """Files not written by us: interlaced pypng RGBA, Pillow I;16 grey, planar tifffile RGB."""
    rgba = levels((6, 9, 4), 16)
    with open(tmp_path / "a.png", "wb") as f:
        png.Writer(9, 6, greyscale=False, alpha=True, bitdepth=16, interlace=True).write(
            f, rgba.reshape(6, -1))
    grey = levels((6, 9, 1), 16, seed=1)
    save_pil(tmp_path / "g.png", PILImage.fromarray(grey[..., 0]))
    rgb = levels((6, 9, 3), 16, seed=2)
    tifffile.imwrite(tmp_path / "p.tif", rgb.transpose(2, 0, 1), photometric="rgb",
                     planarconfig="separate")
    for name, x in [("a.png", rgba), ("g.png", grey), ("p.tif", rgb)]:
        img = read_image(tmp_path / name)
        assert img.bit_depths == [16], name
        np.testing.assert_array_equal(as_int(img, 16), x, err_msg=name)


@pytest.mark.parametrize("ext", ["jpg", "webp"])
def test_jpeg_webp(tmp_path, ext):
    """Pillow's (lossy) defaults, and ours: JPEG quality 95, WebP lossless."""
    x = astronaut()
    ours = write_image(chw(x, 8), tmp_path / f"ours.{ext}")
    for path, tolerance in ((save_pil(tmp_path / f"pil.{ext}", x), 6),
                            (ours, 3 if ext == "jpg" else 0)):
        img = read_image(path)
        assert img.channel_names == ("R", "G", "B") and img.bit_depths == [8]
        err = np.abs(as_int(img, 8) - x.astype(np.int64)).mean()
        assert err <= tolerance, (path.name, err)


def test_webp_keeps_alpha_and_hidden_colours(tmp_path):
    x = levels((8, 8, 4), 8)
    x[0, 0, 3] = 0
    img = read_image(write_image(chw(x, 8), tmp_path / "a.webp"))
    np.testing.assert_array_equal(as_int(img, 8), x)


def test_float_tiff(tmp_path):
    x = np.linspace(-0.005, 1.005, 3 * 4 * 5, dtype=np.float32).reshape(4, 5, 3)
    tifffile.imwrite(tmp_path / "f.tif", x, photometric="rgb")
    tifffile.imwrite(tmp_path / "g.tif", x[..., 0])  # Pillow opens this one itself (mode F)
    for name, channels in (("f.tif", 3), ("g.tif", 1)):
        img = read_image(tmp_path / name)
        assert img.bit_depths == [16] and img.channel_names == LETTERS[channels]
        np.testing.assert_array_equal(img.pixels.numpy().transpose(1, 2, 0),
                                      np.clip(x[..., :channels], 0, 1))
    tifffile.imwrite(tmp_path / "hdr.tif", x * 4, photometric="rgb")
    with pytest.raises(ImageReadError, match=r"hdr\.tif.*\[0, 1\]"):
        read_image(tmp_path / "hdr.tif")


# ---------------------------------------------------------------------------------------------
# Modes


def test_grey_alpha_png(tmp_path):
    x = levels((4, 6, 2), 8)
    img = read_image(save_pil(tmp_path / "la.png", PILImage.fromarray(x, "LA")))
    assert img.channel_names == ("L", "A")
    np.testing.assert_array_equal(as_int(img, 8), x)


@pytest.mark.parametrize("transparent", [False, True])
def test_palette(tmp_path, transparent):
    im = PILImage.fromarray(astronaut(16)).convert("P", palette=PILImage.Palette.ADAPTIVE, colors=8)
    options = {"transparency": 3} if transparent else {}
    img = read_image(save_pil(tmp_path / "p.png", im, **options))
    expected = np.asarray(im.convert("RGB"))
    if transparent:
        alpha = np.where(np.asarray(im) == 3, 0, 255)
        expected = np.concatenate([expected, alpha[..., None]], axis=2)
    assert img.channel_names == LETTERS[expected.shape[2]] and img.bit_depths == [8]
    np.testing.assert_array_equal(as_int(img, 8), expected)


def test_colour_key_transparency(tmp_path):
    x = np.full((3, 4), 7, np.uint8)
    x[0, 0] = 9
    img = read_image(save_pil(tmp_path / "k.png", x, transparency=9))
    assert img.channel_names == ("L", "A")
    np.testing.assert_array_equal(as_int(img, 8)[..., 1], np.where(x == 9, 0, 255))


@pytest.mark.parametrize("ext", ["jpg", "tif"])
def test_cmyk_becomes_rgb(tmp_path, ext):
    im = PILImage.fromarray(astronaut(16)).convert("CMYK")
    path = save_pil(tmp_path / f"c.{ext}", im)
    img = read_image(path)
    assert img.channel_names == ("R", "G", "B")
    with PILImage.open(path) as ref:
        np.testing.assert_array_equal(as_int(img, 8), np.asarray(ref.convert("RGB")))


def test_one_bit(tmp_path):
    x = np.arange(20).reshape(4, 5) % 3 == 0
    img = read_image(save_pil(tmp_path / "b.png", PILImage.fromarray(x)))
    assert img.channel_names == ("L",) and img.bit_depths == [8]
    np.testing.assert_array_equal(img.pixels[0].numpy(), x.astype(np.float32))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(tmp_path, orientation):
    im = PILImage.fromarray(levels((4, 6, 3), 8))
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    path = save_pil(tmp_path / "o.png", im, exif=exif)
    with PILImage.open(path) as ref:
        expected = np.asarray(ImageOps.exif_transpose(ref))
    np.testing.assert_array_equal(as_int(read_image(path), 8), expected)


def test_exif_orientation_deep_tiff(tmp_path):
    x = levels((4, 6, 3), 16)
    tifffile.imwrite(tmp_path / "o.tif", x, photometric="rgb", extratags=[(274, 3, 1, 6, True)])
    np.testing.assert_array_equal(as_int(read_image(tmp_path / "o.tif"), 16), np.rot90(x, -1))


def test_unsupported_modes(tmp_path):
    save_pil(tmp_path / "lab.tif", PILImage.new("LAB", (4, 4)))
    tifffile.imwrite(tmp_path / "cmyk16.tif", levels((4, 4, 4), 16), photometric="separated")
    for name in ("lab.tif", "cmyk16.tif"):
        with pytest.raises(ImageReadError, match=rf"{name}.*unsupported"):
            read_image(tmp_path / name)


# ---------------------------------------------------------------------------------------------
# Alpha policies


@pytest.mark.parametrize("policy", ["keep", "drop", "white", "black"])
def test_alpha_policy(tmp_path, policy):
    x = levels((4, 5, 4), 8)
    path = write_image(chw(x, 8), tmp_path / "a.png")
    img = read_image(path, alpha=policy)
    rgb, a = x[..., :3] / 255.0, x[..., 3:] / 255.0
    expected = {"keep": x / 255.0, "drop": rgb,
                "white": rgb * a + (1 - a), "black": rgb * a}[policy]
    assert img.channel_names == LETTERS[expected.shape[2]]
    np.testing.assert_allclose(img.pixels.numpy().transpose(1, 2, 0), expected, atol=1e-6)


def test_alpha_policy_ignores_opaque_images_and_rejects_unknown(tmp_path):
    path = write_image(torch.rand(3, 4, 4), tmp_path / "rgb.png")
    assert read_image(path, alpha="white").channel_names == ("R", "G", "B")
    with pytest.raises(ValueError, match="alpha"):
        read_image(path, alpha="grey")


# ---------------------------------------------------------------------------------------------
# Stacks


def make_stack(folder):
    """albedo RGB (8 bit) + normal RGB (8 bit) + gloss grey (16 bit), 6 x 8."""
    maps = {"albedo": (levels((6, 8, 3), 8, 1), 8), "normal": (levels((6, 8, 3), 8, 2), 8),
            "gloss": (levels((6, 8, 1), 16, 3), 16)}
    folder.mkdir(exist_ok=True)
    for name, (x, depth) in maps.items():
        write_image(chw(x, depth), folder / f"{name}.png", bit_depth=depth)
    return maps


def test_folder_stack_and_split_back(tmp_path):
    maps = make_stack(tmp_path / "tex")
    (tmp_path / "tex" / "notes.txt").write_text("not an image")
    save_pil(tmp_path / "tex" / ".hidden.png", np.zeros((2, 2), np.uint8))
    (tmp_path / "tex" / "sub").mkdir()
    img = read_image(tmp_path / "tex")
    assert img.pixels.shape == (7, 6, 8)
    assert img.groups == [("albedo", 3), ("gloss", 1), ("normal", 3)]  # sorted by name
    assert img.channel_names == ("albedo.R", "albedo.G", "albedo.B", "gloss.L",
                                 "normal.R", "normal.G", "normal.B")
    assert img.bit_depths == [8, 16, 8]

    paths = write_images(img.pixels, tmp_path / "out" / "fit.png", groups=img.groups,
                         bit_depths=img.bit_depths)
    assert [p.name for p in paths] == ["fit_albedo.png", "fit_gloss.png", "fit_normal.png"]
    for (name, _), path in zip(img.groups, paths):
        x, depth = maps[name]
        back = read_image(path)
        assert back.bit_depths == [depth]
        np.testing.assert_array_equal(as_int(back, depth), x)


def test_list_stack_order_and_duplicate_stems(tmp_path):
    make_stack(tmp_path / "a")
    make_stack(tmp_path / "b")
    img = read_image([tmp_path / "a" / "normal.png", str(tmp_path / "b" / "normal.png"),
                      tmp_path / "a" / "gloss.png"])
    assert img.groups == [("normal", 3), ("normal_2", 3), ("gloss", 1)]
    assert img.channel_names[3] == "normal_2.R" and img.channel_names[-1] == "gloss.L"
    assert [p.parent.name for p in img.source] == ["a", "b", "a"]
    single = read_image([tmp_path / "a" / "gloss.png"])
    assert single.channel_names == ("L",) and single.groups == [("gloss", 1)]


def test_write_images_single_group_and_8bit_formats(tmp_path):
    x = levels((4, 4, 4), 16)
    paths = write_images(chw(x, 16), tmp_path / "one.tif", groups=[("rgba", 4)], bit_depths=[16])
    assert paths == [tmp_path / "one.tif"]
    np.testing.assert_array_equal(as_int(read_image(paths[0]), 16), x)
    # JPEG has no 16 bits: that group falls back to 8
    paths = write_images(chw(x[..., :2], 16), tmp_path / "s.jpg", groups=[("a", 1), ("b c", 1)],
                         bit_depths=[16, 8])
    assert [p.name for p in paths] == ["s_a.jpg", "s_b_c.jpg"]
    with pytest.raises(ValueError, match="do not split"):
        write_images(chw(x, 16), tmp_path / "bad.png", groups=[("a", 3)])
    with pytest.raises(ValueError, match="JPEG cannot store alpha"):  # checked before any write
        write_images(chw(x, 16), tmp_path / "t.jpg", groups=[("a", 1), ("b", 1), ("c", 2)])
    assert not (tmp_path / "t_a.jpg").exists()


def test_stack_size_mismatch(tmp_path):
    save_pil(tmp_path / "big.png", np.zeros((8, 6), np.uint8))
    save_pil(tmp_path / "small.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageReadError, match=r"same size.*big\.png 6x8.*small\.png 4x4"):
        read_image(tmp_path)


# ---------------------------------------------------------------------------------------------
# Read errors


def encoded(x, fmt):
    buf = stdio.BytesIO()
    PILImage.fromarray(x).save(buf, fmt)
    return buf.getvalue()


def png16_bytes(x):
    buf = stdio.BytesIO()
    writer = png.Writer(x.shape[1], x.shape[0], greyscale=False, bitdepth=16)
    writer.write(buf, x.reshape(x.shape[0], -1))
    return buf.getvalue()


@pytest.mark.parametrize("case", ["png_half", "png_tail", "jpeg_half", "jpeg_eoi", "png16_half",
                                  "png16_tail"])
def test_truncated_files_error(tmp_path, case):
    kind, cut = case.rsplit("_", 1)
    full = {"png": lambda: encoded(astronaut(64), "PNG"),
            "jpeg": lambda: encoded(astronaut(64), "JPEG"),
            "png16": lambda: png16_bytes(levels((16, 16, 3), 16))}[kind]()
    end = {"half": len(full) // 2, "tail": len(full) - 20, "eoi": len(full) - 2}[cut]
    path = tmp_path / f"cut.{'jpg' if kind == 'jpeg' else 'png'}"
    path.write_bytes(full[:end])
    with pytest.raises(ImageReadError, match=path.name) as info:
        read_image(path)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_tiff_needing_imagecodecs(tmp_path, monkeypatch):
    tifffile.imwrite(tmp_path / "lzw.tif", levels((4, 4, 3), 16), photometric="rgb")

    def asarray(self, *args, **kwargs):  # what tifffile says for LZW without imagecodecs
        raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

    monkeypatch.setattr(tifffile.TiffPage, "asarray", asarray)
    with pytest.raises(ImageReadError, match=r"lzw\.tif.*pip install imagecodecs"):
        read_image(tmp_path / "lzw.tif")


def test_not_an_image(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"\x00garbage" * 50)
    with pytest.raises(ImageReadError, match=r"junk\.png: not an image"):
        read_image(tmp_path / "junk.png")


def test_missing_and_empty(tmp_path):
    with pytest.raises(ImageReadError, match=r"nope\.png: no such file"):
        read_image(tmp_path / "nope.png")
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"zero\.png: file is empty"):
        read_image(tmp_path / "zero.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(ImageReadError, match="no image files"):
        read_image(tmp_path / "empty")
    with pytest.raises(ImageReadError, match="is a folder"):
        read_image([tmp_path / "empty"])
    with pytest.raises(ImageReadError, match="empty list"):
        read_image([])


def test_zero_size(tmp_path):
    with pytest.warns(UserWarning):  # tifffile warns that this is not a conformant TIFF
        tifffile.imwrite(tmp_path / "z.tif", np.zeros((0, 4), np.uint16))
    with pytest.raises(ImageReadError, match=r"z\.tif.*zero size"):
        read_image(tmp_path / "z.tif")


def test_decompression_bomb(tmp_path, monkeypatch):
    save_pil(tmp_path / "b.png", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "b.tif", levels((8, 8, 2), 16), photometric="minisblack",
                     extrasamples=["unassalpha"])  # read by tifffile, not Pillow
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 10)
    for name in ("b.png", "b.tif"):
        with pytest.raises(ImageReadError, match=rf"{name}.*MAX_IMAGE_PIXELS"):
            read_image(tmp_path / name)


# ---------------------------------------------------------------------------------------------
# Writing: errors, quantisation, atomicity


def test_write_errors(tmp_path):
    with pytest.raises(ValueError, match=r"5 channels \(a, b, c, d, e\)"):
        write_image(torch.zeros(5, 2, 2), tmp_path / "x.png", channel_names="abcde")
    with pytest.raises(ValueError, match="JPEG cannot store alpha"):
        write_image(torch.zeros(4, 2, 2), tmp_path / "x.jpg")
    with pytest.raises(ValueError, match="8 bits only"):
        write_image(torch.zeros(3, 2, 2), tmp_path / "x.webp", bit_depth=16)
    with pytest.raises(ValueError, match="cannot write .bmp"):
        write_image(torch.zeros(3, 2, 2), tmp_path / "x.bmp")
    with pytest.raises(ValueError, match="2 channel names for 3"):
        write_image(torch.zeros(3, 2, 2), tmp_path / "x.png", channel_names=("R", "G"))
    assert files_in(tmp_path) == []


def test_quantisation_and_to_uint8(tmp_path):
    x = np.array([0.0, 0.5 / 255 - 1e-4, 0.5 / 255 + 1e-4, 0.5, 1.2, -0.3, np.nan, 1.0],
                 np.float32).reshape(1, 2, 4)
    expected = np.array([0, 0, 1, 128, 255, 0, 0, 255], np.uint8).reshape(2, 4, 1)
    np.testing.assert_array_equal(to_uint8(torch.from_numpy(x)), expected)
    np.testing.assert_array_equal(to_uint8(x[0]), expected)  # (H, W) grey
    img = read_image(write_image(x, tmp_path / "q.png"))
    np.testing.assert_array_equal(as_int(img, 8), expected)


def fail_midway(exc):
    """A replacement encoder that writes part of its output, then fails."""
    def save(self, fp, *args, **kwargs):
        if hasattr(fp, "write"):  # pypng gets an open file, Pillow a path
            fp.write(b"partial")
        else:
            with open(fp, "wb") as f:
                f.write(b"partial")
        raise exc("encoder failed")
    return save


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_atomic_write_cleans_up(tmp_path, monkeypatch, exc):
    monkeypatch.setattr(PILImage.Image, "save", fail_midway(exc))
    with pytest.raises(exc):
        write_image(torch.rand(3, 4, 4), tmp_path / "new.png")
    assert files_in(tmp_path) == []


def test_atomic_write_keeps_existing_file(tmp_path, monkeypatch):
    path = write_image(torch.rand(3, 4, 4), tmp_path / "out.png", bit_depth=16)
    before = path.read_bytes()
    monkeypatch.setattr(png.Writer, "write", fail_midway(RuntimeError))  # the 16-bit encoder
    with pytest.raises(RuntimeError):
        write_image(torch.rand(3, 4, 4), path, bit_depth=16)
    assert files_in(tmp_path) == ["out.png"] and path.read_bytes() == before


def test_atomic_write_helper(tmp_path):
    target = tmp_path / "sub" / "model.bin"
    seen = []

    def write(tmp):
        seen.append(tmp)
        assert tmp.parent == target.parent and tmp.name.startswith(".")
        tmp.write_bytes(b"hello")

    assert atomic_write(target, write) == target
    assert target.read_bytes() == b"hello" and not seen[0].exists()
    assert files_in(target.parent) == ["model.bin"]


@pytest.mark.parametrize("exc", [OSError, KeyboardInterrupt])
def test_atomic_write_failing_writer_leaves_nothing(tmp_path, exc):
    def write(tmp):
        tmp.write_bytes(b"half")
        raise exc("writer failed")

    with pytest.raises(exc):
        atomic_write(tmp_path / "new.bin", write)
    assert files_in(tmp_path) == []  # neither the file nor the temporary file


def test_atomic_write_is_durable(tmp_path, monkeypatch):
    """The content is fsynced before the rename and the folder after it (so a power cut leaves the
    old file or the new one), and a replaced file keeps its permissions."""
    import os
    import stat

    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", stat.S_ISDIR(os.fstat(fd).st_mode), os.fstat(fd).st_size))
        real_fsync(fd)

    def replace(src, dst):
        events.append(("replace",))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    target = tmp_path / "f.bin"
    atomic_write(target, lambda tmp: tmp.write_bytes(b"12345"))
    assert events == [("fsync", False, 5), ("replace",), ("fsync", True, events[-1][2])]
    os.chmod(target, 0o600)
    atomic_write(target, lambda tmp: tmp.write_bytes(b"new"))
    assert target.read_bytes() == b"new" and stat.S_IMODE(target.stat().st_mode) == 0o600
