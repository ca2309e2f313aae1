"""The ``imagegs`` command line, run in-process through ``cli.main`` (plus one subprocess)."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image as PILImage

from imagegs import load_model
from imagegs.cli import main
from imagegs.defaults import output_size
from imagegs.io import ImageReadError, read_source
from imagegs.metrics import psnr


def _smooth_rgb(h, w):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)], -1).astype(np.uint8)


def _run(capsys, *argv):
    """main(argv) -> (exit status, stdout, stderr)."""
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A 32x32 PNG, the model fitted to it (50 Gaussians, 30 steps) and the fit's stdout."""
    d = tmp_path_factory.mktemp("fit")
    png = d / "in.png"
    PILImage.fromarray(_smooth_rgb(32, 32)).save(png)
    model = d / "in.gsm"
    rc = main(["fit", str(png), "-o", str(model), "--gaussians", "50", "--steps", "30", "--quiet",
               "--render", str(d / "fit_render.png")])
    assert rc == 0
    return png, model, d


def test_fit_writes_model_and_metadata(fitted):
    png, model, d = fitted
    loaded = load_model(model)
    g, meta = loaded.gaussians, loaded.metadata
    assert (g.num, g.height, g.width, g.channel_names, g.groups) == (50, 32, 32, ("R", "G", "B"), [("in", 3)])
    assert meta["source"] == [str(png)] and meta["groups"] == [["in", 3]] and meta["bit_depths"] == [8]
    assert meta["channel_names"] == ["R", "G", "B"] and meta["steps"] == 30 and meta["seconds"] > 0
    assert meta["fit"]["num_gaussians"] == 50 and meta["fit"]["max_steps"] == 30
    assert meta["psnr"] > 20 and 0 < meta["ssim"] <= 1
    assert PILImage.open(d / "fit_render.png").size == (32, 32)


@pytest.mark.parametrize("size_args, size", [((), (32, 32)), (("--scale", "1.5"), (48, 48)),
                                             (("--width", "20"), (20, 20)),
                                             (("--width", "40", "--height", "10"), (40, 10))])
def test_render_sizes(fitted, capsys, tmp_path, size_args, size):
    png, model, _ = fitted
    out = tmp_path / "r.png"
    rc, stdout, err = _run(capsys, "render", model, "-o", out, *size_args)
    assert rc == 0 and err == "" and str(out) in stdout
    rendered = PILImage.open(out)
    assert rendered.size == size and rendered.mode == "RGB"
    if not size_args:  # native size: close to the input
        assert psnr(np.asarray(rendered) / 255.0, np.asarray(PILImage.open(png)) / 255.0) > 20


def test_render_16_bit(fitted, capsys, tmp_path):
    rc, _, _ = _run(capsys, "render", fitted[1], "-o", tmp_path / "r.png", "--bit-depth", "16")
    assert rc == 0
    assert (tmp_path / "r.png").read_bytes()[24] == 16  # the PNG header's bit depth


def test_info(fitted, capsys):
    rc, out, err = _run(capsys, "info", fitted[1])
    assert rc == 0 and err == ""
    for text in ("32x32", "Gaussians  50", "R, G, B", "30 steps", "PSNR", "top-k 10"):
        assert text in out


def test_texture_stack(tmp_path, capsys):
    folder = tmp_path / "tex"
    folder.mkdir()
    PILImage.fromarray(_smooth_rgb(16, 16)).save(folder / "albedo.png")
    PILImage.fromarray(_smooth_rgb(16, 16)[..., 0]).save(folder / "gloss.png")
    model = tmp_path / "m.gsm"
    rc, out, _ = _run(capsys, "fit", folder, "-o", model, "--gaussians", "30", "--steps", "5", "--quiet")
    assert rc == 0 and "Gaussians  30" in out
    assert load_model(model).gaussians.groups == [("albedo", 3), ("gloss", 1)]
    rc, out, _ = _run(capsys, "render", model, "-o", tmp_path / "out.png", "--scale", "2")
    assert rc == 0
    assert sorted(p.name for p in tmp_path.glob("out*.png")) == ["out_albedo.png", "out_gloss.png"]
    assert PILImage.open(tmp_path / "out_albedo.png").mode == "RGB"
    assert PILImage.open(tmp_path / "out_gloss.png").size == (32, 32)


def _errors(tmp_path, fitted):
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"this is not an image")
    corrupt = tmp_path / "corrupt.gsm"
    data = bytearray(fitted[1].read_bytes())
    data[-10] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    model, png = fitted[1], fitted[0]
    out = tmp_path / "o.png"
    return {
        "missing image": ["fit", tmp_path / "nope.png", "-o", tmp_path / "m.gsm"],
        "garbage image": ["fit", garbage, "-o", tmp_path / "m.gsm"],
        "gaussians 0": ["fit", png, "-o", tmp_path / "m.gsm", "--gaussians", "0"],
        "too many gaussians": ["fit", png, "-o", tmp_path / "m.gsm", "--gaussians", "5000"],
        "unknown sample": ["fit", "skimage:no_such_image", "-o", tmp_path / "m.gsm"],
        "bad top-k": ["fit", png, "-o", tmp_path / "m.gsm", "--top-k", "99"],
        "unwritable output": ["fit", png, "-o", not_dir / "m.gsm"],
        "bad render extension": ["fit", png, "-o", tmp_path / "m.gsm", "--render", tmp_path / "r.xyz"],
        "missing model": ["render", tmp_path / "nope.gsm", "-o", out],
        "corrupt model": ["render", corrupt, "-o", out],
        "not a model": ["info", png],
        "scale 0": ["render", model, "-o", out, "--scale", "0"],
        "scale negative": ["render", model, "-o", out, "--scale", "-1.5"],
        "scale nan": ["render", model, "-o", out, "--scale", "nan"],
        "scale and width": ["render", model, "-o", out, "--scale", "2", "--width", "10"],
        "width 0": ["render", model, "-o", out, "--width", "0"],
        "height negative": ["render", model, "-o", out, "--height", "-3"],
        "too many pixels": ["render", model, "-o", out, "--scale", "1e6"],
        "huge scale": ["render", model, "-o", out, "--scale", "1e308"],
        "bad output extension": ["render", model, "-o", tmp_path / "o.gif"],
        "threads 0": ["render", model, "-o", out, "--threads", "0"],
    }


