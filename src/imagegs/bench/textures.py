"""Texture-set benchmark: imagegs (one file, or one file per map) against GPU texture formats,
JPEG and AVIF, on stacks of maps (albedo + normal + gloss ...), resumable, then the report.

    imagegs bench textures --stacks DIR --out DIR [--rates 0.5,1,1.35,2.7] [--max-side 512]

Every sub-folder of DIR is one stack (its image files are the maps; kinds from the file names,
see :mod:`imagegs.textures`). Rates are **bits per texel of the whole set**: 8 x (all the bytes
of every file of the set) / (H x W); BPPC divides that by the set's channel count (7 for albedo
RGB + normal XYZ + gloss). Methods:

- ``imagegs-joint``: one .igs file for the whole set, rate-controlled to the target (map weights:
  the defaults of :data:`imagegs.textures.DEFAULT_KIND_WEIGHTS` unless the run says otherwise);
- ``imagegs-separate``: one .igs file per map, each at target / maps (the same total bytes);
- ``bc1``, ``bc7``, ``astc-4x4`` ... ``astc-12x12``: every map in that GPU format (fixed rate, one
  point; grey maps stored as RGB grey, the decoded grey taken as the mean of R, G, B);
- ``jpeg`` (4:4:4) and ``avif`` (4:4:4): every map at the largest quality whose file fits
  target / maps (``codecs.search_quality``), a storage reference. 4:4:4 because normal maps'
  channels are not colour and must not be subsampled.

Random access (any texel decodes alone): imagegs, BC and ASTC yes; JPEG and AVIF no.
Measured per map on the 8-bit maps: PSNR and SSIM, and for normal maps the mean angular error in
degrees (both sides normalised). The set's PSNR is the mean over its maps, in dB.

Each (stack, method, rate) is an independent task (:func:`plan` makes the dicts, :func:`run_task`
turns one into a record), so they can run in any order or process; the runner appends each
record to ``OUT/records.jsonl`` as soon as it is done (the RD benchmark's :class:`~.rd.Cache`:
interrupted runs continue, changed settings recompute). Written under OUT: ``summary.json``
(every record and the issue's targets), ``table.md``, ``textures.png``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io import Image, atomic_write, read_image, to_uint8
from ..metrics import map_quality
from ..textures import SCALAR, parse_map_weights
from .codecs import TEXTURES, get_codec, search_quality
from .rd import Cache, RDError, parse_bpp

__all__ = ["run_textures", "plan", "run_task", "load_stack", "list_stacks", "METHODS", "DEFAULT_RATES",
           "RANDOM_ACCESS", "TexturesError"]

JOINT, SEPARATE = "imagegs-joint", "imagegs-separate"
STORAGE = {"jpeg": "jpeg-444", "avif": "avif-444"}  # method -> the RD benchmark's codec
METHODS = (JOINT, SEPARATE) + TEXTURES + tuple(STORAGE)
RANDOM_ACCESS = {m: m not in STORAGE for m in METHODS}
# Bits per texel of the whole set. With 3 maps, ASTC 12x12 costs 3 x 0.89 = 2.67 (2.71 at 512 px
# with its padding blocks): 1.35 is half of it (the issue's target point), 2.7 equal to it.
DEFAULT_RATES = (0.5, 1.0, 1.35, 2.7)
DEFAULT_SCHEDULE = "fast"
LABELS = {JOINT: "imagegs joint", SEPARATE: "imagegs separate", "jpeg": "JPEG 4:4:4 per map",
          "avif": "AVIF 4:4:4 per map"}


class TexturesError(RDError):
    """Bad benchmark input (folder, rates, methods): one line."""


# ------------------------------------------------------------------------------------ inputs


def list_stacks(folder: str | os.PathLike) -> list[Path]:
    """The stacks of ``folder``: its sub-folders (hidden ones skipped), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TexturesError(f"{folder}: not a folder (--stacks takes a folder of texture-set folders)")
    stacks = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not stacks:
        raise TexturesError(f"{folder}: no sub-folders; put each texture set's maps in a folder of its own")
    return stacks


