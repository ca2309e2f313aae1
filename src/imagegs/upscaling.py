"""Resize an image to any size with one of four methods: LIIF, Image-GS, bicubic or Lanczos.

    import imagegs
    big = imagegs.upscale("astronaut", scale=2, method="bicubic")   # (3, 1024, 1024) tensor

The dispatcher lives here, above both representations, so that ``imagegs.liif`` stays
independent of Image-GS:

- ``liif``: the learned continuous representation (:mod:`imagegs.liif`), official weights by default;
- ``gaussians``: fit Image-GS to the input (:func:`imagegs.fit`), render it at the new size;
- ``bicubic`` / ``lanczos``: Pillow's filters in floating point (:func:`imagegs.liif.resize`).
"""

from __future__ import annotations

import torch

from .defaults import DEFAULT_NUM_GAUSSIANS, MAX_PIXELS, output_size
from .init import as_image
from .liif.upscale import DEFAULT_BATCH, liif_upscale_any, resize

__all__ = ["METHODS", "upscale", "default_gaussians", "DEFAULT_BATCH"]

METHODS = ("liif", "gaussians", "bicubic", "lanczos")


def default_gaussians(height: int, width: int) -> int:
    """Image-GS budget for a ``height`` x ``width`` input: the default 10,000, or half its pixels
    if fewer (a fit cannot use more Gaussians than pixels; one per two pixels is generous)."""
    return max(1, min(DEFAULT_NUM_GAUSSIANS, (height * width) // 2))


def upscale(image, height: int | None = None, width: int | None = None, *, scale: float | None = None,
            method: str = "liif", model=None, batch: int = DEFAULT_BATCH, progress: bool = False,
            num_gaussians: int | None = None, max_pixels: int = MAX_PIXELS, **fit_options) -> torch.Tensor:
    """Resize an image to (C, height, width) float32 in [0, 1] (it may also shrink).

    Args:
        image: a path, ``Image``, numpy array (H, W[, C]) or tensor (C, H, W) (see
            :func:`imagegs.init.as_image`).
        height, width, scale: the output size: ``scale`` times the input, or ``height`` and/or
            ``width`` (one alone keeps the aspect ratio).
        method: ``"liif"``, ``"gaussians"``, ``"bicubic"`` or ``"lanczos"``.
        model: for ``liif``, a LIIF (:func:`imagegs.liif.load_weights`); default: the official
            EDSR-baseline-LIIF weights, fetched into the cache on first use.
        batch: LIIF queries decoded at once (bounds memory, does not change the result).
        num_gaussians: for ``gaussians``, the budget (default :func:`default_gaussians`); other
            ``fit_options`` go to :func:`imagegs.fit`.
        max_pixels: refuse larger outputs (default 2^28).
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    pixels = as_image(image)
    c, h, w = pixels.shape
    if height is None and width is None and scale is None:
        raise ValueError("give the output size: scale, or height and/or width")
    oh, ow = output_size(h, w, out_height=height, out_width=width, scale=scale, max_pixels=max_pixels)
    if method in ("bicubic", "lanczos"):
        return resize(pixels, oh, ow, method=method).clamp_(0, 1)
    if method == "gaussians":
        from .fitting import fit
        from .renderer import render

        num = num_gaussians if num_gaussians is not None else default_gaussians(h, w)
        g = fit(pixels, num_gaussians=num, progress=progress, **fit_options)
        with torch.no_grad():
            return render(g, oh, ow, max_pixels=max_pixels).clamp_(0, 1).float()
    if model is None:
        from .liif.weights import load_weights

        model = load_weights()
    with torch.inference_mode():
        return liif_upscale_any(model, pixels, oh, ow, batch=batch, progress=progress)
