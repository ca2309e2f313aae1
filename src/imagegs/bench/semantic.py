"""Semantics-aware compression benchmark: quality inside and outside the important region at
equal file size, for imagegs with and without an importance map, JPEG and AVIF.

    imagegs bench semantic [--images astronaut skimage:chelsea photo.png ...] --out DIR
                           [--bpp 0.1,0.2,0.3] [--max-side 512] [--importance auto|faces|saliency]

Each image is read (a file, or a scikit-image sample) and downscaled so that its long side is at
most ``max_side`` (Lanczos), and its importance map computed (:mod:`imagegs.importance`):
``auto`` takes the face boxes where the detector finds a face and the saliency map elsewhere.
The *important region* is the face boxes, or the top 20 % of the map
(:func:`imagegs.importance.region_mask`). Every (image, method, target bpp) is one independent
task, a plain dict, and :func:`run_task` turns it into one record (PSNR and SSIM of the decoded
8-bit image inside and outside the region, and over the whole image), appended to
``OUT/records.jsonl`` as soon as it is done (the RD benchmark's :class:`~imagegs.bench.rd.Cache`:
rerun the same command to continue; records made with other settings are recomputed).
Methods:

- ``imagegs``: :func:`imagegs.compress` at the target (rate control: within 5 % below it);
- ``imagegs-importance``: the same with the importance map and ``strength``;
- ``jpeg`` (JPEG 4:2:0) and ``avif`` (AVIF 4:2:0): the largest quality whose whole file is at
  most the target (:func:`imagegs.bench.codecs.search_quality`); below a codec's floor the point
  is recorded with ``reached: false`` and left out of the means.

Then ``OUT/semantic.json`` (means over the images per method and rate, and the gain of the
importance over the plain encode), ``OUT/semantic.png`` and a markdown table.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..importance import (
    DEFAULT_IMPORTANCE_STRENGTH,
    SOURCES,
    boxes_mask,
    check_strength,
    face_boxes,
    importance_map,
    region_mask,
)
from ..io import atomic_write
from .rd import Cache, RDError, load_image, parse_bpp

__all__ = [
    "DEFAULT_BPP",
    "DEFAULT_MAX_SIDE",
    "IMPORTANCE_CHOICES",
    "METHODS",
    "SAMPLES",
    "format_table",
    "make_tasks",
    "region_quality",
    "run",
    "run_task",
    "summarise",
]

METHODS = ("imagegs", "imagegs-importance", "jpeg", "avif")
SAMPLES = ("astronaut", "skimage:chelsea", "skimage:coffee")
DEFAULT_BPP = (0.1, 0.2, 0.3)
DEFAULT_MAX_SIDE = 512
DEFAULT_SCHEDULE = "fast"
IMPORTANCE_CHOICES = ("auto",) + SOURCES  # auto: faces where one is found, else saliency
TARGET_BPP, TARGET_GAIN_IN, TARGET_LOSS_OUT = 0.2, 2.0, 1.0  # the issue's target (dB)
_BASELINES = {"jpeg": "jpeg-420", "avif": "avif"}  # method -> imagegs.bench.codecs name
_COLOURS = {"imagegs": "C0", "imagegs-importance": "crimson", "jpeg": "C2", "avif": "C4"}  # in the plot
_FIELDS = ("psnr_in", "psnr_out", "ssim_in", "ssim_out", "psnr", "ssim", "bpp")


def _name(spec: str) -> str:
    """The record name of an image spec: a sample's name or a file's stem."""
    return spec.split(":", 1)[1] if spec.startswith("skimage:") else Path(spec).stem


def _method_settings(task: dict) -> str:
    """Everything besides the image and the rate that decides a method's result (cache key)."""
    if task["method"] in _BASELINES:
        from .codecs import get_codec

        return get_codec(_BASELINES[task["method"]]).settings
    extra = {"schedule": task["schedule"], **({"steps": task["steps"]} if task["steps"] else {})}
    if task["method"] == "imagegs-importance":
        extra.update(importance=task["importance"], strength=task["strength"])
    return "imagegs " + json.dumps(extra, sort_keys=True)


