"""RD plots (matplotlib, PNG) from the report's curves: PSNR and MS-SSIM against bpp.

Curves for the codecs with a quality knob, single markers for the fixed-rate texture formats,
log-scaled bpp so that 0.05 bpp and BC7's 8 bpp fit on one axis. imagegs, when present, is
drawn thick and on top. One figure per metric for all images (the headline) and one with a
panel per dataset (stylised and each category).
"""

from __future__ import annotations

from pathlib import Path

from ..io import atomic_write

__all__ = ["plot_report", "plot_panel", "log_rate_axis"]

METRIC_LABELS = {"psnr-rgb": "PSNR-RGB (dB)", "ms-ssim": "MS-SSIM"}
_MARKERS = {"bc1": "s", "bc7": "D"}


def _matplotlib():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def plot_panel(ax, docs: dict, metric: str, title: str) -> None:
    """Draw one dataset's curves (``{codec: report JSON}``) for ``metric`` on ``ax``."""
    line_i = 0
    for n, doc in docs.items():
        res = doc["results"]
        pts = [(b, v) for b, v in zip(res["bpp"], res.get(metric, [])) if v is not None]
        if not pts:
            continue
        xs, ys = zip(*pts)
        if doc["kind"] == "fixed":
            marker = _MARKERS.get(n, "^")
            ax.scatter(xs, ys, marker=marker, s=36, color="0.35", zorder=3)
            ax.annotate(doc["name"], (xs[0], ys[0]), textcoords="offset points", xytext=(4, -10),
                        fontsize=7, color="0.25")
        elif n == "imagegs":
            ax.plot(xs, ys, "o-", color="crimson", lw=2.6, ms=6, label=doc["name"], zorder=5)
        else:
            ax.plot(xs, ys, "o-", color=f"C{line_i}", lw=1.4, ms=4, label=doc["name"], zorder=4)
            line_i += 1
    log_rate_axis(ax, [0.05, 0.1, 0.2, 0.5, 1, 2, 4, 8], "bits per pixel (whole file)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(title)


def log_rate_axis(ax, ticks: list[float], label: str) -> None:
    """A log-scaled rate axis with plain-number ticks at ``ticks`` and a grid."""
    import matplotlib.ticker as mticker

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(mticker.FixedLocator(ticks))
    ax.xaxis.set_major_formatter(mticker.FixedFormatter([f"{t:g}" for t in ticks]))
    ax.xaxis.set_minor_locator(mticker.NullLocator())
    ax.set_xlabel(label)
    ax.grid(True, which="major", alpha=0.3)


def _legend(ax, size: int) -> None:
    if ax.get_legend_handles_labels()[0]:  # no curve (e.g. MS-SSIM of small images): no legend
        ax.legend(fontsize=size, loc="upper left")


def _save(fig, path: Path) -> Path:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    return path


def plot_report(curves: dict[str, dict[str, dict]], folder: Path) -> list[Path]:
    """Write ``rd_<metric>_all.png`` and ``rd_<metric>_datasets.png``; returns the paths."""
    plt = _matplotlib()
    written = []
    for metric, short in (("psnr-rgb", "psnr"), ("ms-ssim", "msssim")):
        if "all" in curves:
            n = len(next(iter(curves["all"].values()))["images"]) if curves["all"] else 0
            fig, ax = plt.subplots(figsize=(7.5, 5.2))
            plot_panel(ax, curves["all"], metric, f"All images ({n})")
            _legend(ax, 8)
            written.append(_save(fig, folder / f"rd_{short}_all.png"))
            plt.close(fig)
        others = [g for g in curves if g != "all"]
        if others:
            cols = min(3, len(others))
            rows = -(-len(others) // cols)
            fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 4.0 * rows), squeeze=False)
            for ax, g in zip(axes.flat, others):
                n = len(next(iter(curves[g].values()))["images"]) if curves[g] else 0
                plot_panel(ax, curves[g], metric, f"{g} ({n})")
            for ax in list(axes.flat)[len(others):]:
                ax.set_visible(False)
            _legend(axes.flat[0], 7)
            fig.tight_layout()
            written.append(_save(fig, folder / f"rd_{short}_datasets.png"))
            plt.close(fig)
    return written
