"""PSNR against encode time, old and new encoders, from benchmarks/encoder_speed.py's records.

One panel per image size; per (encoder, image) a line through its rates, labelled by bpp. An
encoder is a variant at a commit (e.g. "quality @ 8382382", "default @ acc5d7b"). Time is CPU
seconds of one thread (the records' ``cpu_s``): on this shared machine, wall time drifts with the
load, CPU time much less. Also prints the table behind the plot.

    python benchmarks/encoder_plot.py benchmarks/results/encoder/speed_table.jsonl \\
        --png docs/img/encoder_speed.png --names 8382382=before 7341207=after 8a2aba7=after
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path


def load(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


NAMES: dict[str, str] = {}  # commit -> name (--names), for commits with the same encoder code


def encoder(r: dict) -> str:
    commit = r.get("commit", "?")
    return f"{r['variant']} @ {NAMES.get(commit, commit)}"


def table(recs: list[dict]) -> str:
    """Markdown: per (size, rate or count, encoder) the mean PSNR, median CPU and wall seconds."""
    groups: dict = defaultdict(list)
    for r in recs:
        groups[(r["side"], r.get("count") or r["target_bpp"], encoder(r))].append(r)
    lines = ["| size | bpp / Gaussians | encoder | images | mean PSNR (dB) | median CPU s | median wall s |",
             "|---|---|---|---|---|---|---|"]
    for (side, rate, enc), rs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        lines.append(f"| {side} | {rate:g} | {enc} | {len(rs)} | {statistics.mean(r['psnr'] for r in rs):.2f} | "
                     f"{statistics.median(r['cpu_s'] for r in rs):.1f} | {statistics.median(r['wall_s'] for r in rs):.1f} |")
    return "\n".join(lines)


def plot(recs: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sides = sorted({r["side"] for r in recs if not r.get("count")})
    fig, axes = plt.subplots(1, len(sides), figsize=(6 * len(sides), 4.5), squeeze=False)
    encoders = sorted({encoder(r) for r in recs})
    colours = {e: f"C{i}" for i, e in enumerate(encoders)}
    images = sorted({r["image"] for r in recs})
    markers = dict(zip(images, "os^Dv<>"))
    for ax, side in zip(axes[0], sides):
        for e in encoders:
            for im in images:
                rs = sorted((r for r in recs if r["side"] == side and encoder(r) == e and r["image"] == im
                             and not r.get("count")), key=lambda r: r["target_bpp"])
                if not rs:
                    continue
                ax.plot([r["cpu_s"] for r in rs], [r["psnr"] for r in rs], marker=markers[im], color=colours[e],
                        label=f"{e}, {im}")
                for r in rs:
                    ax.annotate(f"{r['target_bpp']:g}", (r["cpu_s"], r["psnr"]), fontsize=7,
                                textcoords="offset points", xytext=(4, -8))
        ax.set_xscale("log")
        ax.set_xlabel("encode time, CPU seconds of one thread (log)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"{side} px: PSNR against encode time (labels: bpp)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("records", type=Path)
    ap.add_argument("--png", type=Path)
    ap.add_argument("--names", nargs="*", default=[], metavar="COMMIT=NAME",
                    help="name the code of these commits (several commits with the same encoder code "
                         "may share a name)")
    a = ap.parse_args(argv)
    NAMES.update(n.split("=", 1) for n in a.names)
    recs = load(a.records)
    print(table(recs))
    if a.png:
        plot(recs, a.png)
        print(f"wrote {a.png}")


if __name__ == "__main__":
    main()
