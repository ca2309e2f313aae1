"""Rate-distortion benchmark: every codec x image x target bpp, resumable, then the report.

    imagegs bench rd --images DIR [--bpp 0.05,0.1,...] [--codecs all|baselines|textures|NAME,...]
                     --out DIR [--max-side N] [--schedule quality|fast|official]
    python -m imagegs.bench.rd ...   (the same)

For every image of DIR (categories from the file name prefix: photo-, painting-, art-, anime-,
vector-; anything else is 'other') and every target bpp, each ``search`` codec is encoded at the
largest quality setting whose whole-file bpp <= the target (``codecs.search_quality``), imagegs
at the target (its own rate control), and each texture format once at its nominal rate. The
decoded 8-bit image is measured (``measures.quality``), and one record per (codec, image,
target) is appended to ``OUT/records.jsonl`` as soon as it is finished: a run that is
interrupted continues where it stopped, and a later run with more codecs or images only
computes what is missing, or was made with other codec settings (``Codec.settings``, kept in
each record: see ``Cache``). The report (``report.write_report``: JSON per codec and dataset,
BD-rate / BD-PSNR against JPEG 4:2:0, plots, a markdown table) is then written from every record
in the cache that matches the current images and targets, whichever run made it.

Timing: ``encode_s`` is the one encode that produced the chosen file (during the search);
``decode_s`` is the median of 3 decodes (1 for imagegs). Both are wall times on whatever
machine runs the benchmark.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np

from ..defaults import ENCODE_SCHEDULE
from ..io import append_record, atomic_write, read_source, readable_extensions, to_uint8
from .codecs import BASELINES, CODECS, TEXTURES, Codec, CodecError, get_codec, search_quality
from .measures import quality

__all__ = ["run_rd", "RDError", "DEFAULT_BPP", "CATEGORIES",
           "category_of", "parse_bpp", "parse_codecs", "list_images", "load_image", "Cache"]

CATEGORIES = ("photo", "painting", "art", "anime", "vector")
DEFAULT_BPP = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
CODEC_GROUPS = {"baselines": BASELINES, "textures": TEXTURES,
                "all": ("imagegs",) + BASELINES + TEXTURES}
RECORDS = "records.jsonl"
SETTINGS = "settings.json"
DECODE_REPEATS = 3
DEFAULT_SCHEDULE = ENCODE_SCHEDULE  # imagegs's fit schedule: the encoder's default


class RDError(ValueError):
    """Bad benchmark input (folder, bpp list, codec list, cache); one-line message."""


# ------------------------------------------------------------------------------------ inputs


def parse_bpp(text: str | Sequence[float]) -> tuple[float, ...]:
    """'0.1,0.3' (or a sequence) -> sorted distinct positive finite targets."""
    items = text.split(",") if isinstance(text, str) else list(text)
    values = []
    for item in items:
        try:
            v = float(item)
        except (TypeError, ValueError):
            raise RDError(f"--bpp: {str(item).strip()!r} is not a number (give e.g. 0.1,0.3,0.5)") from None
        if not (math.isfinite(v) and 0 < v <= 64):
            raise RDError(f"--bpp: targets must be > 0 and <= 64 bits per pixel, got {item!r}".strip())
        values.append(v)
    if not values:
        raise RDError("--bpp: give at least one target bpp")
    return tuple(sorted(set(values)))


def parse_codecs(text: str | Sequence[str]) -> tuple[str, ...]:
    """'baselines,imagegs' (group names or codec names) -> codec names, in registry order."""
    items = [s.strip() for s in text.split(",")] if isinstance(text, str) else list(text)
    names: set[str] = set()
    for item in items:
        if item in CODEC_GROUPS:
            names.update(CODEC_GROUPS[item])
        elif item in CODECS:
            names.add(item)
        else:
            raise RDError(f"--codecs: unknown codec {item!r}; choose from "
                          f"{', '.join(list(CODEC_GROUPS) + list(CODECS))}")
    if not names:
        raise RDError("--codecs: give at least one codec")
    return tuple(n for n in CODECS if n in names)


def category_of(name: str) -> str:
    """The category a file name's prefix names ('anime-club.png' -> 'anime'), else 'other'."""
    prefix = Path(name).name.split("-", 1)[0].lower()
    return prefix if prefix in CATEGORIES else "other"


def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside ``folder``, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RDError(f"{folder}: not a folder (--images takes a folder of images)")
    exts = readable_extensions()
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."))
    if not files:
        raise RDError(f"{folder}: no images (looked for {', '.join(sorted(exts))})")
    names = [p.stem for p in files]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RDError(f"{folder}: several files share the name {dupes[0]!r}; images are keyed by name")
    return files


