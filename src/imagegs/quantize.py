"""Uniform min/max quantisation of Gaussian attributes, for the .igs file and for quantisation-aware fitting.

Each attribute column is mapped to integers 0 .. 2^b - 1 over its own [lo, hi] range, as in the
official Image-GS code, but on representations that spend the levels where they matter:

- position: ``xy`` in image units, per axis;
- scale: the *logarithm* of the two standard deviations (a relative precision: a 1-bit error
  means the same thing for a 1 px and a 50 px Gaussian), per axis;
- rotation: the angle modulo pi (a Gaussian is symmetric under a half turn) on the fixed periodic
  range [0, pi), so 0 and pi - 1 step are neighbours and no range is stored;
- colour: per channel.

``quantize`` first canonicalises each Gaussian (major axis first, angle in [0, pi)): the same
function, fewer distinct values. Dequantisation is pure float32 arithmetic on the stored ranges,
so encoder and decoder agree bit for bit. ``fake_quantize`` is the straight-through estimator
used during fitting: forward = quantised value, backward = identity.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from .gaussians import Gaussians

__all__ = ["Bits", "QuantizedGaussians", "quantize", "dequantize", "fake_quantize", "canonicalize",
           "MIN_BITS", "MAX_BITS", "ATTRIBUTES", "COLOR_CLIP", "color_clip", "column_ranges"]

MIN_BITS, MAX_BITS = 4, 16
# Colours of a fit spread far beyond [0, 1] in a few Gaussians (the normalised blend lets others
# compensate): at low bit depths min/max ranges would waste most levels on them, so there the
# colour range is the [COLOR_CLIP, 1 - COLOR_CLIP] quantile interval and the outliers are clipped
# to it. Measured on astronaut (10k): 6 bits -2.1 dB instead of -3.1, 7 bits -0.95 instead of
# -1.18; from 8 bits on clipping costs more than it saves (16 bits: -0.16 dB instead of -0.003).
COLOR_CLIP = 0.002
COLOR_CLIP_MAX_BITS = 7


def color_clip(bits: int) -> float:
    """Quantile clipped at each end of the colour range at this bit depth."""
    return COLOR_CLIP if bits <= COLOR_CLIP_MAX_BITS else 0.0
ATTRIBUTES = ("position", "scale", "rotation", "color")


@dataclass(frozen=True)
class Bits:
    """Bits per value of each attribute (position, scale, rotation, colour), 4..16; 16 is the official default."""

    position: int = 16
    scale: int = 16
    rotation: int = 16
    color: int = 16

    def __post_init__(self) -> None:
        for name in ATTRIBUTES:
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not MIN_BITS <= v <= MAX_BITS:
                raise ValueError(f"{name} bits must be an integer in {MIN_BITS}..{MAX_BITS}, got {v!r}")

    @classmethod
    def parse(cls, text: str | int | "Bits") -> "Bits":
        """``16`` (all attributes), ``"14,8,8,10"`` (position, scale, rotation, colour) or
        ``"position=14,color=10"`` (others default to 16)."""
        if isinstance(text, Bits):
            return text
        if isinstance(text, (int, np.integer)):
            return cls(*(int(text),) * 4)
        if isinstance(text, (tuple, list)):
            if len(text) != 4:
                raise ValueError(f"bits needs 4 values (position, scale, rotation, colour), got {text!r}")
            return cls(*text)
        parts = [p.strip() for p in str(text).split(",") if p.strip()]
        try:
            if parts and all("=" in p for p in parts):
                kv = {k.strip(): int(v) for k, v in (p.split("=", 1) for p in parts)}
                bad = sorted(set(kv) - set(ATTRIBUTES))
                if bad:
                    raise ValueError(f"unknown attribute(s) {', '.join(bad)}; use {', '.join(ATTRIBUTES)}")
                return cls(**kv)
            vals = [int(p) for p in parts]
        except ValueError as e:
            if "bits" in str(e) or "attribute" in str(e):
                raise
            raise ValueError(f"bits must look like 16, '14,8,8,10' or 'position=14,color=10', got {text!r}") from None
        if len(vals) == 1:
            return cls(*(vals * 4))
        if len(vals) != 4:
            raise ValueError(f"bits needs 1 or 4 values (position, scale, rotation, colour), got {text!r}")
        return cls(*vals)

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.position, self.scale, self.rotation, self.color)

    def payload_bits(self, channels: int) -> int:
        """Bits per Gaussian of the official payload formula: 2 b_pos + 2 b_scale + b_rot + C b_col."""
        return 2 * self.position + 2 * self.scale + self.rotation + channels * self.color

    def __str__(self) -> str:
        return f"position={self.position},scale={self.scale},rotation={self.rotation},color={self.color}"


@dataclass
class QuantizedGaussians:
    """Integer codes and ranges: what an .igs file stores.

    Attributes:
        pos: (N, 2) int64 codes of x, y; log_scale: (N, 2) codes of log(std dev) (major, minor);
        rot: (N,) codes of the angle in [0, pi); color: (N, C) codes.
        pos_range, scale_range: (2, 2) float32 [[lo, hi] per column]; color_range: (C, 2) float32.
        bits: bit depths; height, width, channel_names, groups: as in :class:`Gaussians`.
    """

    pos: np.ndarray
    log_scale: np.ndarray
    rot: np.ndarray
    color: np.ndarray
    pos_range: np.ndarray
    scale_range: np.ndarray
    color_range: np.ndarray
    bits: Bits
    height: int
    width: int
    channel_names: tuple[str, ...] | None = None
    groups: list[tuple[str, int]] | None = None

    @property
    def num(self) -> int:
        return int(self.pos.shape[0])

    @property
    def channels(self) -> int:
        return int(self.color.shape[1])

    def take(self, index) -> "QuantizedGaussians":
        """A subset / reordering of the Gaussians (same ranges)."""
        return replace(self, pos=self.pos[index], log_scale=self.log_scale[index], rot=self.rot[index],
                       color=self.color[index])


def canonicalize(scale: torch.Tensor, rot: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same Gaussians with the larger scale first and the angle in [0, pi).

    (s0, s1, theta) and (s1, s0, theta + pi/2) describe the same ellipse, and theta + pi is theta.
    scale: (N, 2) > 0, rot: (N,) -> (scale', rot') with scale'[:, 0] >= scale'[:, 1].
    """
    swap = scale[:, 1] > scale[:, 0]
    s = torch.where(swap[:, None], scale.flip(1), scale)
    r = torch.where(swap, rot + math.pi / 2, rot)
    return s, torch.remainder(r, math.pi)


