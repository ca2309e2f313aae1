"""Reading and writing images: single files, texture stacks, 8 and 16 bits, atomic writes.

Everything the library and CLI hand to the fitter is a (C, H, W) float32 tensor in [0, 1]; this
module converts between that and files, and keeps what is needed to write the result back in the
form it came in (channel groups for stacks, bit depth per file, alpha as a channel).

Readers: Pillow for almost everything. Pillow silently reduces 16-bit grey+alpha / RGB / RGBA PNGs
and 16-bit multi-channel TIFFs to 8 bits (and cannot open some of them at all), so those go through
pypng (pure Python, PNG only) and tifffile (TIFF; installed with scikit-image) instead. Pillow's
``ImageFile.LOAD_TRUNCATED_IMAGES`` is left False so that truncated files raise instead of being
padded with grey; PNGs are additionally verified chunk by chunk (CRCs up to IEND), because Pillow
decodes a PNG whose last bytes are cut off without complaint.
"""

from __future__ import annotations

import functools
import os
import re
import secrets
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import png
import tifffile
import torch
from PIL import ExifTags, UnidentifiedImageError
from PIL import Image as PILImage

__all__ = [
    "Image",
    "ImageReadError",
    "SAMPLES",
    "append_record",
    "atomic_write",
    "check_image_path",
    "image_files",
    "max_image_pixels",
    "read_image",
    "read_sample",
    "read_source",
    "readable_extensions",
    "to_uint8",
    "write_image",
    "write_images",
]

PathLike = str | os.PathLike
ALPHA_POLICIES = ("keep", "drop", "white", "black")

# Pillow modes turned into one of the four modes we work with (L, LA, RGB, RGBA). CMYK uses Pillow's
# naive formula (no ICC colour management); 1-bit becomes 0/255 grey; premultiplied modes are
# un-premultiplied. Palette images are handled separately (RGB or RGBA depending on transparency).
_PIL_CONVERT = {"1": "L", "CMYK": "RGB", "YCbCr": "RGB", "HSV": "RGB", "RGBX": "RGB",
                "RGBa": "RGBA", "La": "LA", "PA": "RGBA"}
_LETTERS_BY_CHANNELS = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
# A float image may overshoot [0, 1] by this much (resampling ringing) and is clipped; beyond it
# it is taken to be HDR / unnormalised data and refused.
_FLOAT_TOLERANCE = 0.01

# Writable formats by extension; 16 bits only where the format stores it.
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                  ".tif": "TIFF", ".tiff": "TIFF"}
_DEEP_FORMATS = ("PNG", "TIFF")
_ALPHA_FORMATS = ("PNG", "WEBP", "TIFF")
_SAFE_NAME = re.compile(r"[^\w.-]")  # group names go into file names
# Largest image read, in pixels: a guard against decompression bombs (a tiny file that decodes to
# gigabytes). Pillow's default, unless this environment variable sets another.
MAX_IMAGE_PIXELS_ENV = "IMAGEGS_MAX_IMAGE_PIXELS"
SAMPLE_PREFIX = "skimage:"
# scikit-image sample images that ship inside its wheel (no download needed).
SAMPLES = ("astronaut", "brick", "camera", "cat", "cell", "chelsea", "checkerboard", "clock",
           "coffee", "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field",
           "immunohistochemistry", "logo", "microaneurysms", "moon", "page", "retina", "rocket",
           "shepp_logan_phantom", "text")


class ImageReadError(ValueError):
    """An image could not be read; the message names the file and says why (no deep traceback)."""


@dataclass
class Image:
    """Pixels read from one file or a stack of files, with what is needed to write them back.

    Attributes:
        pixels: (C, H, W) float32 in [0, 1]. Alpha, when kept, is the last channel of its group
            and is *straight* (not premultiplied).
        groups: one ``(name, n_channels)`` per source file, in channel order; name is the file
            stem, made unique with ``_2``, ``_3``... when stems repeat.
        channel_names: C names: ``("R", "G", "B", "A")``, ``("L",)``, ``("L", "A")``...; in a stack
            of several files prefixed with the group name: ``("albedo.R", ..., "gloss.L")``.
        bit_depths: 8 or 16 per group (16 for 16-bit integer and for float sources).
        source: the files read, one per group.
    """

    pixels: torch.Tensor
    groups: list[tuple[str, int]]
    channel_names: tuple[str, ...]
    bit_depths: list[int]
    source: list[Path]

    @property
    def height(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[2])

    def custom_layout(self) -> tuple[tuple[str, ...] | None, list[tuple[str, int]] | None, list[int] | None]:
        """(channel names, groups, bit depths), each None where it is the default for a plain
        image (RGB-like names, one group, 8 bits): what a compact file needs to store."""
        c = len(self.channel_names)
        single = len(self.groups) == 1
        plain = single and "".join(self.channel_names) == _LETTERS_BY_CHANNELS.get(c)
        return (None if plain else tuple(self.channel_names),
                None if single else [tuple(gr) for gr in self.groups],
                None if all(d == 8 for d in self.bit_depths) else list(self.bit_depths))


