"""``imagegs render --region / --no-antialias / --filter-sigma``, in-process through ``cli.main``."""

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from imagegs import load_model, render, save_model
from imagegs.cli import main
from imagegs.io import to_uint8

from conftest import random_gaussians


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "m.gsm"
    save_model(random_gaussians(300, 40, 48, seed=5).to(torch.float32), path)
    return path


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _read(path):
    return np.asarray(PILImage.open(path))


def test_region_is_the_crop(model, capsys, tmp_path):
    g = load_model(model).gaussians
    rc, out, err = _run(capsys, "render", model, "-o", tmp_path / "r.png", "--scale", "2", "--region", "10,20,70,50")
    assert rc == 0 and err == "" and "60x30" in out
    expect = to_uint8(render(g, 80, 96).clamp(0, 1))[20:50, 10:70]
    assert np.array_equal(_read(tmp_path / "r.png"), expect)


def test_antialias_options(model, capsys, tmp_path):
    g = load_model(model).gaussians
    for flags, kwargs in (((), {}), (("--no-antialias",), {"antialias": False}),
                          (("--filter-sigma", "0.8", "--supersample", "1"), {"filter_sigma": 0.8, "supersample": 1})):
        rc, _, err = _run(capsys, "render", model, "-o", tmp_path / "a.png", "--width", "20", *flags)
        assert rc == 0, err
        assert np.array_equal(_read(tmp_path / "a.png"), to_uint8(render(g, 17, 20, **kwargs).clamp(0, 1)))
    assert not np.array_equal(to_uint8(render(g, 17, 20).clamp(0, 1)),
                              to_uint8(render(g, 17, 20, antialias=False).clamp(0, 1)))


@pytest.mark.parametrize("region,match", [("1,2,3", "four integers"), ("a,b,c,d", "four integers"),
                                          ("0,0,49,10", "outside"), ("5,5,5,9", "empty"), ("-1,0,4,4", "outside")])
def test_bad_region_is_a_one_line_error(model, capsys, tmp_path, region, match):
    rc, out, err = _run(capsys, "render", model, "-o", tmp_path / "b.png", f"--region={region}")
    assert rc == 2 and out == "" and err.startswith("imagegs: error: ") and match in err
    assert err.count("\n") == 1
    assert not (tmp_path / "b.png").exists()


def test_bad_filter_sigma(model, capsys, tmp_path):
    rc, _, err = _run(capsys, "render", model, "-o", tmp_path / "c.png", "--filter-sigma", "-1")
    assert rc == 2 and "argument --filter-sigma: must be a finite number >= 0" in err


def test_bad_supersample(model, capsys, tmp_path):
    rc, _, err = _run(capsys, "render", model, "-o", tmp_path / "c.png", "--width", "10", "--supersample", "0")
    assert rc == 2 and "supersample" in err