def column_ranges(v: torch.Tensor, clip: float = 0.0) -> torch.Tensor:
    """Per column [lo, hi] of a (N, D) tensor: min/max, or the [clip, 1 - clip] quantiles; (D, 2).

    Shared by the file encoder and quantisation-aware fitting so that both use the same grid.
    """
    if v.shape[0] == 0:
        return v.new_zeros(v.shape[1], 2)
    if clip > 0:
        qs = torch.tensor([clip, 1.0 - clip], dtype=torch.float64)
        return torch.quantile(v.detach().double(), qs, dim=0).T.to(v.dtype)
    return torch.stack([v.min(0).values, v.max(0).values], dim=1).detach()


def _ranges(v: torch.Tensor, clip: float = 0.0) -> np.ndarray:
    return column_ranges(v, clip).numpy().astype(np.float32)


def _codes(v: np.ndarray, rng: np.ndarray, bits: int) -> np.ndarray:
    """Uniform codes 0..2^bits-1 of float32 values v (N, D) over per-column ranges (D, 2)."""
    levels = np.float32(2**bits - 1)
    lo, hi = rng[:, 0], rng[:, 1]
    span = hi - lo
    safe = np.where(span > 0, span, np.float32(1))
    q = np.rint((v.astype(np.float32) - lo) / safe * levels)
    return np.clip(q, 0, levels).astype(np.int64) * (span > 0)


