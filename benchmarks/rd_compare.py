"""Two imagegs RD runs side by side: mean PSNR and encode seconds per rate, and per image.

    python benchmarks/rd_compare.py benchmarks/results/rd benchmarks/results/rd-c2f-probe

Prints markdown: for each run the mean PSNR over the images both runs have at every rate, the
median encode seconds per rate (as each run's records hold them: wall time of the one encode,
under that run's own worker setup) and their sum; then, per image, the second run minus the first.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def imagegs_records(folder: Path) -> dict:
    out = {}
    for line in (folder / "records.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["codec"] == "imagegs":
            out[(r["image"], r["target_bpp"])] = r
    return out


def main(argv: list[str]) -> None:
    a, b = (Path(p) for p in argv[:2])
    ra, rb = imagegs_records(a), imagegs_records(b)
    rates = sorted({k[1] for k in ra} & {k[1] for k in rb})
    images = sorted(im for im in {k[0] for k in rb} if all((im, t) in ra and (im, t) in rb for t in rates))
    print(f"{len(images)} images: {', '.join(images)}\n")
    print("| run | " + " | ".join(f"{t:g}" for t in rates) + " | sum of encode s |")
    print("|---|" + "---|" * (len(rates) + 1))
    for name, recs in ((a.name, ra), (b.name, rb)):
        psnr = [statistics.mean(recs[(im, t)]["psnr-rgb"] for im in images) for t in rates]
        secs = [statistics.median(recs[(im, t)]["encode_s"] for im in images) for t in rates]
        total = sum(recs[(im, t)]["encode_s"] for im in images for t in rates)
        print(f"| {name}: mean PSNR (dB) | " + " | ".join(f"{p:.2f}" for p in psnr) + " | |")
        print(f"| {name}: median encode s | " + " | ".join(f"{s:.0f}" for s in secs) + f" | {total:.0f} |")
    print(f"\nPer image, {b.name} minus {a.name} (dB):\n")
    print("| image | " + " | ".join(f"{t:g}" for t in rates) + " |")
    print("|---|" + "---|" * len(rates))
    for im in images:
        print(f"| {im} | " + " | ".join(f"{rb[(im, t)]['psnr-rgb'] - ra[(im, t)]['psnr-rgb']:+.2f}" for t in rates) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
