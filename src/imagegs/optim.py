"""The optimiser shared by the fit and the codec's colour polish: Adam over growable tensors.

``torch.optim.Adam`` cannot add rows to a parameter mid-run; Image-GS adds Gaussians during the
fit, so its optimiser state has to grow with them (new rows start with zero moments). The update
is torch's Adam (same formula, ``eps`` outside the square root); tests/test_fit.py compares them.
"""

from __future__ import annotations

import math

import torch

__all__ = ["Adam"]


class Adam:
    """Adam over a list of tensors whose rows can grow (new rows start with zero moments)."""

    def __init__(self, params: list[torch.Tensor], lrs: list[float], betas=(0.9, 0.999), eps=1e-15):
        self.params, self.lrs = params, list(lrs)
        self.b1, self.b2, self.eps = betas[0], betas[1], eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = 0

    @torch.no_grad()
    def step(self) -> None:
        """One update from the parameters' ``.grad`` (which it then clears)."""
        self.t += 1
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        for p, m, v, lr in zip(self.params, self.m, self.v, self.lrs):
            g = p.grad
            m.mul_(self.b1).add_(g, alpha=1 - self.b1)
            v.mul_(self.b2).addcmul_(g, g, value=1 - self.b2)
            p.addcdiv_(m, v.sqrt().div_(math.sqrt(c2)).add_(self.eps), value=-lr / c1)
            p.grad = None

    def scale_lr(self, factor: float) -> None:
        """Multiply every learning rate by ``factor`` (the fit's decay)."""
        self.lrs = [lr * factor for lr in self.lrs]

    def grow(self, new_rows: list[torch.Tensor]) -> None:
        """Append rows to every parameter (same order as ``params``) and zero moments for them."""
        for i, rows in enumerate(new_rows):
            p = self.params[i]
            self.params[i] = torch.cat([p.detach(), rows.to(p.dtype)]).requires_grad_()
            self.m[i] = torch.cat([self.m[i], torch.zeros_like(rows)])
            self.v[i] = torch.cat([self.v[i], torch.zeros_like(rows)])
