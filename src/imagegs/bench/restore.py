"""Joint compression and restoration benchmark (``imagegs bench restore``).

    imagegs bench restore --images DIR_OR_FILES --samples astronaut,chelsea,coffee \\
        --out benchmarks/results/restore [--max-side 512] [--degradations noise25,...] [--methods ...]

Every clean image (scikit-image samples and/or files, downscaled so the long side is at most
``max_side``) is degraded synthetically (:data:`DEGRADATIONS`: Gaussian noise of std 10, 25 and 50
on 8-bit values, JPEG at quality 10; seeded) and each method of :data:`METHODS` measured against
the *clean* original (PSNR and SSIM of the 8-bit result, ``bench.measures``):

- ``degraded``: the degraded input itself;
- ``restore``: :func:`imagegs.restore` with the automatic budget (its .igs file's bpp recorded);
- ``imagegs-0.1`` .. ``imagegs-0.3``: :func:`imagegs.restore` at that whole-file bpp;
- ``nlmeans``: OpenCV's ``fastNlMeansDenoisingColored`` (h = hColor = 0.8 x the estimated noise std);
- ``tv``: scikit-image's ``denoise_tv_chambolle`` (weight = estimated std / 255);
- ``wavelet``: scikit-image's ``denoise_wavelet`` (BayesShrink, soft, YCbCr, its own estimate);
- ``bm3d``: the ``bm3d`` package's ``bm3d_rgb`` with the estimated std, when it is installed;
- ``jpeg``, ``avif``: JPEG 4:2:0 and AVIF of the degraded image at the largest quality whose file
  is no larger than restore's .igs file (``codecs.search_quality``).

The denoisers are given the same blind noise estimate as restore (:func:`imagegs.restoration.estimate_noise`).
Their strengths were chosen on astronaut and coffee at 512 px, sigma 10/25/50 (h from 0.6..1.2 x
sigma, TV weight from 1..4 x sigma / 255): the best on average (docs/NOTES.md, "Joint compression and restoration").

Each (image, degradation, method) is one task (:func:`run_task`: a dict in, one record out, no
shared state) and one record in ``OUT/records.jsonl`` (the RD benchmark's :class:`Cache`): a rerun
skips finished records, and a record is redone when its method's settings changed. JPEG and AVIF
run after restore, with its file size in the task. ``OUT/summary.json`` holds the means per
degradation and method and the targets; ``OUT/restore_psnr.png`` plots PSNR against bpp per
degradation.
"""

from __future__ import annotations

import datetime
import io
import json
import os
import sys
import time
import zlib
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from ..io import atomic_write, image_files
from .rd import Cache, load_image

__all__ = [
    "DEGRADATIONS",
    "METHODS",
    "SAMPLES",
    "available_methods",
    "degrade",
    "format_table",
    "run",
    "run_task",
    "summarise",
]

# name -> (kind, parameter): Gaussian noise of this std on 8-bit values, or JPEG at this quality.
DEGRADATIONS: dict[str, tuple[str, int]] = {
    "noise10": ("noise", 10), "noise25": ("noise", 25), "noise50": ("noise", 50), "jpeg10": ("jpeg", 10),
}
FIXED_BPP = (0.1, 0.2, 0.3)
METHODS = ("degraded", "restore", *(f"imagegs-{b:g}" for b in FIXED_BPP), "nlmeans", "tv", "wavelet", "bm3d",
           "jpeg", "avif")
MATCHED = {"jpeg": "jpeg-420", "avif": "avif"}  # method -> RD codec, at restore's file size
SAMPLES = ("astronaut", "chelsea", "coffee")
NLM_H, TV_WEIGHT = 0.8, 1.0  # denoiser strengths per unit of estimated noise std (module docstring)
DEFAULT_MAX_SIDE = 512
TARGET = {"degradation": "noise25", "over_input_db": 6.0, "over_codecs_db": 1.5}  # issue 18


class RestoreBenchError(ValueError):
    """Bad benchmark input (images, degradations, methods); one-line message."""