def parse_methods(text: str | Sequence[str]) -> tuple[str, ...]:
    """'all' or 'imagegs-joint,astc-12x12,...' -> method names in :data:`METHODS` order."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    names = set(METHODS) if "all" in items else set()
    for item in items:
        if item != "all" and item not in METHODS:
            raise TexturesError(f"--methods: unknown method {item!r}; choose from all, {', '.join(METHODS)}")
        names.add(item)
    names.discard("all")
    if not names:
        raise TexturesError("--methods: give at least one method")
    return tuple(m for m in METHODS if m in names)


def load_stack(folder: str | os.PathLike, *, max_side: int | None = None) -> Image:
    """A stack's maps as 8-bit data in an :class:`Image` (kinds from the file names; scalar maps
    one channel), downscaled with Lanczos per map so the long side is at most ``max_side``."""
    from PIL import Image as PILImage

    img = read_image(folder, alpha="drop")
    h, w = img.height, img.width
    q = to_uint8(img.pixels)  # (H, W, C)
    if max_side is not None and max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        q = np.stack([np.asarray(PILImage.fromarray(q[..., c]).resize(size, PILImage.Resampling.LANCZOS))
                      for c in range(q.shape[2])], axis=2)
    pixels = torch.from_numpy(np.ascontiguousarray(q.transpose(2, 0, 1))).float() / 255
    return Image(pixels=pixels, groups=img.groups, channel_names=img.channel_names,
                 bit_depths=[8] * len(img.groups), source=img.source, kinds=img.kinds)


def _split(image: Image) -> list[Image]:
    """One single-map :class:`Image` per group of a stack."""
    out, start = [], 0
    for (name, c), kind, src in zip(image.groups, image.kinds, image.source):
        out.append(Image(pixels=image.pixels[start:start + c].clone(), groups=[(name, c)],
                         channel_names=image.channel_names[start:start + c], bit_depths=[8], source=[src],
                         kinds=[kind]))
        start += c
    return out


# ------------------------------------------------------------------------------------ tasks


def plan(stacks: Sequence[str | os.PathLike], *, rates: Sequence[float] = DEFAULT_RATES,
         methods: Sequence[str] = METHODS, max_side: int | None = None, schedule: str = DEFAULT_SCHEDULE,
         map_weights: dict | None = None, seed: int = 0, steps: int | None = None) -> list[dict]:
    """The tasks of a run: one plain dict per (stack, method, rate); fixed-rate formats get one
    task with rate None. Each dict is everything :func:`run_task` needs (JSON-serialisable)."""
    tasks = []
    for stack in stacks:
        for m in methods:
            for rate in ([None] if m in TEXTURES else list(rates)):
                tasks.append({"stack": str(stack), "method": m, "rate": rate, "max_side": max_side,
                              "schedule": schedule, "map_weights": dict(map_weights or {}), "seed": seed,
                              "steps": steps})
    return tasks


def settings_of(task: dict) -> str:
    """What decides a task's bytes besides the stack and rate, as one string (kept in records)."""
    m = task["method"]
    if m in (JOINT, SEPARATE):
        from ..textures import DEFAULT_KIND_WEIGHTS

        base = f"{m} schedule={task['schedule']} seed={task.get('seed', 0)} steps={task.get('steps')}"
        if m == SEPARATE:  # one map per file: its weight normalises away
            return base
        return (f"{base} map_weights={json.dumps(task.get('map_weights') or {}, sort_keys=True)} "
                f"defaults={json.dumps(DEFAULT_KIND_WEIGHTS, sort_keys=True)}")
    return get_codec(STORAGE.get(m, m)).settings


@dataclass(frozen=True)
class _Key:
    """What :class:`~.rd.Cache` asks of a codec: its name and settings."""

    name: str
    settings: str


def _encode_maps_with_codec(method: str, maps: list[Image], rate: float | None
                            ) -> tuple[list[bytes], list[np.ndarray], float, float, bool]:
    """Each map through a BC/ASTC/JPEG/AVIF codec: (files, decoded (C, H, W) uint8 per map,
    encode seconds, decode seconds, every map's target reached)."""
    codec = get_codec(STORAGE.get(method, method))
    codec.check_available()
    files, decoded, enc_s, dec_s, reached = [], [], 0.0, 0.0, True
    for m in maps:
        q = to_uint8(m.pixels)
        rgb = np.ascontiguousarray(np.repeat(q, 3, axis=2) if q.shape[2] == 1 else q)
        h, w = rgb.shape[:2]
        res = search_quality(codec, rgb, None if rate is None else rate / len(maps))
        t = time.perf_counter()
        out = codec.decode(res.data, height=h, width=w)
        dec_s += time.perf_counter() - t
        enc_s += res.encode_s
        reached = reached and res.reached
        if q.shape[2] == 1:
            out = np.rint(out.astype(np.float64).mean(axis=2, keepdims=True)).astype(np.uint8)
        files.append(res.data)
        decoded.append(out.transpose(2, 0, 1))
    return files, decoded, enc_s, dec_s, reached


