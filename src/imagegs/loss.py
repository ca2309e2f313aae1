"""The fitting loss L1 + w (1 - SSIM) against a fixed target (official weights: 1 and 0.1)."""

from __future__ import annotations

import torch

from . import metrics


class ImageLoss:
    """Callable ``loss(render) -> scalar`` for a fixed (C, H, W) target."""

    def __init__(self, target: torch.Tensor, *, l1_weight: float = 1.0, ssim_weight: float = 0.1):
        self.target = target
        self.l1_weight = float(l1_weight)
        self.ssim_weight = float(ssim_weight)

    def __call__(self, render: torch.Tensor) -> torch.Tensor:
        loss = self.l1_weight * (render - self.target).abs().mean()
        if self.ssim_weight:
            loss = loss + self.ssim_weight * (1.0 - metrics.ssim(render, self.target))
        return loss
