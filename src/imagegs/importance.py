"""Importance maps for semantics-aware compression: which pixels matter most, as an (H, W) map.

``importance_map(image, spec)`` turns what the user gives into an (H, W) float32 map in [0, 1]
(higher = more important):

- a path to a grey image of any size (colour is averaged to grey, alpha ignored, resized with
  area averaging or bilinear interpolation to the image's size);
- ``"saliency"``: OpenCV contrib's static saliency, spectral residual (Hou & Zhang 2007),
  blurred with a Gaussian of ``SALIENCY_BLUR`` times the long side and scaled to max 1. Chosen
  over the fine-grained detector by measurement: of the top 20 % of each map, 76 % (spectral
  residual, this blur) against at best 67 % (fine-grained) fell inside hand-drawn subject boxes
  (about half of each image) on scikit-image's astronaut, chelsea and coffee
  (benchmarks/saliency_choice.py);
- ``"faces"``: the frontal-face Haar cascade that ships inside the OpenCV wheel
  (``cv2.data.haarcascades``): 1 inside each face box, falling off smoothly outside it (a
  Gaussian blur of ``FACE_SOFTNESS`` times the box side); all zeros when no face is found;
- an array (H', W') or tensor: used as it is (resized to the image's size when it differs),
  divided by its maximum.

What the map steers (the fit's initial sampling, its error-guided additions and its loss) is
one weight per pixel, ``1 + strength * importance`` (:func:`steering_weights`), with one knob,
``importance_strength`` (default ``DEFAULT_IMPORTANCE_STRENGTH``, chosen by measurement:
docs/NOTES.md, "Semantics-aware compression").

OpenCV is optional (the ``semantic`` extra) and imported only when "saliency" or "faces" is
asked for, so ``import imagegs`` stays free of it.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "DEFAULT_IMPORTANCE_STRENGTH",
    "MAX_IMPORTANCE_STRENGTH",
    "REGION_SHARE",
    "SOURCES",
    "boxes_mask",
    "check_strength",
    "face_boxes",
    "importance_map",
    "region_mask",
    "steering_weights",
]

SOURCES = ("saliency", "faces")  # the computed importance sources (besides a map file or array)
DEFAULT_IMPORTANCE_STRENGTH = 16.0  # measured: docs/NOTES.md, "Semantics-aware compression"
MAX_IMPORTANCE_STRENGTH = 1000.0  # beyond this the unimportant pixels' weights vanish in float32
SALIENCY_BLUR = 0.05  # Gaussian std of the saliency blur, as a share of the image's long side
FACE_SOFTNESS = 0.15  # Gaussian std of the fall-off around a face box, as a share of its side
REGION_SHARE = 0.2  # the "important region" of a map without faces: its top 20 % of pixels
EXTRA = "semantic"  # the optional dependency group that brings OpenCV contrib
_FACE_CASCADE = "haarcascade_frontalface_alt2.xml"


class ImportanceError(ValueError):
    """The importance spec cannot be turned into a map (unreadable file, unknown name, no OpenCV)."""


def check_strength(strength, *, name: str = "importance_strength") -> float:
    """``strength`` as a float in [0, MAX_IMPORTANCE_STRENGTH]; ValueError naming ``name`` otherwise."""
    try:
        s = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {strength!r}") from None
    if not (math.isfinite(s) and 0.0 <= s <= MAX_IMPORTANCE_STRENGTH):
        raise ValueError(f"{name} must be a number from 0 to {MAX_IMPORTANCE_STRENGTH:g}, got {strength}")
    return s


def steering_weights(importance: np.ndarray, strength: float) -> np.ndarray:
    """The per-pixel weight the importance gives the loss, the initial sampling and the additions:
    ``1 + strength * importance`` (float64, (H, W)); all ones at strength 0 or for an all-zero map."""
    return 1.0 + check_strength(strength) * np.asarray(importance, np.float64)


def _cv2():
    """OpenCV with the contrib modules, or an ImportanceError saying which extra to install."""
    try:
        import cv2
    except ImportError:
        raise ImportanceError(f"--importance saliency/faces needs OpenCV contrib: pip install "
                              f"'imagegs[{EXTRA}]' (opencv-contrib-python-headless 4.x)") from None
    if not hasattr(cv2, "saliency") or not hasattr(cv2, "CascadeClassifier"):
        raise ImportanceError(f"--importance saliency/faces needs OpenCV 4.x with the contrib modules "
                              f"(found cv2 {cv2.__version__} without them): pip install 'imagegs[{EXTRA}]'")
    return cv2


def _uint8_rgb(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W, 3) uint8 for OpenCV: grey repeated, the first three
    channels of a stack."""
    x = image[:3] if image.shape[0] >= 3 else image[:1].expand(3, -1, -1)
    return np.ascontiguousarray((x.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy())


def face_boxes(image) -> list[tuple[int, int, int, int]]:
    """Frontal faces in ``image`` (anything :func:`imagegs.init.as_image` takes) as pixel boxes
    (x0, y0, x1, y1), x1/y1 excluded, largest first; OpenCV's Haar cascade on the equalised grey
    image (scale step 1.1, 5 neighbours, faces at least 24 px or 1/40 of the short side)."""
    from .init import as_image

    cv2 = _cv2()
    rgb = _uint8_rgb(as_image(image))
    grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))
    cascade = cv2.CascadeClassifier(os.path.join(cv2.data.haarcascades, _FACE_CASCADE))
    if cascade.empty():
        raise ImportanceError(f"the OpenCV wheel has no {_FACE_CASCADE} in {cv2.data.haarcascades}")
    side = max(24, min(grey.shape) // 40)
    found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
    boxes = [(int(x), int(y), int(x + w), int(y + h)) for x, y, w, h in (found if len(found) else [])]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]) * (b[3] - b[1]))