def _encode_imagegs(task: dict, stack: Image, maps: list[Image]
                    ) -> tuple[list[bytes], list[np.ndarray], float, float, bool]:
    """imagegs joint (one file) or separate (one per map at rate / maps)."""
    from .. import codec

    joint = task["method"] == JOINT
    parts = [stack] if joint else maps
    bpp = task["rate"] / len(parts)
    options = {"schedule": task["schedule"], "seed": task.get("seed", 0)}
    if task.get("steps"):
        options["max_steps"] = int(task["steps"])
    files, decoded, enc_s, dec_s = [], [], 0.0, 0.0
    for part in parts:
        extra = {"map_weights": parse_map_weights(task["map_weights"])} if joint and task.get("map_weights") else {}
        t = time.perf_counter()
        enc = codec.compress(part, bpp=bpp, **options, **extra)
        enc_s += time.perf_counter() - t
        t = time.perf_counter()
        out = codec.decode(enc.data)  # (H, W, C) uint8, normal maps renormalised
        dec_s += time.perf_counter() - t
        files.append(enc.data)
        decoded.append(out.transpose(2, 0, 1))
    return files, decoded, enc_s, dec_s, True


def run_task(task: dict) -> dict:
    """One (stack, method, rate) task (a dict from :func:`plan`) -> its record (a JSON-able dict).

    Encodes the stack, decodes it, measures every map; wall and CPU seconds of the whole task.
    The maps are read from ``task["stack"]``, or taken from ``task["image"]`` (an :class:`Image`
    from :func:`load_stack`) when the runner sends them along (workers on other machines).
    """
    wall, cpu = time.perf_counter(), time.process_time()
    stack = task.get("image") or load_stack(task["stack"], max_side=task.get("max_side"))
    maps = _split(stack)
    method, rate = task["method"], task["rate"]
    h, w = stack.height, stack.width
    head = {"codec": method, "image": Path(task["stack"]).name, "target_bpp": rate,
            "settings": settings_of(task), "stack": Path(task["stack"]).name, "method": method,
            "rate": rate, "width": w, "height": h, "channels": stack.pixels.shape[0]}
    if method in (JOINT, SEPARATE):
        from ..codec import RateControlError

        try:
            files, decoded, enc_s, dec_s, reached = _encode_imagegs(task, stack, maps)
        except RateControlError as e:  # a rate too low for (one map's) file: a result, not a crash
            return {**head, "error": str(e), "wall_s": time.perf_counter() - wall,
                    "cpu_s": time.process_time() - cpu}
    else:
        files, decoded, enc_s, dec_s, reached = _encode_maps_with_codec(method, maps, rate)
    rows = map_quality(stack.pixels, torch.from_numpy(np.concatenate(decoded)).float() / 255,
                       stack.groups, stack.kinds)
    total = sum(len(f) for f in files)
    if len(files) == len(rows):  # one file per map: give each map its bytes
        for row, f in zip(rows, files):
            row["bytes"] = len(f)
    bits = 8.0 * total / (h * w)
    angles = [r["angle"] for r in rows if "angle" in r]
    return {
        **head, "maps": rows,
        "bytes": total, "files": len(files), "bits_per_texel": bits, "bppc": bits / stack.pixels.shape[0],
        "reached": reached, "random_access": RANDOM_ACCESS[method],
        "psnr": float(np.mean([r["psnr"] for r in rows])), "ssim": float(np.mean([r["ssim"] for r in rows])),
        "normal_angle": float(np.mean(angles)) if angles else None,
        "scalar_psnr": _mean_of(rows, SCALAR), "encode_s": enc_s, "decode_s": dec_s,
        "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
    }


def _mean_of(rows: list[dict], kind: str) -> float | None:
    vals = [r["psnr"] for r in rows if r["kind"] == kind]
    return float(np.mean(vals)) if vals else None


# ------------------------------------------------------------------------------------ runner