def load_image(path: str | os.PathLike, *, max_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file or a scikit-image sample (``astronaut``, ``skimage:NAME``):
    alpha composited on white, grey repeated, 16 bits rounded to 8, and (with ``max_side``)
    downscaled with Lanczos so the long side is at most ``max_side``."""
    from PIL import Image

    img = read_source(path, alpha="white")
    rgb = to_uint8(img.pixels)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    h, w = rgb.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS))
    return np.ascontiguousarray(rgb)


# ------------------------------------------------------------------------------------- cache


def _key(codec: str, image: str, target: float | None) -> tuple[str, str, float | None]:
    return codec, image, None if target is None else round(float(target), 9)


class Cache:
    """Finished records in ``OUT/records.jsonl``, one JSON object per line.

    Each record is appended with a single ``write`` of one whole line, flushed and fsynced, so an
    interruption leaves at most a partial last line, which loading drops (and removes from the
    file). The settings that change results (``max_side``, the imagegs ``schedule``) are kept in
    ``OUT/settings.json``; reusing an output folder with other settings is refused rather than
    mixing results. A settings file from before ``schedule`` was recorded means "fast".

    Each record also carries its codec's ``settings`` string (``Codec.settings``): a record is
    re-used only while that string is unchanged (one without it, from before it was recorded,
    never is), so a changed encoder setting re-encodes that codec's points. The new record is
    appended; the last line of a key wins, and loading drops the superseded lines from the file.
    """

    def __init__(self, out: Path, settings: dict):
        self.path = out / RECORDS
        out.mkdir(parents=True, exist_ok=True)
        self._check_settings(out / SETTINGS, settings)
        self.records: dict[tuple, dict] = {}
        self._load()

    @staticmethod
    def _check_settings(path: Path, settings: dict) -> None:
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise RDError(f"{path}: unreadable settings file ({e}); use another --out") from None
            if isinstance(old, dict):
                old.setdefault("schedule", "fast")  # folders written before it was recorded
            if old != settings:
                raise RDError(f"{path.parent}: holds results made with {old}, not {settings}; "
                              "use another --out folder")
        else:
            atomic_write(path, lambda tmp: tmp.write_text(json.dumps(settings) + "\n"))

    def _load(self) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_bytes().split(b"\n")
        good: dict[tuple, bytes] = {}  # key -> its last line (dicts keep first-insertion order)
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                key = _key(rec["codec"], rec["image"], rec["target_bpp"])
            except (ValueError, KeyError, TypeError):
                if i >= len(lines) - 2:  # the last line, cut off by an interruption
                    break
                raise RDError(f"{self.path}: line {i + 1} is not a record; delete the file to "
                              "start over") from None
            self.records[key] = rec
            good[key] = line
        if len(good) < len([x for x in lines if x.strip()]):  # a cut-off or superseded line
            atomic_write(self.path, lambda tmp: tmp.write_bytes(b"".join(g + b"\n" for g in good.values())))

    def reusable(self, codec: Codec, image: str, target: float | None) -> bool:
        """A record of (codec, image, target) made with the codec's current settings exists."""
        rec = self.records.get(_key(codec.name, image, target))
        return rec is not None and rec.get("settings") == codec.settings

    def current(self, codec_factory: Callable[[str], Codec]) -> list[dict]:
        """The records made with their codec's current settings (codecs the factory does not
        know are passed on: the report leaves them out)."""
        settings: dict[str, str | None] = {}
        for name in {r["codec"] for r in self.records.values()}:
            try:
                settings[name] = codec_factory(name).settings
            except CodecError:
                settings[name] = None
        return [r for r in self.records.values()
                if settings[r["codec"]] is None or r.get("settings") == settings[r["codec"]]]

    def add(self, record: dict) -> None:
        append_record(self.path, record)
        self.records[_key(record["codec"], record["image"], record["target_bpp"])] = record


# ------------------------------------------------------------------------------------ runner


def _decode_timed(codec: Codec, data: bytes, height: int, width: int) -> tuple[np.ndarray, float]:
    repeats = 1 if codec.kind == "direct" else DECODE_REPEATS
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = codec.decode(data, height=height, width=width)
        times.append(time.perf_counter() - t)
    return out, float(np.median(times))


def _measure(codec: Codec, image: np.ndarray, name: str, target: float | None, memo: dict,
             measured: dict) -> dict:
    """One record: search/encode, decode, metrics (metrics re-used when two targets pick the
    same encoding, e.g. both below the codec's floor)."""
    h, w = image.shape[:2]
    res = search_quality(codec, image, target, memo=memo)
    if res.data not in measured:
        decoded, dec_s = _decode_timed(codec, res.data, h, w)
        measured[res.data] = (quality(image, decoded), dec_s)
    metrics, dec_s = measured[res.data]
    return {
        "codec": codec.name, "settings": codec.settings, "image": name, "target_bpp": target,
        "width": w, "height": h,
        "quality": res.quality, "bytes": len(res.data), "bpp": res.bpp, "reached": res.reached,
        "encode_s": res.encode_s, "decode_s": dec_s, **metrics,
    }


def _measure_points(task: tuple[Codec, np.ndarray, str, str, list[float | None]]) -> list[dict]:
    """The records of one codec on one image at its missing targets (one task of the executor:
    the targets share the search memo, as in the in-process loop)."""
    codec, image, name, category, missing = task
    memo: dict = {}
    measured: dict = {}
    return [dict(_measure(codec, image, name, t, memo, measured), category=category) for t in missing]


def _with_images(todo: list, max_side: int | None) -> Iterator[tuple[Path, Codec, list, np.ndarray]]:
    """(file, codec, missing targets, image) for each entry of ``todo``, the image loaded when
    its file comes up: one image in memory at a time (todo is grouped by image)."""
    loaded: dict[Path, np.ndarray] = {}
    for f, c, missing in todo:
        if f not in loaded:
            loaded.clear()
            loaded[f] = load_image(f, max_side=max_side)
        yield f, c, missing, loaded[f]


def _run_here(todo: list, cache: Cache, bar, max_side: int | None) -> None:
    """The points of ``todo`` in this process, in order, each cached as soon as it is measured."""
    for f, c, missing, image in _with_images(todo, max_side):
        memo: dict = {}
        measured: dict = {}
        for t in missing:
            bar.set_postfix_str(f"{c.name} {f.stem}" + ("" if t is None else f" {t:g} bpp"))
            rec = _measure(c, image, f.stem, t, memo, measured)
            rec["category"] = category_of(f.name)
            cache.add(rec)
            bar.update(1)


def _run_distributed(todo: list, cache: Cache, bar, max_side: int | None, executor: dict) -> None:
    """The points of ``todo`` through :func:`imagegs.batch.map_tasks` (a task per image and
    codec; images loaded here, one at a time, and sent as arrays); each record goes to the cache
    as its task finishes."""
    from ..batch import map_tasks

    tasks = ((c, image, f.stem, category_of(f.name), missing) for f, c, missing, image in _with_images(todo, max_side))
    for _, records in map_tasks(_measure_points, tasks, total=len(todo), progress=False, **executor):
        for rec in records:
            cache.add(rec)
        bar.update(len(records))


def run_rd(images: str | os.PathLike, out: str | os.PathLike, *,
           bpp: Sequence[float] | str = DEFAULT_BPP, codecs: Sequence[str] | str = ("all",),
           max_side: int | None = None, progress: bool = True,
           schedule: str = DEFAULT_SCHEDULE, codec_factory: Callable[[str], Codec] | None = None,
           report: bool = True, executor: dict | None = None) -> dict:
    """Run (or continue) the benchmark and write the report; returns the report's summary.

    Args:
        images: folder of images (see ``list_images``).
        out: output folder: the cache, the JSON, the plots and the table go there.
        bpp: target bpp values (``"0.1,0.3"`` or numbers).
        codecs: codec or group names (``"baselines,imagegs"`` or a sequence).
        max_side: downscale images so that the long side is at most this many pixels.
        progress: show a tqdm progress bar.
        schedule: the imagegs fit schedule (``imagegs.fitting.SCHEDULES``; default "quality").
        codec_factory: name -> Codec (tests substitute codecs here); default ``get_codec``, with
            ``schedule`` for imagegs.
        report: write the report after the records (``report.write_report``).
        executor: None (default): every point in this process, in order. Otherwise the keyword
            arguments of :func:`imagegs.batch.map_tasks` that say where (``workers``,
            ``threads``, ``scheduler`` or ``client``): one task per image and codec, run in
            parallel; the records are the same, each cached as its task finishes.
    """
    from tqdm import tqdm

    from ..fitting import SCHEDULES

    targets = parse_bpp(bpp)
    names = parse_codecs(codecs)
    if schedule not in SCHEDULES:
        raise RDError(f"unknown --schedule {schedule!r}; choose one of {', '.join(sorted(SCHEDULES))}")
    if codec_factory is None:
        def codec_factory(name: str) -> Codec:
            return get_codec(name, **({"schedule": schedule} if name == "imagegs" else {}))
    if max_side is not None and max_side < 16:
        raise RDError(f"--max-side must be at least 16 pixels, got {max_side}")
    files = list_images(images)
    codec_objs = [codec_factory(n) for n in names]
    for c in codec_objs:  # fail before any work, not after an hour
        c.check_available()
    out = Path(out)
    cache = Cache(out, {"max_side": max_side, "schedule": schedule})

    todo = []  # (file, codec, [targets still missing])
    for f in files:
        for c in codec_objs:
            wanted = [None] if c.kind == "fixed" else list(targets)
            missing = [t for t in wanted if not cache.reusable(c, f.stem, t)]
            if missing:
                todo.append((f, c, missing))
    total = sum(len(m) for _, _, m in todo)
    bar = tqdm(total=total, desc="rd", unit="point", disable=not progress, file=sys.stderr)
    try:
        if executor is not None:
            _run_distributed(todo, cache, bar, max_side, executor)
        else:
            _run_here(todo, cache, bar, max_side)
    finally:
        bar.close()
    if not report:
        return {}
    from .report import write_report

    return write_report(cache.current(codec_factory), out, images=[f.stem for f in files],
                        targets=targets, codec_factory=codec_factory)
