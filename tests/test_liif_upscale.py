"""Upscaling: LIIF batching, channel handling, resampling filters, and the ``upscale`` command."""

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from imagegs.cli import main
from imagegs.io import read_image, write_image
from imagegs.liif import liif_upscale, resize
from imagegs.upscaling import upscale
from imagegs.liif.models import make_coord
from imagegs.liif.weights import save_weights

from test_liif_models import tiny


@pytest.fixture
def small_rgb():
    from skimage import data, transform

    img = transform.resize(data.astronaut(), (20, 24), anti_aliasing=True)
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()


def test_liif_upscale_is_the_reference_query_in_any_batch(small_rgb):
    model = tiny()
    h, w = 37, 53  # non-integer scales, different per axis
    with torch.no_grad():
        feat = model.encode(((small_rgb - 0.5) / 0.5)[None])
        coord = make_coord((h, w))[None]
        cell = torch.ones_like(coord) * torch.tensor([2 / h, 2 / w])
        ref = (model.query_reference(feat, coord, cell) * 0.5 + 0.5).clamp(0, 1)[0]
    ref = ref.t().reshape(3, h, w)
    for batch in (7, 1000, 10**6):
        out = liif_upscale(model, small_rgb, h, w, batch=batch)
        assert out.shape == (3, h, w) and out.dtype == torch.float32
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_upscale_channels(small_rgb):
    model = tiny()
    grey = small_rgb.mean(0, keepdim=True)
    out = upscale(grey, 30, 31, model=model)
    expected = liif_upscale(model, grey.expand(3, -1, -1), 30, 31).mean(0, keepdim=True)
    torch.testing.assert_close(out, expected)
    rgba = torch.cat([small_rgb, torch.linspace(0, 1, 24).expand(1, 20, 24)])
    out = upscale(rgba, 40, 48, model=model)
    assert out.shape == (4, 40, 48)
    torch.testing.assert_close(out[3], resize(rgba[3:], 40, 48).clamp(0, 1)[0])
    with pytest.raises(ValueError, match="1-4 channels"):
        upscale(torch.rand(5, 8, 8), 16, 16, model=model)
    with pytest.raises(ValueError, match="give the output size"):
        upscale(small_rgb, model=model)


def test_upscale_takes_any_image_input_and_default_weights(small_rgb, monkeypatch, tmp_path):
    """A path, an Image, an array and a tensor give the same result; no model = the official weights."""
    from imagegs.io import read_image, write_image
    from imagegs.liif import weights

    monkeypatch.setattr(weights, "load_weights", lambda *a, **k: tiny())  # no download in tests
    path = write_image(small_rgb, tmp_path / "in.png")
    u8 = read_image(path)
    expected = upscale(u8.pixels, 40, 48)
    for image in (path, str(path), u8, u8.pixels.permute(1, 2, 0).numpy()):
        torch.testing.assert_close(upscale(image, scale=2), expected)
    with pytest.raises(ValueError, match="unknown method"):
        upscale(small_rgb, 40, 48, method="nearest")


def test_resize_filters_match_pillow(small_rgb):
    u8 = (small_rgb * 255).round().byte().permute(1, 2, 0).numpy()
    for method, flt in (("bicubic", PILImage.Resampling.BICUBIC), ("lanczos", PILImage.Resampling.LANCZOS)):
        ours = resize(torch.from_numpy(u8).permute(2, 0, 1).float() / 255, 50, 60, method=method)
        pil = np.asarray(PILImage.fromarray(u8).resize((60, 50), flt)).astype(np.float32) / 255
        # Pillow's 8-bit path rounds between its two 1-D passes: within 2 levels
        assert np.abs(ours.clamp(0, 1).permute(1, 2, 0).numpy() - pil).max() <= 2 / 255


def test_gaussians_method_fits_and_renders(small_rgb):
    out = upscale(small_rgb, 40, 48, method="gaussians", num_gaussians=200, max_steps=200)
    assert out.shape == (3, 40, 48)
    small = resize(out, 20, 24)
    assert float((small - small_rgb).abs().mean()) < 0.05  # it does represent the image


def test_cli_upscale(tmp_path, small_rgb, capsys):
    src = write_image(small_rgb, tmp_path / "in.png")
    weights = save_weights(tiny(), tmp_path / "tiny.pth")
    out = tmp_path / "out.png"
    assert main(["upscale", str(src), "-o", str(out), "--scale", "2.5", "--weights", str(weights),
                 "--quiet", "--batch", "100"]) == 0
    img = read_image(out)
    assert (img.width, img.height) == (60, 50)
    expected = liif_upscale(tiny(), read_image(src).pixels, 50, 60)
    assert np.abs(img.pixels.numpy() - expected.numpy()).max() <= 0.5 / 255 + 1e-4
    assert main(["upscale", str(src), "-o", str(out), "--width", "31", "--method", "lanczos",
                 "--quiet"]) == 0
    assert read_image(out).width == 31 and read_image(out).height == 26
    assert "lanczos" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    ([], "give the output size"),
    (["--scale", "2", "--width", "10"], "not both"),
    (["--scale", "-1"], "argument --scale: must be a finite number > 0"),
    (["--scale", "2", "--method", "bicubic", "--weights", "x.pth"], "--weights is for --method liif"),
    (["--scale", "2", "--gaussians", "10"], "--gaussians is for --method gaussians"),
    (["--scale", "2", "--method", "gaussians", "--gaussians", "100000"], "--gaussians must be"),
    (["--scale", "2", "--weights", "missing.pth"], "no such checkpoint"),
    (["--scale", "2", "--batch", "0"], "argument --batch: must be a positive integer"),
    (["--scale", "2", "--device", "nodevice"], "--device nodevice"),
    pytest.param(["--scale", "2", "--device", "cuda"], "no CUDA device",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")),
])
def test_cli_upscale_errors(tmp_path, small_rgb, capsys, args, message):
    src = write_image(small_rgb, tmp_path / "in.png")
    code = main(["upscale", str(src), "-o", str(tmp_path / "o.png"), "--quiet", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("imagegs: error:") and err.count("\n") == 1
    assert not (tmp_path / "o.png").exists()