@dataclass
class _Decoded:
    """One decoded file before orientation and alpha policy: (H, W, C) float32 in [0, 1]."""

    pixels: np.ndarray
    letters: str  # one of _LETTERS_BY_CHANNELS' values
    bit_depth: int
    orientation: int = 1  # EXIF orientation tag value, 1 = as stored


# ----------------------------------------------------------------------------------------------
# Reading


def read_image(source: PathLike | Sequence[PathLike], *, alpha: str = "keep") -> Image:
    """Read one image, every image in a folder, or a list of images, as one (C, H, W) tensor.

    Args:
        source: a file; a folder (all files Pillow can open, sorted by name, hidden files and
            sub-folders ignored); or a list of files (in the given order). Several files are
            stacked as channels (a texture stack: albedo RGB + normal RGB + gloss L -> 7 channels)
            and must all have the same width and height.
        alpha: what to do with an alpha channel (straight alpha assumed, as PNG/WebP/TIFF store):
            ``"keep"`` (default) keeps it as one more channel, fitted like the others and written
            back as alpha; ``"drop"`` discards it (colours under transparent pixels come through
            as stored); ``"white"`` / ``"black"`` composite the colours onto that background and
            remove the channel.

    Returns:
        An :class:`Image`. Grey images have 1 channel (2 with alpha), colour ones 3 (4 with
        alpha). Palette images become RGB, or RGBA if they have transparency (so do grey/RGB
        images with a PNG colour-key); CMYK becomes RGB (Pillow's formula, no ICC profile); 1-bit
        becomes 8-bit grey; EXIF orientation is applied; ICC profiles are ignored (values are taken
        as stored); of a multi-frame file only the first frame is read. 16-bit PNG and TIFF keep
        all 16 bits. Float images (TIFF) are accepted when their values lie in [0, 1] up to a 0.01
        overshoot, which is clipped; anything else (HDR, NaN) is refused.

    Raises:
        ImageReadError: missing file, folder with no images, not an image, truncated or corrupt
            file, zero size, image over Pillow's decompression-bomb limit, unsupported mode,
            stack members of different sizes.
        ValueError: unknown ``alpha`` policy.
    """
    if alpha not in ALPHA_POLICIES:
        raise ValueError(f"alpha must be one of {ALPHA_POLICIES}, got {alpha!r}")
    paths = image_files(source)
    decoded = [_apply_alpha(_read_one(p), alpha) for p in paths]

    sizes = {d.pixels.shape[:2] for d in decoded}
    if len(sizes) > 1:
        listing = ", ".join(f"{p.name} {d.pixels.shape[1]}x{d.pixels.shape[0]}"
                            for p, d in zip(paths, decoded))
        raise ImageReadError(
            f"images in a stack must have the same size (width x height): {listing}")

    names = _unique_names([p.stem for p in paths])
    stacked = len(paths) > 1
    channel_names = tuple(f"{name}.{c}" if stacked else c
                          for name, d in zip(names, decoded) for c in d.letters)
    pixels = np.concatenate([d.pixels for d in decoded], axis=2) if stacked else decoded[0].pixels
    return Image(
        pixels=torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1))),
        groups=[(name, len(d.letters)) for name, d in zip(names, decoded)],
        channel_names=channel_names,
        bit_depths=[d.bit_depth for d in decoded],
        source=paths,
    )