def degrade(clean: np.ndarray, degradation: str, *, seed: int = 0, image: str = "") -> np.ndarray:
    """(H, W, 3) uint8 -> the degraded (H, W, 3) uint8 image.

    Noise: clean + N(0, sigma^2) per sample, rounded and clipped to 0..255 (what a noisy 8-bit file
    holds). The generator's seed mixes ``seed`` with the image name and the degradation, so every
    (image, degradation) pair gets its own reproducible noise. JPEG: Pillow (libjpeg-turbo) at the
    quality, 4:2:0 as cameras and the web store it.
    """
    if degradation not in DEGRADATIONS:
        raise RestoreBenchError(f"unknown degradation {degradation!r}; choose from {', '.join(DEGRADATIONS)}")
    kind, value = DEGRADATIONS[degradation]
    if kind == "noise":
        rng = np.random.default_rng([seed, zlib.crc32(f"{image}/{degradation}".encode())])
        noisy = clean.astype(np.float64) + rng.normal(0.0, value, clean.shape)
        return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(clean).save(buf, format="JPEG", quality=value, subsampling=2)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def available_methods() -> tuple[str, ...]:
    """:data:`METHODS` less ``bm3d`` when its package is not installed."""
    import importlib.util

    return tuple(m for m in METHODS if m != "bm3d" or importlib.util.find_spec("bm3d") is not None)


# ------------------------------------------------------------------------------------ methods


def _settings(method: str, options: dict) -> str:
    """Everything besides the image that decides a method's result, as one string (see rd.Cache)."""
    from ..restoration import RULE, SSIM_WEIGHT

    if method == "restore" or method in MATCHED:  # JPEG and AVIF follow restore's file size
        return f"{method} auto rule {RULE} {json.dumps(options, sort_keys=True)}"
    if method.startswith("imagegs-"):
        return f"{method} ssim_weight {SSIM_WEIGHT} {json.dumps(options, sort_keys=True)}"
    return {"nlmeans": f"cv2 fastNlMeansDenoisingColored h=hColor={NLM_H}*sigma_est, 7, 21",
            "tv": f"skimage denoise_tv_chambolle weight={TV_WEIGHT}*sigma_est/255",
            "wavelet": "skimage denoise_wavelet BayesShrink soft ycbcr rescale_sigma",
            "bm3d": "bm3d.bm3d_rgb sigma_est/255", "degraded": "input"}[method]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> uint8 (round, clip)."""
    return np.rint(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def _denoise(method: str, noisy: np.ndarray, sigma: float) -> np.ndarray:
    """A dedicated denoiser's result, (H, W, 3) uint8."""
    if method == "nlmeans":
        import cv2

        bgr = np.ascontiguousarray(noisy[..., ::-1])
        h = NLM_H * float(sigma)
        return cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21)[..., ::-1]
    x = noisy.astype(np.float64) / 255.0
    if method == "tv":
        from skimage.restoration import denoise_tv_chambolle

        return _to_uint8(denoise_tv_chambolle(x, weight=TV_WEIGHT * sigma / 255.0, channel_axis=-1))
    if method == "wavelet":
        from skimage.restoration import denoise_wavelet

        return _to_uint8(denoise_wavelet(x, channel_axis=-1, convert2ycbcr=True, method="BayesShrink",
                                         mode="soft", rescale_sigma=True))
    if method == "bm3d":
        import bm3d

        return _to_uint8(bm3d.bm3d_rgb(x, max(sigma, 0.1) / 255.0))
    raise RestoreBenchError(f"unknown method {method!r}")


def _run_method(method: str, noisy: np.ndarray, task: dict) -> tuple[np.ndarray, dict]:
    """The method's (H, W, 3) uint8 output and what it records besides quality."""
    from ..restoration import estimate_noise

    h, w = noisy.shape[:2]
    if method == "degraded":
        return noisy, {}
    if method == "restore" or method.startswith("imagegs-"):
        from ..io import to_uint8
        from ..restoration import restore

        bpp = None if method == "restore" else float(method.split("-", 1)[1])
        r = restore(noisy, bpp=bpp, **task["options"])
        return to_uint8(r.image), {"bytes": len(r.data), "bpp": r.encoded.bpp, "gaussians": r.encoded.num,
                                   "sigma_est": r.sigma}
    if method in MATCHED:
        from .codecs import get_codec, search_quality

        if task.get("match_bpp") is None:
            raise RestoreBenchError(f"{method} needs restore's bpp (match_bpp) in the task")
        codec = get_codec(MATCHED[method])
        res = search_quality(codec, noisy, task["match_bpp"])
        return codec.decode(res.data, height=h, width=w), {
            "bytes": len(res.data), "bpp": res.bpp, "quality": res.quality, "reached": res.reached,
            "match_bpp": task["match_bpp"]}
    sigma = estimate_noise(noisy)
    return _denoise(method, noisy, sigma), {"sigma_est": sigma}


