"""Image codecs for the rate-distortion benchmark, in memory, behind one small interface.

Every codec turns an (H, W, 3) uint8 RGB image into bytes and back. There are three kinds:

- ``"search"``: a codec with a quality knob (JPEG, WebP, AVIF, JPEG 2000, JPEG XL). Its
  ``qualities`` are the knob's settings ordered so that the file grows with the index, and
  :func:`search_quality` hits a target bpp by bisection over them: it returns **the largest
  setting whose whole-file bpp is <= the target** (bisection assumes the size grows with the
  setting, which holds for these encoders up to rare one-step wobbles). When even the smallest
  setting is over the target, the target is *below the codec's floor*: the floor encoding is
  returned with ``reached=False`` and the benchmark leaves that point out of the curves.
- ``"fixed"``: GPU texture formats (BC1, BC7, ASTC 4x4 ... 12x12), one point at their nominal
  rate. The image is padded to whole blocks by edge replication and cropped after decoding; the
  bytes are the raw block data (what a GPU stores, no container), so bpp = 8 * bytes / (H W)
  counts the padding blocks against the *original* pixel count (slightly above nominal).
- ``"direct"``: imagegs, whose encoder takes the target bpp itself (rate control inside the
  fit; a fit costs about a minute, so no bisection over a knob).

bpp always comes from the whole file, ``8 * len(data) / (H * W)``, and the actual value is what
is reported, never the target.

Encoder settings are each library's best-practice ones where that is affordable (details in
each codec's ``description``, measured effects in docs/NOTES.md, "Baseline settings audit"): JPEG via Pillow's
libjpeg-turbo with Huffman optimisation, 4:2:0 and 4:4:4; WebP method 6; AVIF (libavif/AOM via
Pillow, default speed 6, tune=psnr, 4:2:0 and 4:4:4); JPEG 2000 (OpenJPEG via Pillow,
irreversible 9/7 wavelet and colour transform, raw codestream, rate targeted by compression
ratio); JPEG XL (libjxl via pillow-jxl-plugin, effort 7, the quality <-> distance mapping of
cjxl); BC1 from quicktex (rgbcx, its highest level) and BC7 from etcpak (bc7enc at its highest
level, linear channel weights), both decoded by texture2ddecoder (etcpak's own BC decoders
crash on this machine); ASTC from ARM's astcenc via astc-encoder-py (LDR profile, ``thorough``
preset), decoded by astcenc itself.
"""

from __future__ import annotations

import io
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Codec",
    "CodecError",
    "PillowCodec",
    "TextureCodec",
    "ImagegsCodec",
    "SearchResult",
    "CODECS",
    "BASELINES",
    "TEXTURES",
    "get_codec",
    "bpp_of",
    "search_quality",
    "pad_to_blocks",
]


class CodecError(ValueError):
    """A codec is unknown, unavailable, or was given an image or file it cannot handle."""


def bpp_of(data: bytes, height: int, width: int) -> float:
    """Bits per pixel of a whole file: 8 * bytes / (H * W)."""
    return 8.0 * len(data) / (height * width)


