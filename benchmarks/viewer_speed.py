"""Frame time of the browser viewer (imagegs view) at 1920x1080, in headless Chromium.

    python benchmarks/viewer_speed.py --json benchmarks/results/viewer_speed.json
    python benchmarks/viewer_speed.py --model fit.gsm --json ...   # a fitted model instead

The file: 10,000 Gaussians, 16-bit, top-K 10, 4 levels. By default they are random (seed 0) on a
1920x1080 native grid, standard deviations log-uniform in 1.5 .. 12 px (about a 10k fit's sizes at
that resolution); ``--model`` takes a fitted .gsm or .igs instead, shown zoomed to fill the canvas.
The page is the viewer's own (served by ``imagegs.viewer.ViewerServer``) with the canvas fixed at
--width x --height; each frame pans by one pixel (so the tile lists are rebuilt), draws and waits
for the GPU (a 1-pixel readPixels). Reported: the median of --frames frames after --warmup, and
the CPU part (projection, tile lists, texture uploads) of each; the page's decode of the file
(igs.js: parse, range decoder, dequantisation; median of 5); and, for comparison, the median
time of ``imagegs.decode`` (Numba, this machine's CPUs) of the same file at the same size.

Headless Chromium here renders WebGL with SwiftShader (Vulkan on the CPU) unless --gpu is given
(which passes Chromium's GPU flags instead, for a machine with a GPU): timings then measure the
CPU rasteriser, not a GPU. Say what else ran on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import torch

SWIFTSHADER = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]
GPU = ["--use-angle=vulkan", "--enable-features=Vulkan", "--ignore-gpu-blocklist", "--enable-gpu"]


def synthetic(n: int, width: int, height: int, seed: int = 0):
    """n random Gaussians on a width x height grid (a stand-in for a fit at that size)."""
    from imagegs import Gaussians

    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g)
    scale = torch.exp(math.log(1.5) + (math.log(12) - math.log(1.5)) * torch.rand(n, 2, generator=g))
    rot = torch.rand(n, generator=g) * math.pi
    color = torch.rand(n, 3, generator=g)
    return Gaussians(xy, scale, rot, color, height, width)


def igs_bytes(args) -> tuple[bytes, str]:
    """The .igs file to time and a description of it."""
    from imagegs import igsfile, load_model
    from imagegs.quantize import quantize

    if args.model and args.model.suffix == ".igs":
        return args.model.read_bytes(), f"{args.model.name}"
    g = load_model(args.model).gaussians if args.model else synthetic(args.gaussians, args.width, args.height)
    n = g.num
    levels = [n // 4 + (i < n % 4) for i in range(4)]
    data, _ = igsfile.pack(quantize(g, 16), levels, top_k=10)
    what = f"{args.model.name} ({n} Gaussians)" if args.model else \
        f"synthetic: {n} random Gaussians, {args.width}x{args.height}, seed 0"
    return data, what


def python_decode_ms(data: bytes, height: int, width: int, runs: int) -> float:
    """Median time of ``imagegs.decode`` (the Numba CPU renderer, all threads) of the same file
    at the same size, after a warm-up: the CPU baseline the browser's frame compares with."""
    import time

    from imagegs import codec

    codec.decode(data, height=height, width=width)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        codec.decode(data, height=height, width=width)
        times.append(1000 * (time.perf_counter() - t))
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, help="a fitted .gsm or .igs file (default: synthetic)")
    ap.add_argument("--gaussians", type=int, default=10_000)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--frames", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--gpu", action="store_true", help="Chromium's GPU flags instead of SwiftShader")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    from playwright.sync_api import sync_playwright

    from imagegs.viewer import ViewerServer

    data, what = igs_bytes(args)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.igs"
        path.write_bytes(data)
        flags = GPU if args.gpu else SWIFTSHADER
        with ViewerServer([path]) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=flags)
            page = browser.new_page(viewport={"width": args.width + 300, "height": args.height + 100})
            page.goto(server.url)
            page.evaluate("() => window.viewer.ready")
            header = page.evaluate("() => { const h = viewer.ui.model.header; return [h.width, h.height, "
                                   "viewer.ui.count, h.topK]; }")
            zoom = min(args.width / header[0], args.height / header[1])
            page.evaluate("([w, h, z]) => { viewer.setSize(w, h); viewer.setView(z, 0, 0); }",
                          [args.width, args.height, zoom])
            page.evaluate("(n) => viewer.timeFrames(n)", args.warmup)
            got = page.evaluate("(n) => viewer.timeFrames(n)", args.frames)
            renderer = page.evaluate("() => { const gl = document.createElement('canvas').getContext('webgl2');"
                                     " const e = gl.getExtension('WEBGL_debug_renderer_info');"
                                     " return e ? gl.getParameter(e.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER); }")
            decode_ms = page.evaluate("""async () => {
                const m = await import('./igs.js');
                const bytes = new Uint8Array(await (await fetch('files/0')).arrayBuffer());
                const t = [];
                for (let i = 0; i < 5; i++) { const t0 = performance.now(); m.decodeIGS(bytes);
                                              t.push(performance.now() - t0); }
                return t.sort((a, b) => a - b)[2]; }""")
            version = browser.version
            browser.close()
    med = statistics.median(got["frame"])
    python_ms = python_decode_ms(data, args.height, args.width, args.frames)
    result = {
        "what": "imagegs view: one frame (tile lists rebuilt, top-K blend, GPU finished) at "
                f"{args.width}x{args.height}",
        "file": what, "native": header[:2], "gaussians": header[2], "top_k": header[3], "zoom": zoom,
        "bytes": len(data), "canvas": [args.width, args.height], "frames": args.frames,
        "frame_ms_median": round(med, 1), "fps": round(1000 / med, 2),
        "frame_ms": [round(t, 1) for t in got["frame"]],
        "cpu_ms_median": round(statistics.median(got["cpu"]), 1),
        "tiles": got["tiles"], "tile_list_entries": got["listed"],
        "js_file_decode_ms_median": round(decode_ms, 1),
        "python_decode_ms_median": round(python_ms, 1),
        "webgl_renderer": renderer, "chromium": version, "flags": flags,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, shared with other work",
        "command": " ".join(["python benchmarks/viewer_speed.py", *sys.argv[1:]]),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        from imagegs.io import atomic_write

        text = json.dumps(result, indent=2) + "\n"
        atomic_write(args.json, lambda t: Path(t).write_text(text))


if __name__ == "__main__":
    main()
