"""What a new user meets in the first hour: every image input everywhere, errors that name the
user's file or option in one line, outputs checked before any work, no silent 8-bit writes."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

import imagegs
from imagegs.cli import main
from imagegs.io import ImageReadError, atomic_write, read_image


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A 24x32 PNG, a model file and an .igs file of it (tiny fits)."""
    d = tmp_path_factory.mktemp("first")
    rng = np.random.default_rng(0)
    png = d / "cat.png"
    PILImage.fromarray((rng.random((24, 32, 3)) * 255).astype(np.uint8)).save(png)
    model = d / "cat.gsm"
    assert main(["fit", str(png), "-o", str(model), "--gaussians", "40", "--steps", "10", "--quiet"]) == 0
    igs = d / "cat.igs"
    assert main(["encode", str(png), "-o", str(igs), "--gaussians", "40", "--steps", "10", "--quiet"]) == 0
    return png, model, igs


def _err(capsys, *argv):
    """(exit status, stderr) of main(argv); asserts the error is one line with no traceback."""
    rc = main([str(a) for a in argv])
    err = capsys.readouterr().err
    if rc:
        assert err.startswith("imagegs: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return rc, err


def test_every_image_input_everywhere(files):
    png, _, _ = files
    image = read_image(png)
    array = np.array(PILImage.open(png))
    opts = dict(num_gaussians=30, max_steps=5)
    reference = imagegs.fit(image.pixels, **opts)
    for source in (png, str(png), image, array, torch.from_numpy(array).permute(2, 0, 1)):
        g = imagegs.fit(source, **opts)
        torch.testing.assert_close(g.xy, reference.xy)
    enc = imagegs.compress(str(png), num_gaussians=30, max_steps=5)
    assert enc.data == imagegs.compress(image, num_gaussians=30, max_steps=5).data
    with pytest.raises(ValueError, match="an image must be a path, an Image, a numpy array"):
        imagegs.fit({"not": "an image"})


def test_load_model_has_named_parts(files):
    _, model, _ = files
    m = imagegs.load_model(model)
    assert isinstance(m.gaussians, imagegs.Gaussians) and m.gaussians.num == 40
    assert m.metadata["source"] == [str(files[0])]
    assert "Model(40 Gaussians, 32x24" in repr(m)


@pytest.mark.parametrize("content, message", [
    (b"", "an empty file"),
    (b"hello, I am text\n", "not an imagegs file"),
])
def test_info_and_decode_name_the_file(files, tmp_path, capsys, content, message):
    bad = tmp_path / "bad.igs"
    bad.write_bytes(content)
    rc, err = _err(capsys, "info", bad)
    assert rc == 2 and f"{bad}: {message}" in err and "IMGSRAW" not in err and "magic" not in err
    rc, err = _err(capsys, "decode", bad, "-o", tmp_path / "o.png")
    assert rc == 2 and str(bad) in err


def test_truncated_igs_same_message_in_info_and_decode(files, tmp_path, capsys):
    _, _, igs = files
    cut = tmp_path / "cut.igs"
    data = igs.read_bytes()
    cut.write_bytes(data[:len(data) - 7])
    messages = []
    for argv in (("info", cut), ("decode", cut, "-o", tmp_path / "o.png")):
        rc, err = _err(capsys, *argv)
        assert rc == 2 and f"{cut}: truncated file: " in err
        messages.append(err.split("truncated file: ")[1].split(";")[0])
    assert messages[0] == messages[1]


def test_model_file_errors_name_the_file(files, tmp_path, capsys):
    _, _, igs = files
    rc, err = _err(capsys, "render", igs, "-o", tmp_path / "o.png")
    assert rc == 2 and f"{igs}: not an imagegs model file (.gsm); it is an .igs file" in err


@pytest.mark.parametrize("argv", [
    ["render", "{model}", "-o", "{out}.jpg", "--bit-depth", "16"],
    ["decode", "{igs}", "-o", "{out}.webp", "--bit-depth", "16"],
    ["upscale", "{png}", "-o", "{out}.jpg", "--scale", "2", "--method", "bicubic", "--bit-depth", "16"],
])
def test_16_bit_to_an_8_bit_format_is_refused(files, tmp_path, capsys, argv):
    png, model, igs = files
    out = tmp_path / "o"
    argv = [a.format(png=png, model=model, igs=igs, out=out) for a in argv]
    rc, err = _err(capsys, *argv)
    assert rc == 2 and "stores 8 bits only; use .png or .tif for 16 bits" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", ["fit", "encode", "render", "decode", "upscale"])
def test_a_folder_as_output_gets_one_message(files, tmp_path, capsys, command):
    png, model, igs = files
    source = {"render": model, "decode": igs}.get(command, png)
    extra = ["--scale", "2", "--method", "bicubic"] if command == "upscale" else []
    rc, err = _err(capsys, command, source, "-o", tmp_path, *extra)
    assert rc == 2 and f"{tmp_path}: is a folder; give a file name for " in err


def test_unwritable_output_fails_before_any_work(files, tmp_path, capsys, monkeypatch):
    png, _, _ = files
    fitted = []
    monkeypatch.setattr("imagegs.fitting.fit", lambda *a, **k: fitted.append(1))
    not_a_folder = tmp_path / "file.txt"
    not_a_folder.write_text("x")
    rc, err = _err(capsys, "fit", png, "-o", not_a_folder / "m.gsm")
    assert rc == 2 and f"{not_a_folder / 'm.gsm'}: cannot write the model: {not_a_folder} is not a folder" in err
    rc, err = _err(capsys, "fit", png, "-o", "/proc/imagegs-test.gsm")  # not writable, even for root
    assert rc == 2 and "/proc/imagegs-test.gsm: cannot write the model: folder /proc is not writable" in err
    assert not fitted


def test_new_output_folders_are_announced(files, tmp_path, capsys):
    _, model, _ = files
    out = tmp_path / "new" / "deeper" / "r.png"
    rc = main(["render", str(model), "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and out.exists() and f"imagegs: creating folder {tmp_path / 'new' / 'deeper'} for the rendering" in err


def test_write_errors_name_the_users_file_not_a_temporary_one(tmp_path):
    target = tmp_path / "m.gsm"

    def fail(tmp):
        raise OSError(28, "No space left on device", str(tmp))

    with pytest.raises(OSError) as e:
        atomic_write(target, fail)
    assert e.value.filename == str(target) and e.value.strerror == "No space left on device"
    assert list(tmp_path.iterdir()) == []


def test_too_large_image_is_a_clear_error_not_a_warning(tmp_path, capsys, monkeypatch):
    png = tmp_path / "big.png"
    PILImage.fromarray(np.zeros((20, 20, 3), np.uint8)).save(png)
    monkeypatch.setenv("IMAGEGS_MAX_IMAGE_PIXELS", "300")  # 400 pixels: Pillow would only warn
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageReadError, match=r"big.png: 20x20 = 400 pixels is over the limit of 300 "
                                                 r"pixels .* set IMAGEGS_MAX_IMAGE_PIXELS"):
            read_image(png)
    rc, err = _err(capsys, "fit", png, "-o", tmp_path / "m.gsm")
    assert rc == 2 and "IMAGEGS_MAX_IMAGE_PIXELS" in err and "site-packages" not in err
    monkeypatch.setenv("IMAGEGS_MAX_IMAGE_PIXELS", "400")
    assert read_image(png).width == 20


def test_help_texts(capsys):
    for argv, wanted, unwanted in [
        (["encode", "--help"], "within 5% below", "%%"),
        (["fit", "--help"], "quality (2400", None),
        (["info", "--help"], ".igs file or .gsm model file", "MODEL model file"),
    ]:
        assert main(argv) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert wanted in out and (unwanted is None or unwanted not in out), out
