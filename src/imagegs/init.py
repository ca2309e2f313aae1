"""Content-adaptive initialisation and error-guided sampling of new Gaussian positions."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from .metrics import blur, gaussian_window


def as_image(image) -> torch.Tensor:
    """Any image input as a (C, H, W) float32 tensor in [0, 1]: the one converter behind every
    public function that takes an image (fit, compress/encode, upscale).

    Accepts a path (str or ``os.PathLike``: a file, a folder or texture stack, or a scikit-image
    sample name such as ``"astronaut"``, as :func:`imagegs.io.read_source` reads them), an
    :class:`imagegs.io.Image` from ``read_image``, a tensor (C, H, W) or (H, W), or a numpy array
    (H, W) or (H, W, C), the scikit-image convention. Integer arrays are divided by their type's
    maximum (uint8, uint16).
    """
    from .io import Image, read_source  # io imports this module's neighbours, not the reverse

    if isinstance(image, (str, os.PathLike)):
        image = read_source(image)
    if isinstance(image, Image):
        image = image.pixels
    if torch.is_tensor(image):
        t = image.detach().to("cpu")
        if not (t.is_floating_point() or t.dtype == torch.bool):  # integers: 0..max of the type
            t = t.to(torch.float32) / float(torch.iinfo(t.dtype).max)
        if t.ndim == 2:
            t = t[None]
    else:
        a = np.asarray(image)
        if a.dtype.kind in "ui":
            a = a.astype(np.float32) / float(np.iinfo(a.dtype).max)
        elif a.dtype.kind != "f" and a.dtype != np.bool_:
            raise ValueError(f"an image must be a path, an Image, a numpy array of numbers or a "
                             f"tensor; got {type(image).__name__} of dtype {a.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
        t = t[None] if t.ndim == 2 else (t.permute(2, 0, 1) if t.ndim == 3 else t)
    if t.ndim != 3:
        raise ValueError(f"image must be (H, W), (H, W, C) array or (C, H, W) tensor, got shape {tuple(t.shape)}")
    if t.shape[0] < 1 or t.shape[1] < 1 or t.shape[2] < 1:
        raise ValueError(f"image has an empty dimension: {tuple(t.shape)}")
    t = t.to(torch.float32).contiguous()
    if not torch.isfinite(t).all():
        raise ValueError("image contains NaN or infinite values")
    return t


def pixel_centres(height: int, width: int) -> torch.Tensor:
    """(H*W, 2) pixel centres in [0, 1]^2 units, row-major: ((j + .5) / W, (i + .5) / H)."""
    ys = (torch.arange(height, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, dtype=torch.float32) + 0.5) / width
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], 1)


def sample_without_replacement(prob: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k distinct indices drawn with probability proportional to ``prob`` (Gumbel top-k, O(n)).

    Indices with zero probability are only used when fewer than k have positive probability.
    """
    p = np.asarray(prob, np.float64).reshape(-1)
    k = min(int(k), p.size)
    if k <= 0:
        return np.zeros(0, np.int64)
    with np.errstate(divide="ignore"):
        keys = np.log(p) + rng.gumbel(size=p.size)
    keys[~np.isfinite(keys)] = -np.inf
    positive = int(np.count_nonzero(p > 0))
    if positive < k:  # fill from the zero-probability pixels uniformly
        keys[p <= 0] = -1e300 + rng.random(int((p <= 0).sum()))
    idx = np.argpartition(-keys, k - 1)[:k]
    return idx


def gradient_map(image: torch.Tensor) -> np.ndarray:
    """(H, W) Sobel gradient magnitude, channel-mean, normalised to max 1 (the official map)."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    k = torch.stack([kx, kx.T])[:, None]  # (2, 1, 3, 3)
    x = F.pad(image[:, None], (1, 1, 1, 1), mode="replicate")
    g = F.conv2d(x, k)  # (C, 2, H, W)
    mag = torch.sqrt((g * g).sum(1)).mean(0)
    m = float(mag.max())
    return (mag / m if m > 0 else mag).numpy()


def init_positions(image: torch.Tensor, num: int, *, random_ratio: float = 0.3,
                   weight_map: np.ndarray | None = None, rng: np.random.Generator) -> torch.Tensor:
    """(num, 2) initial centres at pixel centres: a ``random_ratio`` share uniform, the rest drawn
    by ``weight_map`` (default: squared Sobel magnitude, as in the official code), each without
    replacement.

    Args:
        image: (C, H, W) target. weight_map: optional (H, W) non-negative importance (e.g. saliency).
    """
    _, h, w = image.shape
    grid = pixel_centres(h, w)
    if num > h * w:
        raise ValueError(f"{num} Gaussians for {h * w} pixels: at most one initial Gaussian per pixel")
    n_rand = int(round(random_ratio * num))
    uniform = sample_without_replacement(np.ones(h * w), n_rand, rng)
    wmap = gradient_map(image) ** 2 if weight_map is None else np.asarray(weight_map, np.float64)
    if wmap.shape != (h, w) or not np.all(np.isfinite(wmap)) or (wmap < 0).any():
        raise ValueError(f"weight map must be finite, non-negative and {h}x{w}")
    guided = sample_without_replacement(wmap.reshape(-1), num - n_rand, rng)
    return grid[torch.from_numpy(np.concatenate([uniform, guided]))]


def gaussian_blur(image: torch.Tensor, kernel: int) -> torch.Tensor:
    """Blur (C, H, W) with an odd ``kernel``-tap Gaussian (torchvision's default sigma), reflect pad."""
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    return blur(image[None], gaussian_window(kernel, sigma, image.dtype), mode="reflect")[0]


def error_blur_kernel(height: int, width: int) -> int:
    """The official blur size for error-guided sampling: ~sqrt(HW)/400, odd, >= 3 (0 = no blur)."""
    k = int(math.sqrt(height * width) // 400)
    if k < 1:
        return 0
    k = max(3, k)
    return k + 1 if k % 2 == 0 else k