def _values(codes: np.ndarray, rng: np.ndarray, bits: int) -> np.ndarray:
    """Inverse of :func:`_codes` in float32: lo + code * (hi - lo) / (2^bits - 1)."""
    levels = np.float32(2**bits - 1)
    lo, hi = rng[:, 0], rng[:, 1]
    return (lo + codes.astype(np.float32) * ((hi - lo) / levels)).astype(np.float32)


def quantize(gaussians: Gaussians, bits: Bits | int | str = 16, *,
             ranges: QuantizedGaussians | None = None) -> QuantizedGaussians:
    """Canonicalise and quantise every attribute of ``gaussians`` (N Gaussians, C channels).

    ``ranges``: reuse the position, scale and colour ranges of this earlier quantisation instead
    of measuring them (values outside are clipped): a model refined on that grid keeps it, and
    dequantised values quantise back to the same codes.
    """
    bits = Bits.parse(bits)
    g = gaussians.detach().to(torch.float32)
    for name in ("xy", "scale", "rot", "color"):
        if not torch.isfinite(getattr(g, name)).all():
            raise ValueError(f"cannot quantise: Gaussian {name} contains NaN or infinite values")
    if g.num and not (g.scale > 0).all():
        raise ValueError("cannot quantise: Gaussian scales must be positive")
    scale, rot = canonicalize(g.scale, g.rot)
    if ranges is not None:
        pos_r, scale_r, col_r = ranges.pos_range, ranges.scale_range, ranges.color_range
    else:
        pos_r, scale_r, col_r = _ranges(g.xy), _ranges(torch.log(scale)), _ranges(g.color, color_clip(bits.color))
    xy, log_s, col = g.xy.numpy(), torch.log(scale).numpy(), g.color.numpy()
    n_rot = 2**bits.rotation
    rot_c = np.rint(rot.numpy().astype(np.float64) / math.pi * n_rot).astype(np.int64) % n_rot
    return QuantizedGaussians(
        pos=_codes(xy, pos_r, bits.position), log_scale=_codes(log_s, scale_r, bits.scale), rot=rot_c,
        color=_codes(col, col_r, bits.color), pos_range=pos_r, scale_range=scale_r, color_range=col_r,
        bits=bits, height=g.height, width=g.width, channel_names=g.channel_names, groups=g.groups)


def dequantize(q: QuantizedGaussians) -> Gaussians:
    """Float32 Gaussians from codes (the decoder's view of the model)."""
    b = q.bits
    xy = _values(q.pos, q.pos_range, b.position)
    scale = np.exp(_values(q.log_scale, q.scale_range, b.scale))
    rot = (q.rot.astype(np.float32) * np.float32(math.pi / 2**b.rotation)).astype(np.float32)
    col = _values(q.color, q.color_range, b.color)
    t = torch.from_numpy
    return Gaussians(t(xy), t(scale.astype(np.float32)), t(rot), t(col), q.height, q.width,
                     channel_names=q.channel_names, groups=q.groups)


def fake_quantize(v: torch.Tensor, bits: int, *, periodic: float | None = None, clip: float = 0.0,
                  value_range: torch.Tensor | None = None) -> torch.Tensor:
    """Straight-through quantisation of the columns of ``v`` (N, D) or (N,) over their range.

    Forward: the value the file will hold; backward: identity (the rounding and clipping are not
    differentiated). The range is min/max, or the ``clip`` quantiles (values outside are clipped).
    ``periodic=P`` quantises on the fixed range [0, P) with wrap-around (rotation: P = pi);
    ``value_range`` (D, 2) fixes the [lo, hi] grid of each column instead of measuring it.
    """
    with torch.no_grad():
        if periodic is not None:
            n = 2**bits
            step = periodic / n
            q = torch.round(v / step) * step
        else:
            levels = 2**bits - 1
            flat = v.reshape(v.shape[0], -1)
            if flat.shape[0] == 0:
                return v
            lo, hi = (column_ranges(flat, clip) if value_range is None else value_range.to(flat)).T
            span = hi - lo
            unit = torch.where(span > 0, span / levels, torch.ones_like(span))
            q = (torch.round(((flat - lo) / unit).clamp(0, levels)) * unit + lo).reshape(v.shape)
    return v + (q - v).detach()
