"""The RD benchmark's report, written from its records: JSON, BD deltas, plots, markdown table.

Datasets: ``all`` images, ``stylised`` (art + anime + vector, the categories where Image-GS
claims its largest gains) and each category present. For a dataset, a codec's point at a target
bpp is the mean over the dataset's images of the actual bpp and of each metric (PSNR averaged
in dB, as CompressAI does), and exists only when *every* image of the dataset has a point at
that target that reached it: a target below the codec's floor on any image is left out (the
JSON lists it under ``missing`` with the reason and the floor), never replaced by a point at a
higher rate. Texture formats give one point each, the mean over the images.

BD-PSNR and BD-rate are against JPEG 4:2:0 on these mean curves (piecewise cubic, ``bd.py``):
BD-PSNR over 0.1-0.5 bpp (the issue's range; the interval actually integrated is the part of
it both curves cover, and is reported) and BD-rate over the whole common PSNR range.

Files written under OUT: ``json/<dataset>/<codec>.json`` (CompressAI's layout:
``{name, description, results: {bpp: [...], psnr-rgb: [...], ...}}``), ``summary.json``,
``table.md``, ``plots/*.png``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_write
from .bd import BDError, bd_psnr, bd_rate
from .codecs import CODECS, Codec, CodecError, get_codec
from .measures import METRICS

__all__ = ["aggregate", "write_report", "datasets", "ANCHOR", "BD_RANGE", "STYLISED"]

ANCHOR = "jpeg-420"
BD_RANGE = (0.1, 0.5)
STYLISED = ("art", "anime", "vector")
CATEGORY_ORDER = ("photo", "painting", "art", "anime", "vector", "other")
MEAN_FIELDS = ("bpp",) + METRICS + ("encode_s", "decode_s")
RESULT_NAMES = {"encode_s": "encoding_time", "decode_s": "decoding_time"}  # CompressAI's names
LPIPS_NOTE = ("LPIPS is not reported: it needs torchvision and ImageNet weights downloaded at "
              "run time, which this offline environment cannot do")


def datasets(images: Sequence[str], categories: dict[str, str]) -> dict[str, list[str]]:
    """{dataset name: image names}: all, stylised (if any), each category present."""
    groups = {"all": list(images)}
    styl = [i for i in images if categories[i] in STYLISED]
    if styl:
        groups["stylised"] = styl
    for cat in CATEGORY_ORDER:
        members = [i for i in images if categories[i] == cat]
        if members:
            groups[cat] = members
    return groups


def _mean(values: list) -> float | None:
    if any(v is None for v in values):
        return None
    return float(np.mean(values))


def aggregate(records: Sequence[dict], codec: Codec, images: Sequence[str],
              targets: Sequence[float]) -> dict:
    """One codec's curve on one dataset: ``{results: {...}, missing: [...]}``."""
    by_key = {(r["image"], r["target_bpp"]): r for r in records if r["codec"] == codec.name}
    wanted = [None] if codec.kind == "fixed" else list(targets)
    results: dict[str, list] = {"target_bpp": []}
    for f in MEAN_FIELDS:
        results[RESULT_NAMES.get(f, f)] = []
    missing = []
    for t in wanted:
        recs = [by_key.get((i, t)) for i in images]
        absent = [i for i, r in zip(images, recs) if r is None]
        below = [r for r in recs if r is not None and not r["reached"]]
        if absent or below:
            reason = []
            if below:
                floor = max(r["bpp"] for r in below)
                reason.append(f"{len(below)} of {len(images)} images cannot go below the target "
                              f"(smallest file up to {floor:.3f} bpp)")
            if absent:
                reason.append(f"not run on {len(absent)} of {len(images)} images")
            missing.append({"target_bpp": t, "reason": "; ".join(reason),
                            "floor_bpp": [r["bpp"] for r in below]})
            continue
        results["target_bpp"].append(t)
        for f in MEAN_FIELDS:
            results[RESULT_NAMES.get(f, f)].append(_mean([r[f] for r in recs]))
    return {"results": results, "missing": missing}


def _bd(anchor: dict, test: dict) -> dict:
    """BD-PSNR (over BD_RANGE) and BD-rate of ``test`` against ``anchor`` (mean curves)."""
    out: dict = {}
    ra, pa = anchor["results"]["bpp"], anchor["results"]["psnr-rgb"]
    rb, pb = test["results"]["bpp"], test["results"]["psnr-rgb"]
    if None in pa or None in pb:
        return {"error": "infinite PSNR (lossless point) on a curve"}
    try:
        out["bd_psnr_db"] = bd_psnr(ra, pa, rb, pb, rate_range=BD_RANGE)
        lo = max(min(ra), min(rb), BD_RANGE[0])
        hi = min(max(ra), max(rb), BD_RANGE[1])
        out["bd_psnr_range_bpp"] = [float(lo), float(hi)]
    except BDError as e:
        out["bd_psnr_error"] = str(e)
    try:
        out["bd_rate_percent"] = bd_rate(ra, pa, rb, pb)
    except BDError as e:
        out["bd_rate_error"] = str(e)
    return out