@pytest.mark.parametrize("case", [
    "missing image", "garbage image", "gaussians 0", "too many gaussians", "unknown sample",
    "bad top-k", "unwritable output", "bad render extension", "missing model", "corrupt model",
    "not a model", "scale 0", "scale negative", "scale nan", "scale and width", "width 0",
    "height negative", "too many pixels", "huge scale", "bad output extension", "threads 0"])
def test_errors_are_one_line(fitted, tmp_path, capsys, case):
    rc, out, err = _run(capsys, *_errors(tmp_path, fitted)[case])
    assert rc == 2, err
    assert err.startswith("imagegs: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "m.gsm").exists() and not (tmp_path / "o.png").exists()


def test_usage_error_exits_2_with_one_line(capsys):
    assert main(["render"]) == 2
    err = capsys.readouterr().err
    assert err == ("imagegs: error: the following arguments are required: MODEL.gsm, -o/--output "
                   "(see 'imagegs render --help')\n")
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'frobnicate'" in err and "'imagegs --help'" in err


@pytest.mark.parametrize("args, message", [
    (["fit", "astronaut", "-o", "m.gsm", "--seed", "-1"], "argument --seed: must be a non-negative integer, got -1"),
    (["encode", "astronaut", "-o", "m.igs", "--qat", "2"], "argument --qat: must be a number from 0 to 1, got 2"),
    (["encode", "astronaut", "-o", "m.igs", "--bpp", "0"], "argument --bpp: must be a finite number > 0, got 0"),
    (["render", "m.gsm", "-o", "o.png", "--filter-sigma", "-1"], "argument --filter-sigma: must be a finite number >= 0"),
    (["render", "m.gsm", "-o", "o.png", "--top-k", "99"], "argument --top-k: must be an integer from 0 (whole tile) to 64"),
    (["decode", "m.igs", "-o", "o.png", "--supersample", "0"], "argument --supersample: must be a positive integer, got 0"),
])
def test_bad_options_name_the_option(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_interrupt_exits_130_without_output(fitted, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(sys.modules["imagegs.fitting"], "fit", interrupted)
    rc, _, err = _run(capsys, "fit", fitted[0], "-o", tmp_path / "m.gsm", "--gaussians", "10", "--quiet")
    assert rc == 130 and "interrupted" in err
    assert list(tmp_path.iterdir()) == []


def test_output_size():
    assert output_size(100, 200) == (100, 200)
    assert output_size(100, 200, scale=0.5) == (50, 100)
    assert output_size(100, 200, out_width=50) == (25, 50)
    assert output_size(100, 200, out_height=50) == (50, 100)
    assert output_size(100, 200, scale=1e-9) == (1, 1)
    for kwargs in (dict(scale=float("inf")), dict(scale=-1.0), dict(out_width=2**15, out_height=2**14)):
        with pytest.raises(ValueError):
            output_size(100, 200, **kwargs)


def test_read_source_samples():
    image = read_source(["astronaut"])
    assert tuple(image.pixels.shape) == (3, 512, 512) and image.bit_depths == [8]
    assert image.channel_names == ("R", "G", "B") and image.groups == [("astronaut", 3)]
    logo = read_source(["skimage:logo"], alpha="white")
    assert logo.pixels.shape[0] == 3 and logo.channel_names == ("R", "G", "B")
    assert read_source(["skimage:shepp_logan_phantom"]).bit_depths == [16]
    with pytest.raises(ImageReadError, match="only image"):
        read_source(["astronaut", "skimage:coffee"])


def test_python_m_help():
    result = subprocess.run([sys.executable, "-m", "imagegs", "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0
    assert "fit" in result.stdout and "render" in result.stdout and "info" in result.stdout


def test_encoders_default_to_the_encoder_schedule_and_fit_to_fast():
    """encode, batch encode and bench rd use the encoder's schedule (c2f) unless told; a plain fit
    keeps "fast" (c2f's fit stops before any full-size step: it needs the encoder's refinement)."""
    from imagegs.cli import build_parser
    from imagegs.codec import ENCODE_SCHEDULE

    p = build_parser()
    assert p.parse_args(["encode", "a.png", "-o", "a.igs"]).schedule == ENCODE_SCHEDULE == "c2f"
    assert p.parse_args(["batch", "encode", "d", "-o", "o"]).schedule == ENCODE_SCHEDULE
    assert p.parse_args(["bench", "rd", "--images", "d", "--out", "o"]).schedule == ENCODE_SCHEDULE
    assert p.parse_args(["fit", "a.png", "-o", "a.gsm"]).schedule == "fast"