def run_task(task: dict) -> dict:
    """One (image, degradation, method): load, degrade, run, measure; returns the record.

    ``task``: ``name`` and ``source`` (a path or ``skimage:NAME``), ``degradation``, ``method``,
    ``max_side``, ``seed``, ``options`` (for imagegs.restore), ``settings`` (the method's, kept in
    the record) and, for jpeg/avif, ``match_bpp``. A plain function of its argument, so tasks can
    run in any order or process.
    """
    from .. import metrics
    from .measures import ssim

    clean = load_image(task["source"], max_side=task["max_side"])
    noisy = degrade(clean, task["degradation"], seed=task["seed"], image=task["name"])
    from ..ratecontrol import RateControlError

    record = {"codec": task["method"], "image": f"{task['name']}:{task['degradation']}", "target_bpp": None,
              "settings": task["settings"], "method": task["method"], "name": task["name"],
              "degradation": task["degradation"], "width": clean.shape[1], "height": clean.shape[0]}
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        out, extra = _run_method(task["method"], noisy, task)
    except RateControlError as e:  # a fixed rate too low for a small image: recorded, left out of the means
        return dict(record, error=str(e))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    f64 = lambda a: a.astype(np.float64)
    return dict(record, psnr=metrics.psnr(f64(out), f64(clean), data_range=255.0), ssim=ssim(clean, out),
                seconds=wall, cpu_seconds=cpu, **extra)


# ------------------------------------------------------------------------------------- runner


