"""Texture sets (materials): map kinds, their parsing, scalar maps as one channel, normal maps.

A texture set is a stack of maps of one size (albedo RGB, normal RGB, gloss grey ...) fitted
jointly into one file. Each map (a channel group of :class:`imagegs.io.Image`) has a *kind*:

- ``colour``: fitted and written back as stored (the default for a name no rule knows);
- ``normal``: a tangent-space normal map in the usual 8/16-bit encoding v = (n + 1) / 2; the
  decoder maps the rendering back to vectors, renormalises them to unit length and writes them
  in the same encoding (blending Gaussians shortens vectors);
- ``scalar``: one value per texel (gloss, roughness, metalness, AO, height), fitted as ONE
  channel even when the file stores it as RGB grey or packed into one channel of an RGB file.

Kinds come from the file name (:data:`SUFFIXES`: ``rock_normal.png`` or ``normal.png``) or from
``--maps name:kind,...``; they are stored in the .igs (header field 13, docs/format.md). Per-map
loss weights (``--map-weights``) become per-channel ``pixel_weights`` of the fit; the defaults per
kind (:data:`DEFAULT_KIND_WEIGHTS`) were chosen by a measured sweep (docs/NOTES.md, "Texture sets").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

__all__ = ["KINDS", "COLOUR", "NORMAL", "SCALAR", "SUFFIXES", "DEFAULT_KIND_WEIGHTS", "TextureError",
           "kind_from_name", "parse_maps", "parse_map_weights", "assign_kinds", "as_scalar", "check_normal",
           "renormalize_normals", "channel_weights", "finish_maps", "group_slices"]

COLOUR, NORMAL, SCALAR = "colour", "normal", "scalar"
KINDS = (COLOUR, NORMAL, SCALAR)
# File-name suffixes (after '_', '-' or '.', or the whole stem), case-insensitive.
SUFFIXES: dict[str, str] = {
    **dict.fromkeys(("albedo", "diffuse", "basecolor", "basecolour", "base_color", "color", "colour", "diff"),
                    COLOUR),
    **dict.fromkeys(("normal", "normals", "nrm", "norm", "n", "normalgl", "normaldx"), NORMAL),
    **dict.fromkeys(("gloss", "glossiness", "rough", "roughness", "metal", "metallic", "metalness", "ao",
                     "occlusion", "ambientocclusion", "height", "disp", "displacement", "bump"), SCALAR),
}
# Default loss weight of a map by kind (per channel; normalised over the stack by the loss).
# Chosen by the sweep in docs/NOTES.md, "Texture sets": see there for the measured alternatives.
DEFAULT_KIND_WEIGHTS: dict[str, float] = {COLOUR: 1.0, NORMAL: 1.0, SCALAR: 1.0}
NORMAL_CHANNELS = 3


class TextureError(ValueError):
    """Bad texture-set input (kind, --maps, --map-weights, a map that cannot be that kind): one line."""


def kind_from_name(stem: str) -> str | None:
    """The kind a file stem's suffix names (``Rock_Normal`` -> normal, ``gloss`` -> scalar), or None."""
    low = stem.lower()
    # the longest suffix first, so that 'base_color' wins over 'color' and 'normal' over 'n'
    for suffix in sorted(SUFFIXES, key=len, reverse=True):
        if low == suffix or any(low.endswith(sep + suffix) for sep in "_-. "):
            return SUFFIXES[suffix]
    return None


def _pairs(text: str, option: str) -> list[tuple[str, str]]:
    """'a:x, b:y' -> [('a', 'x'), ('b', 'y')]; TextureError naming ``option`` if malformed."""
    pairs = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        name, sep, value = item.rpartition(":")
        if not sep or not name.strip() or not value.strip():
            raise TextureError(f"{option}: expected name:value pairs separated by commas, got {item!r}")
        pairs.append((name.strip(), value.strip()))
    if not pairs:
        raise TextureError(f"{option}: give at least one name:value pair")
    return pairs


def _check_kind(kind: str, where: str) -> str:
    k = kind.lower().replace("color", "colour")
    if k not in KINDS:
        raise TextureError(f"{where}: unknown map kind {kind!r}; choose one of {', '.join(KINDS)}")
    return k


def parse_maps(text: str | Mapping[str, str]) -> dict[str, str]:
    """``"albedo:colour,nrm:normal"`` (or a dict) -> {map name: kind}; TextureError on an unknown kind."""
    items = text.items() if isinstance(text, Mapping) else _pairs(text, "--maps")
    return {str(name): _check_kind(str(kind), f"--maps {name}:{kind}") for name, kind in items}


def parse_map_weights(text: str | Mapping[str, float]) -> dict[str, float]:
    """``"normal:2,gloss:0.5"`` (or a dict) -> {map name or kind: weight >= 0}."""
    items = text.items() if isinstance(text, Mapping) else _pairs(text, "--map-weights")
    out = {}
    for name, value in items:
        try:
            w = float(value)
        except (TypeError, ValueError):
            w = float("nan")
        if not (np.isfinite(w) and w >= 0):
            raise TextureError(f"--map-weights {name}: the weight must be a finite number >= 0, got {value!r}")
        out[str(name)] = w
    return out


