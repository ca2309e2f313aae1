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

# Nothing is imported here until it is used (PEP 562): ``import imagegs`` is instant, and the
# command line can start compiling kernels in the background before torch loads (imagegs._jit).
import importlib
from typing import TYPE_CHECKING

_HOMES = {
    "Model": "container", "load_model": "container", "save_model": "container",
    "FitConfig": "fitting", "fit": "fitting", "Gaussians": "gaussians",
    "Image": "io", "read_image": "io", "write_image": "io", "write_images": "io",
    "decode_pixels": "renderer", "render": "renderer", "restore": "restoration", "upscale": "upscaling",
    "Encoded": "codec", "compress": "codec", "decode": "codec", "decode_gaussians": "codec", "encode": "codec",
    "load_igs": "codec", "read_igs_header": "codec", "save_igs": "codec",
}
__all__ = sorted(_HOMES)
__version__ = "0.1.0"

if TYPE_CHECKING:  # the same names for type checkers (test_architecture keeps the two lists equal)
    from .codec import Encoded, compress, decode, decode_gaussians, encode, load_igs, read_igs_header, save_igs  # noqa: F401
    from .container import Model, load_model, save_model  # noqa: F401
    from .fitting import FitConfig, fit  # noqa: F401
    from .gaussians import Gaussians  # noqa: F401
    from .io import Image, read_image, write_image, write_images  # noqa: F401
    from .renderer import decode_pixels, render  # noqa: F401
    from .restoration import restore  # noqa: F401
    from .upscaling import upscale  # noqa: F401


def __getattr__(name: str):
    """The public names (``__all__``) and the submodules, imported on first use."""
    home = _HOMES.get(name)
    if home is not None:
        value = getattr(importlib.import_module(f".{home}", __name__), name)
        globals()[name] = value
        return value
    try:
        return importlib.import_module(f".{name}", __name__)
    except ModuleNotFoundError as e:
        if e.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'imagegs' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