def _check_image(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 array, C-contiguous; CodecError otherwise."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise CodecError(f"codecs take (H, W, 3) uint8 RGB images, got {image.dtype} {image.shape}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise CodecError(f"empty image {image.shape}")
    return np.ascontiguousarray(image)


class Codec:
    """One codec: ``encode(image, quality=...) -> bytes`` and ``decode(bytes, height, width)``.

    Attributes:
        name: short identifier used on the command line and in file names (``jpeg-420``).
        label: name for plots and tables (``JPEG 4:2:0``).
        description: the encoder and its settings, for the JSON results.
        kind: ``"search"``, ``"fixed"`` or ``"direct"`` (see the module docstring).
        qualities: for ``"search"``: the knob's settings, file size increasing with the index.
        nominal_bpp: for ``"fixed"``: the format's nominal rate.
        settings: everything that decides the bytes besides the image and the knob, as one
            canonical string. The benchmark stores it in each record and re-uses a record only
            while it is unchanged, so changing a setting re-encodes instead of mixing results.
    """

    name: str = ""
    label: str = ""
    description: str = ""
    kind: str = "search"
    qualities: tuple[float, ...] = ()
    nominal_bpp: float | None = None
    settings: str = ""

    def encode(self, image: np.ndarray, *, quality: float | None = None) -> bytes:
        """(H, W, 3) uint8 -> the whole compressed file."""
        raise NotImplementedError

    def decode(self, data: bytes, *, height: int, width: int) -> np.ndarray:
        """The file -> (height, width, 3) uint8 (the size is known to the caller; texture data
        carries none, and for the others it is checked)."""
        raise NotImplementedError

    def check_available(self) -> None:
        """Raise CodecError with a one-line reason when the codec's library is missing."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


# ------------------------------------------------------------------------------------ Pillow


class PillowCodec(Codec):
    """A codec Pillow (or a Pillow plugin) writes and reads: format name + save options.

    Args:
        qualities: the knob's settings (see ``Codec.qualities``).
        options: the fixed save options (the codec's settings).
        knob: the searched setting -> the save options it sets (default ``{"quality": int(q)}``).
    """

    def __init__(self, name: str, label: str, fmt: str, qualities, options: dict,
                 description: str, plugin: str | None = None,
                 knob: Callable[[float], dict] | None = None):
        self.name, self.label, self.fmt = name, label, fmt
        self.qualities = tuple(qualities)
        self.options, self.description, self._plugin = dict(options), description, plugin
        self._knob = knob or (lambda q: {"quality": int(q)})

    @property
    def settings(self) -> str:
        """Format, fixed options and the knob's range (see ``Codec.settings``)."""
        ends = "..".join(json.dumps(self._knob(q), sort_keys=True)
                         for q in (self.qualities[0], self.qualities[-1]))
        return (f"{self.fmt} {json.dumps(self.options, sort_keys=True)}; knob {ends} in "
                f"{len(self.qualities)} steps")

    def check_available(self) -> None:
        from PIL import features

        if self._plugin is not None:
            try:
                __import__(self._plugin)
            except ImportError as e:
                raise CodecError(f"{self.name} needs the Python package {self._plugin!r} "
                                 f"(pip install 'imagegs[bench]'): {e}") from None
        feature = {"WEBP": "webp", "AVIF": "avif", "JPEG2000": "jpg_2000", "JPEG": "jpg"}.get(self.fmt)
        if feature is not None and not features.check(feature):
            raise CodecError(f"{self.name}: this Pillow was built without {self.fmt} support")

    def encode(self, image: np.ndarray, *, quality: float | None = None) -> bytes:
        from PIL import Image

        if quality is None:
            raise CodecError(f"{self.name}: encode needs a quality")
        self.check_available()
        buf = io.BytesIO()
        Image.fromarray(_check_image(image), "RGB").save(buf, self.fmt, **self.options,
                                                          **self._knob(quality))
        return buf.getvalue()

    def decode(self, data: bytes, *, height: int, width: int) -> np.ndarray:
        from PIL import Image

        self.check_available()
        with Image.open(io.BytesIO(data)) as im:
            out = np.asarray(im.convert("RGB"))
        if out.shape[:2] != (height, width):
            raise CodecError(f"{self.name}: decoded {out.shape[1]}x{out.shape[0]}, expected "
                             f"{width}x{height}")
        return out


# JPEG 2000's knob is the target rate; OpenJPEG takes it as a compression ratio (24 bpp / rate)
# and lands within about 0.5 % of it on the whole codestream (measured, docs/NOTES.md, "Baseline settings audit").
# A geometric grid of rates from 0.01 to 16 bpp, 0.25 % apart, so the search loses at most that.
_J2K_RATES = tuple(float(r) for r in np.geomspace(0.01, 16.0, round(math.log(1600) / math.log(1.0025)) + 1))


def _j2k_rate(rate: float) -> dict:
    return {"quality_layers": [24.0 / rate]}


# ----------------------------------------------------------------------------------- textures


def pad_to_blocks(image: np.ndarray, block: tuple[int, int]) -> np.ndarray:
    """(H, W, C) -> (H', W', C) with H', W' the next multiples of the block (height, width),
    the new rows and columns copies of the last ones (edge replication, so padding blocks are
    as easy to code as their neighbours and do not bleed into them)."""
    bh, bw = block
    h, w = image.shape[:2]
    ph, pw = -h % bh, -w % bw
    if ph == 0 and pw == 0:
        return image
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")


def _rgba(image: np.ndarray) -> np.ndarray:
    return np.concatenate([image, np.full(image.shape[:2] + (1,), 255, np.uint8)], axis=2)


class TextureCodec(Codec):
    """A fixed-rate block format: 16 bytes (BC7, ASTC) or 8 bytes (BC1) per block."""

    kind = "fixed"

    def __init__(self, name: str, label: str, block: tuple[int, int], block_bytes: int,
                 description: str):
        self.name, self.label, self.block, self.block_bytes = name, label, block, block_bytes
        self.nominal_bpp = 8.0 * block_bytes / (block[0] * block[1])
        self.description = (f"{description}; one point at the nominal {self.nominal_bpp:.3g} bpp. "
                            "Image padded to whole blocks by edge replication, cropped after "
                            "decoding; bpp = raw block bytes (no container) over the original "
                            "pixel count")

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        bh, bw = self.block
        return height + (-height % bh), width + (-width % bw)

    def encode(self, image: np.ndarray, *, quality: float | None = None) -> bytes:
        self.check_available()
        padded = _rgba(pad_to_blocks(_check_image(image), self.block))
        return self._compress(np.ascontiguousarray(padded), padded.shape[0], padded.shape[1])

    def decode(self, data: bytes, *, height: int, width: int) -> np.ndarray:
        self.check_available()
        ph, pw = self.padded_size(height, width)
        blocks = (ph // self.block[0]) * (pw // self.block[1])
        if len(data) != blocks * self.block_bytes:
            raise CodecError(f"{self.name}: {len(data)} bytes do not hold {width}x{height} pixels "
                             f"({blocks} blocks of {self.block_bytes} bytes)")
        rgba = self._decompress(data, ph, pw)
        return np.ascontiguousarray(rgba[:height, :width, :3])

    def _compress(self, rgba: np.ndarray, height: int, width: int) -> bytes:
        raise NotImplementedError

    def _decompress(self, data: bytes, height: int, width: int) -> np.ndarray:
        raise NotImplementedError


class BCCodec(TextureCodec):
    """BC1 encoded by quicktex (rgbcx), BC7 by etcpak (bc7enc); both decoded by
    texture2ddecoder (which returns BGRA)."""

    BC1_LEVEL = 18  # rgbcx's highest (etcpak's fast BC1 is 3-8 dB worse: docs/NOTES.md, "Baseline settings audit")
    BC7_UBER_LEVEL = 4  # bc7enc's highest
    BC7_PARTITIONS = 64  # all of BC7's

    def __init__(self, variant: str):
        self.variant = variant
        if variant == "bc1":
            super().__init__("bc1", "BC1", (4, 4), 8,
                             f"BC1 (DXT1) by quicktex (a port of rgbcx), level {self.BC1_LEVEL} "
                             "(its highest), four-colour blocks")
            self.settings = f"quicktex BC1Encoder level={self.BC1_LEVEL} FourColor"
            self._modules = ("quicktex", "texture2ddecoder")
        else:
            super().__init__("bc7", "BC7", (4, 4), 16,
                             f"BC7 by etcpak's bc7enc, uber level {self.BC7_UBER_LEVEL}, "
                             f"{self.BC7_PARTITIONS} partitions, linear channel weights "
                             "(optimises RGB error)")
            self.settings = (f"etcpak compress_bc7 uber_level={self.BC7_UBER_LEVEL} "
                             f"max_partitions={self.BC7_PARTITIONS} linear_weights")
            self._modules = ("etcpak", "texture2ddecoder")

    def check_available(self) -> None:
        for module in self._modules:
            try:
                __import__(module)
            except ImportError as e:
                raise CodecError(f"{self.name} needs the Python package {module!r} "
                                 f"(pip install 'imagegs[bench]'): {e}") from None

    def _compress(self, rgba: np.ndarray, height: int, width: int) -> bytes:
        if self.variant == "bc1":
            import quicktex
            from quicktex.s3tc.bc1 import BC1Encoder

            texture = quicktex.RawTexture.frombytes(rgba.tobytes(), width, height)
            return bytes(BC1Encoder(self.BC1_LEVEL, BC1Encoder.ColorMode.FourColor).encode(texture))
        import etcpak

        params = etcpak.BC7CompressBlockParams()
        params.init_linear_weights()
        params.m_uber_level = self.BC7_UBER_LEVEL
        params.m_max_partitions = self.BC7_PARTITIONS
        return etcpak.compress_bc7(rgba.tobytes(), width, height, params)

    def _decompress(self, data: bytes, height: int, width: int) -> np.ndarray:
        import texture2ddecoder

        fn = texture2ddecoder.decode_bc1 if self.variant == "bc1" else texture2ddecoder.decode_bc7
        bgra = np.frombuffer(fn(data, width, height), np.uint8).reshape(height, width, 4)
        return bgra[..., [2, 1, 0, 3]]


class ASTCCodec(TextureCodec):
    """ASTC at one block size, by ARM's astcenc (astc-encoder-py), LDR profile."""

    PRESET = "thorough"

    def __init__(self, size: int):
        super().__init__(f"astc-{size}x{size}", f"ASTC {size}x{size}", (size, size), 16,
                         f"ASTC {size}x{size} by ARM astcenc (astc-encoder-py), LDR profile, "
                         f"'{self.PRESET}' preset, decoded by astcenc")
        self.settings = f"astcenc LDR {size}x{size} preset={self.PRESET} swizzle=RGBA"
        self._context = None

    def check_available(self) -> None:
        try:
            import astc_encoder  # noqa: F401
        except ImportError as e:
            raise CodecError(f"{self.name} needs the Python package 'astc-encoder-py' "
                             f"(pip install 'imagegs[bench]'): {e}") from None

    def _ctx(self):
        import astc_encoder as ae

        if self._context is None:  # creating a context is expensive; one per codec object
            preset = getattr(ae.ASTCQualityPreset, self.PRESET.upper())
            config = ae.ASTCConfig(ae.ASTCProfile.LDR, self.block[1], self.block[0], 1, float(preset.value))
            self._context = ae.ASTCContext(config)
        return self._context

    def _compress(self, rgba: np.ndarray, height: int, width: int) -> bytes:
        import astc_encoder as ae

        img = ae.ASTCImage(ae.ASTCType.U8, width, height, data=rgba.tobytes())
        return bytes(self._ctx().compress(img, ae.ASTCSwizzle.from_str("RGBA")))

    def _decompress(self, data: bytes, height: int, width: int) -> np.ndarray:
        import astc_encoder as ae

        out = ae.ASTCImage(ae.ASTCType.U8, width, height)
        self._ctx().decompress(data, out, ae.ASTCSwizzle.from_str("RGBA"))
        return np.frombuffer(out.data, np.uint8).reshape(height, width, 4)


# ------------------------------------------------------------------------------------ imagegs


class ImagegsCodec(Codec):
    """imagegs itself: ``imagegs.codec.encode(image, bpp=target)`` writes a whole .igs file,
    rate-controlled to the target inside the fit; ``imagegs.codec.decode`` renders it back at the
    native size. Imported lazily so that the benchmark works before (and without) that module.

    Args:
        **options: passed on to ``imagegs.codec.encode`` (e.g. ``num_gaussians``, ``seed``).
    """

    name, label, kind = "imagegs", "imagegs", "direct"

    def __init__(self, **options):
        self.options = options
        self.settings = f"imagegs {json.dumps(options, sort_keys=True, default=str)}"
        extra = f", options {options}" if options else ""
        self.description = ("imagegs .igs file (2D Gaussians, quantised, whole file), rate "
                            f"control to the target bpp inside the fit{extra}")

    def _module(self):
        try:
            from .. import codec
        except ImportError as e:
            raise CodecError("imagegs: the .igs codec (imagegs.codec) is not available in this "
                             f"version: {e}") from None
        if not (hasattr(codec, "encode") and hasattr(codec, "decode")):
            raise CodecError("imagegs: imagegs.codec has no encode/decode functions")
        return codec

    def check_available(self) -> None:
        self._module()

    def encode(self, image: np.ndarray, *, quality: float | None = None) -> bytes:
        if quality is None:
            raise CodecError("imagegs: encode needs the target bpp as quality")
        return bytes(self._module().encode(_check_image(image), bpp=float(quality), **self.options))

    def decode(self, data: bytes, *, height: int, width: int) -> np.ndarray:
        out = np.asarray(self._module().decode(data, height=height, width=width))
        if out.dtype != np.uint8:  # the contract is uint8; accept floats in [0, 1] defensively
            out = np.rint(np.clip(out, 0, 1) * 255).astype(np.uint8)
        if out.ndim == 2:
            out = out[..., None]
        if out.shape[2] == 1:
            out = np.repeat(out, 3, axis=2)
        if out.shape[:2] != (height, width):
            raise CodecError(f"imagegs: decoded {out.shape[1]}x{out.shape[0]}, expected {width}x{height}")
        return np.ascontiguousarray(out[..., :3])


# ----------------------------------------------------------------------------------- registry


def _make_codecs() -> dict[str, Callable[[], Codec]]:
    jpeg = "Pillow JPEG (libjpeg-turbo), quality 1-100, optimised Huffman tables"
    avif = ("Pillow AVIF (libavif/AOM), quality 0-100, speed 6 (the avifenc and Pillow default), "
            "tune=psnr (libavif's default for AOM is tune=ssim)")

    def jpeg_options(subsampling: int) -> dict:
        return {"subsampling": subsampling, "optimize": True}

    def avif_options(subsampling: str) -> dict:
        return {"speed": 6, "subsampling": subsampling, "advanced": {"tune": "psnr"}}

    makers: dict[str, Callable[[], Codec]] = {
        "jpeg-420": lambda: PillowCodec("jpeg-420", "JPEG 4:2:0", "JPEG", range(1, 101), jpeg_options(2),
                                        f"{jpeg}, 4:2:0 chroma subsampling"),
        "jpeg-444": lambda: PillowCodec("jpeg-444", "JPEG 4:4:4", "JPEG", range(1, 101), jpeg_options(0),
                                        f"{jpeg}, 4:4:4 (no chroma subsampling)"),
        "webp": lambda: PillowCodec("webp", "WebP", "WEBP", range(0, 101), {"method": 6},
                                    "Pillow WebP (libwebp), lossy, quality 0-100, method 6 (slowest, best)"),
        "avif": lambda: PillowCodec("avif", "AVIF 4:2:0", "AVIF", range(0, 101), avif_options("4:2:0"),
                                    f"{avif}, 4:2:0 chroma subsampling (the default)"),
        "avif-444": lambda: PillowCodec("avif-444", "AVIF 4:4:4", "AVIF", range(0, 101), avif_options("4:4:4"),
                                        f"{avif}, 4:4:4 (no chroma subsampling)"),
        "jpeg2000": lambda: PillowCodec(
            "jpeg2000", "JPEG 2000", "JPEG2000", _J2K_RATES,
            {"irreversible": True, "mct": 1, "no_jp2": True, "quality_mode": "rates"},
            "Pillow JPEG 2000 (OpenJPEG), irreversible 9/7 wavelet with the irreversible colour "
            "transform (mct=1, opj_compress's default for RGB), raw codestream (a .j2k file, no "
            "JP2 boxes), one quality layer at a target rate (compression ratio 24/rate), rates on "
            "a 0.25 % geometric grid", knob=_j2k_rate),
        "jpegxl": lambda: PillowCodec("jpegxl", "JPEG XL", "JXL", range(0, 100), {"effort": 7},
                                      "JPEG XL (libjxl via pillow-jxl-plugin), lossy VarDCT, "
                                      "quality 0-99 (cjxl's mapping to distance, 0 = distance "
                                      "25, the largest), effort 7 (default)", plugin="pillow_jxl"),
        "bc1": lambda: BCCodec("bc1"),
        "bc7": lambda: BCCodec("bc7"),
    }
    for size in (4, 5, 6, 8, 10, 12):
        makers[f"astc-{size}x{size}"] = lambda size=size: ASTCCodec(size)
    makers["imagegs"] = ImagegsCodec
    return makers


CODECS = _make_codecs()
BASELINES = ("jpeg-420", "jpeg-444", "webp", "avif", "avif-444", "jpeg2000", "jpegxl")
TEXTURES = ("bc1", "bc7") + tuple(f"astc-{s}x{s}" for s in (4, 5, 6, 8, 10, 12))


def get_codec(name: str, **options) -> Codec:
    """A fresh codec object by name (see ``CODECS``); options only for ``imagegs``."""
    if name not in CODECS:
        raise CodecError(f"unknown codec {name!r}; choose from {', '.join(CODECS)}")
    return CODECS[name](**options)


# ------------------------------------------------------------------------------------- search


@dataclass
class SearchResult:
    """The encoding chosen for a target bpp.

    Attributes:
        quality: the codec setting used (the target itself for ``direct`` codecs, None for
            ``fixed``).
        data: the whole file.
        bpp: its actual bpp (8 * bytes / (H W)).
        encode_s: wall time of the one encode that produced ``data``.
        reached: False when the target is below the codec's floor (``data`` is then the
            smallest file the codec makes, with ``bpp`` above the target).
        trials: number of encodes made for this target (cached ones not counted).
    """

    quality: float | None
    data: bytes
    bpp: float
    encode_s: float
    reached: bool
    trials: int


def _timed_encode(codec: Codec, image: np.ndarray, quality) -> tuple[bytes, float]:
    t = time.perf_counter()
    data = codec.encode(image, quality=quality)
    return data, time.perf_counter() - t


def search_quality(codec: Codec, image: np.ndarray, target_bpp: float | None, *,
                   memo: dict | None = None) -> SearchResult:
    """Encode ``image`` (H, W, 3 uint8) as close to ``target_bpp`` as the codec allows from below.

    ``search`` codecs: the largest setting of ``codec.qualities`` whose whole-file bpp <=
    target (see the module docstring for the floor case), found by bracketing: steps that
    interpolate log(bpp) linearly between the bracket's ends alternate with plain halving, so a
    smooth size curve takes 2-4 encodes and none takes more than about 2 log2(n). ``memo`` (a
    dict kept per codec and image) caches encodings across targets, so a sweep of targets
    re-uses them (and narrows the bracket for free).
    ``direct`` codecs get the target; ``fixed`` codecs ignore it.
    """
    image = _check_image(image)
    h, w = image.shape[:2]
    if codec.kind == "fixed":
        data, sec = _timed_encode(codec, image, None)
        return SearchResult(None, data, bpp_of(data, h, w), sec, True, 1)
    if target_bpp is None or not (np.isfinite(target_bpp) and target_bpp > 0):
        raise CodecError(f"target bpp must be a finite number > 0, got {target_bpp}")
    if codec.kind == "direct":
        data, sec = _timed_encode(codec, image, target_bpp)
        return SearchResult(target_bpp, data, bpp_of(data, h, w), sec, True, 1)

    memo = {} if memo is None else memo
    trials = 0

    def at(i: int) -> tuple[bytes, float]:
        nonlocal trials
        if i not in memo:
            memo[i] = _timed_encode(codec, image, codec.qualities[i])
            trials += 1
        return memo[i]

    def result(i: int, reached: bool) -> SearchResult:
        data, sec = at(i)
        return SearchResult(codec.qualities[i], data, bpp_of(data, h, w), sec, reached, trials)

    lo, hi = 0, len(codec.qualities) - 1
    size = lambda i: bpp_of(at(i)[0], h, w)  # noqa: E731
    if size(lo) > target_bpp:
        return result(lo, False)
    if size(hi) <= target_bpp:
        return result(hi, True)
    # Narrow the bracket with what earlier targets (in memo) already measured: free.
    for i in memo:
        b = bpp_of(memo[i][0], h, w)
        if lo < i < hi:
            if b <= target_bpp:
                lo = i
            else:
                hi = i
    interpolate = True
    while hi - lo > 1:  # invariant: bpp(lo) <= target < bpp(hi)
        mid = (lo + hi) // 2
        if interpolate:  # guess where log(bpp) crosses the target, linearly in the index
            a, b = math.log(size(lo)), math.log(size(hi))
            guess = lo + (math.log(target_bpp) - a) / (b - a) * (hi - lo)
            mid = min(hi - 1, max(lo + 1, round(guess)))
        interpolate = not interpolate  # alternate with plain halving: log2(n) steps at worst
        if size(mid) <= target_bpp:
            lo = mid
        else:
            hi = mid
    return result(lo, True)
