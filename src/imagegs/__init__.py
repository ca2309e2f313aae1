"""imagegs: images as a few thousand coloured anisotropic 2D Gaussians (Image-GS), fast on a CPU.

    import imagegs
    g = imagegs.fit("photo.png")                         # Gaussians
    imagegs.write_image(imagegs.render(g, 2048, 2048), "big.png")
    imagegs.save_igs(imagegs.compress("photo.png", bpp=0.3).data, "photo.igs")
    rgb = imagegs.decode("photo.igs")                    # (H, W, C) uint8
    clean = imagegs.restore("noisy.png").image           # denoised: a noise-sized budget

Every function that takes an image accepts a path, an :class:`Image` from :func:`read_image`, a
numpy array (H, W[, C]) or a tensor (C, H, W). See docs/api.md.
"""

# Cheap imports only: numba is imported lazily, by the CPU kernels and the .igs codec on first use.
from .container import Model, load_model, save_model
from .fitting import FitConfig, fit
from .gaussians import Gaussians
from .io import Image, read_image, write_image, write_images
from .renderer import decode_pixels, render
from .restoration import restore
from .upscaling import upscale

__all__ = ["Gaussians", "fit", "FitConfig", "render", "decode_pixels",
           "compress", "encode", "decode", "decode_gaussians", "read_igs_header", "save_igs", "load_igs",
           "Encoded", "save_model", "load_model", "Model", "read_image", "write_image", "write_images",
           "Image", "upscale", "restore"]
__version__ = "0.1.0"

_CODEC = frozenset({"Encoded", "compress", "decode", "decode_gaussians", "encode", "load_igs",
                    "read_igs_header", "save_igs"})


def __getattr__(name: str):
    """The codec's names, imported on first use (the range coder's kernels import numba)."""
    if name in _CODEC:
        from . import codec

        return getattr(codec, name)
    raise AttributeError(f"module 'imagegs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _CODEC)
