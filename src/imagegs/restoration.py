"""Joint compression and restoration: encode a noisy image with a Gaussian budget that captures its
content but not its noise, and decode the result.

    r = imagegs.restore("noisy.png")          # noise estimated, budget chosen from it
    imagegs.write_image(r.image, "clean.png")
    imagegs.save_igs(r.data, "clean.igs")

A few thousand smooth Gaussians cannot follow pixel-wise noise: fitted with too few they blur the
content, with too many they copy the noise. :func:`auto_budget` picks the count between the two
from the estimated noise level and the image's content, by a rule fitted on measurements
(``benchmarks/restore_budget.py``, docs/NOTES.md, "Joint compression and restoration"). ``bpp=`` or ``gaussians=`` override it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch

from .defaults import DEFAULT_TOP_K
from .init import as_image

__all__ = ["Restored", "auto_budget", "check_noise", "content_features", "estimate_noise", "restore"]

DETAIL_BLUR = 2.0  # px: the blur that separates content from noise in content_features
# auto_budget's rule: Gaussians per pixel = exp(A) * sigma^B * detail^C (sigma, detail: 8-bit
# levels), least squares on the best counts of benchmarks/results/restore/budget_sweep.jsonl
# (benchmarks/restore_budget.py --fit: budget_rule.json; docs/NOTES.md, "Joint compression and restoration"). sigma is held to
# the range measured (SIGMA_RANGE: estimates of sigma 10 to 50) and the density to
# [MIN_DENSITY, MAX_DENSITY]: outside, the rule would extrapolate.
RULE_A, RULE_B, RULE_C = -2.38, -1.42, 1.08
SIGMA_RANGE = (9.0, 48.0)
MIN_DENSITY, MAX_DENSITY = 0.002, 0.1
# The fit's loss for restoration: L1 alone. SSIM's contrast-structure term rewards copying the
# noise's local contrast: astronaut 256 px, sigma 25, 1000 Gaussians: 27.11 dB with L1 alone,
# 26.36 with the default L1 + 0.1 (1 - SSIM) (benchmarks/results/restore/budget_sweep.jsonl).
SSIM_WEIGHT = 0.0
RULE = (f"density=exp({RULE_A})*sigma^{RULE_B}*detail^{RULE_C}, sigma in {SIGMA_RANGE}, density in "
        f"[{MIN_DENSITY}, {MAX_DENSITY}], ssim_weight {SSIM_WEIGHT}")  # the benchmark's records name it


def _hwc255(image) -> np.ndarray:
    """Any image input as an (H, W, C) float64 array on the 8-bit scale (0..255)."""
    return as_image(image).permute(1, 2, 0).numpy().astype(np.float64) * 255.0


def estimate_noise(image) -> float:
    """Standard deviation of additive white Gaussian noise, on 8-bit values (0..255): scikit-image's
    ``estimate_sigma`` (the median absolute deviation of the finest diagonal wavelet
    coefficients, Donoho & Johnstone), averaged over the channels."""
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(_hwc255(image), channel_axis=-1, average_sigmas=True))


def content_features(image, sigma: float | None = None) -> dict[str, float]:
    """Measures of how much content (not noise) an image holds, on 8-bit values.

    ``grad``: mean gradient magnitude of the channel mean after a Gaussian blur of DETAIL_BLUR px
    (which removes most of the noise); ``detail``: the std of the high-pass residual (the channel
    mean minus that blur) with the noise's share removed (``sigma``: given, else estimated).
    """
    from scipy import ndimage

    x = _hwc255(image)
    channels = x.shape[2]
    sigma = estimate_noise(image) if sigma is None else sigma
    x = x.mean(axis=2)
    low = ndimage.gaussian_filter(x, DETAIL_BLUR)
    grad = float(np.hypot(ndimage.sobel(low, 0), ndimage.sobel(low, 1)).mean() / 8)  # Sobel's gain: 8
    delta = np.zeros((33, 33))
    delta[16, 16] = 1.0
    noise_gain = float(((delta - ndimage.gaussian_filter(delta, DETAIL_BLUR)) ** 2).sum())
    # the channel mean of C independent noises has variance sigma^2 / C
    hp_var = float((x - low).var()) - sigma ** 2 / channels * noise_gain
    return {"grad": grad, "detail": math.sqrt(max(hp_var, 0.0))}


def check_noise(noise) -> float | None:
    """``noise`` as the library takes it: None for "auto", else a finite number >= 0 (8-bit scale)."""
    if isinstance(noise, str) and noise.strip().lower() == "auto":
        return None
    try:
        value = float(noise)
    except (TypeError, ValueError):
        raise ValueError(f"noise must be 'auto' or a noise level (std on 8-bit values), got {noise!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"noise level must be a finite number >= 0 (std on 8-bit values), got {noise}")
    return value


def auto_budget(height: int, width: int, sigma: float, detail: float) -> int:
    """The Gaussian count that restores a ``height`` x ``width`` image with noise ``sigma`` and
    content ``detail`` (:func:`content_features`) best, by the measured rule (RULE_A/B/C): more
    Gaussians for more content, fewer for more noise. Fitted at 256 px on four images and sigma
    10, 25, 50, it lands within 0.07 dB on average of the best count of the sweep."""
    s = min(max(sigma, SIGMA_RANGE[0]), SIGMA_RANGE[1])
    density = math.exp(RULE_A) * s ** RULE_B * max(detail, 1.0) ** RULE_C
    density = min(MAX_DENSITY, max(MIN_DENSITY, density))
    return max(1, min(height * width, round(density * height * width)))


@dataclass
class Restored:
    """What :func:`restore` returns."""

    image: torch.Tensor  # (C, H, W) float in [0, 1]: the .igs file decoded at its native size
    encoded: object  # imagegs.codec.Encoded: the file's bytes, Gaussians, bits, bpp
    sigma: float  # noise std on 8-bit values: estimated (noise="auto") or given
    estimated: bool  # sigma was estimated
    budget: str  # how the Gaussian count was chosen: "auto", "gaussians" or "bpp"

    @property
    def data(self) -> bytes:
        """The .igs file."""
        return self.encoded.data

    @property
    def gaussians(self):
        """The file's Gaussians (:class:`imagegs.Gaussians`, as the decoder sees them)."""
        return self.encoded.gaussians

    def __repr__(self) -> str:
        how = "estimated" if self.estimated else "given"
        return f"Restored(noise {self.sigma:.2f} ({how}), budget {self.budget}, {self.encoded!r})"


