"""Measure the Gaussian budget that restores a noisy image best: the data behind
``imagegs.restore.auto_budget``.

For each image (downscaled to --max-side), noise level and Gaussian count, fit the noisy image
and measure the PSNR of the 8-bit rendering against the clean original. One JSON line per fit in
benchmarks/results/restore/budget_sweep.jsonl (resumable: finished fits are skipped). Also records
the features a budget rule may use, measured on the noisy image alone (the estimated noise and
content measures), so that the rule can be fitted afterwards (--fit).

    NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python benchmarks/restore_budget.py [--shard 0/2]
    python benchmarks/restore_budget.py --fit     # the best count per case and the fitted rule
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from imagegs import fit, render
from imagegs.bench.rd import load_image
from imagegs.bench.restore import degrade
from imagegs.io import to_uint8
from imagegs.metrics import psnr

OUT = Path(__file__).parent / "results" / "restore" / "budget_sweep.jsonl"
IMAGES = ("skimage:astronaut", "skimage:chelsea", "skimage:coffee",
          "../shared/data/images/anime-club.png", "../shared/data/images/photo-ladybird.png")
SIGMAS = (10, 25, 50)
COUNTS = (250, 500, 1000, 2000, 4000, 8000)


def features(noisy: np.ndarray) -> dict:
    """What a rule may look at, from the noisy image only."""
    from imagegs.restoration import content_features, estimate_noise

    return {"sigma_est": estimate_noise(noisy), **content_features(noisy)}


def one(image: str, max_side: int, sigma: int, n: int, ssim_weight: float) -> dict:
    clean = load_image(image, max_side=max_side)
    noisy = degrade(clean, f"noise{sigma}", image=Path(image).stem)
    t = time.perf_counter()
    g = fit(noisy, num_gaussians=n, ssim_weight=ssim_weight)
    seconds = time.perf_counter() - t
    with torch.no_grad():
        out = to_uint8(render(g).clamp(0, 1))
    f64 = lambda a: a.astype(np.float64)
    return {"image": Path(image).stem.replace("skimage:", ""), "max_side": max_side, "sigma": sigma,
            "n": n, "ssim_weight": ssim_weight, "height": clean.shape[0], "width": clean.shape[1],
            "psnr": psnr(f64(out), f64(clean), data_range=255.0),
            "psnr_noisy": psnr(f64(noisy), f64(clean), data_range=255.0),
            "residual": float(np.sqrt(np.mean((f64(out) - f64(noisy)) ** 2))),
            "seconds": seconds, "cpu_threads": torch.get_num_threads(), **features(noisy)}


def key(r: dict) -> tuple:
    return r["image"], r["max_side"], r["sigma"], r["n"], r["ssim_weight"]


def load() -> list[dict]:
    if not OUT.exists():
        return []
    return [json.loads(x) for x in OUT.read_text().splitlines() if x.strip()]


def sweep(cases: list[tuple], shard: tuple[int, int]) -> None:
    done = {key(r) for r in load()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    for i, (image, side, sigma, n, sw) in enumerate(cases):
        k = (Path(image).stem.replace("skimage:", ""), side, sigma, n, sw)
        if i % shard[1] != shard[0] or k in done:
            continue
        rec = one(image, side, sigma, n, sw)
        print(json.dumps(rec), flush=True)
        with open(OUT, "a") as f:
            f.write(json.dumps(rec) + "\n")


def best_counts(records: list[dict], ssim_weight: float) -> list[dict]:
    """Per (image, size, sigma): the measured best count and the optimum of a parabola through the
    best point and its neighbours in log(count) (the best one when it is at an end of the grid)."""
    cases: dict[tuple, dict[int, dict]] = {}
    for r in records:
        if r["ssim_weight"] == ssim_weight:
            cases.setdefault((r["image"], r["max_side"], r["sigma"]), {})[r["n"]] = r  # a repeat: the last
    out = []
    for (image, side, sigma), by_n in sorted(cases.items()):
        rows = sorted(by_n.values(), key=lambda r: r["n"])
        i = max(range(len(rows)), key=lambda j: rows[j]["psnr"])
        n_opt = float(rows[i]["n"])
        if 0 < i < len(rows) - 1:
            x = np.log([rows[j]["n"] for j in (i - 1, i, i + 1)])
            a, b, _ = np.polyfit(x, [rows[j]["psnr"] for j in (i - 1, i, i + 1)], 2)
            if a < 0:
                n_opt = float(np.exp(np.clip(-b / (2 * a), x[0], x[2])))
        r = rows[i]
        out.append({"image": image, "max_side": side, "sigma": sigma, "pixels": r["height"] * r["width"],
                    "best_n": r["n"], "n_opt": n_opt, "best_psnr": r["psnr"], "psnr_noisy": r["psnr_noisy"],
                    "at_edge": i in (0, len(rows) - 1), "sigma_est": r["sigma_est"], "detail": r["detail"],
                    "grad": r["grad"], "curve": [(q["n"], round(q["psnr"], 3)) for q in rows]})
    return out


def psnr_at(curve: list, n: float) -> float:
    """PSNR at count n, linear in log(n) between the measured counts (clamped to the grid)."""
    ns, ps = zip(*curve)
    return float(np.interp(np.log(n), np.log(ns), ps))


def fit_rule(ssim_weight: float) -> dict:
    """Least squares: log(n_opt / pixels) = A + B log(sigma_est) + C log(detail), over the cases
    whose optimum is inside the grid; and what the rule costs against the best count."""
    cases = best_counts(load(), ssim_weight)
    inner = [c for c in cases if not c["at_edge"]]
    X = np.array([[1.0, math.log(c["sigma_est"]), math.log(c["detail"])] for c in inner])
    y = np.array([math.log(c["n_opt"] / c["pixels"]) for c in inner])
    coef, *_ = np.linalg.lstsq(X, y, rcond=None)
    rows = []
    for c in cases:
        n = c["pixels"] * math.exp(coef[0] + coef[1] * math.log(c["sigma_est"]) + coef[2] * math.log(c["detail"]))
        rows.append({**{k: c[k] for k in ("image", "max_side", "sigma", "best_n", "at_edge")},
                     "n_opt": round(c["n_opt"]), "n_rule": round(n), "psnr_best": round(c["best_psnr"], 3),
                     "psnr_rule": round(psnr_at(c["curve"], n), 3), "psnr_noisy": round(c["psnr_noisy"], 3)})
    result = {"ssim_weight": ssim_weight, "coefficients": {"A": float(coef[0]), "B": float(coef[1]), "C": float(coef[2])},
              "fitted_on": len(inner), "cases": rows,
              "mean_loss_db": float(np.mean([r["psnr_best"] - r["psnr_rule"] for r in rows]))}
    OUT.with_name("budget_rule.json").write_text(json.dumps(result, indent=1) + "\n")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shard", default="0/1", help="i/n: run every n-th case from the i-th")
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--images", default=",".join(IMAGES))
    ap.add_argument("--sigmas", default=",".join(map(str, SIGMAS)))
    ap.add_argument("--counts", default=",".join(map(str, COUNTS)))
    ap.add_argument("--ssim-weight", type=float, default=0.1)
    ap.add_argument("--fit", action="store_true", help="fit the rule to the records, write budget_rule.json")
    args = ap.parse_args()
    os.chdir(Path(__file__).resolve().parents[1])
    if args.fit:
        result = fit_rule(args.ssim_weight)
        for r in result["cases"]:
            print(r)
        print(result["coefficients"], f"fitted on {result['fitted_on']} cases, "
              f"mean loss against the best count {result['mean_loss_db']:.3f} dB")
        return
    i, n = (int(v) for v in args.shard.split("/"))
    cases = [(im, args.max_side, int(s), int(c), args.ssim_weight) for s in args.sigmas.split(",")
             for im in args.images.split(",") for c in args.counts.split(",")]
    sweep(cases, (i, n))


if __name__ == "__main__":
    main()
