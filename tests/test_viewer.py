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
    """Small .igs files made by ``codec.compress``: RGB, grey (16-bit: raw bits in the coder), a
    5-channel stack with names and groups; each in 4 levels of detail."""
    folder = tmp_path_factory.mktemp("igs")
    made = {
        "rgb": _encode(3, bits="12,8,8,8"),
        "grey": _encode(1, bits=16, metadata={"bit_depths": [16]}),
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