def image_files(source: PathLike | Sequence[PathLike]) -> list[Path]:
    """The image files that :func:`read_image` reads for ``source``, in channel order: a file; a
    folder's image files (sorted by name, hidden files and sub-folders ignored); or a list of
    files. ImageReadError for missing files and folders without images."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            exts = readable_extensions()
            paths = sorted((p for p in path.iterdir()
                            if p.is_file() and not p.name.startswith(".")
                            and p.suffix.lower() in exts), key=lambda p: p.name)
            if not paths:
                raise ImageReadError(f"{path}: folder contains no image files")
            return paths
        paths = [path]
    else:
        paths = [Path(p) for p in source]
        if not paths:
            raise ImageReadError("empty list of image files")
    for p in paths:
        if not p.exists():
            raise ImageReadError(f"{p}: no such file")
        if p.is_dir():
            raise ImageReadError(f"{p}: is a folder (pass a folder on its own, not in a list)")
    return paths


@functools.cache
def readable_extensions() -> frozenset[str]:
    """Lower-case extensions (with dot) of the formats Pillow can open."""
    return frozenset(ext for ext, fmt in PILImage.registered_extensions().items()
                     if fmt in PILImage.OPEN)


def _unique_names(stems: list[str]) -> list[str]:
    """Stems made unique by suffixing ``_2``, ``_3``... to repeats, in order."""
    seen: set[str] = set()
    names = []
    for stem in stems:
        name, k = stem, 2
        while name in seen:
            name, k = f"{stem}_{k}", k + 1
        seen.add(name)
        names.append(name)
    return names


def _read_one(path: Path) -> _Decoded:
    """Decode one file, oriented, with every failure turned into an ImageReadError."""
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path.name}: file is empty")
    limit = max_image_pixels()
    try:
        with warnings.catch_warnings():  # Pillow warns between 1x and 2x its limit: refuse instead
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            saved, PILImage.MAX_IMAGE_PIXELS = PILImage.MAX_IMAGE_PIXELS, limit
            try:
                dec = _decode(path)
            finally:
                PILImage.MAX_IMAGE_PIXELS = saved
    except ImageReadError:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning):
        raise ImageReadError(_too_large(path, None, limit)) from None
    except Exception as e:  # Pillow/pypng/tifffile/zlib raise many types for bad data
        raise ImageReadError(f"{path.name}: cannot read image, the file may be truncated or "
                             f"corrupt ({type(e).__name__}: {e})") from None
    _check_dimensions(path, dec.pixels.shape[1], dec.pixels.shape[0])
    dec.pixels = _orient(dec.pixels, dec.orientation)
    return dec


def _decode(path: Path) -> _Decoded:
    """Pick the reader that keeps all the bits of this file and decode it."""
    try:
        im = PILImage.open(path)
    except UnidentifiedImageError:
        if _is_tiff(path):  # e.g. 16-bit grey+alpha or float RGB TIFF: Pillow has no mode for it
            return _decode_tiff(path)
        raise ImageReadError(
            f"{path.name}: not an image file, or a format Pillow cannot read") from None
    with im:
        if not _pillow_truncates_bits(im, path):
            return _decode_pillow(im, path)
        if im.format == "TIFF":
            return _decode_tiff(path)
        return _decode_png16(im, path)


def _is_tiff(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")


def _pillow_truncates_bits(im: PILImage.Image, path: Path) -> bool:
    """Whether Pillow would hand this (opened, not yet decoded) image back with fewer bits.

    Pillow keeps 16/32 bits only in its single-channel modes (I;16*, I, F); 16-bit LA/RGB/RGBA PNG
    and multi-channel TIFF samples are reduced to 8 bits.
    """
    if im.mode.startswith("I") or im.mode == "F":
        return False
    if im.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(26)  # signature (8), IHDR length+type (8), width, height, bit depth
        return len(header) == 26 and header[24] == 16
    if im.format == "TIFF":
        bits = im.tag_v2.get(258, 8)  # BitsPerSample: int or one per sample
        return max(bits if isinstance(bits, tuple) else (bits,)) > 8
    return False


def _decode_pillow(im: PILImage.Image, path: Path) -> _Decoded:
    """Decode with Pillow, converting its modes to L / LA / RGB / RGBA (or 16-bit / float L)."""
    im.load()  # Pillow decodes lazily: force it here so corrupt data raises now
    if im.format == "PNG":
        with PILImage.open(path) as check:
            check.verify()  # chunk CRCs up to IEND: catches a cut-off end that load() tolerates
    orientation = _exif_orientation(im)
    mode = im.mode
    if mode in ("P", "L", "RGB") and "transparency" in im.info:
        im = im.convert({"L": "LA"}.get(mode, "RGBA"))  # palette / colour-key transparency
    elif mode == "P":
        im = im.convert("RGB")
    elif mode in _PIL_CONVERT:
        im = im.convert(_PIL_CONVERT[mode])
    mode = im.mode

    if mode in _LETTERS_BY_CHANNELS.values():
        arr = np.asarray(im, dtype=np.uint8).reshape(im.height, im.width, len(mode))
        return _Decoded(_unit(arr, 255), mode, 8, orientation)
    if mode.startswith("I;16"):
        arr = np.asarray(im).astype(np.uint16)[..., None]  # any byte order -> native
        return _Decoded(_unit(arr, 65535), "L", 16, orientation)
    if mode == "I":  # 32-bit integer grey: only a 16-bit range makes sense as [0, 1] data
        arr = np.asarray(im)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise ImageReadError(f"{path.name}: 32-bit integer image with values outside 0..65535 "
                                 "is not supported")
        return _Decoded(_unit(arr[..., None], 65535), "L", 16, orientation)
    if mode == "F":
        return _Decoded(_float_unit(np.asarray(im)[..., None], path), "L", 16, orientation)
    raise ImageReadError(f"{path.name}: unsupported image mode {mode!r} (supported: grey, "
                         "grey+alpha, RGB, RGBA, palette, CMYK, 1-bit, 16-bit, float)")


def _decode_png16(im: PILImage.Image, path: Path) -> _Decoded:
    """16-bit grey+alpha / RGB / RGBA PNG via pypng (Pillow would keep only 8 bits).

    pypng is pure Python: about 2 s per megapixel for adaptively filtered files; only these files
    take this path. ``asDirect`` expands a tRNS colour key to alpha and honours sBIT, so values
    are scaled by the bit depth it reports.
    """
    orientation = _exif_orientation(im)  # Pillow reads PNG eXIf; it also validates the data
    with open(path, "rb") as f:
        width, height, rows, info = png.Reader(file=f).asDirect()
        arr = np.array(list(rows), dtype=np.uint16)
    planes = info["planes"]
    arr = arr.reshape(height, width, planes)
    return _Decoded(_unit(arr, 2 ** info["bitdepth"] - 1), _LETTERS_BY_CHANNELS[planes], 16,
                    orientation)


def _decode_tiff(path: Path) -> _Decoded:
    """Deep or float TIFF via tifffile (first page): grey, grey+alpha, RGB, RGBA."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        _check_dimensions(path, page.imagewidth, page.imagelength)
        photometric = int(page.photometric)
        bits = page.bitspersample
        orientation_tag = page.tags.get(274)
        axes = page.axes
        try:
            arr = page.asarray()
        except ValueError as e:  # e.g. LZW / JPEG compression: tifffile needs imagecodecs
            if "imagecodecs" not in str(e):
                raise
            raise ImageReadError(f"{path.name}: this TIFF's compression ({page.compression.name}) "
                                 "needs the optional 'imagecodecs' package: pip install imagecodecs"
                                 ) from None
    if axes.startswith("S"):  # planar configuration: samples first
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3:
        raise ImageReadError(f"{path.name}: unsupported TIFF layout (axes {axes})")
    channels = arr.shape[2]
    minisblack, rgb = int(tifffile.PHOTOMETRIC.MINISBLACK), int(tifffile.PHOTOMETRIC.RGB)
    if not ((photometric == minisblack and channels <= 2)
            or (photometric == rgb and channels in (3, 4))):
        raise ImageReadError(
            f"{path.name}: unsupported TIFF (photometric {tifffile.PHOTOMETRIC(photometric).name}, "
            f"{channels} samples of {arr.dtype}); supported: grey, grey+alpha, RGB, RGBA")
    if arr.dtype.kind == "f":
        pixels, depth = _float_unit(arr, path), 16
    elif arr.dtype.kind in "ub" and arr.dtype.itemsize <= 2:
        maxval = 2 ** bits - 1 if arr.dtype.kind == "u" else 1  # e.g. 12-bit data in uint16
        pixels, depth = _unit(arr, maxval), 16 if bits > 8 else 8
    else:
        raise ImageReadError(f"{path.name}: unsupported TIFF sample type {arr.dtype}")
    orientation = int(orientation_tag.value) if orientation_tag is not None else 1
    return _Decoded(pixels, _LETTERS_BY_CHANNELS[channels], depth, orientation)


