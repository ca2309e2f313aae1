"""The fitting loss L1 + w (1 - SSIM) against a fixed target (official weights: 1 and 0.1).

Optionally weighted per pixel and channel (``pixel_weights``, normalised to mean 1): both terms
are then weighted means, so important regions (semantics-aware compression) or maps (texture
sets) count more, and all-ones weights give exactly the plain loss.

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
                   ssim_weight: float = 0.1, pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
    """l1_weight * mean|render - target| + ssim_weight * (1 - SSIM), in pure (differentiable) torch;
    with ``pixel_weights`` (broadcastable to (C, H, W), see :func:`normalize_pixel_weights`) both
    means are weighted."""
    if pixel_weights is None:
        loss = l1_weight * (render - target).abs().mean()
        if ssim_weight:
            loss = loss + ssim_weight * (1.0 - metrics.ssim(render, target))
        return loss
    pw = normalize_pixel_weights(pixel_weights, tuple(target.shape)).to(render)
    loss = l1_weight * (pw * (render - target).abs()).mean()
    if ssim_weight:
        loss = loss + ssim_weight * (1.0 - (pw * metrics.ssim_map(render, target)[0]).mean())
    return loss


def normalize_pixel_weights(weights, shape: tuple[int, int, int]) -> torch.Tensor:
    """Per-pixel loss weights as a float64 (C, H, W) tensor of mean 1 (contiguous).

    ``weights``: array or tensor broadcastable to ``shape`` = (C, H, W): (H, W) or (1, H, W) for a
    per-pixel importance, (C, 1, 1) for per-channel weights, or (C, H, W). Non-negative, finite, and
    not all zero; raises ValueError otherwise.
    """
    w = torch.as_tensor(np.asarray(weights) if not torch.is_tensor(weights) else weights.detach().cpu(),
                        dtype=torch.float64)
    try:
        w = torch.broadcast_to(w, shape)
    except RuntimeError:
        raise ValueError(f"pixel weights of shape {tuple(w.shape)} do not fit an image of shape "
                         f"{tuple(shape)} (give (H, W), (C, 1, 1) or (C, H, W))") from None
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError("pixel weights must be finite and non-negative")
    mean = float(w.mean())
    if mean <= 0:
        raise ValueError("pixel weights are all zero")
    return (w / mean).contiguous()


class _TargetStats:
    """The target, its blur statistics (mu_y, var_y) and the kernels' scratch, in one dtype.

    The statistics depend on the target only, so they are computed once (in float64, then cast).
    """

    def __init__(self, target: torch.Tensor, dtype: torch.dtype, pixel_weights: torch.Tensor | None):
        from . import _ssim_kernels as K  # imports numba lazily

        y64 = target.detach().to(device="cpu", dtype=torch.float64).contiguous().numpy()
        mu, var = K.target_stats(y64, K.window())
        np_dtype = torch.empty(0, dtype=dtype).numpy().dtype
        self.y = np.ascontiguousarray(y64, dtype=np_dtype)
        self.mu = mu.astype(np_dtype)
        self.var = var.astype(np_dtype)
        self.w = K.window().astype(np_dtype)
        self.pw = (np.ones(self.y.shape, np_dtype) if pixel_weights is None
                   else np.ascontiguousarray(pixel_weights.numpy(), dtype=np_dtype))
        self.part = K.scratch(*self.y.shape, np_dtype)  # reused: calls on one ImageLoss are serial


def _run_kernel(x: np.ndarray, st: _TargetStats, l1_weight: float, ssim_weight: float,
                need_grad: bool) -> tuple[float, float, np.ndarray | None]:
    """(mean |x - y|, mean SSIM, loss gradient or None) of a (C, H, W) array x against st's target."""
    from . import _ssim_kernels as K

    m = x.size
    grad = np.empty_like(x) if need_grad else np.empty((1, 1, 1), x.dtype)
    sum_abs, sum_ssim = K.loss_grad(x, st.y, st.mu, st.var, st.w, st.pw, l1_weight / m, -ssim_weight / m,
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
    once. ``pixel_weights`` (broadcastable to the target's (C, H, W), normalised to mean 1) makes
    both terms weighted means, and :meth:`ssim` the weighted mean SSIM.
    """

    def __init__(self, target: torch.Tensor, *, l1_weight: float = 1.0, ssim_weight: float = 0.1,
                 pixel_weights=None):
        self._target = target.detach().clone()
        self.l1_weight = float(l1_weight)
        self.ssim_weight = float(ssim_weight)
        self.pixel_weights = (None if pixel_weights is None
                              else normalize_pixel_weights(pixel_weights, tuple(self._target.shape)))
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
            self._stats[render.dtype] = _TargetStats(self._target, render.dtype, self.pixel_weights)
        return self._stats[render.dtype]

    def __call__(self, render: torch.Tensor) -> torch.Tensor:
        stats = self._fast_stats(render)
        if stats is None:
            return reference_loss(render, self._target.to(render.device), l1_weight=self.l1_weight,
                                  ssim_weight=self.ssim_weight, pixel_weights=self.pixel_weights)
        if render.requires_grad and torch.is_grad_enabled():
            return _LossCPU.apply(render, stats, self.l1_weight, self.ssim_weight)
        l1, ssim, _ = _run_kernel(render.detach().contiguous().numpy(), stats, self.l1_weight,
                                  self.ssim_weight, need_grad=False)
        return torch.tensor(_combine(l1, ssim, self.l1_weight, self.ssim_weight), dtype=render.dtype)

    def ssim(self, render: torch.Tensor) -> torch.Tensor:
        """SSIM(render, target) as ``metrics.ssim`` defines it (weighted mean with pixel weights),
        without gradient (fast on CPU)."""
        stats = self._fast_stats(render)
        if stats is None:
            with torch.no_grad():
                smap = metrics.ssim_map(render, self._target.to(render.device))[0]
                return smap.mean() if self.pixel_weights is None else (self.pixel_weights.to(smap) * smap).mean()
        _, ssim, _ = _run_kernel(render.detach().contiguous().numpy(), stats, 0.0, 1.0, need_grad=False)
        return torch.tensor(ssim, dtype=render.dtype)