def boxes_mask(boxes, height: int, width: int) -> np.ndarray:
    """(height, width) bool: True inside any of the (x0, y0, x1, y1) pixel boxes."""
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def _faces_map(image: torch.Tensor) -> np.ndarray:
    cv2 = _cv2()
    h, w = image.shape[1:]
    out = np.zeros((h, w), np.float32)
    for box in face_boxes(image):
        inside = boxes_mask([box], h, w)
        sigma = FACE_SOFTNESS * max(box[2] - box[0], box[3] - box[1])
        soft = cv2.GaussianBlur(inside.astype(np.float32), (0, 0), sigma)
        soft = soft / max(float(soft.max()), 1e-12)
        soft[inside] = 1.0  # the box itself stays fully important; the blur only adds a margin
        out = np.maximum(out, soft)
    return out


def _saliency_map(image: torch.Tensor) -> np.ndarray:
    cv2 = _cv2()
    h, w = image.shape[1:]
    ok, sal = cv2.saliency.StaticSaliencySpectralResidual_create().computeSaliency(_uint8_rgb(image)[..., ::-1].copy())
    if not ok:
        raise ImportanceError("OpenCV's spectral residual saliency failed on this image")
    sal = cv2.GaussianBlur(np.asarray(sal, np.float32), (0, 0), SALIENCY_BLUR * max(h, w))
    return sal


def _resized(m: np.ndarray, h: int, w: int) -> np.ndarray:
    """(h', w') -> (h, w): area averaging where it shrinks, bilinear where it grows."""
    if m.shape == (h, w):
        return m
    t = torch.from_numpy(np.ascontiguousarray(m, np.float32))[None, None]
    mode = "area" if m.shape[0] >= h and m.shape[1] >= w else "bilinear"
    return F.interpolate(t, size=(h, w), mode=mode, **({} if mode == "area" else {"align_corners": False}))[0, 0].numpy()


def _read_map(path: Path) -> np.ndarray:
    """The grey values of a map file in [0, 1], (H', W'); ImportanceError naming the file."""
    from .io import ImageReadError, read_image

    if not path.is_file():
        raise ImportanceError(f"{path}: importance map not found (give a grey image, "
                              f"or one of {', '.join(SOURCES)})")
    try:
        img = read_image(path, alpha="drop")
    except (ImageReadError, OSError, ValueError) as e:
        raise ImportanceError(f"{path}: cannot read the importance map ({_one_line(e)})") from None
    return img.pixels.mean(0).numpy()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def importance_map(image, spec, *, height: int | None = None, width: int | None = None) -> np.ndarray:
    """The (H, W) float32 importance of ``image`` in [0, 1] (higher = more important).

    Args:
        image: what :func:`imagegs.init.as_image` takes (path, Image, array, tensor); only its size
            is used for a map file or array, its pixels for "saliency" and "faces".
        spec: a path to a grey map (any size: resized), "saliency", "faces", or an array/tensor
            (H', W') of non-negative finite values (resized, divided by its maximum).
        height, width: the map's size when it differs from the image's (e.g. a coarser fit).
    Raises:
        ValueError (ImportanceError): an unreadable map file, an unknown name, a bad array, or
        OpenCV missing for "saliency"/"faces" (the message names the extra to install).
    """
    from .init import as_image

    target = as_image(image)
    h, w = target.shape[1:]
    if isinstance(spec, (str, os.PathLike)):
        if isinstance(spec, str) and spec in SOURCES:
            m = _saliency_map(target) if spec == "saliency" else _faces_map(target)
        else:
            m = _read_map(Path(spec))
    else:
        m = spec.detach().cpu().numpy() if torch.is_tensor(spec) else np.asarray(spec)
        if m.dtype.kind not in "uif" or m.ndim != 2 or 0 in m.shape:
            raise ImportanceError(f"an importance map must be a 2-D array (H, W) of numbers, got "
                                  f"{m.dtype} of shape {m.shape}")
        m = m.astype(np.float32)
        if not np.all(np.isfinite(m)) or (m < 0).any():
            raise ImportanceError("an importance map must be finite and non-negative")
    m = _resized(np.asarray(m, np.float32), h if height is None else height, w if width is None else width)
    m = np.clip(m - min(float(m.min()), 0.0), 0.0, None)
    top = float(m.max())
    return (m / top if top > 0 else m).astype(np.float32)


def region_mask(importance: np.ndarray, *, share: float = REGION_SHARE) -> np.ndarray:
    """The "important region" of a map without faces, (H, W) bool: its top ``share`` of pixels
    (for faces, the region is the boxes themselves: :func:`boxes_mask` of :func:`face_boxes`)."""
    m = np.asarray(importance)
    return m >= np.quantile(m, 1.0 - share)