def _check_dimensions(path: Path, width: int, height: int) -> None:
    """Refuse zero-size images, and apply Pillow's decompression-bomb limit for the readers that
    bypass Pillow (call before decoding)."""
    if width == 0 or height == 0:
        raise ImageReadError(f"{path.name}: image has zero size ({width}x{height})")
    limit = max_image_pixels()
    if width * height > limit:
        raise ImageReadError(_too_large(path, (width, height), limit))


def max_image_pixels() -> int:
    """The largest image :func:`read_image` reads, in pixels: ``$IMAGEGS_MAX_IMAGE_PIXELS`` if set,
    else Pillow's decompression-bomb limit (89,478,485 pixels, e.g. 9459 x 9459)."""
    text = os.environ.get(MAX_IMAGE_PIXELS_ENV)
    if text is None or not text.strip():
        return int(PILImage.MAX_IMAGE_PIXELS or 2**63 - 1)
    try:
        value = int(text)
        if value < 1:
            raise ValueError
    except ValueError:
        raise ImageReadError(f"{MAX_IMAGE_PIXELS_ENV}={text!r}: must be a positive integer") from None
    return value


def _too_large(path: Path, size: tuple[int, int] | None, limit: int) -> str:
    """The message for an image over :func:`max_image_pixels`."""
    if size is None:  # Pillow refused before we saw the size: ask it again without decoding
        try:
            saved, PILImage.MAX_IMAGE_PIXELS = PILImage.MAX_IMAGE_PIXELS, None
            with PILImage.open(path) as im:
                size = im.size
        except Exception:  # pragma: no cover - the header was readable a moment ago
            size = None
        finally:
            PILImage.MAX_IMAGE_PIXELS = saved
    what = f"{size[0]}x{size[1]} = {size[0] * size[1]:,} pixels" if size else "the image"
    return (f"{path.name}: {what} is over the limit of {limit:,} pixels (a guard against "
            f"decompression bombs); if you trust this file, set {MAX_IMAGE_PIXELS_ENV} to a "
            "larger number")


