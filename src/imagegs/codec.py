"""Image <-> .igs bytes: quantisation-aware fitting, rate control, and decoding.

``compress(image, bpp=0.3)`` fits Gaussians, quantises them, chooses the
Gaussian count (and bit depths) so that the *whole file* lands within 5% under the requested
bits per pixel, and returns the bytes with what it measured; ``encode`` returns just the bytes.
``decode`` turns bytes back into an 8-bit image at any size, level of detail or region, and
``decode_gaussians`` into a :class:`Gaussians` model.

Quantisation: by default the fit runs in float and the result is quantised (16-bit costs
~0.003 dB); ``qat=`` turns on the official quantisation-aware fitting (straight-through).

Rate control: bytes per Gaussian are predicted from the bit depths (positions cost about
2 b_pos - log2 N + 2 bits once Morton-ordered, the other columns ~0.85-0.93 of their raw bits),
the fit uses ~6% more Gaussians than that predicts, and the file is then trimmed to the budget by
dropping the last-added Gaussians (bisection on the count; coding is fast). If the file still
undershoots by more than 5%, the count is corrected from the measured size and the fit repeated.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import igsfile
from .fit import fit
from .gaussians import Gaussians
from .init import as_image
from .io import atomic_write
from .quantize import Bits, dequantize, quantize

__all__ = ["Encoded", "compress", "encode", "decode", "decode_gaussians", "default_bits",
           "save_igs", "load_igs", "RateControlError"]

RATE_TOLERANCE = 0.05  # the file lands in [(1 - tol) * budget, budget]
_OVERSHOOT = 1.06  # fit this many times the predicted count, then trim


class RateControlError(ValueError):
    """The requested rate cannot be met (too low for even a handful of Gaussians, or too high)."""


@dataclass
class Encoded:
    """The result of :func:`compress`: the file and what it took."""

    data: bytes
    gaussians: Gaussians  # the decoder's view (dequantised, in file order)
    bits: Bits
    levels: list[int]
    bpp: float
    fits: int = 1
    fit_info: dict = field(default_factory=dict)

    @property
    def num(self) -> int:
        return self.gaussians.num


def default_bits(height: int, width: int, *, num_gaussians: int = 10_000, channels: int = 3) -> Bits:
    """Bit depths used when none are given, from the Gaussians' typical spacing
    d = sqrt(H W / N) pixels: the fewer (and larger) the Gaussians, the less precision each needs.

    Positions get round(log2(longer side / d)) + 6 bits (10..16): 1/16 px at 512^2 with 10k
    Gaussians, 1/4 px with 1.5k. Log-scales, angle and colour get 8 bits where d <= 9 px, 7 up
    to 12 px, 6 beyond (a rule from few measurements). Measured on astronaut: with 10k Gaussians
    13,8,8,8 costs 0.39 dB against floats (1/4 px positions: 1.2 dB); at a 0.3 bpp budget (~1.5k
    Gaussians) 11,6,6,6 gives 26.07 dB, 12,6,6,6 25.52 and 13,8,8,8 25.06 (docs/NOTES.md).
    """
    spacing = math.sqrt(height * width / max(num_gaussians, 1))
    pos = min(16, max(10, round(math.log2(max(height, width) / spacing)) + 6))
    other = 8 if spacing <= 9 else 7 if spacing <= 12 else 6
    return Bits(pos, other, other, other)


def _predicted_bytes(n: int, bits: Bits, channels: int, levels: int = 5) -> float:
    """Predicted file size for n Gaussians (an estimate for planning only; the real size is measured)."""
    pos = max(2 * bits.position - math.log2(max(n, 2)) + 2.0, 4.0)
    other = (2 * bits.scale + bits.rotation + channels * bits.color)
    ratio = 0.85 if max(bits.scale, bits.rotation, bits.color) <= 8 else 0.93
    header = 40 + 8 * channels + 10 * levels
    return header + n * (pos + ratio * other) / 8


def _count_for_budget(budget: float, bits: Bits, channels: int) -> int:
    """Largest n whose predicted size fits in ``budget`` bytes (bisection)."""
    lo, hi = 0, 1
    while _predicted_bytes(hi, bits, channels) <= budget:
        hi *= 2
        if hi > igsfile.MAX_GAUSSIANS:
            return igsfile.MAX_GAUSSIANS
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _predicted_bytes(mid, bits, channels) <= budget else (lo, mid)
    return lo


def _pack(g: Gaussians, bits: Bits, levels: list[int], top_k: int | None, metadata: dict | None
          ) -> tuple[bytes, Gaussians]:
    q = quantize(g, bits)
    data, order = igsfile.pack(q, levels, top_k=top_k, metadata=metadata)
    return data, dequantize(q.take(order))


def _trim_levels(levels: list[int], n: int) -> list[int]:
    """Level sizes of the first n Gaussians."""
    out, left = [], n
    for size in levels:
        if left <= 0:
            break
        out.append(min(size, left))
        left -= size
    return out


def compress(image, *, bpp: float | None = None, num_gaussians: int | None = None,
             bits: Bits | str | int | None = None, top_k: int | None = 10, lod_training: bool = False,
             qat: float | None = None,
             schedule: str = "fast", seed: int = 0, progress: bool = False, max_fits: int = 2,
             metadata: dict | None = None, channel_names: tuple[str, ...] | None = None,
             groups: list | None = None, **fit_options) -> Encoded:
    """Fit and encode an image as an .igs file.

    Args:
        image: (C, H, W) tensor or (H, W[, C]) array (uint8/uint16 or float in [0, 1]).
        bpp: target whole-file bits per pixel (8 * bytes / (H * W)); the file lands within 5% below.
        num_gaussians: a fixed Gaussian count instead of a target rate (default 10,000 when
            neither is given).
        bits: bit depths (:class:`Bits`, ``16`` or ``"12,8,8,8"``); default :func:`default_bits`.
        qat: quantisation-aware fitting from this share of the steps on (0 = throughout, as the
            official code; 0.8 = after the learning-rate decay); None (default) fits in float and
            quantises after. Measured here, QAT did not beat quantising after the fit (docs/NOTES.md).
        top_k, lod_training, schedule, seed, **fit_options: passed to :func:`imagegs.fit`.
        max_fits: fits allowed to meet the rate (the second corrects the count from the first's size).
        metadata: small JSON-serialisable dict stored in the header.
        channel_names, groups: stored in the file (see :class:`Gaussians`); omit for plain images.
    """
    target = as_image(image)
    c, h, w = target.shape
    if bpp is not None and num_gaussians is not None:
        raise ValueError("give either bpp or num_gaussians, not both")
    n_fixed = 10_000 if num_gaussians is None else num_gaussians
    auto_bits = bits is None
    bits = default_bits(h, w, num_gaussians=n_fixed, channels=c) if auto_bits else Bits.parse(bits)
    options = dict(fit_options, top_k=top_k, lod_training=lod_training, schedule=schedule, seed=seed,
                   progress=progress)
    names = dict(channel_names=tuple(channel_names) if channel_names else None,
                 groups=[(str(a), int(b)) for a, b in groups] if groups else None)

    def fit_named(n: int) -> Gaussians:
        """Fit n Gaussians (quantisation-aware on the final ``bits`` when asked) and name them."""
        qat_options = {} if qat is None else dict(quant_bits=bits.as_tuple(), quant_start=float(qat))
        g = fit(target, num_gaussians=n, **options, **qat_options)
        named = replace(g, **names)
        named.fit_info = g.fit_info  # type: ignore[attr-defined]
        return named

    if bpp is None:
        g = fit_named(n_fixed)
        data, gq = _pack(g, bits, g.fit_info["levels"], top_k, metadata)
        return Encoded(data, gq, bits, g.fit_info["levels"], 8 * len(data) / (h * w), 1, g.fit_info)

    try:
        bpp = float(bpp)
    except (TypeError, ValueError):
        raise ValueError(f"bpp must be a number, got {bpp!r}") from None
    if not math.isfinite(bpp) or bpp <= 0:
        raise ValueError(f"bpp must be a positive number, got {bpp}")
    budget = bpp * h * w / 8
    n_plan = _count_for_budget(budget, bits, c)
    if auto_bits:  # the bits depend on the count and the count on the bits: settle both
        for _ in range(4):
            new = default_bits(h, w, num_gaussians=max(n_plan, 1), channels=c)
            if new == bits:
                break
            bits, n_plan = new, _count_for_budget(budget, new, c)
    if n_plan < 16:
        raise RateControlError(f"{bpp} bpp is {budget:.0f} bytes for this {w}x{h} image: too few for "
                               f"the header and a useful number of Gaussians; ask for more")
    best: Encoded | None = None
    for attempt in range(1, max_fits + 1):
        n_fit = min(int(n_plan * _OVERSHOOT), h * w)
        g = fit_named(n_fit)
        levels = g.fit_info["levels"]
        data, gq = _pack(g, bits, levels, top_k, metadata)
        if len(data) > budget:  # trim the last-added Gaussians until the file fits
            lo, hi = 1, g.num  # invariant: lo fits (or is 1), hi does not
            fitted = None
            while hi - lo > 1:
                mid = (lo + hi) // 2
                d_mid, gq_mid = _pack(g[:mid], bits, _trim_levels(levels, mid), top_k, metadata)
                if len(d_mid) <= budget:
                    lo, fitted = mid, (d_mid, gq_mid)
                else:
                    hi = mid
            if fitted is None:
                raise RateControlError(f"{bpp} bpp ({budget:.0f} bytes) is too low for this image")
            data, gq = fitted
            levels = _trim_levels(levels, lo)
        enc = Encoded(data, gq, bits, levels, 8 * len(data) / (h * w), attempt, g.fit_info)
        if best is None or len(enc.data) > len(best.data):
            best = enc
        if len(data) >= (1 - RATE_TOLERANCE) * budget or n_fit >= h * w:
            break
        # undershoot: correct the count by the measured bytes per Gaussian and fit again
        per = (len(data) - _predicted_bytes(0, bits, c)) / max(gq.num, 1)
        n_plan = int((budget * (1 - RATE_TOLERANCE / 2) - _predicted_bytes(0, bits, c)) / per / _OVERSHOOT * 1.04)
    assert best is not None
    best.fits = attempt
    return best


def encode(image, **options) -> bytes:
    """The .igs bytes of :func:`compress` (same arguments)."""
    return compress(image, **options).data


def _as_bytes(source: bytes | str | os.PathLike) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    return Path(source).read_bytes()


def decode_gaussians(source: bytes | str | os.PathLike, *, lod: int | None = None
                     ) -> tuple[Gaussians, igsfile.IGSHeader]:
    """The model in an .igs file (bytes or path): its first ``lod`` levels (default all) and header."""
    q, header = igsfile.unpack(_as_bytes(source), lod=lod)
    return dequantize(q), header


def decode(source: bytes | str | os.PathLike, *, height: int | None = None, width: int | None = None,
           lod: int | None = None, top_k: int | None | str = "file", as_uint8: bool = True, **render_options):
    """Decode an .igs file (bytes or path) to an image.

    Args:
        height, width: output size (default native; any size and aspect ratio).
        lod: number of levels of detail to use (default all; 1 = coarsest).
        top_k: blend size; default: the value the file was fitted with.
        as_uint8: return (H, W, C) uint8 (default) instead of a (C, H, W) float tensor.
        **render_options: passed to :func:`imagegs.render` (e.g. ``backend``).
    """
    from .io import to_uint8
    from .render import render

    g, header = decode_gaussians(source, lod=lod)
    k = header.top_k if top_k == "file" else top_k
    with torch.no_grad():
        img = render(g, height, width, top_k=k, **render_options)
    return to_uint8(img) if as_uint8 else img


def save_igs(data: bytes, path: str | os.PathLike) -> Path:
    """Write .igs bytes atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def load_igs(path: str | os.PathLike) -> bytes:
    """Read and check an .igs file's bytes (header and framing); raises IGSFileError if invalid."""
    data = Path(path).read_bytes()
    igsfile.read_header(data)
    return data
