"""The in-memory representation: a set of coloured anisotropic 2D Gaussians.

Positions are resolution-independent (``xy`` in [0, 1]^2, x to the right, y down, scaled by the
output width/height at render time); scales are standard deviations in pixels of the *native*
resolution ``(height, width)`` and are rescaled with the output size. This is the layout of the
official Image-GS code, so a model renders at any size and aspect ratio from the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

__all__ = ["Gaussians"]


@dataclass
class Gaussians:
    """N Gaussians with C colour channels, fitted to a ``height`` x ``width`` image.

    Attributes:
        xy: (N, 2) centres in [0, 1]^2 (image width and height units; pixel centres sit at
            ((j + 0.5) / W, (i + 0.5) / H)).
        scale: (N, 2) standard deviations along the Gaussian's own axes, in native pixels, > 0.
        rot: (N,) rotation of the first axis from the x axis, radians.
        color: (N, C) colour (any number of channels, not clamped).
        height, width: native resolution the Gaussians were fitted at.
        channel_names: optional names, one per channel (e.g. ``("R", "G", "B")`` or texture maps).
        groups: optional ``[(name, n_channels), ...]`` splitting the channels into separate images
            (a texture stack: albedo 3 + normal 3 + gloss 1); ``None`` means a single image.
        fit_info: what made the model (:func:`imagegs.fit` records steps, seconds, config and
            level sizes; the codec adds to it). Provenance only: not compared by ``==``, not in
            ``repr``, not stored in files. ``replace``, ``to``, ``detach`` and indexing keep it
            (a copy of the dict); after indexing, ``levels`` still describes the fitted set.
    """

    xy: torch.Tensor
    scale: torch.Tensor
    rot: torch.Tensor
    color: torch.Tensor
    height: int
    width: int
    channel_names: tuple[str, ...] | None = None
    groups: list[tuple[str, int]] | None = field(default=None)
    fit_info: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        n = self.xy.shape[0] if self.xy.ndim == 2 else -1
        if self.xy.shape != (n, 2) or self.scale.shape != (n, 2) or self.rot.shape != (n,):
            raise ValueError(
                f"inconsistent Gaussian shapes: xy {tuple(self.xy.shape)}, scale "
                f"{tuple(self.scale.shape)}, rot {tuple(self.rot.shape)} (want (N,2), (N,2), (N,))")
        if self.color.ndim != 2 or self.color.shape[0] != n or self.color.shape[1] < 1:
            raise ValueError(f"color must be (N, C) with N={n}, got {tuple(self.color.shape)}")
        if int(self.height) < 1 or int(self.width) < 1:
            raise ValueError(f"native size must be positive, got {self.height}x{self.width}")
        if self.channel_names is not None and len(self.channel_names) != self.channels:
            raise ValueError(f"{len(self.channel_names)} channel names for {self.channels} channels")
        if self.groups is not None and sum(c for _, c in self.groups) != self.channels:
            raise ValueError(f"channel groups {self.groups} do not add up to {self.channels} channels")

    @property
    def num(self) -> int:
        """Number of Gaussians N."""
        return int(self.xy.shape[0])

    @property
    def channels(self) -> int:
        """Number of colour channels C."""
        return int(self.color.shape[1])

    def _map(self, fn) -> "Gaussians":
        return replace(self, xy=fn(self.xy), scale=fn(self.scale), rot=fn(self.rot), color=fn(self.color),
                       fit_info=dict(self.fit_info))

    def to(self, *args, **kwargs) -> "Gaussians":
        """Move/cast every tensor (same arguments as ``torch.Tensor.to``)."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> "Gaussians":
        """A copy with all tensors detached from any autograd graph."""
        return self._map(lambda t: t.detach().clone())

    def __getitem__(self, index) -> "Gaussians":
        """Select Gaussians (a slice, index tensor or mask): ``g[:1000]`` is the coarsest prefix."""
        return self._map(lambda t: t[index])
