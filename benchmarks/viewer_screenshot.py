"""The viewer's screenshot for the README (docs/viewer.png), taken in headless Chromium.

    python -m imagegs fit astronaut -o astronaut.gsm          # or any fitted model / .igs file
    python benchmarks/viewer_screenshot.py astronaut.gsm --original astronaut -o docs/viewer.png

A .gsm model is quantised (12,8,8,8 bits) and packed in 4 levels first. The page is served by
``imagegs.viewer.ViewerServer``; the shot shows the split against the original and the inspector at
one pixel.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

SWIFTSHADER = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]


def igs_file(model: Path, folder: Path) -> Path:
    """``model`` as an .igs file (a .gsm is quantised and packed in 4 levels)."""
    if model.suffix == ".igs":
        return model
    from imagegs import igsfile, load_model
    from imagegs.quantize import quantize

    g = load_model(model).gaussians
    levels = [g.num // 4 + (i < g.num % 4) for i in range(4)]
    data, _ = igsfile.pack(quantize(g, "12,8,8,8"), levels, top_k=10)
    out = folder / f"{model.stem}.igs"
    out.write_bytes(data)
    return out


def original_file(name: str, folder: Path) -> Path:
    """An image path, or a sample name ('astronaut') written to a PNG."""
    if Path(name).exists():
        return Path(name)
    from imagegs.io import read_source, write_image

    out = folder / f"{name}.png"
    write_image(read_source(name).pixels, out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", type=Path, help=".gsm or .igs file")
    ap.add_argument("--original", help="image file or sample name (e.g. astronaut)")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--size", default="1200x640", help="viewport WxH")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from imagegs.viewer import ViewerServer

    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        igs = igs_file(args.model, Path(tmp))
        orig = original_file(args.original, Path(tmp)) if args.original else None
        with ViewerServer([igs], original=orig) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=SWIFTSHADER)
            page = browser.new_page(viewport={"width": w, "height": h})
            page.goto(server.url)
            page.evaluate("() => window.viewer.ready")
            page.wait_for_timeout(500)
            if orig:
                page.evaluate("() => { const s = document.getElementById('split'); s.value = '0.3'; "
                              "s.dispatchEvent(new Event('input')); }")
            box = page.locator("#gl").bounding_box()
            page.mouse.move(box["x"] + 0.62 * box["width"], box["y"] + 0.4 * box["height"])
            page.evaluate("() => viewer.readPixels()")  # draw now, and wait for it
            page.wait_for_timeout(300)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            shot = page.screenshot()
            browser.close()
    from io import BytesIO

    from PIL import Image

    # 256 colours: a third of the bytes of the full-colour PNG, for a file kept in the repository
    Image.open(BytesIO(shot)).convert("RGB").quantize(256).save(args.output, optimize=True)
    print(args.output)


if __name__ == "__main__":
    main()
