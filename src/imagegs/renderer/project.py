"""Gaussian parameters -> screen-space means, conics and 3-sigma radii (shared by all backends).

This O(N) step is plain differentiable PyTorch (``project_reference``: the spec, and every
device's path); the fit's form (inverse scales, CPU tensors) runs the same maths as one Numba pass
each way (``_project_cpu``). Only the per-pixel rasterisation differs between backends. The conic
(inverse covariance) is built from inverse scales, never by inverting a covariance, so thin
Gaussians stay exact instead of losing precision to cancellation.
"""

from __future__ import annotations

import torch

from .constants import SIGMA_RADIUS, TILE  # noqa: F401  (TILE re-exported)


def project(xy: torch.Tensor, scale: torch.Tensor, rot: torch.Tensor, *, height: int, width: int,
            native_height: int, native_width: int, inverse_scale: bool = False
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Map Gaussians to output pixel space (see ``project_reference``, which this equals; the fit's
    CPU form runs fused)."""
    if inverse_scale and _fused_ok(xy, scale, rot):  # the fit's path: one Numba pass each way
        from ._autograd import ProjectInverseCPU
        return ProjectInverseCPU.apply(xy, scale, rot, width, height, width / native_width,
                                       height / native_height)
    return project_reference(xy, scale, rot, height=height, width=width, native_height=native_height,
                             native_width=native_width, inverse_scale=inverse_scale)


def project_reference(xy: torch.Tensor, scale: torch.Tensor, rot: torch.Tensor, *, height: int,
                      width: int, native_height: int, native_width: int, inverse_scale: bool = False
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Map Gaussians to output pixel space.

    Args:
        xy: (N, 2) centres in [0, 1]^2; scale: (N, 2) native-pixel std devs; rot: (N,) radians.
        height, width: output size; native_height, native_width: the size scales refer to.
        inverse_scale: ``scale`` holds 1 / std dev (the fit's parameters; the sign is irrelevant).
            The conic is then inv^2 directly, with no 1/x in the gradient's path.
    Returns:
        means (N, 2) in output pixels (x, y), conics (N, 3) = (A, B, C) with
        q(d) = A dx^2 + 2 B dx dy + C dy^2 = d^T Sigma'^-1 d, and radii (N,) = 3 sqrt(lambda_max(Sigma'))
        (detached: binning is not differentiated).
    """
    ax = width / native_width
    ay = height / native_height
    means = xy * xy.new_tensor([float(width), float(height)])
    c, s = torch.cos(rot), torch.sin(rot)
    if inverse_scale:
        ix2, iy2 = scale[:, 0] ** 2, scale[:, 1] ** 2
    else:
        ix2, iy2 = 1.0 / scale[:, 0] ** 2, 1.0 / scale[:, 1] ** 2
    cc, ss, cs = c * c, s * s, c * s
    conics = torch.stack([(cc * ix2 + ss * iy2) / (ax * ax),
                          cs * (ix2 - iy2) / (ax * ay),
                          (ss * ix2 + cc * iy2) / (ay * ay)], dim=1)
    with torch.no_grad():
        s0, s1 = (1.0 / ix2, 1.0 / iy2)
        vxx = ax * ax * (cc * s0 + ss * s1)
        vyy = ay * ay * (ss * s0 + cc * s1)
        vxy = ax * ay * cs * (s0 - s1)
        half = 0.5 * (vxx - vyy)
        lam = 0.5 * (vxx + vyy) + torch.sqrt(half * half + vxy * vxy)
        radii = SIGMA_RADIUS * torch.sqrt(lam)
    return means, conics, radii


def _fused_ok(*ts: torch.Tensor) -> bool:
    """Whether ``_project_cpu`` can take these tensors: CPU, one float dtype."""
    return all(t.device.type == "cpu" and t.dtype == ts[0].dtype for t in ts) and ts[0].dtype in (
        torch.float32, torch.float64)


def prefilter(xy: torch.Tensor, scale: torch.Tensor, rot: torch.Tensor, *, height: int, width: int,
              native_height: int, native_width: int, sigma: float
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``project`` with an anti-aliasing prefilter for output pixels larger than native ones.

    A native pixel already carries a pixel filter of std ``sigma`` (native px); an output pixel
    r = native / output times larger needs one of std ``sigma`` r. Each Gaussian is convolved with
    the difference, a Gaussian of variance sigma^2 (r^2 - 1) native px^2 per axis (zero where
    r <= 1), i.e. in output pixels Sigma' = Sigma + sigma^2 diag(1 - 1/rx^2, 1 - 1/ry^2)^+ , and
    scaled by sqrt(det Sigma / det Sigma') so that it keeps its integral. The amplitude is returned
    as the quadratic-form offset o = -2 log(amplitude) = log(det Sigma' / det Sigma) >= 0.

    Returns (means, conics, radii, qoff); at or above the native size on both axes this is
    ``project`` unchanged (bit for bit) with ``qoff=None``.
    """
    fx = sigma * sigma * max(0.0, 1.0 - (width / native_width) ** 2)
    fy = sigma * sigma * max(0.0, 1.0 - (height / native_height) ** 2)
    if fx == 0.0 and fy == 0.0:
        return (*project(xy, scale, rot, height=height, width=width, native_height=native_height,
                         native_width=native_width), None)
    ax = width / native_width
    ay = height / native_height
    means = xy * xy.new_tensor([float(width), float(height)])
    c, s = torch.cos(rot), torch.sin(rot)
    s0, s1 = scale[:, 0] ** 2, scale[:, 1] ** 2
    cc, ss, cs = c * c, s * s, c * s
    vxx = ax * ax * (cc * s0 + ss * s1)  # Sigma in output pixels
    vyy = ay * ay * (ss * s0 + cc * s1)
    vxy = ax * ay * cs * (s0 - s1)
    det = (ax * ay) ** 2 * s0 * s1  # exact, no cancellation
    wxx, wyy = vxx + fx, vyy + fy
    grow = fx * vyy + fy * vxx + fx * fy  # det Sigma' = det + grow, every term >= 0
    det_f = det + grow
    conics = torch.stack([wyy / det_f, -vxy / det_f, wxx / det_f], dim=1)
    qoff = torch.log1p(grow / det)
    with torch.no_grad():
        half = 0.5 * (wxx - wyy)
        lam = 0.5 * (wxx + wyy) + torch.sqrt(half * half + vxy * vxy)
        radii = SIGMA_RADIUS * torch.sqrt(lam)
    return means, conics, radii, qoff