def _fmt(v, spec: str) -> str:
    return "–" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, spec)


def write_report(records: Sequence[dict], out: str | Path, *, images: Sequence[str],
                 targets: Sequence[float], codec_factory: Callable[[str], Codec] = get_codec
                 ) -> dict:
    """Aggregate ``records`` for ``images`` and ``targets``, write every report file, return the
    summary (also in ``summary.json``); ``summary["lines"]`` is a short text for the terminal."""
    out = Path(out)
    images = list(images)
    records = [r for r in records if r["image"] in set(images)]
    categories = {r["image"]: r["category"] for r in records}
    for i in images:
        categories.setdefault(i, "other")
    present = [n for n in CODECS if any(r["codec"] == n for r in records)]
    present += sorted({r["codec"] for r in records} - set(present))  # codecs tests invent
    codecs = {}
    for n in present:
        try:
            codecs[n] = codec_factory(n)
        except CodecError:  # a record of a codec this version does not know: left out
            continue
    groups = datasets(images, categories)

    curves: dict[str, dict[str, dict]] = {}
    for g, members in groups.items():
        curves[g] = {}
        for n, c in codecs.items():
            agg = aggregate(records, c, members, targets)
            doc = {"name": c.label or c.name, "codec": n, "description": c.description,
                   "kind": c.kind, "dataset": g, "images": members, "results": agg["results"],
                   "missing": agg["missing"], "notes": LPIPS_NOTE}
            curves[g][n] = doc
            atomic_write(out / "json" / g / f"{n}.json",
                         lambda tmp, doc=doc: tmp.write_text(json.dumps(doc, indent=1) + "\n"))

    bd: dict[str, dict[str, dict]] = {}
    for g in groups:
        anchor = curves[g].get(ANCHOR)
        bd[g] = {}
        if anchor is None or len(anchor["results"]["bpp"]) < 2:
            continue
        for n, doc in curves[g].items():
            if n != ANCHOR and doc["kind"] != "fixed" and len(doc["results"]["bpp"]) >= 2:
                bd[g][n] = _bd(anchor, doc)

    summary = {"images": images, "categories": categories, "targets": list(targets),
               "datasets": groups, "anchor": ANCHOR, "bd_psnr_range_bpp": list(BD_RANGE),
               "bd": bd, "imagegs_targets": _imagegs_targets(curves, bd), "notes": LPIPS_NOTE}
    table = markdown_table(curves, bd, targets)
    atomic_write(out / "table.md", lambda tmp: tmp.write_text(table))
    from .plot import plot_report

    summary["plots"] = [str(p.relative_to(out)) for p in plot_report(curves, out / "plots")]
    summary["lines"] = _terminal_lines(curves, bd, out)
    atomic_write(out / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary, indent=1) + "\n"))
    return summary


def _point_at(doc: dict, max_bpp: float) -> tuple[float, float] | None:
    """(bpp, PSNR) of the curve's best point with bpp <= max_bpp."""
    pts = [(b, p) for b, p in zip(doc["results"]["bpp"], doc["results"]["psnr-rgb"])
           if b <= max_bpp and p is not None]
    return max(pts, key=lambda x: x[1]) if pts else None


def _imagegs_targets(curves: dict, bd: dict) -> dict:
    """The issue's targets for imagegs, checked when imagegs is in the records."""
    all_ = curves.get("all", {})
    if "imagegs" not in all_:
        return {"status": "imagegs not in these records"}
    ig = all_["imagegs"]
    out: dict = {}
    for budget, ref in ((0.3, "astc-12x12"), (0.5, "bc1")):
        mine, theirs = _point_at(ig, budget), all_.get(ref)
        if mine is None or theirs is None or not theirs["results"]["psnr-rgb"]:
            out[f"{ref}_at_{budget}"] = {"status": "not measured"}
            continue
        ref_psnr = theirs["results"]["psnr-rgb"][0]
        out[f"{ref}_at_{budget}"] = {"imagegs_bpp": mine[0], "imagegs_psnr": mine[1],
                                     "reference_bpp": theirs["results"]["bpp"][0],
                                     "reference_psnr": ref_psnr, "met": bool(mine[1] >= ref_psnr)}
    styl = bd.get("stylised", {}).get("imagegs", {})
    if "bd_psnr_db" in styl:
        out["bd_psnr_vs_jpeg_stylised"] = {"db": styl["bd_psnr_db"], "range_bpp": styl["bd_psnr_range_bpp"],
                                           "met": bool(styl["bd_psnr_db"] >= 3.0)}
    return out


