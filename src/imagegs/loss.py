"""The fitting loss L1 + w (1 - SSIM) against a fixed target (official weights: 1 and 0.1).

On CPU float32/float64 (C, H, W) tensors the loss runs on fused Numba kernels (``_ssim_kernels``,
~30x faster than torch) that return the loss and its gradient in one call, since the forward pass
already holds every intermediate the backward pass needs; the autograd backward then only scales
the stored gradient. Without autograd the kernels skip the gradient. Elsewhere (GPU, other dtypes or
shapes) it falls back to ``reference_loss``, the pure-torch twin the kernels are tested against.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from . import metrics

_FAST_DTYPES = (torch.float32, torch.float64)


def reference_loss(render: torch.Tensor, target: torch.Tensor, *, l1_weight: float = 1.0,
                   ssim_weight: float = 0.1) -> torch.Tensor:
    """l1_weight * mean|render - target| + ssim_weight * (1 - SSIM), in pure (differentiable) torch."""
    loss = l1_weight * (render - target).abs().mean()
    if ssim_weight:
        loss = loss + ssim_weight * (1.0 - metrics.ssim(render, target))
    return loss


class _TargetStats:
    """The target, its blur statistics (mu_y, var_y) and the kernels' scratch, in one dtype.

    The statistics depend on the target only, so they are computed once (in float64, then cast).
    """

    def __init__(self, target: torch.Tensor, dtype: torch.dtype):
        from . import _ssim_kernels as K  # imports numba lazily

        y64 = target.detach().to(device="cpu", dtype=torch.float64).contiguous().numpy()
        mu, var = K.target_stats(y64, K.window())
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        self.y = np.ascontiguousarray(y64, dtype=np_dtype)
        self.mu = mu.astype(np_dtype)
        self.var = var.astype(np_dtype)
        self.w = K.window().astype(np_dtype)
        self.part = K.scratch(*self.y.shape, np_dtype)  # reused: calls on one ImageLoss are serial


def _run_kernel(x: np.ndarray, st: _TargetStats, l1_weight: float, ssim_weight: float,
                need_grad: bool) -> tuple[float, float, np.ndarray | None]:
    """(mean |x - y|, mean SSIM, loss gradient or None) of a (C, H, W) array x against st's target."""
    from . import _ssim_kernels as K

    m = x.size
    grad = np.empty_like(x) if need_grad else np.empty((1, 1, 1), x.dtype)
    sum_abs, sum_ssim = K.loss_grad(x, st.y, st.mu, st.var, st.w, l1_weight / m, -ssim_weight / m,
                                    need_grad, grad, st.part)
    return sum_abs / m, sum_ssim / m, (grad if need_grad else None)


def _combine(l1: float, ssim: float, l1_weight: float, ssim_weight: float) -> float:
    """The loss from its two terms (the SSIM term is left out at weight 0, as in ``reference_loss``)."""
    return l1_weight * l1 + (ssim_weight * (1.0 - ssim) if ssim_weight else 0.0)


class _LossCPU(torch.autograd.Function):
    """render -> scalar loss on the Numba kernels; the gradient is computed during forward."""

    @staticmethod
    def forward(ctx, render, stats: _TargetStats, l1_weight: float, ssim_weight: float):
        x = render.detach().contiguous().numpy()
        l1, ssim, grad = _run_kernel(x, stats, l1_weight, ssim_weight, need_grad=True)
        ctx.grad = torch.from_numpy(grad)
        return torch.tensor(_combine(l1, ssim, l1_weight, ssim_weight), dtype=render.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_output):
        grad, ctx.grad = ctx.grad, None  # free it: the graph is not reused
        g = float(grad_output)
        return (grad if g == 1.0 else grad * g), None, None, None


class ImageLoss:
    """Callable ``loss(render) -> scalar tensor`` for a fixed (C, H, W) target.

    The loss is l1_weight * mean|render - target| + ssim_weight * (1 - SSIM(render, target)) with
    ``metrics.ssim``'s SSIM. The target is copied at construction (its blur statistics are
    precomputed once per dtype), so later in-place changes to the caller's tensor have no effect.
    An instance keeps scratch memory for its kernels: do not call one instance from two threads at
    once.
    """

    def __init__(self, target: torch.Tensor, *, l1_weight: float = 1.0, ssim_weight: float = 0.1):
        self._target = target.detach().clone()
        self.l1_weight = float(l1_weight)
        self.ssim_weight = float(ssim_weight)
        self._stats: dict[torch.dtype, _TargetStats] = {}

    @property
    def target(self) -> torch.Tensor:
        """The fixed target (do not modify it in place: its statistics are cached)."""
        return self._target

    def _fast_stats(self, render: torch.Tensor) -> _TargetStats | None:
        """The target statistics in render's dtype if the Numba path applies, else None."""
        if (render.device.type != "cpu" or self._target.device.type != "cpu"
                or render.dtype not in _FAST_DTYPES or render.shape != self._target.shape or render.ndim != 3):
            return None
        if render.dtype not in self._stats:
            self._stats[render.dtype] = _TargetStats(self._target, render.dtype)
        return self._stats[render.dtype]

    def __call__(self, render: torch.Tensor) -> torch.Tensor:
        stats = self._fast_stats(render)
        if stats is None:
            return reference_loss(render, self._target.to(render.device), l1_weight=self.l1_weight,
                                  ssim_weight=self.ssim_weight)
        if render.requires_grad and torch.is_grad_enabled():
            return _LossCPU.apply(render, stats, self.l1_weight, self.ssim_weight)
        l1, ssim, _ = _run_kernel(render.detach().contiguous().numpy(), stats, self.l1_weight,
                                  self.ssim_weight, need_grad=False)
        return torch.tensor(_combine(l1, ssim, self.l1_weight, self.ssim_weight), dtype=render.dtype)

    def ssim(self, render: torch.Tensor) -> torch.Tensor:
        """SSIM(render, target) as ``metrics.ssim`` defines it, without gradient (fast on CPU)."""
        stats = self._fast_stats(render)
        if stats is None:
            with torch.no_grad():
                return metrics.ssim(render, self._target.to(render.device))
        _, ssim, _ = _run_kernel(render.detach().contiguous().numpy(), stats, 0.0, 1.0, need_grad=False)
        return torch.tensor(ssim, dtype=render.dtype)