def run_textures(stacks: str | os.PathLike, out: str | os.PathLike, *,
                 rates: Sequence[float] | str = DEFAULT_RATES, methods: Sequence[str] | str = "all",
                 max_side: int | None = None, schedule: str = DEFAULT_SCHEDULE,
                 map_weights: dict | str | None = None, steps: int | None = None, progress: bool = True,
                 report: bool = True, executor: dict | None = None) -> dict:
    """Run (or continue) the benchmark on every stack of the folder ``stacks``; write the report
    under ``out`` and return its summary (``summary["lines"]``: text for the terminal).
    ``steps``: cap on the imagegs fit steps (default: the schedule's). ``executor``: None (default)
    runs the tasks here, in order; otherwise the keyword arguments of
    :func:`imagegs.batch.map_tasks` (``workers``, ``scheduler``, ``client``...): the tasks run in
    parallel, each with its stack's maps sent along, and each record is cached as it comes back."""
    from tqdm import tqdm

    from ..fitting import SCHEDULES

    targets = parse_bpp(rates)
    names = parse_methods(methods)
    if schedule not in SCHEDULES:
        raise TexturesError(f"unknown --schedule {schedule!r}; choose one of {', '.join(sorted(SCHEDULES))}")
    if max_side is not None and max_side < 16:
        raise TexturesError(f"--max-side must be at least 16 pixels, got {max_side}")
    weights = parse_map_weights(map_weights) if map_weights else {}
    folders = list_stacks(stacks)
    for f in folders:  # fail on a bad stack before any long work
        load_stack(f, max_side=16)
    for m in names:
        if m not in (JOINT, SEPARATE):
            get_codec(STORAGE.get(m, m)).check_available()
    out = Path(out)
    cache = Cache(out, {"max_side": max_side, "schedule": schedule})
    tasks = plan(folders, rates=targets, methods=names, max_side=max_side, schedule=schedule,
                 map_weights=weights, steps=steps)
    todo = [t for t in tasks
            if not cache.reusable(_Key(t["method"], settings_of(t)), Path(t["stack"]).name, t["rate"])]
    bar = tqdm(total=len(todo), desc="textures", unit="point", disable=not progress, file=sys.stderr)
    try:
        if executor is not None:
            from ..batch import map_tasks

            images = {s: load_stack(s, max_side=max_side) for s in dict.fromkeys(t["stack"] for t in todo)}
            for _, rec in map_tasks(run_task, [dict(t, image=images[t["stack"]]) for t in todo],
                                    progress=False, **executor):
                cache.add(rec)
                bar.update(1)
        for t in todo if executor is None else []:
            bar.set_postfix_str(f"{t['method']} {Path(t['stack']).name}"
                                + ("" if t["rate"] is None else f" {t['rate']:g}"))
            cache.add(run_task(t))
            bar.update(1)
    finally:
        bar.close()
    if not report:
        return {}
    wanted = {(t["method"], Path(t["stack"]).name, t["rate"], settings_of(t)) for t in tasks}
    records = [r for r in cache.records.values()
               if (r["method"], r["stack"], r["rate"], r["settings"]) in wanted]
    return write_report(records, out, max_side=max_side, schedule=schedule)


# ------------------------------------------------------------------------------------ report


def _sorted(records: list[dict]) -> list[dict]:
    order = {m: i for i, m in enumerate(METHODS)}
    return sorted(records, key=lambda r: (r["stack"], order.get(r["method"], 99), r["rate"] or 0))


def targets_of(records: list[dict]) -> dict:
    """The issue's three targets per stack, from the records (None where a point is missing):
    joint at <= half of ASTC 12x12's bits vs ASTC 12x12's PSNR; joint vs separate at each rate
    (>= 1 dB); the joint file's normal angular error (at the first point) vs ASTC 12x12's."""
    out = {}
    for stack in sorted({r["stack"] for r in records}):
        rs = [r for r in records if r["stack"] == stack]
        astc = next((r for r in rs if r["method"] == "astc-12x12"), None)
        joint = {r["rate"]: r for r in rs if r["method"] == JOINT}
        sep = {r["rate"]: r for r in rs if r["method"] == SEPARATE}
        doc: dict = {"joint_minus_separate_db": {f"{k:g}": joint[k]["psnr"] - sep[k]["psnr"]
                                                 for k in sorted(joint) if k in sep}}
        if astc is not None:
            half = [r for r in joint.values() if r["bits_per_texel"] <= astc["bits_per_texel"] / 2]
            best = max(half, key=lambda r: r["bits_per_texel"], default=None)
            doc["astc12_bits_per_texel"] = astc["bits_per_texel"]
            doc["astc12_psnr"] = astc["psnr"]
            doc["astc12_normal_angle"] = astc["normal_angle"]
            if best is not None:
                doc["joint_at_half"] = {"bits_per_texel": best["bits_per_texel"], "psnr": best["psnr"],
                                        "normal_angle": best["normal_angle"]}
                doc["psnr_target_met"] = best["psnr"] >= astc["psnr"]
                if best["normal_angle"] is not None and astc["normal_angle"] is not None:
                    doc["angle_target_met"] = best["normal_angle"] <= astc["normal_angle"]
        diffs = doc["joint_minus_separate_db"].values()
        doc["joint_vs_separate_target_met"] = bool(diffs) and all(d >= 1.0 for d in diffs)
        out[stack] = doc
    return out