def _match(name: str, maps: Sequence[str]) -> str | None:
    """The map a --maps / --map-weights name means: the group name itself or its file's stem,
    case-insensitive."""
    for m in maps:
        if m.lower() == name.lower():
            return m
    return None


def assign_kinds(names: Sequence[str], given: Mapping[str, str] | None = None) -> list[str]:
    """The kind of each map: ``given`` (name -> kind, from --maps) where it names the map, else
    its file-name suffix, else colour. A ``given`` name that matches no map is an error."""
    given = parse_maps(given or {})
    kinds = [kind_from_name(n) or COLOUR for n in names]
    for name, kind in given.items():
        m = _match(name, names)
        if m is None:
            raise TextureError(f"--maps {name}:{kind}: no map named {name!r} (the maps are "
                               f"{', '.join(names)})")
        kinds[list(names).index(m)] = kind
    return kinds


def as_scalar(pixels: np.ndarray, letters: str, name: str) -> np.ndarray:
    """(H, W, C) -> (H, W, 1): the one value of a scalar map.

    Grey files pass; RGB(A) files must be grey (all colour channels equal) or hold the map in one
    channel with the others constant (engines pack gloss in red); alpha is not allowed.
    """
    if letters.endswith("A"):
        raise TextureError(f"{name}: a scalar map cannot have alpha; read with --alpha drop, or "
                           f"declare it with --maps {name}:colour")
    if pixels.shape[2] == 1:
        return pixels
    varying = [c for c in range(pixels.shape[2]) if np.ptp(pixels[..., c]) > 0]
    if all(np.array_equal(pixels[..., 0], pixels[..., c]) for c in range(1, pixels.shape[2])):
        return np.ascontiguousarray(pixels[..., :1])
    if len(varying) == 1:
        return np.ascontiguousarray(pixels[..., varying[0]:varying[0] + 1])
    raise TextureError(f"{name}: a scalar map must be grey or vary in one channel only, but its "
                       f"{letters} channels differ; declare it with --maps {name}:colour")


def check_normal(channels: int, name: str) -> None:
    """A normal map has 3 channels (X, Y, Z)."""
    if channels != NORMAL_CHANNELS:
        raise TextureError(f"{name}: a normal map needs {NORMAL_CHANNELS} channels (XYZ), it has "
                           f"{channels}; declare it with --maps {name}:colour")


def renormalize_normals(encoded: torch.Tensor) -> torch.Tensor:
    """(3, H, W) normals in the encoding v = (n + 1) / 2 -> unit vectors, in the same encoding.

    A zero vector (no information) becomes +Z, the flat normal.
    """
    n = encoded.to(torch.float64) * 2 - 1
    length = torch.linalg.vector_norm(n, dim=0, keepdim=True)
    flat = torch.zeros_like(n)
    flat[2] = 1
    n = torch.where(length > 1e-12, n / length.clamp_min(1e-12), flat)
    return ((n + 1) / 2).to(encoded.dtype)


def group_slices(groups: Sequence[tuple[str, int]]) -> list[slice]:
    """The channel slice of each group of a stack, in order."""
    starts = np.cumsum([0] + [int(c) for _, c in groups])
    return [slice(int(a), int(b)) for a, b in zip(starts[:-1], starts[1:])]


def finish_maps(pixels: torch.Tensor, groups: Sequence[tuple[str, int]] | None,
                kinds: Sequence[str] | None) -> torch.Tensor:
    """A decoded (C, H, W) rendering with every normal map renormalised (see
    :func:`renormalize_normals`); other maps unchanged. No kinds: returned as is."""
    if not kinds or NORMAL not in kinds:
        return pixels
    groups = groups or [("image", pixels.shape[0])]
    out = pixels.clone()
    for sl, kind in zip(group_slices(groups), kinds):
        if kind == NORMAL and sl.stop - sl.start == NORMAL_CHANNELS:
            out[sl] = renormalize_normals(pixels[sl])
    return out


def channel_weights(groups: Sequence[tuple[str, int]], kinds: Sequence[str] | None,
                    map_weights: Mapping[str, float] | None = None) -> torch.Tensor:
    """(C, 1, 1) per-channel loss weights of a stack: a map's weight is ``map_weights[name]``,
    else ``map_weights[kind]``, else :data:`DEFAULT_KIND_WEIGHTS` of its kind. Keys must name a
    map or a kind; the loss normalises the weights to mean 1."""
    names = [n for n, _ in groups]
    kinds = list(kinds) if kinds else [COLOUR] * len(groups)
    weights = parse_map_weights(map_weights or {})
    for key in weights:
        if _match(key, names) is None and key.lower() not in KINDS:
            raise TextureError(f"--map-weights {key}: no map or kind named {key!r} (maps: "
                               f"{', '.join(names)}; kinds: {', '.join(KINDS)})")
    lower = {k.lower(): v for k, v in weights.items()}
    per_map = [lower.get(n.lower(), lower.get(k, DEFAULT_KIND_WEIGHTS[k])) for n, k in zip(names, kinds)]
    if not any(w > 0 for w in per_map):
        raise TextureError("--map-weights: at least one map needs a weight above 0")
    column = torch.cat([torch.full((c,), float(w), dtype=torch.float64) for (_, c), w in zip(groups, per_map)])
    return column.view(-1, 1, 1)

