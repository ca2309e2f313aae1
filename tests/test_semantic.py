"""Semantics-aware compression: importance maps, the steering of a fit, the CLI options and
``imagegs bench semantic`` (tiny inputs: each test takes seconds)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image as PILImage

import imagegs
from imagegs.cli import main
from imagegs.importance import (
    DEFAULT_IMPORTANCE_STRENGTH,
    boxes_mask,
    face_boxes,
    importance_map,
    region_mask,
    steering_weights,
)


def _pattern(h: int = 48, w: int = 48) -> np.ndarray:
    """A busy synthetic (H, W, 3) float image: detail everywhere, so that a small budget must choose."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    return np.stack([0.5 + 0.4 * np.sin(20 * xx + 7 * yy), 0.5 + 0.4 * np.sin(60 * xx * yy),
                     0.5 + 0.3 * np.cos(25 * yy)], -1).astype(np.float32)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(-10 * np.log10(np.mean((a - b) ** 2)))


def test_importance_lowers_the_error_inside_the_region():
    img = _pattern()
    imp = np.zeros(img.shape[:2], np.float32)
    imp[:, :12] = 1.0  # the left quarter matters
    inside = imp > 0
    fits = {s: imagegs.render(imagegs.fit(img, num_gaussians=80, max_steps=200, importance=imp,
                                          importance_strength=s)).permute(1, 2, 0).numpy()
            for s in (0.0, DEFAULT_IMPORTANCE_STRENGTH)}
    plain, steered = fits[0.0], fits[DEFAULT_IMPORTANCE_STRENGTH]
    gain_in = _psnr(steered[inside], img[inside]) - _psnr(plain[inside], img[inside])
    gain_out = _psnr(steered[~inside], img[~inside]) - _psnr(plain[~inside], img[~inside])
    assert gain_in > 1.0, (gain_in, gain_out)
    assert gain_out < gain_in


def test_strength_zero_is_the_plain_fit():
    img = _pattern(24, 24)
    imp = np.ones((24, 24))
    a = imagegs.fit(img, num_gaussians=30, max_steps=20)
    b = imagegs.fit(img, num_gaussians=30, max_steps=20, importance=imp, importance_strength=0)
    assert np.array_equal(a.xy.numpy(), b.xy.numpy()) and np.array_equal(a.color.numpy(), b.color.numpy())


def test_user_map_is_resized_and_scaled(tmp_path):
    small = np.zeros((10, 20), np.uint8)
    small[:, 10:] = 200  # right half bright
    path = tmp_path / "map.png"
    PILImage.fromarray(small).save(path)
    m = importance_map(np.zeros((40, 80, 3)), path)
    assert m.shape == (40, 80) and m.dtype == np.float32
    assert m.max() == pytest.approx(1.0) and m[:, :30].max() == 0.0 and m[:, 50:].min() == pytest.approx(1.0)
    # an array works the same, and the steering weights follow the formula
    assert np.allclose(importance_map(np.zeros((40, 80)), small), m, atol=1e-6)
    assert np.allclose(steering_weights(m, 3.0), 1 + 3 * m)


def test_saliency_map_is_sane():
    from skimage import data

    m = importance_map(data.coffee(), "saliency")
    assert m.shape == (400, 600) and 0.0 <= m.min() and m.max() == pytest.approx(1.0)
    region = region_mask(m)
    assert 0.15 < region.mean() < 0.25  # the top 20 %
    assert m.std() > 0.05  # not flat


def test_faces_finds_the_astronauts_face():
    from skimage import data

    boxes = face_boxes(data.astronaut())
    assert boxes, "no face found on astronaut"
    x0, y0, x1, y1 = boxes[0]
    assert x0 < 225 < x1 and y0 < 115 < y1  # the face's centre (about 224, 114)
    m = importance_map(data.astronaut(), "faces")
    assert m[115, 224] == 1.0 and m[450, 50] == 0.0
    assert (m[boxes_mask(boxes, 512, 512)] == 1.0).all()


def test_bad_importance_inputs(tmp_path):
    img = np.zeros((16, 16, 3), np.float32)
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="junk.png"):
        importance_map(img, junk)
    with pytest.raises(ValueError, match="missing.png: importance map not found"):
        importance_map(img, tmp_path / "missing.png")
    with pytest.raises(ValueError, match="finite and non-negative"):
        importance_map(img, -np.ones((4, 4)))
    with pytest.raises(ValueError, match="importance_strength"):
        imagegs.fit(img, num_gaussians=4, max_steps=1, importance=np.ones((16, 16)), importance_strength=-1)
    with pytest.raises(ValueError, match="importance_strength"):
        imagegs.fit(img, num_gaussians=4, max_steps=1, importance=np.ones((16, 16)), importance_strength="x")


def test_cli_bad_importance_is_one_line(tmp_path, capsys):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    for args, needle in (([f"--importance={junk}"], "junk.png: cannot read the importance map"),
                         (["--importance", "faces", "--importance-strength", "-2"], "--importance-strength"),
                         (["--importance-strength", "2"], "needs --importance")):
        for cmd, out in (("fit", "m.gsm"), ("encode", "m.igs")):
            assert main([cmd, "astronaut", "-o", str(tmp_path / out), "--quiet", *args]) == 2
            err = capsys.readouterr().err.strip()
            assert needle in err and len(err.splitlines()) == 1, err


def test_without_opencv_the_message_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 -> ImportError
    with pytest.raises(ValueError, match=r"imagegs\[semantic\]"):
        importance_map(np.zeros((8, 8, 3)), "saliency")


def test_import_imagegs_does_not_import_opencv():
    code = "import sys, imagegs, imagegs.codec, imagegs.fitting; print('cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_bench_semantic_end_to_end(tmp_path, capsys):
    img = (np.clip(_pattern(40, 56), 0, 1) * 255).astype(np.uint8)
    img[10:30, 20:40] = [220, 40, 40]  # a salient red block
    path = tmp_path / "tiny.png"
    PILImage.fromarray(img).save(path)
    out = tmp_path / "out"
    args = ["bench", "semantic", "--images", str(path), "--out", str(out), "--bpp", "1.5",
            "--importance", "saliency", "--max-side", "0", "--steps", "60", "--quiet"]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "imagegs-importance" in table and "PSNR in" in table
    records = [json.loads(x) for x in (out / "records.jsonl").read_text().splitlines()]
    assert sorted(r["codec"] for r in records) == ["avif", "imagegs", "imagegs-importance", "jpeg"]
    for r in records:
        assert r["importance_source"] == "saliency" and 0.15 < r["region_share"] < 0.3
        assert r["psnr_in"] is not None and r["psnr_out"] is not None
        if r["codec"].startswith("imagegs"):  # rate control, steered or not: within 5 % below the target
            assert 0.95 * 1.5 <= r["bpp"] <= 1.5
    summary = json.loads((out / "semantic.json").read_text())
    assert set(summary["gains"]) == {"1.5"} and (out / "semantic.png").stat().st_size > 0
    assert main(args) == 0  # resumable: nothing left to compute
    assert len((out / "records.jsonl").read_text().splitlines()) == 4