def _fmt(v, spec: str) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def markdown_table(records: list[dict]) -> str:
    """One row per (stack, method, rate): rate, BPPC, per-map PSNR, normal angle, random access."""
    lines = []
    for stack in sorted({r["stack"] for r in records}):
        rs = _sorted([r for r in records if r["stack"] == stack])
        maps = [m["map"] for m in rs[0]["maps"]]
        lines += [f"**{stack}** ({rs[0]['width']}x{rs[0]['height']}, {rs[0]['channels']} channels: "
                  + ", ".join(f"{m['map']} {m['kind']}" for m in rs[0]["maps"]) + ")", "",
                  "| method | bits/texel | BPPC | mean PSNR (dB) | " + " | ".join(f"{m} PSNR" for m in maps)
                  + " | normal angle (°) | random access |",
                  "|---|---|---|---|" + "---|" * len(maps) + "---|---|"]
        for r in rs:
            per = {m["map"]: m["psnr"] for m in r["maps"]}
            name = LABELS.get(r["method"], get_codec(r["method"]).label if r["method"] in TEXTURES else r["method"])
            lines.append(f"| {name}{'' if r['reached'] else ' (floor)'} | {r['bits_per_texel']:.3f} | "
                         f"{r['bppc']:.3f} | {r['psnr']:.2f} | " + " | ".join(_fmt(per.get(m), ".2f") for m in maps)
                         + f" | {_fmt(r['normal_angle'], '.2f')} | {'yes' if r['random_access'] else 'no'} |")
        lines.append("")
    return "\n".join(lines)


_STYLE = {JOINT: {"color": "crimson", "lw": 2.6}, SEPARATE: {"color": "darkorange", "lw": 1.8},
          "jpeg": {"color": "tab:blue", "lw": 1.2}, "avif": {"color": "tab:green", "lw": 1.2}}


def plot(records: list[dict], path: Path) -> Path:
    """Mean PSNR and normal angular error against bits per texel, one column per stack."""
    from .plot import _matplotlib, _save, log_rate_axis

    plt = _matplotlib()
    stacks = sorted({r["stack"] for r in records})
    fig, axes = plt.subplots(2, len(stacks), figsize=(6 * len(stacks), 8), squeeze=False)
    for col, stack in enumerate(stacks):
        rs = _sorted([r for r in records if r["stack"] == stack])
        for row, (metric, label) in enumerate((("psnr", "mean PSNR over maps (dB)"),
                                               ("normal_angle", "normal mean angular error (°)"))):
            ax = axes[row][col]
            for m in dict.fromkeys(r["method"] for r in rs):
                pts = sorted((r["bits_per_texel"], r[metric]) for r in rs if r["method"] == m and r[metric] is not None)
                if not pts:
                    continue
                xs, ys = zip(*pts)
                if m in TEXTURES:
                    ax.scatter(xs, ys, marker="s", s=30, color="0.35", zorder=3)
                    ax.annotate(get_codec(m).label, (xs[0], ys[0]), textcoords="offset points", xytext=(4, -9),
                                fontsize=7, color="0.25")
                else:
                    ax.plot(xs, ys, "o-", ms=4, label=LABELS.get(m, m), zorder=4, **_STYLE[m])
            log_rate_axis(ax, [0.25, 0.5, 1, 2, 4, 8, 16, 32], "bits per texel (whole set, all files)")
            ax.set_ylabel(label)
            ax.set_title(f"{stack} ({rs[0]['width']}x{rs[0]['height']})")
            if row == 0 and col == 0:
                ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = _save(fig, path)
    plt.close(fig)
    return path


def write_report(records: list[dict], out: Path, *, max_side: int | None, schedule: str) -> dict:
    """``summary.json`` (records + targets), ``table.md`` and ``textures.png`` under ``out``."""
    failed = [r for r in records if "error" in r]
    records = _sorted([r for r in records if "error" not in r])
    summary = {"max_side": max_side, "schedule": schedule, "rates_are": "bits per texel of the whole set",
               "random_access": RANDOM_ACCESS, "targets": targets_of(records), "records": records,
               "failed": failed}
    table = markdown_table(records)
    atomic_write(out / "table.md", lambda tmp: tmp.write_text(table))
    summary["plot"] = str(plot(records, out / "textures.png").relative_to(out)) if records else None
    lines = [table] + [f"{r['stack']} {r['method']} {r['rate']:g}: {r['error']}" for r in failed] + [
        f"wrote {out / 'summary.json'}, {out / 'table.md'}, {out / 'textures.png'}"]
    atomic_write(out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=1) + "\n"))
    summary["lines"] = lines
    return summary
