"""Upscaling an image to any size: LIIF, Image-GS, bicubic or Lanczos.

- ``liif``: encode once, apply the decoder's first layer once per low-resolution pixel
  (:meth:`LIIF.prepare`), then decode the output pixels in batches of ``batch`` queries, so that
  memory stays bounded whatever the output size (a 4096x4096 output from a 1024x1024 input peaks
  around 2-3 GB: the encoder's activations and the per-latent projection dominate).
- ``gaussians``: fit Image-GS to the low-resolution image, render it at the target size.
- ``bicubic`` / ``lanczos``: Pillow's filters (Keys a = -0.5 bicubic, as MATLAB's imresize; Lanczos
  a = 3), in floating point per channel, no 8-bit rounding in between.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image as PILImage

from ..defaults import DEFAULT_NUM_GAUSSIANS
from .models import LIIF, axis_coord

__all__ = ["METHODS", "upscale", "liif_upscale", "resize", "default_gaussians"]

METHODS = ("liif", "gaussians", "bicubic", "lanczos")
_PIL_FILTERS = {"bicubic": PILImage.Resampling.BICUBIC, "lanczos": PILImage.Resampling.LANCZOS}
DEFAULT_BATCH = 16384  # queries per decoder batch: 4 x 16 MB of activations
MAX_GAUSSIANS = DEFAULT_NUM_GAUSSIANS  # Image-GS budget cap (also at most half the pixels)


def resize(image: torch.Tensor, height: int, width: int, *, method: str = "bicubic") -> torch.Tensor:
    """(C, H, W) float image -> (C, height, width) float32 with Pillow's bicubic or Lanczos filter.

    Each channel is resized as a 32-bit float image (Pillow mode "F"); values are not clipped.
    """
    if method not in _PIL_FILTERS:
        raise ValueError(f"unknown resize method {method!r}; choose one of {sorted(_PIL_FILTERS)}")
    arr = image.detach().to("cpu", torch.float32).numpy()
    out = [np.asarray(PILImage.fromarray(ch, mode="F").resize((width, height), _PIL_FILTERS[method]))
           for ch in arr]
    return torch.from_numpy(np.stack(out))


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="px", unit_scale=True,
                leave=False, dynamic_ncols=True)


def liif_upscale(model: LIIF, image: torch.Tensor, height: int, width: int, *,
                 batch: int = DEFAULT_BATCH, progress: bool = False) -> torch.Tensor:
    """Decode a LIIF of an RGB image at ``height`` x ``width`` pixel centres.

    Args:
        model: a LIIF (e.g. :func:`imagegs.liif.load_model`), on any device.
        image: (3, h, w) in [0, 1].
        height, width: output size (any, larger or smaller than the input).
        batch: queries decoded at once (bounds memory; does not change the result).
        progress: tqdm bar over output pixels.
    Returns:
        (3, height, width) float32 in [0, 1] on the CPU (official: pred * 0.5 + 0.5, clamped).
    """
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"LIIF needs a (3, H, W) RGB image, got shape {tuple(image.shape)}")
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    device = next(model.parameters()).device
    n = height * width
    out = torch.empty(n, 3)
    ys, xs = axis_coord(height).to(device), axis_coord(width).to(device)
    with torch.inference_mode():
        inp = ((image.to(device, torch.float32) - 0.5) / 0.5)[None]
        latents = model.prepare(model.encode(inp))
        cell_value = torch.tensor([2 / height, 2 / width], device=device)
        with _progress(n, progress, "LIIF") as bar:
            for start in range(0, n, batch):
                idx = torch.arange(start, min(start + batch, n), device=device)
                coord = torch.stack([ys[idx // width], xs[idx % width]], dim=-1)[None]
                cell = cell_value.expand_as(coord)
                pred = model.query(latents, coord, cell)[0]
                out[start:start + len(idx)] = (pred * 0.5 + 0.5).clamp_(0, 1).cpu()
                bar.update(len(idx))
    return out.t().reshape(3, height, width).contiguous()


def default_gaussians(height: int, width: int) -> int:
    """Image-GS budget for a ``height`` x ``width`` input: 10,000, or half its pixels if fewer
    (a fit cannot use more Gaussians than pixels, and one per two pixels is already generous)."""
    return max(1, min(MAX_GAUSSIANS, (height * width) // 2))


def upscale(image: torch.Tensor, height: int, width: int, *, method: str = "liif",
            model: LIIF | None = None, batch: int = DEFAULT_BATCH, progress: bool = False,
            num_gaussians: int | None = None, **fit_options) -> torch.Tensor:
    """Resize a (C, h, w) image in [0, 1] to (C, height, width) float32 in [0, 1].

    ``liif`` works on colour: RGB directly, grey through RGB (replicated in, averaged out); an alpha
    channel (grey+alpha, RGBA) is resized bicubically beside it. ``gaussians`` fits Image-GS
    (``num_gaussians`` default :func:`default_gaussians`, other ``fit_options`` passed to
    :func:`imagegs.fit`) and renders at the new size. Bicubic and Lanczos take any C.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    if image.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {tuple(image.shape)}")
    c, h, w = image.shape
    if method in _PIL_FILTERS:
        return resize(image, height, width, method=method).clamp_(0, 1)
    if method == "gaussians":
        from ..fit import fit
        from ..renderer import render

        num = num_gaussians if num_gaussians is not None else default_gaussians(h, w)
        g = fit(image, num_gaussians=num, progress=progress, **fit_options)
        with torch.no_grad():
            return render(g, height, width).clamp_(0, 1).float()
    if model is None:
        raise ValueError("method 'liif' needs a model (imagegs.liif.load_model())")
    if c not in (1, 2, 3, 4):
        raise ValueError(f"LIIF upscales grey, RGB and their alpha variants (1-4 channels), got {c}")
    colour = image[:3] if c >= 3 else image[:1].expand(3, h, w)
    rgb = liif_upscale(model, colour, height, width, batch=batch, progress=progress)
    parts = [rgb if c >= 3 else rgb.mean(0, keepdim=True)]
    if c in (2, 4):
        parts.append(resize(image[-1:], height, width, method="bicubic").clamp_(0, 1))
    return torch.cat(parts)

