"""``bench sr``: LIIF's degradation and metric, the run/resume logic, outputs and the command."""

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from imagegs.bench import sr
from imagegs.cli import main
from imagegs.io import write_image
from imagegs.liif.weights import save_weights

from test_liif_models import tiny


def test_degrade_crops_to_a_multiple_and_downsamples_bicubically():
    hr = np.random.default_rng(0).integers(0, 256, (50, 37, 3), dtype=np.uint8)
    crop, lr = sr.degrade(hr, 4)
    assert crop.shape == (48, 36, 3) and lr.shape == (12, 9, 3)
    assert np.array_equal(crop, hr[:48, :36])
    expected = np.asarray(PILImage.fromarray(crop).resize((9, 12), PILImage.Resampling.BICUBIC))
    assert np.array_equal(lr, expected)
    with pytest.raises(ValueError, match="too small"):
        sr.degrade(hr[:3], 4)


def test_shaved_psnr():
    a = torch.zeros(3, 20, 20)
    b = a.clone()
    b[:, :3] = 1.0  # differences only inside the shaved border
    assert sr.shaved_psnr(a, b, 3) == math.inf
    b[:, 10, 10] = 0.1  # one pixel of 0.1 error among 14 x 14
    assert sr.shaved_psnr(a, b, 3) == pytest.approx(-10 * math.log10(0.01 / 196))
    with pytest.raises(ValueError, match="leaves nothing"):
        sr.shaved_psnr(a, b, 10)


def test_centre_crop():
    hr = np.arange(10 * 8 * 3).reshape(10, 8, 3)
    assert np.array_equal(sr.centre_crop(hr, 4), hr[3:7, 2:6])
    assert sr.centre_crop(hr, 0) is hr


@pytest.fixture
def folder(tmp_path):
    from skimage import data, transform

    img = transform.resize(data.astronaut(), (48, 48), anti_aliasing=True).astype(np.float32)
    write_image(img.transpose(2, 0, 1), tmp_path / "imgs" / "astro.png")
    return tmp_path / "imgs"


def test_run_resume_and_outputs(tmp_path, folder, monkeypatch):
    weights = save_weights(tiny(), tmp_path / "tiny.pth")
    kw = dict(images=str(folder), samples=[], scales=[2, 3], weights=str(weights),
              work_dir=tmp_path / "work", out_dir=tmp_path / "out", progress=False)
    summary = sr.run(methods=["liif", "bicubic", "lanczos", "gaussians"], max_gaussians=40,
                     gaussian_scales=[3], fit_steps=100, **kw)
    table = summary["table"]
    assert set(table) == {"liif", "bicubic", "lanczos", "gaussians"}
    assert set(table["gaussians"]) == {3} and set(table["liif"]) == {2, 3}
    assert table["bicubic"][2]["gain_over_bicubic"] == 0.0
    assert 15 < table["bicubic"][2]["psnr"] < 40
    assert set(summary["liif_gain_vs_paper"]) == {2, 3}
    for name in ("sr_liif.json", "sr_bicubic.json", "sr_lanczos.json", "sr_gaussians.json",
                 "sr_summary.json"):
        assert (tmp_path / "out" / name).exists()
    # the plot needs matplotlib (the [bench] extra); without it the run still completes
    assert (tmp_path / "out" / "sr_psnr.png").exists() == (importlib.util.find_spec("matplotlib") is not None)
    doc = json.loads((tmp_path / "out" / "sr_liif.json").read_text())
    assert doc["results"]["scale"] == [2, 3] and len(doc["results"]["psnr-rgb"]) == 2
    assert "astro" in doc["per_image"]
    fits = list((tmp_path / "work" / "fits").glob("*.gsm"))
    assert len(fits) == 1 and "g40" in fits[0].name  # 16x16 LR: min(40, 128) Gaussians

    def no_more_work(*a, **k):
        raise AssertionError("a cached item was recomputed")

    monkeypatch.setattr(sr, "_upscale_one", no_more_work)
    again = sr.run(methods=["liif", "bicubic", "lanczos", "gaussians"], max_gaussians=40,
                   gaussian_scales=[3], fit_steps=100, **kw)
    assert again["table"] == summary["table"]
    partial = sr.run(methods=["bicubic", "gaussians"], gaussian_scales=[2, 3], cached_only=True,
                     fit_steps=100, **{**kw, "out_dir": None})
    assert set(partial["table"]["gaussians"]) == {3}  # x2 was never fitted: left out, not computed
    assert "| x2 |" in sr.format_table(again)


def test_cli_bench_sr(tmp_path, folder, capsys):
    code = main(["bench", "sr", "--images", str(folder), "--samples", "", "--scales", "2",
                 "--methods", "bicubic,lanczos", "--work-dir", str(tmp_path / "w"), "--out-dir",
                 str(tmp_path / "o"), "--quiet"])
    assert code == 0
    assert "| x2 |" in capsys.readouterr().out
    assert main(["bench", "sr", "--samples", "", "--methods", "bicubic", "--quiet",
                 "--work-dir", str(tmp_path / "w"), "--out-dir", str(tmp_path / "o")]) == 2
    assert "no images" in capsys.readouterr().err
    assert main(["bench", "sr", "--methods", "magic", "--quiet", "--work-dir", str(tmp_path / "w"),
                 "--out-dir", str(tmp_path / "o")]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["bench"]) == 2  # a group: needs a benchmark name
