"""The browser viewer, in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

WebGL runs on SwiftShader (the CPU), so these check correctness, not speed; the images are small.
One browser serves the whole module. Without chromium or Playwright the tests FAIL (CI installs
both), they never skip.
"""

from __future__ import annotations

import base64
import shutil

import numpy as np
import pytest

import imagegs
from imagegs import codec

H, W = 40, 56  # not multiples of the 16-pixel tile: the edge tiles are partial
BROWSER_ARGS = ["--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"]


def _image(channels: int, seed: int = 0) -> np.ndarray:
    """A smooth (H, W, channels) test image in [0, 1]: astronaut crops, plus shifted copies."""
    from skimage import data, transform

    base = transform.resize(data.astronaut()[60:260, 160:440], (H, W), anti_aliasing=True)
    planes = [np.roll(base, 7 * i, axis=1)[:, :, i % 3] for i in range(channels)]
    return np.ascontiguousarray(np.stack(planes, axis=2), dtype=np.float32)


def _encode(channels: int, **options) -> bytes:
    fit = dict(num_gaussians=160, max_steps=40, add_steps=(10, 20, 30), polish_steps=0)
    return codec.compress(_image(channels), **fit, **options).data


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Small .igs files made by ``codec.compress``: RGB (K = 10), grey (16-bit: raw bits in the
    coder; K = 0, the whole tile), a 5-channel stack with names and groups (K = 5); each in 4
    levels of detail."""
    folder = tmp_path_factory.mktemp("igs")
    made = {
        "rgb": _encode(3, bits="12,8,8,8"),
        "grey": _encode(1, bits=16, top_k=None, metadata={"bit_depths": [16]}),  # K = the whole tile
        "stack": _encode(5, top_k=5, channel_names=("R", "G", "B", "rough", "metal"),
                         groups=[("albedo", 3), ("pbr", 2)]),
    }
    out = {}
    for name, data in made.items():
        path = folder / f"{name}.igs"
        path.write_bytes(data)
        out[name] = path
    return out


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("the viewer tests need Debian's chromium: apt-get install -y chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the viewer tests need Playwright for Python: pip install playwright (the 'test' extra)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(files):
    from imagegs.viewer import ViewerServer

    with ViewerServer([files["rgb"], files["grey"], files["stack"]]) as s:
        yield s


@pytest.fixture
def page(browser):
    pg = browser.new_page(viewport={"width": 400, "height": 300})
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    pg.close()
    assert not errors, errors


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


JS_DECODE = """async ([b64, lod]) => {
    const m = await import('./igs.js');
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    try {
        const g = m.decodeIGS(bytes, {lod});
        const h = g.header;
        return {num: g.num, xy: Array.from(g.xy), scale: Array.from(g.scale), rot: Array.from(g.rot),
                color: Array.from(g.color), width: h.width, height: h.height, channels: h.channels,
                topK: h.topK, levels: h.levels, names: h.namesStored ? h.channelNames : null,
                groups: h.groups, metadata: h.metadata};
    } catch (e) {
        return {error: e.name + ': ' + e.message};
    }
}"""


def _js_decode(page, server, data: bytes, lod: int | None = None) -> dict:
    if page.url != server.url:
        page.goto(server.url)
    return page.evaluate(JS_DECODE, [_b64(data), lod])


# -- 1. the decoder --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rgb", "grey", "stack"])
def test_js_decoder_gives_the_gaussians_of_decode_gaussians(page, server, files, name):
    data = files[name].read_bytes()
    header = codec.read_igs_header(data)
    assert len(header.levels) == 4
    for lod in (None, 2):
        js = _js_decode(page, server, data, lod)
        assert "error" not in js, js
        g = codec.decode_gaussians(data, lod=lod)
        n, c = g.num, g.channels
        assert js["num"] == n and js["channels"] == c
        # the arithmetic is float32 throughout: bit-identical, but for exp (1 ulp between libms)
        np.testing.assert_array_equal(np.float32(js["xy"]).reshape(n, 2), g.xy.numpy())
        np.testing.assert_array_equal(np.float32(js["rot"]), g.rot.numpy())
        np.testing.assert_array_equal(np.float32(js["color"]).reshape(n, c), g.color.numpy())
        np.testing.assert_allclose(np.float32(js["scale"]).reshape(n, 2), g.scale.numpy(), rtol=2.5e-7, atol=0)
    assert (js["width"], js["height"], js["topK"], js["levels"]) == (W, H, header.top_k or 0, header.levels)
    assert js["names"] == (list(header.channel_names) if header.channel_names else None)
    assert js["groups"] == ([list(x) for x in header.groups] if header.groups else None)
    assert js["metadata"] == header.metadata


def test_js_decoder_errors_read_as_pythons(page, server, files):
    from imagegs.igsfile import IGSFileError

    data = files["rgb"].read_bytes()
    header = codec.read_igs_header(data)
    cut_in_level_3 = header.header_bytes + sum(header.block_bytes[:2]) + 9
    flipped = bytearray(data)
    flipped[header.header_bytes + 10] ^= 0x40
    cases = {"truncated": data[:cut_in_level_3], "CRC": bytes(flipped), "magic": b"GIF89a" + data[6:],
             "trailing": data + b"\0", "header": data[:20]}
    for what, bad in cases.items():
        with pytest.raises(IGSFileError) as py:
            codec.decode_gaussians(bad)
        js = _js_decode(page, server, bad)
        assert js.get("error") == f"IGSFileError: {py.value}", what
    # a file cut after level 2 still decodes with lod <= 2, as in Python
    js = _js_decode(page, server, data[:cut_in_level_3], 2)
    assert js.get("num") == sum(header.levels[:2]), js


# -- 2. the WebGL2 renderer -------------------------------------------------------------------------

def _open(page, url, file_index: int = 0):
    page.goto(url)
    page.evaluate("() => window.viewer.ready")
    if file_index:
        page.evaluate("(i) => window.viewer.openFile(i)", file_index)


def _slide(page, slider: str, value: float) -> None:
    """Move the page's range input ``slider`` to ``value`` as a user would (an input event)."""
    page.evaluate("([id, v]) => { const s = document.getElementById(id); s.value = String(v); "
                  "s.dispatchEvent(new Event('input')); }", [slider, value])