def _sources(images: Sequence[str | os.PathLike] | None, samples: Sequence[str]) -> list[tuple[str, str]]:
    """(name, source) of every image: files or folders of ``images``, then the samples."""
    from ..io import SAMPLES as KNOWN

    out = []
    for item in images or ():
        for p in image_files(item):
            out.append((p.stem, str(p)))
    for s in samples:
        if s not in KNOWN:
            raise RestoreBenchError(f"--samples: unknown scikit-image sample {s!r}")
        out.append((s, f"skimage:{s}"))
    if not out:
        raise RestoreBenchError("no images: give --images and/or --samples")
    names = [n for n, _ in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RestoreBenchError(f"several images are named {dupes[0]!r}; images are keyed by name")
    return out


def _check_names(given: Sequence[str], known: Sequence[str], option: str) -> list[str]:
    bad = [g for g in given if g not in known]
    if bad:
        raise RestoreBenchError(f"{option}: unknown {bad[0]!r}; choose from {', '.join(known)}")
    if not given:
        raise RestoreBenchError(f"{option}: give at least one")
    return [k for k in known if k in given]


def run(*, out: str | os.PathLike, images: Sequence[str | os.PathLike] | None = None,
        samples: Sequence[str] = SAMPLES, degradations: Sequence[str] = tuple(DEGRADATIONS),
        methods: Sequence[str] | None = None, max_side: int | None = DEFAULT_MAX_SIDE, seed: int = 0,
        options: dict | None = None, progress: bool = True, cached_only: bool = False,
        executor: dict | None = None) -> dict:
    """Run (or continue) the benchmark; writes records, ``summary.json`` and the plot to ``out``
    and returns the summary.

    ``executor``: None (default): every task in this process, in order; otherwise the keyword
    arguments of :func:`imagegs.batch.map_tasks` (``workers``, ``threads``, ``scheduler``), which
    runs the tasks in parallel (the JPEG/AVIF tasks after the restore tasks whose size they match).

    ``methods``: default every available one (:func:`available_methods`); asking for ``bm3d``
    without its package is an error. ``options``: passed to :func:`imagegs.restore` (e.g.
    ``max_steps`` for a quick run; they are part of the records' settings). ``cached_only``:
    compute nothing, summarise the records already in ``out`` (e.g. of runs split by degradation).
    """
    from ..batch import map_tasks

    pictures = _sources(images, samples)
    degradations = _check_names(list(degradations), list(DEGRADATIONS), "--degradations")
    methods = _check_names(list(methods or available_methods()), list(METHODS), "--methods")
    if "bm3d" in methods and "bm3d" not in available_methods():
        raise RestoreBenchError("--methods: bm3d is not installed (pip install bm3d, or leave it out)")
    if any(m in MATCHED for m in methods) and "restore" not in methods:
        raise RestoreBenchError("--methods: jpeg and avif are matched to restore's file size: add restore")
    if max_side is not None and max_side < 16:
        raise RestoreBenchError(f"--max-side must be at least 16 pixels, got {max_side}")
    options = dict(options or {})
    out = Path(out)
    # (rd's Cache reads a settings file without a schedule as "fast": name it always)
    cache = Cache(out, {"max_side": max_side, "seed": seed, "schedule": options.get("schedule", "fast")})

    def task(name: str, source: str, deg: str, method: str, **extra) -> dict:
        return dict(name=name, source=source, degradation=deg, method=method, max_side=max_side, seed=seed,
                    options=options, settings=_settings(method, options), **extra)

    def missing(name: str, deg: str, method: str) -> bool:
        return not cache.reusable(SimpleNamespace(name=method, settings=_settings(method, options)),
                                  f"{name}:{deg}", None)

    first = [task(n, s, d, m) for n, s in pictures for d in degradations for m in methods
             if m not in MATCHED and missing(n, d, m) and not cached_only]
    later = [(n, s, d, m) for n, s in pictures for d in degradations for m in methods
             if m in MATCHED and not cached_only]
    def execute(tasks: list[dict], desc: str) -> None:
        for _, record in map_tasks(run_task, tasks, progress=progress, desc=desc, unit="task",
                                   **(executor or {"workers": 0})):
            cache.add(record)

    execute(first, "bench restore")  # image-major: a partial in-process run has whole images
    matched = [task(n, s, d, m, match_bpp=cache.records[("restore", f"{n}:{d}", None)]["bpp"])
               for n, s, d, m in later
               if missing(n, d, m) and ("restore", f"{n}:{d}", None) in cache.records]
    execute(matched, "bench restore (codecs at restore's size)")
    wanted = {(f"{n}:{d}", m) for n, _ in pictures for d in degradations for m in methods}
    records = [r for r in cache.records.values()
               if (r["image"], r["method"]) in wanted and r["settings"] == _settings(r["method"], options)]
    summary = summarise(records, max_side=max_side, seed=seed, options=options)
    atomic_write(out / "summary.json", lambda p: Path(p).write_text(json.dumps(summary, indent=1) + "\n"))
    try:
        if summary["table"]:
            plot(summary, out / "restore_psnr.png")
    except ImportError:  # matplotlib is in the [bench] extra
        print("imagegs: matplotlib not installed, no plot (pip install 'imagegs[bench]')", file=sys.stderr)
    return summary


# ------------------------------------------------------------------------------------ summary


def _mean(rows: list[dict], key: str) -> float | None:
    """The mean of ``key`` over ``rows``; None unless every row has it."""
    values = [r.get(key) for r in rows]
    return None if any(v is None for v in values) else float(np.mean(values))


def summarise(records: list[dict], *, max_side: int | None, seed: int, options: dict) -> dict:
    """Means per degradation and method, restore's paired gains, and the issue's targets."""
    table: dict[str, dict[str, dict]] = {}
    records = [r for r in records if "error" not in r]
    for deg in DEGRADATIONS:
        # the images restore ran on (all, where it did not run): every row a mean over the same images
        restored = {r["name"] for r in records if r["degradation"] == deg and r["method"] == "restore"}
        for m in METHODS:
            rows = [r for r in records if r["degradation"] == deg and r["method"] == m
                    and (not restored or r["name"] in restored)]
            if not rows:
                continue
            keys = ("psnr", "ssim", "bpp", "gaussians", "seconds", "cpu_seconds")
            table.setdefault(deg, {})[m] = {k: _mean(rows, k) for k in keys} | {"images": len(rows)}
    gains: dict[str, dict[str, float]] = {}
    for deg in table:
        by = {(r["name"], r["method"]): r for r in records if r["degradation"] == deg}
        for other in ("degraded", *MATCHED, "bm3d", "nlmeans"):
            pairs = [by[(n, "restore")]["psnr"] - by[(n, other)]["psnr"]
                     for n, m in by if m == "restore" and (n, other) in by]
            if pairs:
                gains.setdefault(deg, {})[f"restore_over_{other}_db"] = float(np.mean(pairs))
    g = gains.get(TARGET["degradation"], {})
    targets = {"over_input": {"want_db": TARGET["over_input_db"], "got_db": g.get("restore_over_degraded_db")}}
    for m in MATCHED:
        targets[f"over_{m}"] = {"want_db": TARGET["over_codecs_db"], "got_db": g.get(f"restore_over_{m}_db")}
    for t in targets.values():
        t["met"] = None if t["got_db"] is None else bool(t["got_db"] >= t["want_db"])
    return {"protocol": "clean images (long side <= max_side, Lanczos) degraded synthetically; PSNR and "
                        "SSIM of each method's 8-bit output against the clean image; means over the "
                        "images restore ran on (per degradation)",
            "max_side": max_side, "seed": seed, "restore_options": options,
            "images": sorted({r["name"] for r in records}), "table": table, "restore_gains": gains,
            "targets": {TARGET["degradation"]: targets}, "date": datetime.date.today().isoformat()}


def plot(summary: dict, path: Path) -> None:
    """Mean PSNR against bpp, one panel per degradation: imagegs at fixed rates (line), restore's
    automatic budget (star), JPEG and AVIF at its size, and the file-less references (lines)."""
    from .plot import _matplotlib, _save

    plt = _matplotlib()
    degs = list(summary["table"])
    fig, axes = plt.subplots(1, len(degs), figsize=(4.6 * len(degs), 4.0), squeeze=False)
    for ax, deg in zip(axes.flat, degs):
        t = summary["table"][deg]
        most = max(r["images"] for r in t.values())
        fixed = [t[m] for m in METHODS if m.startswith("imagegs-") and m in t]
        if fixed:
            few = min(r["images"] for r in fixed)
            ax.plot([r["bpp"] for r in fixed], [r["psnr"] for r in fixed], "o-", color="crimson",
                    label="imagegs, fixed bpp" + (f" ({few} of the images)" if few < most else ""))
        if "restore" in t:
            ax.plot([t["restore"]["bpp"]], [t["restore"]["psnr"]], "*", ms=15, color="crimson",
                    label="restore (auto)")
        for m, marker in (("jpeg", "s"), ("avif", "D")):
            if m in t:
                ax.plot([t[m]["bpp"]], [t[m]["psnr"]], marker, color="0.3", label=f"{m.upper()} at restore's size",
                        mfc="none" if m == "jpeg" else "0.3")
        for i, m in enumerate(("degraded", "nlmeans", "tv", "wavelet", "bm3d")):
            if m in t:
                ax.axhline(t[m]["psnr"], ls="--" if m == "degraded" else ":", color=f"C{i}", lw=1.2,
                           label=f"{m} (no file)")
        ax.set_title(f"{deg} ({most} images)")
        ax.set_xlim(0, ax.get_xlim()[1] * 1.08)
        ax.set_xlabel("bits per pixel (whole file)")
        ax.set_ylabel("PSNR against the clean image (dB)")
        ax.grid(alpha=0.3)
    handles = {}
    for ax in axes.flat:  # one legend for all panels, each entry once
        handles.update(zip(*reversed(ax.get_legend_handles_labels())))
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=5, fontsize=8)
    _save(fig, path)
    plt.close(fig)


def format_table(summary: dict) -> str:
    """Markdown: PSNR / SSIM (, bpp) per method (rows) and degradation (columns); a method measured
    on fewer images than the others of its column says on how many."""
    degs = list(summary["table"])
    lines = ["| method | " + " | ".join(degs) + " |", "|---|" + "---|" * len(degs)]
    for m in METHODS:
        cells = []
        for d in degs:
            r = summary["table"][d].get(m)
            most = max(x["images"] for x in summary["table"][d].values())
            cells.append("" if r is None else f"{r['psnr']:.2f} / {r['ssim']:.3f}"
                         + (f", {r['bpp']:.3f} bpp" if r["bpp"] is not None else "")
                         + (f" ({r['images']} images)" if r["images"] < most else ""))
        if any(cells):
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
