"""Fitted models of the shared benchmark images, cached on disk (shared by the decode benchmarks).

    python benchmarks/fitcache.py --images /work/shared/data/images --factors 1 2 3 4

``original(path)`` is the image Lanczos-downscaled to a long side of 1024 (as in fit_images.py);
``downscaled(path, f)`` is that image Lanczos-downscaled by ``f`` more. ``fitted(path, f)`` fits
``downscaled(path, f)`` with the default settings (fast schedule, seed 0) and 10000 / f^2 Gaussians
(the native fits' density: 10k at f = 1) once, and keeps the model as
``<cache>/<stem>_x<f>_n<N>.gsm``. Fits run image by image (all factors of one image, then the next).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

import imagegs
from imagegs.defaults import DEFAULT_NUM_GAUSSIANS

LONG_SIDE = 1024
DEFAULT_CACHE = Path("/tmp/dech/fits")
IMAGES = Path("/work/shared/data/images")


def image_paths(folder: Path = IMAGES) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))


def original(path: Path, long_side: int = LONG_SIDE) -> Image.Image:
    """The benchmark's original: RGB, Lanczos-downscaled so the long side is at most ``long_side``."""
    im = Image.open(path).convert("RGB")
    s = long_side / max(im.size)
    if s < 1:
        im = im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS)
    return im


def downscaled(path: Path, factor: float) -> Image.Image:
    """``original(path)`` Lanczos-downscaled by ``factor`` (1: the original itself)."""
    im = original(path)
    if factor == 1:
        return im
    return im.resize((max(1, round(im.width / factor)), max(1, round(im.height / factor))), Image.LANCZOS)


def gaussians_for(factor: int, native: int = DEFAULT_NUM_GAUSSIANS) -> int:
    """Gaussians for a fit of the image downscaled by ``factor``: the same density as ``native``."""
    return round(native / factor**2)


def cached(path: Path, factor: int = 1, *, cache: Path = DEFAULT_CACHE) -> imagegs.Gaussians | None:
    """The cached fit, or None when it has not been made yet."""
    file = cache / f"{path.stem}_x{factor}_n{gaussians_for(factor)}.gsm"
    return imagegs.load_model(file).gaussians if file.exists() else None


def fitted(path: Path, factor: int = 1, *, cache: Path = DEFAULT_CACHE, num_gaussians: int | None = None
           ) -> imagegs.Gaussians:
    """The default fit of ``downscaled(path, factor)``, from the cache when there."""
    num_gaussians = gaussians_for(factor) if num_gaussians is None else num_gaussians
    file = cache / f"{path.stem}_x{factor}_n{num_gaussians}.gsm"
    if file.exists():
        return imagegs.load_model(file).gaussians
    img = np.asarray(downscaled(path, factor))
    t0 = time.perf_counter()
    g = imagegs.fit(img, num_gaussians=num_gaussians)
    secs = time.perf_counter() - t0
    cache.mkdir(parents=True, exist_ok=True)
    imagegs.save_model(g, file, metadata={"source": str(path), "factor": factor, "seconds": secs})
    print(f"fitted {file.name}: {img.shape[1]}x{img.shape[0]} in {secs:.0f} s", flush=True)
    return g


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=IMAGES)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--factors", type=int, nargs="+", default=[1])
    args = ap.parse_args(argv)
    for p in image_paths(args.images):
        for f in args.factors:
            fitted(p, f, cache=args.cache)


if __name__ == "__main__":
    main()