def _canvas(page, zoom: float, w: int, h: int, ox: int = 0, oy: int = 0) -> np.ndarray:
    """The canvas (h, w, 3) uint8 showing the image at ``zoom`` from virtual pixel (ox, oy)."""
    b64 = page.evaluate("([z, w, h, ox, oy]) => { viewer.setSize(w, h); viewer.setView(z, ox, oy); "
                        "return viewer.readPixels(); }", [zoom, w, h, ox, oy])
    return np.frombuffer(base64.b64decode(b64), np.uint8).reshape(h, w, 4)[:, :, :3]


def _compare(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """Mean absolute difference (8-bit levels) and PSNR (dB) between two uint8 images."""
    d = got.astype(np.float64) - want.astype(np.float64)
    mse = float((d ** 2).mean())
    return float(np.abs(d).mean()), (float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse))


def _expected(data: bytes, h: int, w: int, lod: int | None = None) -> np.ndarray:
    """``imagegs decode`` of the file at h x w, as RGB (grey repeated)."""
    img = codec.decode(data, height=h, width=w, lod=lod)
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[:, :, :3]


@pytest.mark.parametrize("name, index", [("rgb", 0), ("grey", 1)])
def test_canvas_at_native_size_is_imagegs_decode(page, server, files, name, index):
    _open(page, server.url, index)
    got = _canvas(page, 1.0, W, H)
    mad, psnr = _compare(got, _expected(files[name].read_bytes(), H, W))
    assert mad <= 0.5 and psnr >= 45, (mad, psnr)


@pytest.mark.parametrize("zoom", [2.0, 0.25])
def test_canvas_zoomed_is_pythons_render_at_that_size(page, server, files, zoom):
    """2x (tiles of the 2x grid) and 1/4 (anti-aliased: 4 x 4 sub-samples) against ``decode``."""
    _open(page, server.url)
    h, w = round(H * zoom), round(W * zoom)
    got = _canvas(page, zoom, w, h)
    mad, psnr = _compare(got, _expected(files["rgb"].read_bytes(), h, w))
    assert mad <= 0.5 and psnr >= 45, (mad, psnr)


