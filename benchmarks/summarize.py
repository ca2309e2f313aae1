"""Print the README's "Measured" tables from benchmarks/results/*.json (markdown)."""

from __future__ import annotations

import json
from pathlib import Path

R = Path(__file__).parent / "results"


def _load(name: str):
    p = R / name
    return json.loads(p.read_text()) if p.exists() else None


def main() -> None:
    sp = {k: _load(f"speed_{k}.json") for k in ("512_cpu", "512_reference", "2048_cpu")}
    if all(sp.values()):
        cpu, ref, big = sp["512_cpu"], sp["512_reference"], sp["2048_cpu"]
        print("| speed (10k Gaussians, K = 10, medians) | full step (ms) | forward (ms) |\n|---|---|---|")
        print(f"| 512x512, cpu backend | {cpu['median_ms_step']:.1f} | {cpu['median_ms_forward']:.1f} |")
        print(f"| 512x512, reference backend | {ref['median_ms_step']:.0f} | {ref['median_ms_forward']:.0f} |")
        print(f"| 2048x2048, cpu backend | {big['median_ms_step']:.0f} | {big['median_ms_forward']:.0f} |")
        print(f"\nreference / cpu: {ref['median_ms_step'] / cpu['median_ms_step']:.0f}x per step, "
              f"{ref['median_ms_forward'] / cpu['median_ms_forward']:.0f}x per forward.\n")
    sc = _load("schedule_astronaut.json")
    if sc:
        print("| astronaut 512x512, 10k Gaussians | steps | wall (s) | PSNR 8-bit (dB) | SSIM | PSNR after 30 s | after 60 s |\n|---|---|---|---|---|---|---|")
        for r in sc["runs"]:
            def at(t):
                done = [h["psnr"] for h in r["history"] if h["seconds"] <= t]
                return f"{done[-1]:.2f}" if done else "-"
            print(f"| {r['schedule']} | {r['steps']} | {r['seconds']:.1f} | {r['psnr8']:.2f} | {r['ssim8']:.4f} | {at(30)} | {at(60)} |")
        print()
    f2 = _load("fit_2048.json")
    if f2:
        print(f"2048x2048 fit (default settings, CLI): {f2['wall_seconds']:.0f} s wall, peak RSS "
              f"{f2['peak_rss_mb']} MB; {f2['summary'].get('PSNR', '')}.\n")
    im = _load("fit_images.json")
    if im:
        print("| image | size | steps | time (s) | PSNR (dB) | SSIM |\n|---|---|---|---|---|---|")
        for r in im["images"]:
            print(f"| {r['image']} | {r['width']}x{r['height']} | {r['steps']} | {r['seconds']:.1f} | {r['psnr']:.2f} | {r['ssim']:.4f} |")
        m = im["median"]
        print(f"| **median** | | {m['steps']:.0f} | {m['seconds']:.1f} | {m['psnr']:.2f} | {m['ssim']:.4f} |")


if __name__ == "__main__":
    main()