def make_tasks(images: Sequence[str], *, bpp: Sequence[float], methods: Sequence[str],
               max_side: int | None = DEFAULT_MAX_SIDE, importance: str = "auto",
               strength: float = DEFAULT_IMPORTANCE_STRENGTH, schedule: str = DEFAULT_SCHEDULE,
               steps: int | None = None) -> list[dict]:
    """One task per (image, method, target bpp): plain JSON-able dicts for :func:`run_task`
    (``steps``: imagegs's maximum fit steps, default the schedule's)."""
    bad = sorted(set(methods) - set(METHODS))
    if bad or not methods:
        raise RDError(f"--methods: unknown method {bad[0] if bad else ''!r}; choose from {', '.join(METHODS)}")
    if importance not in IMPORTANCE_CHOICES:
        raise RDError(f"--importance must be one of {', '.join(IMPORTANCE_CHOICES)}, got {importance!r}")
    try:
        strength = check_strength(strength, name="--importance-strength")
    except ValueError as e:
        raise RDError(str(e)) from None
    names = [_name(s) for s in images]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RDError(f"--images: several images share the name {dupes[0]!r}; images are keyed by name")
    tasks = []
    for spec, name in zip(images, names):
        for method in methods:
            for t in bpp:
                task = dict(image=str(spec), name=name, method=method, target_bpp=float(t), max_side=max_side,
                            importance=importance, strength=strength, schedule=schedule, steps=steps)
                tasks.append(dict(task, settings=_method_settings(task)))
    return tasks