def _unit(arr: np.ndarray, maxval: int) -> np.ndarray:
    """Integer samples -> float32 in [0, 1]."""
    return arr.astype(np.float32) / np.float32(maxval)


def _float_unit(arr: np.ndarray, path: Path) -> np.ndarray:
    """Float samples -> float32 in [0, 1], clipping a small overshoot; refuses HDR / NaN data."""
    arr = arr.astype(np.float32)
    if arr.size:
        lo, hi = float(np.min(arr)), float(np.max(arr))  # NaN propagates into lo/hi
        if not (lo >= -_FLOAT_TOLERANCE and hi <= 1 + _FLOAT_TOLERANCE):
            raise ImageReadError(
                f"{path.name}: float image with values in [{lo:g}, {hi:g}]; only float images in "
                "[0, 1] are supported (no HDR): convert it to 8 or 16 bits first")
    return np.clip(arr, 0.0, 1.0)


def _exif_orientation(im: PILImage.Image) -> int:
    """EXIF orientation (1..8; 1 when absent or unreadable: a broken EXIF block is not fatal)."""
    try:
        value = int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except (OSError, ValueError, TypeError, SyntaxError):
        return 1
    return value if 1 <= value <= 8 else 1


def _orient(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation to (H, W, C) pixels, as ``ImageOps.exif_transpose`` does."""
    if orientation in (5, 6, 7, 8):  # the ones that swap width and height
        arr = arr.transpose(1, 0, 2)
    flip_rows = orientation in (3, 4, 7, 8)
    flip_cols = orientation in (2, 3, 6, 7)
    return arr[::-1 if flip_rows else 1, ::-1 if flip_cols else 1]


def _apply_alpha(dec: _Decoded, policy: str) -> _Decoded:
    """Apply the alpha policy of :func:`read_image` to one decoded file (alpha is last)."""
    if policy == "keep" or not dec.letters.endswith("A"):
        return dec
    colour, a = dec.pixels[..., :-1], dec.pixels[..., -1:]
    if policy in ("white", "black"):
        background = 1.0 if policy == "white" else 0.0
        colour = colour * a + background * (1.0 - a)
    dec.pixels, dec.letters = np.ascontiguousarray(colour), dec.letters[:-1]
    return dec


def sample_name(arg: str) -> str | None:
    """The scikit-image sample an image argument names, or None for a path.

    ``skimage:NAME`` always names a sample; a bare ``astronaut`` does unless such a file exists.
    """
    if arg.startswith(SAMPLE_PREFIX):
        return arg[len(SAMPLE_PREFIX):]
    if arg == "astronaut" and not Path(arg).exists():
        return arg
    return None


def read_sample(name: str, *, alpha: str = "keep") -> Image:
    """A scikit-image sample image (one of :data:`SAMPLES`, shipped in its wheel) as an :class:`Image`:
    8 bits, 16 for float samples."""
    if name not in SAMPLES:
        raise ImageReadError(f"unknown scikit-image sample {name!r}; choose one of {', '.join(SAMPLES)}")
    if alpha not in ALPHA_POLICIES:
        raise ValueError(f"alpha must be one of {ALPHA_POLICIES}, got {alpha!r}")
    from skimage import data

    arr = np.asarray(getattr(data, name)())
    pixels = _unit(arr, np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else arr.astype(np.float32)
    pixels = pixels[..., None] if pixels.ndim == 2 else pixels
    depth = 16 if arr.dtype.kind == "f" or arr.dtype.itemsize > 1 else 8
    dec = _apply_alpha(_Decoded(pixels, _LETTERS_BY_CHANNELS[pixels.shape[2]], depth), alpha)
    return Image(pixels=torch.from_numpy(np.ascontiguousarray(dec.pixels.transpose(2, 0, 1))),
                 groups=[(name, len(dec.letters))], channel_names=tuple(dec.letters),
                 bit_depths=[depth], source=[Path(SAMPLE_PREFIX + name)])


def read_source(images: PathLike | Sequence[PathLike], *, alpha: str = "keep") -> Image:
    """What the commands read as their input: one file, a folder or several files (a texture
    stack), or a scikit-image sample (``astronaut``, ``skimage:NAME``)."""
    items = [images] if isinstance(images, (str, os.PathLike)) else list(images)
    samples = [sample_name(str(a)) for a in items]
    if any(s is not None for s in samples):
        if len(items) > 1:
            raise ImageReadError("a scikit-image sample must be the only image (no stacks of samples)")
        return read_sample(samples[0], alpha=alpha)
    return read_image(items[0] if len(items) == 1 else items, alpha=alpha)



# ----------------------------------------------------------------------------------------------
# Writing


def atomic_write(path: PathLike, write_fn: Callable[[Path], object]) -> Path:
    """Create ``path`` all at once and durably: ``write_fn`` writes a temporary file, which is
    flushed to disk and then replaces ``path``. Every file imagegs writes goes through here.

    ``write_fn`` receives the *path* of a temporary file in the same folder (named
    ``.<name>.<random>.tmp``, so it does not carry the real extension: pass the format explicitly)
    and must write the whole content there. Then the temporary file is fsynced, given the mode of
    the file it replaces (a new file gets the umask's default), moved onto ``path`` with
    ``os.replace`` (atomic on POSIX and Windows) and the folder is fsynced (where the platform
    allows), so readers see either the old file or the complete new one, after a crash or power
    cut too. On any exception, Ctrl-C included, the temporary file is removed and ``path`` is
    left as it was. Missing parent folders are created.

    Returns:
        ``path`` as a :class:`Path`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, f"cannot create its folder ({e.strerror})", str(path)) from None
    while True:  # reserve a fresh name; 0o666 lets the umask decide a new file's permissions
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            break
        except FileExistsError:
            continue
        except OSError as e:  # name the user's file, not our temporary one
            raise OSError(e.errno, e.strerror, str(path)) from None
    try:
        write_fn(tmp)
        _fsync_file(tmp)
        try:
            os.chmod(tmp, path.stat().st_mode & 0o7777)  # replacing a file keeps its permissions
        except FileNotFoundError:
            pass
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        if e.filename is not None and Path(e.filename) == tmp:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def append_record(path: PathLike, record: dict) -> None:
    """Append ``record`` to a JSON-lines file as one whole line, in one ``write``, fsynced: an
    interruption leaves at most a cut-off last line, which readers of such files drop (the
    resumable benchmark caches and batch manifests)."""
    import json

    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    """Flush ``path``'s content to disk (whoever wrote it: fsync acts on the file, not the handle)."""
    fd = os.open(path, os.O_RDWR)  # Windows needs write access to fsync
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: folders cannot be opened or fsynced on
    every platform, e.g. Windows)."""
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def write_image(pixels: torch.Tensor | np.ndarray, path: PathLike, *, bit_depth: int = 8,
                channel_names: Sequence[str] | None = None) -> Path:
    """Write (C, H, W) pixels in [0, 1] to one image file, atomically.

    Values are clipped to [0, 1] (NaN -> 0) and rounded to the nearest of 2**bit_depth levels.
    C = 1 grey, 2 grey+alpha, 3 RGB, 4 RGBA (straight alpha). The format follows the extension:
    PNG (8/16 bit), TIFF (8/16 bit, deflate-compressed), JPEG (8 bit, quality 95, no chroma
    subsampling, no alpha), WebP (8 bit, lossless; Pillow stores grey as RGB).

    Args:
        pixels: (C, H, W) tensor or array, or (H, W) for grey.
        path: output file; its extension picks the format.
        bit_depth: 8 or 16 (16 only for PNG and TIFF).
        channel_names: optional names of the C channels (e.g. ``Image.channel_names``); checked
            against C and used in error messages.

    Returns:
        ``path`` as a :class:`Path`.

    Raises:
        ValueError: unsupported C, extension, bit depth, or alpha for JPEG.
    """
    path = Path(path)
    arr = _as_hwc(pixels)
    fmt = _check_writable(arr.shape[2], path, bit_depth, channel_names)
    q = _quantise(arr, bit_depth)
    return atomic_write(path, functools.partial(_ENCODERS[fmt], q))


def write_images(pixels: torch.Tensor | np.ndarray, path: PathLike, *,
                 groups: Sequence[tuple[str, int]], bit_depths: Sequence[int] | None = None
                 ) -> list[Path]:
    """Write a (C, H, W) stack back as one file per channel group (the inverse of a stack read).

    With one group this is :func:`write_image` to ``path``. With several, group ``name`` goes to
    ``<stem>_<name><suffix>`` next to ``path`` (out.png -> out_albedo.png, out_normal.png, ...).
    Each file is written at its group's bit depth (``bit_depths``, default 8) where the format
    stores it, else at 8 bits. Every group is checked before any file is written, and each file
    is written atomically.

    Returns:
        The paths written, in group order.
    """
    path = Path(path)
    arr = _as_hwc(pixels)
    if sum(n for _, n in groups) != arr.shape[2] or any(n < 1 for _, n in groups):
        raise ValueError(f"channel groups {list(groups)} do not split {arr.shape[2]} channels")
    if bit_depths is None:
        bit_depths = [8] * len(groups)
    if len(bit_depths) != len(groups):
        raise ValueError(f"{len(bit_depths)} bit depths for {len(groups)} groups")
    fmt = _write_format(path)
    depths = [d if fmt in _DEEP_FORMATS else 8 for d in bit_depths]
    if len(groups) == 1:
        targets = [path]
    else:
        targets = [path.with_name(f"{path.stem}_{_SAFE_NAME.sub('_', name)}{path.suffix}")
                   for name, _ in groups]
    starts = np.cumsum([0] + [n for _, n in groups])
    parts = [arr[..., s:e] for s, e in zip(starts[:-1], starts[1:])]
    for part, target, depth, (name, _) in zip(parts, targets, depths, groups):
        _check_writable(part.shape[2], target, depth, None, what=f"group {name!r}")
    return [atomic_write(target, functools.partial(_ENCODERS[fmt], _quantise(part, depth)))
            for part, target, depth in zip(parts, targets, depths)]


def to_uint8(pixels: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) pixels in [0, 1] -> (H, W, C) uint8, as round(clip(x, 0, 1) * 255).

    The 8-bit quantisation applied before computing metrics and when writing 8-bit files.
    """
    return _quantise(_as_hwc(pixels), 8)