def test_canvas_panned_shows_the_same_pixels(page, server, files):
    """A window of the 2x image, offset by a pan: that crop of Python's 2x render; outside the
    image, the background."""
    _open(page, server.url)
    got = _canvas(page, 2.0, 64, 48, ox=40, oy=-8)
    want = _expected(files["rgb"].read_bytes(), 2 * H, 2 * W)[0:40, 40:104]
    mad, psnr = _compare(got[8:], want)
    assert mad <= 0.5 and psnr >= 45, (mad, psnr)
    assert got[:8].max() < 60  # the dark checkerboard above the image


def test_lod_slider_shows_the_level_of_decode_lod(page, server, files):
    _open(page, server.url)
    data = files["rgb"].read_bytes()
    for lod in (1, 2, 3):
        _slide(page, "lod", lod)
        got = _canvas(page, 1.0, W, H)
        mad, psnr = _compare(got, _expected(data, H, W, lod=lod))
        assert mad <= 0.5 and psnr >= 45, (lod, mad, psnr)
        assert page.inner_text("#lod-text").strip().startswith(f"{lod} / 4")


@pytest.mark.parametrize("zoom", [1.0, 0.25, 2.0])
def test_inspector_is_decode_pixels(page, server, files, zoom):
    import imagegs

    _open(page, server.url, 2)  # the 5-channel stack, K = 5
    data = files["stack"].read_bytes()
    g = codec.decode_gaussians(data)
    h, w = round(H * zoom), round(W * zoom)
    page.evaluate("([z, w, h]) => { viewer.setSize(w, h); viewer.setView(z, 0, 0); }", [zoom, w, h])
    pixels = [(0, 0), (w - 1, h - 1), (w // 2, h // 3), (w // 3, h - 2)]
    for px, py in pixels:
        got = page.evaluate("([x, y]) => viewer.inspect(x, y)", [px, py])
        xy = np.array([[(px + 0.5) / w, (py + 0.5) / h]])
        want = imagegs.decode_pixels(g, xy, height=h, width=w, top_k=5)[0].numpy()
        np.testing.assert_allclose(got["value"], want, atol=2e-5)
        assert 1 <= len({x["id"] for x in got["gaussians"]}) <= 5 * 16
    text = page.inner_text("#inspector")
    assert "rough:" in text and "Gaussians blended" in text


def test_a_truncated_file_shows_the_error_text(browser, files, tmp_path):
    from imagegs.viewer import ViewerServer

    data = files["rgb"].read_bytes()
    header = codec.read_igs_header(data)
    cut1, cut3 = tmp_path / "cut1.igs", tmp_path / "cut3.igs"
    cut1.write_bytes(data[:header.header_bytes + 7])  # inside level 1: nothing to show
    cut3.write_bytes(data[:header.header_bytes + sum(header.block_bytes[:2]) + 9])  # inside level 3
    page = browser.new_page()
    try:
        with ViewerServer([cut1, cut3]) as s:
            _open(page, s.url)
            assert page.is_visible("#error") and not page.is_visible("#gl")
            assert "cut1.igs: truncated file: 0 of 4 levels complete" in page.inner_text("#error")
            page.evaluate("() => viewer.openFile(1)")
            assert "truncated file: 2 of 4 levels complete" in page.inner_text("#warning")
            assert page.is_visible("#gl") and not page.is_visible("#error")
            got = _canvas(page, 1.0, W, H)  # the two complete levels, as decode --lod 2
            mad, psnr = _compare(got, _expected(data, H, W, lod=2))
            assert mad <= 0.5 and psnr >= 45, (mad, psnr)
    finally:
        page.close()


def test_exported_page_works_from_file_url(browser, files, tmp_path):
    from PIL import Image as PILImage

    from imagegs.viewer import export_page

    original = tmp_path / "original.png"
    pixels = np.round(_image(3) * 255).astype(np.uint8)
    PILImage.fromarray(pixels).save(original)
    out = export_page([files["rgb"], files["grey"]], tmp_path / "page.html", original=original)
    page = browser.new_page()
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        _open(page, out.as_uri())
        assert page.evaluate("() => viewer.error") is None
        got = _canvas(page, 1.0, W, H)
        mad, psnr = _compare(got, _expected(files["rgb"].read_bytes(), H, W))
        assert mad <= 0.5 and psnr >= 45, (mad, psnr)
        page.check("#original")  # the toggle: the original, pixel for pixel at 1:1
        np.testing.assert_array_equal(_canvas(page, 1.0, W, H), pixels)
        page.uncheck("#original")
        _slide(page, "split", 0.5)
        split = _canvas(page, 1.0, W, H)
        np.testing.assert_array_equal(split[:, :W // 2], pixels[:, :W // 2])
        np.testing.assert_array_equal(split[:, W // 2:], got[:, W // 2:])
        _slide(page, "split", 0)
        page.evaluate("() => viewer.openFile(1)")
        assert _compare(_canvas(page, 1.0, W, H), _expected(files["grey"].read_bytes(), H, W))[0] <= 0.5
    finally:
        page.close()
    assert not errors, errors


# -- 3. the server and the command ------------------------------------------------------------------

def _get(url: str, host: str | None = None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, headers={"Host": host} if host else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, b""


def test_server_serves_its_assets_and_the_files_only(files):
    import json
    import urllib.error

    from imagegs.viewer import ViewerServer, asset

    s = ViewerServer([files["rgb"]]).start()
    try:
        assert s.url.startswith("http://127.0.0.1:")
        assert _get(s.url) == (200, asset("index.html"))
        assert _get(s.url + "igs.js") == (200, asset("igs.js"))
        status, body = _get(s.url + "manifest.json")
        assert status == 200 and json.loads(body)["files"][0]["name"] == "rgb.igs"
        assert _get(s.url + "files/0") == (200, files["rgb"].read_bytes())
        for path in ("files/1", "original", "__init__.py", "../__init__.py", "%2e%2e/pyproject.toml", "etc/passwd"):
            assert _get(s.url + path)[0] == 404, path
        assert _get(s.url, host="evil.example:80")[0] == 403  # DNS rebinding
    finally:
        s.stop()
    with pytest.raises(urllib.error.URLError):
        _get(s.url)


def test_view_command_serves_until_interrupted(files):
    import os
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "imagegs", "view", str(files["rgb"]), "--port", "0",
                             "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ))
    try:
        line = proc.stdout.readline()
        assert line.startswith("viewer on http://127.0.0.1:"), line
        url = line.split()[2]
        assert _get(url + "files/0") == (200, files["rgb"].read_bytes())
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 130
    finally:
        if proc.poll() is None:
            proc.kill()


def test_view_command_errors_name_the_file(tmp_path, files, capsys):
    from imagegs.cli import main

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["view", str(text), "--no-browser"]) == 2
    assert capsys.readouterr().err.strip() == f"imagegs: error: {text}: not an .igs file"
    model = imagegs.save_model(imagegs.decode_gaussians(files["rgb"]), tmp_path / "m.gsm")
    assert main(["view", str(model), "--no-browser"]) == 2
    assert "m.gsm: not an .igs file; it is a model file (.gsm): make an .igs with 'imagegs encode'" in \
        capsys.readouterr().err
    assert main(["view", str(files["rgb"]), "--original", str(text), "--export", str(tmp_path / "p.html")]) == 2
    assert "notes.txt: not an image" in capsys.readouterr().err
    assert not (tmp_path / "p.html").exists()
    assert main(["view", str(files["rgb"]), "--export", str(tmp_path / "p.html")]) == 0
    assert "p.html" in capsys.readouterr().out


def test_readouts_and_ellipse_overlay(page, server, files):
    data = files["rgb"].read_bytes()
    header = codec.read_igs_header(data)
    _open(page, server.url)
    _canvas(page, 1.0, W, H)
    rows = dict(page.evaluate("() => Array.from(document.querySelectorAll('#readouts tr'), "
                              "(tr) => [tr.dataset.key, tr.children[1].textContent])"))
    assert rows["Gaussians"] == f"{header.num:,} of {header.num:,}"
    assert rows["bytes"] == f"{len(data):,}"
    assert rows["bpp"] == f"{8 * len(data) / (W * H):.4f}"
    assert rows["frame"].endswith(" ms")
    _slide(page, "lod", 2)
    _canvas(page, 1.0, W, H)
    rows = dict(page.evaluate("() => Array.from(document.querySelectorAll('#readouts tr'), "
                              "(tr) => [tr.dataset.key, tr.children[1].textContent])"))
    prefix = header.header_bytes + sum(header.block_bytes[:2])  # the bytes a progressive download needs
    assert rows["bytes"] == f"{prefix:,} of {len(data):,}"
    assert rows["Gaussians"] == f"{sum(header.levels[:2]):,} of {header.num:,}"
    ink = "() => { const c = document.getElementById('overlay'); const d = c.getContext('2d')" \
          ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) " \
          "n += d[i] > 0; return n; }"
    assert page.evaluate(ink) == 0
    page.check("#ellipses")
    _canvas(page, 1.0, W, H)
    assert page.evaluate(ink) > 0.05 * W * H  # the level-2 ellipses cover the image


# -- the facts the JavaScript repeats ----------------------------------------------------------------

def _js_constants(name: str) -> dict[str, float]:
    import re

    from imagegs.viewer import asset

    out = {}
    for key, base, power in re.findall(r"\b([A-Z][A-Z_]+) = ([0-9.e+-]+)(?: \*\* (\d+))?[;,]",
                                       asset(name).decode()):
        out[key] = float(base) ** int(power) if power else float(base)
    return out


def test_the_javascript_constants_are_pythons():
    """JS cannot import the Python homes of these facts: this test is their link."""
    from imagegs import defaults, igsfile, rangecoder
    from imagegs.renderer import FILTER_SIGMA, SUPERSAMPLE, TILE
    from imagegs.renderer.constants import SIGMA_RADIUS

    r = _js_constants("render.js")
    assert (r["TILE"], r["SIGMA_RADIUS"], r["FILTER_SIGMA"], r["SUPERSAMPLE"], r["BLEND_EPS"], r["MAX_K"]) == (
        TILE, SIGMA_RADIUS, FILTER_SIGMA, SUPERSAMPLE, defaults.BLEND_EPS, defaults.MAX_TOP_K)
    d = _js_constants("igs.js")
    assert (d["MAX_SIDE"], d["MAX_CHANNELS"], d["MAX_LEVELS"], d["MAX_GAUSSIANS"], d["MAX_HEADER"]) == (
        igsfile.MAX_SIDE, igsfile.MAX_CHANNELS, igsfile.MAX_LEVELS, igsfile.MAX_GAUSSIANS, igsfile.MAX_HEADER)
    assert (d["MAX_TOP_K"], d["VERSION"], d["RANGE_CODER"]) == (defaults.MAX_TOP_K, igsfile.VERSION, 4)
    from imagegs.quantize import MAX_BITS, MIN_BITS

    assert (d["MIN_BITS"], d["MAX_BITS"]) == (MIN_BITS, MAX_BITS)
    assert (d["TOP"], d["BOT"], d["INC"], d["LIMIT"], d["CAP_NUM"], d["CAP_DEN"], d["MODEL_BITS"],
            d["RAW_CHUNK"]) == (rangecoder.TOP, rangecoder.BOT, rangecoder.INC, rangecoder.LIMIT,
                                rangecoder.CAP_NUM, rangecoder.CAP_DEN, rangecoder.MODEL_BITS, rangecoder.RAW_CHUNK)


def test_wheel_zooms_about_the_cursor_and_drag_pans(page, server):
    _open(page, server.url)
    page.evaluate("() => { viewer.setSize(200, 150); viewer.setView(1, 0, 0); viewer.readPixels(); }")
    box = page.locator("#gl").bounding_box()
    page.mouse.move(box["x"] + 20.5, box["y"] + 10.5)
    page.mouse.wheel(0, -300)  # zoom in about (20, 10): that image point stays under the cursor
    page.wait_for_timeout(100)
    z, ox, oy = page.evaluate("() => [viewer.ui.zoom, viewer.ui.ox, viewer.ui.oy]")
    assert z > 1.2
    assert abs((ox + 20.5) / z - 20.5) < 1 and abs((oy + 10.5) / z - 10.5) < 1
    page.mouse.down()
    page.mouse.move(box["x"] + 60.5, box["y"] + 30.5)
    page.mouse.up()
    assert page.evaluate("() => [viewer.ui.ox, viewer.ui.oy]") == [ox - 40, oy - 20]