def markdown_table(curves: dict, bd: dict, targets: Sequence[float]) -> str:
    """The report as markdown: one PSNR table per dataset, texture formats, BD per category."""
    lines = ["# Rate-distortion benchmark", "",
             "PSNR-RGB (dB) of the 8-bit decoded images, mean over the images, at each target "
             "bpp; in brackets the mean *actual* bpp (whole files; <= the target for the codecs whose "
             "quality is searched, whatever its own rate control gave for imagegs). "
             "'–': the codec cannot go that low on at least one image (see the JSON's `missing`). "
             f"BD against {ANCHOR} (piecewise cubic): BD-PSNR over {BD_RANGE[0]}-{BD_RANGE[1]} bpp "
             "(the part both curves cover), BD-rate over the common PSNR range (negative = "
             f"smaller files). {LPIPS_NOTE}.", ""]
    for g, docs in curves.items():
        n_img = len(next(iter(docs.values()))["images"]) if docs else 0
        lines += [f"## {g} ({n_img} images)", ""]
        head = ["codec"] + [f"{t:g}" for t in targets] + ["BD-PSNR (dB)", "BD-rate"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for n, doc in docs.items():
            if doc["kind"] == "fixed":
                continue
            res = doc["results"]
            cells = [doc["name"]]
            for t in targets:
                if t in res["target_bpp"]:
                    k = res["target_bpp"].index(t)
                    cells.append(f"{_fmt(res['psnr-rgb'][k], '.2f')} ({res['bpp'][k]:.3f})")
                else:
                    cells.append("–")
            d = bd.get(g, {}).get(n, {})
            cells.append("anchor" if n == ANCHOR else _fmt(d.get("bd_psnr_db"), "+.2f"))
            cells.append("anchor" if n == ANCHOR else
                         (_fmt(d.get("bd_rate_percent"), "+.1f") + " %" if "bd_rate_percent" in d else "–"))
            lines.append("| " + " | ".join(cells) + " |")
        fixed = [d for d in docs.values() if d["kind"] == "fixed" and d["results"]["bpp"]]
        if fixed:
            lines += ["", "| texture format | bpp | PSNR (dB) | SSIM | MS-SSIM | FLIP | encode (s) | decode (s) |",
                      "|---|---|---|---|---|---|---|---|"]
            for d in fixed:
                r = {k: v[0] for k, v in d["results"].items()}
                lines.append(f"| {d['name']} | {r['bpp']:.3f} | {_fmt(r['psnr-rgb'], '.2f')} | "
                             f"{_fmt(r['ssim'], '.4f')} | {_fmt(r['ms-ssim'], '.4f')} | "
                             f"{_fmt(r['flip'], '.4f')} | {_fmt(r['encoding_time'], '.3f')} | "
                             f"{_fmt(r['decoding_time'], '.4f')} |")
        lines.append("")
    cats = [g for g in curves if g != "all"]
    if cats and any(bd.get(g) for g in cats):
        lines += [f"## BD-PSNR against {ANCHOR} by dataset ({BD_RANGE[0]}-{BD_RANGE[1]} bpp, dB)", ""]
        names = [n for n in curves["all"] if n != ANCHOR and curves["all"][n]["kind"] != "fixed"]
        lines += ["| codec | " + " | ".join(["all"] + cats) + " |", "|" + "---|" * (len(cats) + 2)]
        for n in names:
            cells = [curves["all"][n]["name"]]
            for g in ["all"] + cats:
                cells.append(_fmt(bd.get(g, {}).get(n, {}).get("bd_psnr_db"), "+.2f"))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _terminal_lines(curves: dict, bd: dict, out: Path) -> list[str]:
    lines = []
    for n, doc in curves.get("all", {}).items():
        res = doc["results"]
        pts = ", ".join(f"{b:.3f}:{_fmt(p, '.2f')}" for b, p in zip(res["bpp"], res["psnr-rgb"]))
        d = bd.get("all", {}).get(n, {})
        extra = f"  BD-PSNR {d['bd_psnr_db']:+.2f} dB" if "bd_psnr_db" in d else ""
        lines.append(f"{doc['name']:<12} bpp:PSNR {pts}{extra}")
    lines.append(f"report: {out / 'table.md'}")
    return lines