def _as_hwc(pixels: torch.Tensor | np.ndarray) -> np.ndarray:
    """(C, H, W) or (H, W) tensor/array -> (H, W, C) float32 array (a view when possible)."""
    if isinstance(pixels, torch.Tensor):
        pixels = pixels.detach().to("cpu", torch.float32).numpy()
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"pixels must be (C, H, W), got shape {arr.shape}")
    return arr.transpose(1, 2, 0)


def _quantise(arr: np.ndarray, bit_depth: int) -> np.ndarray:
    """(H, W, C) floats -> uint8/uint16, clip to [0, 1] (NaN -> 0) and round to nearest."""
    maxval, dtype = (255, np.uint8) if bit_depth == 8 else (65535, np.uint16)
    x = np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0) * np.float32(maxval)
    return np.rint(x).astype(dtype)


def _write_format(path: Path) -> str:
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        what = f"{path.suffix} files" if path.suffix else "a file without an extension"
        raise ValueError(f"{path}: cannot write {what}; use one of {', '.join(sorted(_WRITE_FORMATS))}")
    return fmt


def check_image_path(path: PathLike, *, bit_depth: int | None = None) -> str:
    """The format that :func:`write_image` picks for ``path``; a ValueError naming ``path`` if its
    extension is not one imagegs writes, or (``bit_depth=16``) if the format stores 8 bits only."""
    path = Path(path)
    fmt = _write_format(path)
    if bit_depth is not None and bit_depth not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and fmt not in _DEEP_FORMATS:
        raise ValueError(f"{path}: {fmt} stores 8 bits only; use .png or .tif for 16 bits")
    return fmt


