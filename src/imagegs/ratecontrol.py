"""Rate control: how many Gaussians, at which bit depths, make an .igs file of a given size.

Bytes per Gaussian are predicted from the bit depths (:func:`predicted_bytes`); the fit gets
Gaussians for ``OVERSHOOT`` (~8%) more bytes than the budget, and the file is then pruned to the
budget by dropping the Gaussians that paint least (:func:`coverage`) or the last-added ones,
whichever decodes closer to the image (:func:`fit_budget`, bisection on the count; coding is
fast). The first rate control always dropped the last-added Gaussians and fitted up to ~25% too
many: up to 3 dB lost at low rates (docs/NOTES.md).

This module knows sizes and rankings, not the file format: :func:`fit_budget` is given the
function that packs a model into bytes (``imagegs.codec`` owns packing).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from . import igsfile
from .defaults import DEFAULT_NUM_GAUSSIANS, DEFAULT_TOP_K
from .gaussians import Gaussians
from .quantize import Bits
from .renderer import project, rasterize

__all__ = ["RATE_TOLERANCE", "OVERSHOOT", "MIN_GAUSSIANS", "RateControlError", "default_bits", "neighbour_depths",
           "predicted_bytes", "count_for_budget", "settle_bits", "coverage", "prune", "fit_budget",
           "rasterize_model", "decoded_mse"]

RATE_TOLERANCE = 0.05  # the file lands in [(1 - tol) * budget, budget]
OVERSHOOT = 1.08  # fit Gaussians for this many times the budget's bytes, then prune to it
MIN_GAUSSIANS = 16  # a rate that affords fewer is refused (RateControlError)

# pack(model, level sizes) -> (file bytes, the decoder's view of the model)
Pack = Callable[[Gaussians, list[int]], tuple[bytes, Gaussians]]


class RateControlError(ValueError):
    """The requested rate cannot be met (too low for even a handful of Gaussians, or too high)."""


def default_bits(height: int, width: int, *, num_gaussians: int = DEFAULT_NUM_GAUSSIANS, channels: int = 3) -> Bits:
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


def predicted_bytes(n: int, bits: Bits, channels: int, levels: int = 5) -> float:
    """Predicted file size for n Gaussians (for planning only; the real size is measured).

    Per Gaussian: the position's Morton gap ~2 b_pos - log2 n + 2 bits, each other column its bits
    less 0.9, plus the adaptive models' learning cost, which grows as n shrinks. Fitted on 12 range
    coded files (4 images at 512 px, 576..4096 Gaussians, default bits and one bit more): within 3%.
    """
    learn = 0.2 * max(math.log2(4096 / max(n, 1)), 0.0)
    pos = max(2 * bits.position - math.log2(max(n, 2)) + 2.0, 4.0)
    other = sum(b - 0.9 + learn for b in (bits.scale, bits.scale, bits.rotation) + (bits.color,) * channels)
    header = 40 + 8 * channels + 10 * levels
    return header + n * (pos + other) / 8


def count_for_budget(budget: float, bits: Bits, channels: int) -> int:
    """Largest n whose predicted size fits in ``budget`` bytes (bisection)."""
    lo, hi = 0, 1
    while predicted_bytes(hi, bits, channels) <= budget:
        hi *= 2
        if hi > igsfile.MAX_GAUSSIANS:
            return igsfile.MAX_GAUSSIANS
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if predicted_bytes(mid, bits, channels) <= budget else (lo, mid)
    return lo


def neighbour_depths(bits: Bits) -> list[Bits]:
    """The default depth above ``bits`` (scale, rotation and colour one bit more, up to the 8 that
    :func:`default_bits` gives at most; position unchanged): the other candidate of a one-fit
    encode. At 0.2 bpp (1024 px) 7 bits beat the default 6 by 0.6-0.9 dB on vector-park and
    anime-concert and lost 0.2 dB on photo-dragonfly (docs/NOTES.md). Only the depth above: it
    needs fewer Gaussians, so the fit keeps its count (and its coarse scales); the depth below
    would need a larger fit, which at 0.75 bpp doubled the encode for a full-size fit."""
    o = bits.color + 1
    return [Bits(bits.position, o, o, o)] if o <= 8 and bits.scale == bits.rotation == bits.color else []


def settle_bits(height: int, width: int, budget: float, channels: int, bits: Bits) -> list[tuple[Bits, int]]:
    """The default bit depths and the count that fits ``budget`` bytes with them, settled together
    (the depths depend on the count, :func:`default_bits`, and the count on the depths).
    Returns [(bits, count)]: one pair where they settle, every pair of the cycle where they do not.

    Near a depth boundary they cycle: at 0.3 bpp every 1024-px image goes 6 bits -> a count
    whose spacing asks for 7 -> a count that asks for 6. Neither side wins everywhere (vector-park
    36.3 dB with 6 bits, 33.7 with 7; vector-spacefun 38.2 and 42.6), so :func:`imagegs.compress`
    encodes both and keeps the file that decodes closer (docs/NOTES.md).
    """
    seen = [(bits, count_for_budget(budget, bits, channels))]
    while True:
        new = default_bits(height, width, num_gaussians=max(seen[-1][1], 1), channels=channels)
        if new == seen[-1][0]:
            return [seen[-1]]
        done = [b for b, _ in seen]
        if new in done:
            return seen[done.index(new):]
        seen.append((new, count_for_budget(budget, new, channels)))


def rasterize_model(g: Gaussians, top_k: int | None) -> torch.Tensor:
    """The native-size rendering of ``g`` (C, H, W), as the fit and the decoder see it."""
    h, w = g.height, g.width
    means, conics, radii = project(g.xy, g.scale, g.rot, height=h, width=w, native_height=h, native_width=w)
    return rasterize(means, conics, g.color, radii, h, w, top_k=top_k)


def decoded_mse(g: Gaussians, target: torch.Tensor, top_k: int | None, weights: torch.Tensor | None = None) -> float:
    """Mean squared error of ``g``'s native rendering against ``target`` (C, H, W); weighted by
    ``weights`` (broadcastable to it, e.g. (H, W) importance) when given."""
    with torch.no_grad():
        sq = (rasterize_model(g, top_k) - target) ** 2
        return float((sq if weights is None else sq * weights).mean())


def coverage(g: Gaussians, *, top_k: int | None = DEFAULT_TOP_K, weights: torch.Tensor | None = None) -> torch.Tensor:
    """How much of the image each Gaussian paints: its blend weight summed over the pixels, (N,);
    with ``weights`` (H, W), each pixel counted by its weight (an important pixel counts more).

    The rendering is linear in the colours, so d(sum of a one-channel rendering with unit
    colours) / d(colour_i) is exactly that sum: one backward pass gives every Gaussian's share.
    """
    h, w = g.height, g.width
    ones = torch.ones(g.num, 1, requires_grad=True)
    means, conics, radii = project(g.xy.detach(), g.scale.detach(), g.rot.detach(), height=h, width=w,
                                   native_height=h, native_width=w)
    painted = rasterize(means, conics, ones, radii, h, w, top_k=top_k)
    (painted if weights is None else painted * weights).sum().backward()
    return ones.grad[:, 0]


def prune(g: Gaussians, levels: list[int], order: torch.Tensor, n: int) -> tuple[Gaussians, list[int]]:
    """The n Gaussians first in ``order`` (a ranking), kept in their level order; the level sizes."""
    keep = order[:n].sort().values
    level_of = np.repeat(np.arange(len(levels)), levels)[keep.numpy()]
    return g[keep], [int(c) for c in np.bincount(level_of, minlength=len(levels)) if c > 0]


def fit_budget(g: Gaussians, target: torch.Tensor, levels: list[int], budget: float, pack: Pack,
               top_k: int | None, weights: torch.Tensor | None = None
               ) -> tuple[bytes, Gaussians, list[int], Gaussians] | None:
    """Drop Gaussians until ``pack``'s file fits ``budget`` bytes (bisection on the count). Two
    rankings are tried and the one whose file decodes closer to ``target`` (C, H, W) wins: the
    Gaussians that paint least (:func:`coverage`) go first, or the last-added ones. Neither wins
    everywhere: on sparse models (anime-club at 512 px, 0.3 bpp, 1027 -> 805 Gaussians) coverage
    gives 22.3 dB against 21.5; on dense ones (coffee 48x72, 400 -> 300) the last-added go first
    at 29.0 dB against 23.9. Returns (file, decoder's model, levels, kept float model), or None
    if even one Gaussian does not fit. ``weights`` (H, W): per-pixel importance that both the
    coverage ranking and the error count (semantics-aware compression); None: uniform."""
    data, gq = pack(g, levels)
    if len(data) <= budget:
        return data, gq, levels, g
    best, best_err = None, math.inf
    for order in (torch.argsort(coverage(g, top_k=top_k, weights=weights), descending=True, stable=True), torch.arange(g.num)):
        lo, hi, got = 0, g.num, None  # invariant: lo fits (or is 0), hi does not
        while hi - lo > 1:
            mid = (lo + hi) // 2
            g_mid, lv_mid = prune(g, levels, order, mid)
            d_mid, gq_mid = pack(g_mid, lv_mid)
            if len(d_mid) <= budget:
                lo, got = mid, (d_mid, gq_mid, lv_mid, g_mid)
            else:
                hi = mid
        if got is not None:
            err = decoded_mse(got[1], target, top_k, weights)
            if err < best_err:
                best, best_err = got, err
    return best
