"""Differentiable tile-based top-K rendering of 2D Gaussians at any output size.

``render(g, H, W)`` projects the Gaussians to the requested size (positions scale with the output,
covariances with the per-axis resolution ratio, so non-integer scales and other aspect ratios work)
and rasterises them with one of two backends that compute the same function:

- ``reference``: pure PyTorch, any device (the specification, and the GPU path for now);
- ``cpu``: fused, parallel Numba kernels: one forward kernel (``_forward``) for decoding, regions,
  points and training (then it also keeps what the hand-written backward, ``_backward``, needs).

Below the native size, ``antialias`` prefilters each Gaussian by the output pixel's footprint
(``project.prefilter``), so downscaled renders do not alias; at or above it nothing changes.
``decode_pixels`` evaluates the same function at arbitrary continuous points (random access).
"""

from .constants import TILE
from .points import decode_pixels
from .project import prefilter, project
from .raster import BACKENDS, FILTER_SIGMA, SUPERSAMPLE, check_region, rasterize, render

__all__ = ["render", "rasterize", "project", "prefilter", "decode_pixels", "check_region", "TILE",
           "BACKENDS", "FILTER_SIGMA", "SUPERSAMPLE"]