def _check_writable(channels: int, path: Path, bit_depth: int,
                    channel_names: Sequence[str] | None, *, what: str = "pixels") -> str:
    """The format for ``path``, after checking it can hold these channels at this depth."""
    fmt = _write_format(path)
    if channel_names is not None and len(channel_names) != channels:
        raise ValueError(f"{len(channel_names)} channel names for {channels} channels")
    if channels not in _LETTERS_BY_CHANNELS:
        names = f" ({', '.join(channel_names)})" if channel_names else ""
        raise ValueError(f"{path.name}: {what} has {channels} channels{names}; an image file "
                         "holds 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA): use write_images "
                         "for stacks")
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if bit_depth == 16 and fmt not in _DEEP_FORMATS:
        raise ValueError(f"{path.name}: {fmt} stores 8 bits only; use PNG or TIFF for 16 bits")
    if channels in (2, 4) and fmt not in _ALPHA_FORMATS:
        raise ValueError(f"{path.name}: {fmt} cannot store alpha; use PNG, WebP or TIFF, or read "
                         "with alpha='drop' / 'white' / 'black'")
    return fmt


def _encode_pillow(q: np.ndarray, tmp: Path, *, fmt: str, **options: object) -> None:
    """Write (H, W, C) uint8 through Pillow in format ``fmt`` with its save ``options``."""
    PILImage.fromarray(q[..., 0] if q.shape[2] == 1 else q).save(tmp, format=fmt, **options)


