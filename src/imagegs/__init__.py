"""imagegs: images as a few thousand coloured anisotropic 2D Gaussians (Image-GS), fast on a CPU."""

from .gaussians import Gaussians
from .render import render

__all__ = ["Gaussians", "render"]
__version__ = "0.1.0"
