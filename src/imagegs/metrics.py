"""Image quality measures: PSNR and SSIM (differentiable, used by the fitting loss too).

SSIM follows Wang et al. 2004 with the usual 11x11 Gaussian window (sigma 1.5), K1 = 0.01,
K2 = 0.03, data range 1, 'valid'-free (zero-padded 'same') filtering as in fused-ssim, which the
official Image-GS training loss uses. Reported metrics are computed on the 8-bit decoded image.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

_C1, _C2 = 0.01**2, 0.03**2


def gaussian_window(size: int, sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """(size,) normalised 1-D Gaussian taps, centred."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    w = torch.exp(-(x * x) / (2 * sigma * sigma))
    return (w / w.sum()).to(dtype=dtype, device=device)


def blur(x: torch.Tensor, win: torch.Tensor, *, mode: str = "zeros") -> torch.Tensor:
    """Separable filter of a (B, C, H, W) tensor with the 1-D taps ``win``, output the same size;
    borders zero-padded (``mode="zeros"``, as SSIM uses) or mirrored (``"reflect"``)."""
    c, k = x.shape[1], win.numel()
    r = k // 2
    if mode == "reflect":
        x, pad_h, pad_v = F.pad(x, (r, r, r, r), mode="reflect"), (0, 0), (0, 0)
    elif mode == "zeros":
        pad_h, pad_v = (0, r), (r, 0)
    else:
        raise ValueError(f"blur mode must be 'zeros' or 'reflect', got {mode!r}")
    x = F.conv2d(x, win.view(1, 1, 1, k).expand(c, 1, 1, k), padding=pad_h, groups=c)
    return F.conv2d(x, win.view(1, 1, k, 1).expand(c, 1, k, 1), padding=pad_v, groups=c)


def ssim(a: torch.Tensor, b: torch.Tensor, *, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of two (C, H, W) (or (B, C, H, W)) images with data range 1; differentiable."""
    return ssim_map(a, b, window=window, sigma=sigma).mean()


def ssim_map(a: torch.Tensor, b: torch.Tensor, *, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """The per-pixel SSIM map of two (C, H, W) (or (B, C, H, W)) images, data range 1, (B, C, H, W);
    :func:`ssim` is its mean. Differentiable."""
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.ndim == 3:
        a, b = a[None], b[None]
    c = a.shape[1]
    win = gaussian_window(window, sigma, a.dtype, a.device)
    mu = blur(torch.cat([a, b], 1), win)
    mu_a, mu_b = mu[:, :c], mu[:, c:]
    sec = blur(torch.cat([a * a, b * b, a * b], 1), win)
    var_a = sec[:, :c] - mu_a * mu_a
    var_b = sec[:, c:2 * c] - mu_b * mu_b
    cov = sec[:, 2 * c:] - mu_a * mu_b
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a * mu_a + mu_b * mu_b + _C1) * (var_a + var_b + _C2)
    return num / den


def psnr(a, b, *, data_range: float = 1.0) -> float:
    """PSNR in dB between two images (arrays or tensors of the same shape, values in data_range)."""
    a = torch.as_tensor(np.asarray(a) if not torch.is_tensor(a) else a, dtype=torch.float64)
    b = torch.as_tensor(np.asarray(b) if not torch.is_tensor(b) else b, dtype=torch.float64)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    mse = torch.mean((a - b) ** 2).item()
    return math.inf if mse == 0 else 10.0 * math.log10(data_range**2 / mse)


def quality_8bit(rendering: torch.Tensor, source: torch.Tensor) -> tuple[float, float]:
    """PSNR (dB) and SSIM of a rendering against its source, both as 8-bit images.

    Both go through ``io.to_uint8`` (round(clip(x, 0, 1) * 255)): an 8-bit source comes back
    exactly; a 16-bit (or float) source is quantised to 8 bits the same way as the rendering, so
    the figures describe the 8-bit images one views, whatever the source depth.
    rendering, source: (C, H, W).
    """
    from .io import to_uint8

    a, b = (torch.from_numpy(to_uint8(x)).permute(2, 0, 1).double() / 255 for x in (rendering, source))
    return psnr(a, b), float(ssim(a, b))


def angular_error(reference, decoded) -> float:
    """Mean angle in degrees between two normal maps, (3, H, W) in the usual encoding
    v = (n + 1) / 2 with values in [0, 1] (8-bit maps: divide by 255 first).

    Both sides are decoded to n = 2 v - 1 and normalised before the angle is taken, so the
    measure ignores vector lengths (a decoder that does not renormalise is not penalised for it).
    """
    a = torch.as_tensor(np.asarray(reference) if not torch.is_tensor(reference) else reference,
                        dtype=torch.float64) * 2 - 1
    b = torch.as_tensor(np.asarray(decoded) if not torch.is_tensor(decoded) else decoded,
                        dtype=torch.float64) * 2 - 1
    if a.shape != b.shape or a.ndim != 3 or a.shape[0] != 3:
        raise ValueError(f"angular_error: need two (3, H, W) normal maps, got {tuple(a.shape)} and {tuple(b.shape)}")
    norms = torch.linalg.vector_norm(a, dim=0) * torch.linalg.vector_norm(b, dim=0)
    cos = (a * b).sum(0) / norms.clamp_min(1e-12)
    return float(torch.rad2deg(torch.arccos(cos.clamp(-1, 1))).mean())


def map_quality(reference: torch.Tensor, decoded: torch.Tensor, groups: list[tuple[str, int]] | None,
                kinds: list[str] | None) -> list[dict]:
    """Per map of a (C, H, W) stack: name, kind, PSNR and SSIM of the 8-bit maps
    (:func:`quality_8bit`), and for normal maps the mean angular error in degrees
    (:func:`angular_error`, on the 8-bit maps)."""
    from .io import to_uint8
    from .textures import COLOUR, NORMAL, group_slices

    groups = groups or [("image", reference.shape[0])]
    kinds = list(kinds) if kinds else [COLOUR] * len(groups)
    out = []
    for (name, _), sl, kind in zip(groups, group_slices(groups), kinds):
        psnr, ssim = quality_8bit(decoded[sl], reference[sl])
        row = {"map": name, "kind": kind, "psnr": psnr, "ssim": ssim}
        if kind == NORMAL:
            ref8, dec8 = (torch.from_numpy(to_uint8(x[sl])).permute(2, 0, 1) / 255.0 for x in (reference, decoded))
            row["angle"] = angular_error(ref8, dec8)
        out.append(row)
    return out