def _encode_png(q: np.ndarray, tmp: Path) -> None:
    """PNG: Pillow for 8 bits (adaptive filters: smaller files), pypng for 16 (Pillow cannot)."""
    if q.dtype == np.uint8:
        _encode_pillow(q, tmp, fmt="PNG")
        return
    height, width, channels = q.shape
    writer = png.Writer(width, height, greyscale=channels <= 2, alpha=channels in (2, 4),
                        bitdepth=16)
    with open(tmp, "wb") as f:
        writer.write(f, q.reshape(height, width * channels))


def _encode_tiff(q: np.ndarray, tmp: Path) -> None:
    """TIFF via tifffile (8 or 16 bits), deflate-compressed, alpha as unassociated extra sample."""
    channels = q.shape[2]
    tifffile.imwrite(tmp, q[..., 0] if channels == 1 else q,
                     photometric="minisblack" if channels <= 2 else "rgb",
                     extrasamples=["unassalpha"] if channels in (2, 4) else None,
                     compression="zlib")


_ENCODERS: dict[str, Callable[[np.ndarray, Path], None]] = {
    "PNG": _encode_png,
    "TIFF": _encode_tiff,
    "JPEG": functools.partial(_encode_pillow, fmt="JPEG", quality=95, subsampling=0),
    # exact: keep the colours under fully transparent pixels (they are fitted data too)
    "WEBP": functools.partial(_encode_pillow, fmt="WEBP", lossless=True, exact=True),
}