def restore(image, *, bpp: float | None = None, gaussians: int | None = None, noise="auto",
            top_k: int | None = DEFAULT_TOP_K, schedule: str = "fast", seed: int = 0, progress: bool = False,
            **options) -> Restored:
    """Denoise and compress an image in one: fit a content-sized Gaussian budget to it, encode an
    .igs file, and decode it.

    Args:
        image: a path, an ``Image``, an (H, W[, C]) array or a (C, H, W) tensor
            (:func:`imagegs.init.as_image`).
        bpp: whole-file bits per pixel instead of the automatic budget (rate control as
            :func:`imagegs.compress`).
        gaussians: a fixed Gaussian count instead of the automatic budget.
        noise: ``"auto"`` (default: :func:`estimate_noise`) or the noise std on 8-bit values
            (0..255); it sets the automatic budget.
        top_k, schedule, seed, progress, **options: passed to :func:`imagegs.compress` (the fit's
            ``ssim_weight`` defaults to SSIM_WEIGHT, 0: L1 alone, which copies less noise).
    Returns:
        :class:`Restored`: the decoded image, the file (``.data``), its Gaussians and the noise level.
    """
    from . import codec

    if bpp is not None and gaussians is not None:
        raise ValueError("give either bpp or gaussians, not both")
    sigma = check_noise(noise)
    if isinstance(image, (str, os.PathLike)):  # read once; compress keeps the Image's names and depths
        from .io import read_source

        image = read_source(image)
    target = as_image(image)
    _, h, w = target.shape
    estimated = sigma is None
    if estimated:
        sigma = estimate_noise(target)
    if bpp is not None:
        how, count = "bpp", None
    elif gaussians is not None:
        how, count = "gaussians", gaussians
    else:
        how, count = "auto", auto_budget(h, w, sigma, content_features(target, sigma)["detail"])
    options.setdefault("ssim_weight", SSIM_WEIGHT)
    enc = codec.compress(image, bpp=bpp, num_gaussians=count, top_k=top_k, schedule=schedule, seed=seed,
                         progress=progress, **options)
    decoded = codec.decode(enc.data, as_uint8=False).clamp_(0, 1)
    return Restored(image=decoded, encoded=enc, sigma=float(sigma), estimated=estimated, budget=how)
