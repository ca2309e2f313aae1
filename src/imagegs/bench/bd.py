"""Bjontegaard deltas between two rate-distortion curves (VCEG-M33; piecewise cubic per VCEG-AL22).

BD-PSNR: the mean vertical gap (dB) between the two curves, PSNR as a function of log10(rate),
over the rate interval both curves cover. BD-rate: the mean horizontal gap, log10(rate) as a
function of PSNR over the PSNR interval both cover, as a percentage: negative = the test codec
needs that much less rate than the anchor for the same quality.

Each curve is interpolated either by monotone piecewise cubic Hermite interpolation (``"pchip"``,
the default, as in the JVET/AOM tools and CompressAI) or by the original least-squares cubic
polynomial (``"cubic"``, needs 4 points), and integrated exactly (the interpolant's own integral).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.interpolate import PchipInterpolator

__all__ = ["bd_psnr", "bd_rate", "BDError"]

METHODS = ("pchip", "cubic")


class BDError(ValueError):
    """The curves cannot be compared (too few points, no overlap, bad values)."""


def _curve(x: Sequence[float], y: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    """Finite points sorted by x, equal x merged (mean y); at least two distinct x."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise BDError(f"{what}: rates and qualities must be 1-D of one length, got {x.shape}, {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise BDError(f"{what}: non-finite values")
    ux, inverse = np.unique(x, return_inverse=True)
    uy = np.bincount(inverse, weights=y) / np.bincount(inverse)
    if len(ux) < 2:
        raise BDError(f"{what}: need at least 2 distinct points, got {len(ux)}")
    return ux, uy


def _integral(x: np.ndarray, y: np.ndarray, lo: float, hi: float, method: str, what: str) -> float:
    """Integral over [lo, hi] of the interpolant of y(x)."""
    if method == "pchip":
        return float(PchipInterpolator(x, y).integrate(lo, hi))
    if method == "cubic":
        if len(x) < 4:
            raise BDError(f"{what}: the cubic fit needs at least 4 points, got {len(x)}")
        poly = np.polynomial.Polynomial.fit(x, y, 3).convert().integ()
        return float(poly(hi) - poly(lo))
    raise BDError(f"unknown BD method {method!r}; choose from {', '.join(METHODS)}")


def _overlap(a: np.ndarray, b: np.ndarray, limits: tuple[float, float] | None, what: str
             ) -> tuple[float, float]:
    lo, hi = max(a[0], b[0]), min(a[-1], b[-1])
    if limits is not None:
        lo, hi = max(lo, limits[0]), min(hi, limits[1])
    if not hi > lo:
        raise BDError(f"the two curves do not overlap in {what}")
    return lo, hi


def _log_rates(rate: Sequence[float], what: str) -> np.ndarray:
    r = np.asarray(rate, dtype=np.float64)
    if np.any(~(r > 0)):
        raise BDError(f"{what}: rates must be > 0")
    return np.log10(r)


def bd_psnr(rate_anchor: Sequence[float], psnr_anchor: Sequence[float],
            rate_test: Sequence[float], psnr_test: Sequence[float], *,
            rate_range: tuple[float, float] | None = None, method: str = "pchip") -> float:
    """Mean PSNR gain (dB) of the test curve over the anchor.

    Args:
        rate_anchor, psnr_anchor: the anchor's points (bpp, dB), any order.
        rate_test, psnr_test: the test codec's points.
        rate_range: optional (lo, hi) bpp: integrate only over this part of the common range.
        method: ``"pchip"`` or ``"cubic"``.
    """
    xa, ya = _curve(_log_rates(rate_anchor, "anchor"), psnr_anchor, "anchor")
    xb, yb = _curve(_log_rates(rate_test, "test"), psnr_test, "test")
    limits = None if rate_range is None else (math.log10(rate_range[0]), math.log10(rate_range[1]))
    lo, hi = _overlap(xa, xb, limits, "rate")
    ia = _integral(xa, ya, lo, hi, method, "anchor")
    ib = _integral(xb, yb, lo, hi, method, "test")
    return float((ib - ia) / (hi - lo))


def bd_rate(rate_anchor: Sequence[float], psnr_anchor: Sequence[float],
            rate_test: Sequence[float], psnr_test: Sequence[float], *,
            method: str = "pchip") -> float:
    """Mean rate difference (%) of the test curve against the anchor at equal PSNR."""
    ya, xa = _curve(psnr_anchor, _log_rates(rate_anchor, "anchor"), "anchor")
    yb, xb = _curve(psnr_test, _log_rates(rate_test, "test"), "test")
    lo, hi = _overlap(ya, yb, None, "PSNR")
    ia = _integral(ya, xa, lo, hi, method, "anchor")
    ib = _integral(yb, xb, lo, hi, method, "test")
    return float((10.0 ** ((ib - ia) / (hi - lo)) - 1.0) * 100.0)