def _importance(rgb: np.ndarray, spec: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(map, important region, source used) for an (H, W, 3) uint8 image: ``auto`` = faces if
    any, else saliency. The region: the face boxes, or the top 20 % of the saliency map."""
    if spec in ("auto", "faces"):
        boxes = face_boxes(rgb)
        if boxes or spec == "faces":
            return importance_map(rgb, "faces"), boxes_mask(boxes, *rgb.shape[:2]), "faces"
    m = importance_map(rgb, "saliency")
    return m, region_mask(m), "saliency"


def region_quality(reference: np.ndarray, decoded: np.ndarray, mask: np.ndarray) -> dict[str, float | None]:
    """PSNR (data range 255) and SSIM (the RD benchmark's: 11x11 Gaussian window, sigma 1.5, zero
    padding; its map averaged over the pixels) of two (H, W, 3) uint8 images, inside ``mask``
    (H, W bool), outside it and over the whole image; None for an empty part or an exact match."""
    from ..metrics import ssim_map

    a = torch.from_numpy(reference.astype(np.float64) / 255).permute(2, 0, 1)
    b = torch.from_numpy(decoded.astype(np.float64) / 255).permute(2, 0, 1)
    sq = ((a - b) ** 2).mean(0).numpy() * 255.0 ** 2
    smap = ssim_map(a, b)[0].mean(0).numpy()
    out: dict[str, float | None] = {}
    for suffix, part in (("_in", mask), ("_out", ~mask), ("", np.ones_like(mask))):
        mse = float(sq[part].mean()) if part.any() else math.nan
        out["psnr" + suffix] = 10 * math.log10(255.0 ** 2 / mse) if mse > 0 else None
        out["ssim" + suffix] = float(smap[part].mean()) if part.any() else None
    return out


def run_task(task: dict) -> dict:
    """One (image, method, target bpp) task from :func:`make_tasks` -> its record: the file's size,
    the region's share, and :func:`region_quality` of the decoded image. Needs nothing else: tasks
    can run in any order, in other processes."""
    from .. import codec as igs
    from .codecs import get_codec, search_quality

    rgb = load_image(task["image"], max_side=task["max_side"])
    h, w = rgb.shape[:2]
    imp, mask, source = _importance(rgb, task["importance"])
    wall, cpu = time.perf_counter(), time.process_time()
    method, target = task["method"], task["target_bpp"]
    if method in _BASELINES:
        c = get_codec(_BASELINES[method])
        res = search_quality(c, rgb, target)
        data, reached, quality = res.data, res.reached, res.quality
        decoded = c.decode(data, height=h, width=w)
    else:
        extra = dict(importance=imp, importance_strength=task["strength"]) if method == "imagegs-importance" else {}
        if task["steps"]:
            extra["max_steps"] = task["steps"]
        enc = igs.compress(rgb, bpp=target, schedule=task["schedule"], **extra)
        data, reached, quality = enc.data, True, target
        decoded = igs.decode(data)
    return {
        "codec": method, "settings": task["settings"], "image": task["name"], "target_bpp": target,
        "width": w, "height": h, "bytes": len(data), "bpp": 8 * len(data) / (h * w), "reached": reached,
        "quality": quality, "importance_source": source, "region_share": float(mask.mean()),
        "seconds": time.perf_counter() - wall, "cpu_seconds": time.process_time() - cpu,
        **region_quality(rgb, decoded, mask),
    }


class _Key:
    """What :class:`~imagegs.bench.rd.Cache` asks of a codec: its name and settings."""

    def __init__(self, task: dict):
        self.name, self.settings = task["method"], task["settings"]


def _mean(values: list) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def summarise(records: Sequence[dict], tasks: Sequence[dict]) -> dict:
    """Means over the images per (method, rate) of the records that match ``tasks`` (points below a
    codec's floor left out, and counted), and the importance's gain over the plain encode."""
    wanted = {(t["method"], t["name"], t["target_bpp"]): t for t in tasks}
    recs = [r for r in records if (r["codec"], r["image"], r["target_bpp"]) in wanted
            and r.get("settings") == wanted[(r["codec"], r["image"], r["target_bpp"])]["settings"]]
    methods = list(dict.fromkeys(t["method"] for t in tasks))
    rates = sorted({t["target_bpp"] for t in tasks})
    table: dict = {}
    for m in methods:
        for b in rates:
            got = [r for r in recs if r["codec"] == m and r["target_bpp"] == b]
            ok = [r for r in got if r["reached"]]
            row = {f: _mean([r.get(f) for r in ok]) for f in _FIELDS}
            row.update(images=len(ok), below_floor=len(got) - len(ok))
            table.setdefault(m, {})[f"{b:g}"] = row
    gains = {}
    for b in rates:
        plain = {r["image"]: r for r in recs if r["codec"] == "imagegs" and r["target_bpp"] == b}
        steered = {r["image"]: r for r in recs if r["codec"] == "imagegs-importance" and r["target_bpp"] == b}
        both = sorted(set(plain) & set(steered))
        if both:
            d = {f: [steered[i][f] - plain[i][f] for i in both if steered[i].get(f) is not None
                     and plain[i].get(f) is not None] for f in ("psnr_in", "psnr_out", "ssim_in", "ssim_out")}
            gains[f"{b:g}"] = dict({f"d_{f}": _mean(v) for f, v in d.items()}, images=both,
                                   per_image={i: {f"d_{f}": round(steered[i][f] - plain[i][f], 3)
                                                  for f in ("psnr_in", "psnr_out")} for i in both})
    g = gains.get(f"{TARGET_BPP:g}")
    target = None
    if g and g["d_psnr_in"] is not None and g["d_psnr_out"] is not None:
        target = dict(bpp=TARGET_BPP, gain_in=g["d_psnr_in"], loss_out=-g["d_psnr_out"],
                      met=g["d_psnr_in"] >= TARGET_GAIN_IN and -g["d_psnr_out"] <= TARGET_LOSS_OUT)
    sources = {r["image"]: r["importance_source"] for r in recs}
    shares = {r["image"]: r["region_share"] for r in recs}
    per_image: dict = {}
    for r in recs:
        per_image.setdefault(f"{r['target_bpp']:g}", {}).setdefault(r["image"], {})[r["codec"]] = {
            f: r.get(f) for f in ("psnr_in", "psnr_out", "ssim_in", "ssim_out", "bpp", "reached")}
    return {"methods": methods, "bpp": rates, "table": table, "gains": gains, "target": target,
            "per_image": per_image, "region_shares": shares,
            "importance_sources": sources, "images": sorted(sources),
            "settings": {k: tasks[0][k] for k in ("max_side", "importance", "strength", "schedule")} if tasks else {},
            "note": "PSNR/SSIM of the decoded 8-bit image inside the important region (face boxes, or "
                    "the top 20 % of the saliency map) and outside it; means over the images; points "
                    "below a codec's floor are left out (below_floor counts them). The paper's visual "
                    "question answering evaluation needs downloaded VLM weights and is not reproduced."}


def format_table(summary: dict) -> str:
    """A markdown table: per method and rate, PSNR and SSIM inside / outside the region."""
    lines = ["| method | bpp target | bpp | PSNR in | PSNR out | SSIM in | SSIM out | images |",
             "|---|---|---|---|---|---|---|---|"]
    f = lambda v, s: "–" if v is None else format(v, s)
    for m in summary["methods"]:
        for b, row in summary["table"][m].items():
            n = f"{row['images']}" + (f" (+{row['below_floor']} below floor)" if row["below_floor"] else "")
            lines.append(f"| {m} | {b} | {f(row['bpp'], '.3f')} | {f(row['psnr_in'], '.2f')} | "
                         f"{f(row['psnr_out'], '.2f')} | {f(row['ssim_in'], '.4f')} | {f(row['ssim_out'], '.4f')} | {n} |")
    for b, images in summary["per_image"].items():
        lines += ["", f"PSNR inside / outside the region at {b} bpp (dB; 'floor': the codec's smallest file "
                      "is larger than the target):", "",
                  "| image (region) | " + " | ".join(summary["methods"]) + " |",
                  "|---|" + "---|" * len(summary["methods"])]
        for name in sorted(images):
            cells = []
            for m in summary["methods"]:
                r = images[name].get(m)
                cells.append("–" if r is None else f"{f(r['psnr_in'], '.2f')} / {f(r['psnr_out'], '.2f')}"
                             + ("" if r["reached"] else " (floor)"))
            where = f"{summary['importance_sources'][name]}, {summary['region_shares'][name]:.0%}"
            lines.append(f"| {name} ({where}) | " + " | ".join(cells) + " |")
    lines.append("")
    for b, g in summary["gains"].items():
        lines.append(f"importance vs plain at {b} bpp: PSNR in {f(g['d_psnr_in'], '+.2f')} dB, "
                     f"out {f(g['d_psnr_out'], '+.2f')} dB ({len(g['images'])} images)")
    t = summary.get("target")
    if t:
        lines.append(f"target at {t['bpp']:g} bpp (>= +{TARGET_GAIN_IN:g} dB in, <= {TARGET_LOSS_OUT:g} dB lost "
                     f"out): {'met' if t['met'] else 'MISSED'}")
    return "\n".join(lines)


def plot(summary: dict, path: Path) -> Path:
    """PSNR inside and outside the region against bpp, one line per method (means over images)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, (field, title) in zip(axes, (("psnr_in", "inside the important region"),
                                         ("psnr_out", "outside it"))):
        for i, m in enumerate(summary["methods"]):
            pts = [(r["bpp"], r[field]) for r in summary["table"][m].values()
                   if r["bpp"] is not None and r[field] is not None]
            if pts:
                xs, ys = zip(*sorted(pts))
                ax.plot(xs, ys, "o-", label=m, color=_COLOURS.get(m, f"C{i}"),
                        lw=2.4 if m == "imagegs-importance" else 1.4)
        ax.set_xlabel("bits per pixel (whole file)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"PSNR {title}")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Semantics-aware compression ({len(summary['images'])} images, means)")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)
    return path


def run(images: Sequence[str], out: str | os.PathLike, *, bpp: Sequence[float] | str = DEFAULT_BPP,
        methods: Sequence[str] = METHODS, max_side: int | None = DEFAULT_MAX_SIDE, importance: str = "auto",
        strength: float = DEFAULT_IMPORTANCE_STRENGTH, schedule: str = DEFAULT_SCHEDULE,
        steps: int | None = None, progress: bool = True, executor: dict | None = None) -> dict:
    """Run (or continue) the benchmark: every missing task, then the summary, JSON, plot, table.

    Args:
        images: image files or scikit-image samples (``astronaut``, ``skimage:NAME``).
        out: output folder (``records.jsonl``, the cache; ``semantic.json``, ``semantic.png``,
            ``semantic.md``).
        bpp, methods, max_side, importance, strength, schedule, steps: see the module docstring
            and :func:`make_tasks`.
        executor: None (default): every task in this process, in order; otherwise the keyword
            arguments of :func:`imagegs.batch.map_tasks` (``workers``, ``threads``,
            ``scheduler``): the tasks run in parallel, each record cached as its task finishes.
    Returns the summary (:func:`summarise`).
    """
    from tqdm import tqdm

    from ..fitting import SCHEDULES

    if schedule not in SCHEDULES:
        raise RDError(f"unknown --schedule {schedule!r}; choose one of {', '.join(sorted(SCHEDULES))}")
    if max_side is not None and max_side < 16:
        raise RDError(f"--max-side must be at least 16 pixels, got {max_side}")
    for spec in images:
        if not (spec == "astronaut" or spec.startswith("skimage:") or Path(spec).is_file()):
            raise RDError(f"{spec}: no such image file (give files, 'astronaut' or skimage:NAME)")
    tasks = make_tasks(images, bpp=parse_bpp(bpp), methods=methods, max_side=max_side, importance=importance,
                       strength=strength, schedule=schedule, steps=steps)
    out = Path(out)
    cache = Cache(out, {"max_side": max_side, "benchmark": "semantic", "schedule": schedule})
    todo = [t for t in tasks if not cache.reusable(_Key(t), t["name"], t["target_bpp"])]
    if executor is not None:
        from ..batch import map_tasks

        for _, record in map_tasks(run_task, todo, progress=progress, desc="semantic", unit="point", **executor):
            cache.add(record)
    else:
        bar = tqdm(total=len(todo), desc="semantic", unit="point", disable=not progress, file=sys.stderr)
        try:
            for t in todo:
                bar.set_postfix_str(f"{t['method']} {t['name']} {t['target_bpp']:g} bpp")
                cache.add(run_task(t))
                bar.update(1)
        finally:
            bar.close()
    summary = summarise(list(cache.records.values()), tasks)
    text = json.dumps(summary, indent=1)
    atomic_write(out / "semantic.json", lambda tmp: tmp.write_text(text + "\n"))
    table = format_table(summary)
    atomic_write(out / "semantic.md", lambda tmp: tmp.write_text(table + "\n"))
    plot(summary, out / "semantic.png")
    return summary
