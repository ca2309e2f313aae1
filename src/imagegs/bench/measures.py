"""Quality of a decoded 8-bit image against its 8-bit original, as the RD benchmark reports it.

- ``psnr-rgb``: PSNR over all RGB samples, data range 255 (``imagegs.metrics.psnr``).
- ``ssim``: mean SSIM over RGB, 11x11 Gaussian window sigma 1.5, zero-padded borders: the same
  figure as ``imagegs.metrics.ssim`` (which ``imagegs fit`` reports), computed here with SciPy's
  separable filters because torch's grouped convolutions take seconds per 1024 px image on a CPU.
- ``ms-ssim``: MS-SSIM (Wang et al. 2003) exactly as pytorch-msssim computes it (and CompressAI
  reports it): 5 scales, weights (0.0448, 0.2856, 0.3001, 0.2363, 0.1333), 11x11 window with
  'valid' filtering, 2x2 average pooling with zero padding on odd sides, data range 255, product
  per channel then mean over RGB. A NumPy/SciPy twin, tested against pytorch-msssim, for the same
  speed reason. It needs both sides > 160 pixels; smaller images get None.
- ``flip``: mean LDR-FLIP error (NVIDIA's flip-evaluator, 67 pixels per degree, inputs sRGB);
  lower is better.

LPIPS is not computed: it needs torchvision and ImageNet weights downloaded at run time, which
this environment cannot do offline. It is reported as absent, not approximated.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage

from .. import metrics

__all__ = ["quality", "ssim", "ms_ssim", "flip", "METRICS", "MS_SSIM_MIN_SIDE"]

METRICS = ("psnr-rgb", "ssim", "ms-ssim", "flip")
MS_SSIM_MIN_SIDE = 161  # (win 11 - 1) * 2**4 < side: five scales with valid filtering
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
_WINDOW = metrics.gaussian_window(11, 1.5, dtype=torch.float64).numpy()  # the taps both SSIMs use


def _pair(reference: np.ndarray, decoded: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(reference), np.asarray(decoded)
    if a.shape != b.shape or a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"quality: need two (H, W, 3) images of one shape, got {a.shape} and {b.shape}")
    if a.dtype != np.uint8 or b.dtype != np.uint8:
        raise ValueError(f"quality: need uint8 images, got {a.dtype} and {b.dtype}")
    return a, b


def _blur(x: np.ndarray, *, valid: bool) -> np.ndarray:
    """Separable Gaussian blur of (H, W, C) float64 over H and W: zero-padded 'same' output, or
    only the 'valid' part (no padding involved)."""
    for axis in (0, 1):
        x = ndimage.correlate1d(x, _WINDOW, axis=axis, mode="constant", cval=0.0)
    if valid:
        r = len(_WINDOW) // 2
        x = x[r:x.shape[0] - r, r:x.shape[1] - r]
    return x


def _ssim_maps(a: np.ndarray, b: np.ndarray, data_range: float, *, valid: bool
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel means of the SSIM map and of the contrast-structure map, each (C,)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_a, mu_b = _blur(a, valid=valid), _blur(b, valid=valid)
    var_a = _blur(a * a, valid=valid) - mu_a * mu_a
    var_b = _blur(b * b, valid=valid) - mu_b * mu_b
    cov = _blur(a * b, valid=valid) - mu_a * mu_b
    cs = (2 * cov + c2) / (var_a + var_b + c2)
    full = (2 * mu_a * mu_b + c1) / (mu_a * mu_a + mu_b * mu_b + c1) * cs
    return full.mean(axis=(0, 1)), cs.mean(axis=(0, 1))


def _pool2(x: np.ndarray) -> np.ndarray:
    """torch's avg_pool2d(kernel 2, padding = side % 2, count_include_pad) on (H, W, C)."""
    for axis in (0, 1):
        n = x.shape[axis]
        p = n % 2
        if p:
            pad = [(0, 0)] * x.ndim
            pad[axis] = (p, p)
            x = np.pad(x, pad)
        m = (n + 2 * p - 2) // 2 + 1
        x = np.take(x, np.arange(2 * m), axis=axis)
        shape = list(x.shape)
        shape[axis:axis + 1] = [m, 2]
        x = x.reshape(shape).mean(axis=axis + 1)
    return x


def ssim(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean SSIM of two (H, W, 3) uint8 images, as ``imagegs.metrics.ssim`` on [0, 1] data."""
    a, b = _pair(reference, decoded)
    full, _ = _ssim_maps(a / 255.0, b / 255.0, 1.0, valid=False)
    return float(full.mean())


def ms_ssim(reference: np.ndarray, decoded: np.ndarray) -> float | None:
    """MS-SSIM of two (H, W, 3) uint8 images (None when a side is <= 160 pixels)."""
    a, b = _pair(reference, decoded)
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        return None
    x, y = a.astype(np.float64), b.astype(np.float64)
    factors = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        full, cs = _ssim_maps(x, y, 255.0, valid=True)
        if level < len(MS_SSIM_WEIGHTS) - 1:
            factors.append(np.maximum(cs, 0))
            x, y = _pool2(x), _pool2(y)
    factors.append(np.maximum(full, 0))
    per_channel = np.prod([f ** w for f, w in zip(factors, MS_SSIM_WEIGHTS)], axis=0)
    return float(per_channel.mean())


def flip(reference: np.ndarray, decoded: np.ndarray) -> float:
    """Mean LDR-FLIP error of two (H, W, 3) uint8 sRGB images (0 = identical)."""
    import flip_evaluator

    a, b = _pair(reference, decoded)
    to01 = lambda x: np.ascontiguousarray(x, dtype=np.float32) / np.float32(255)  # noqa: E731
    _, mean, _ = flip_evaluator.evaluate(to01(a), to01(b), "LDR", applyMagma=False)
    return float(mean)


def quality(reference: np.ndarray, decoded: np.ndarray) -> dict[str, float | None]:
    """All of ``METRICS`` for two (H, W, 3) uint8 images; PSNR is None for identical images
    (infinite, which JSON cannot hold)."""
    a, b = _pair(reference, decoded)
    p = metrics.psnr(a.astype(np.float64), b.astype(np.float64), data_range=255.0)
    return {
        "psnr-rgb": p if np.isfinite(p) else None,
        "ssim": ssim(a, b),
        "ms-ssim": ms_ssim(a, b),
        "flip": flip(a, b),
    }
