"""imagegs: images as a few thousand coloured anisotropic 2D Gaussians (Image-GS), fast on a CPU."""

# Cheap imports only: numba is imported lazily by the CPU kernels on first use.
from .container import load, save
from .fit import FitConfig, fit
from .gaussians import Gaussians
from .io import read_image
from .renderer import decode_pixels, render

__all__ = ["Gaussians", "render", "decode_pixels", "fit", "FitConfig", "save", "load", "read_image"]
__version__ = "0.1.0"
