"""LIIF training: the recipe file, batches, the loss falls, resuming is exact, fine-tuning."""

import json

import numpy as np
import pytest
import torch

from imagegs.cli import main
from imagegs.io import write_image
from imagegs.liif import train as T
from imagegs.liif.weights import load_weights, save_weights

from test_liif_models import TINY, tiny


def tiny_config(tmp_path, **overrides):
    cfg = T.load_config()
    cfg["model"] = TINY
    cfg["data"].update(inp_size=12, scale_max=2.0, sample_q=100, batch_size=4)
    cfg["optimizer"]["lr"] = 5e-3
    cfg.update({"steps": 40, "lr_milestones": [30], "save_every": 10, **overrides})
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(cfg))
    return T.load_config(path)


@pytest.fixture
def images(tmp_path):
    """Four smooth 40x40 colour images (random low-frequency patterns)."""
    folder = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    for i in range(4):
        f = rng.uniform(1, 4, size=(3, 2))
        ph = rng.uniform(0, 6, size=3)
        img = np.stack([0.5 + 0.4 * np.sin(f[c, 0] * 6 * yy + f[c, 1] * 6 * xx + ph[c]) for c in range(3)])
        write_image(img.astype(np.float32), folder / f"img{i}.png")
    return folder


def test_default_config_is_the_papers_recipe():
    cfg = T.load_config()
    d = cfg["data"]
    assert (d["inp_size"], d["scale_min"], d["scale_max"], d["sample_q"], d["batch_size"]) == (48, 1, 4, 2304, 16)
    assert d["augment"] is True and cfg["loss"] == "l1"
    assert cfg["optimizer"] == {"name": "adam", "lr": 1e-4}
    assert cfg["steps"] == 1_000_000 and cfg["lr_milestones"] == [200_000, 400_000, 600_000, 800_000]
    assert cfg["lr_gamma"] == 0.5
    assert cfg["model"]["args"]["encoder_spec"]["name"] == "edsr-baseline"
    assert cfg["model"]["args"]["imnet_spec"]["args"]["hidden_list"] == [256] * 4


def test_sample_batch_shapes_and_pairing(images):
    bank = T.ImageBank(images, min_size=24)
    data = {"inp_size": 12, "scale_min": 2.0, "scale_max": 2.0, "sample_q": 50, "batch_size": 3,
            "augment": False}
    b = T.sample_batch(bank, data, np.random.default_rng(0))
    assert b["inp"].shape == (3, 3, 12, 12) and b["coord"].shape == (3, 50, 2)
    assert b["gt"].shape == (3, 50, 3)
    torch.testing.assert_close(b["cell"], torch.full((3, 50, 2), 2 / 24))
    assert b["coord"].abs().max() < 1 and b["gt"].min() >= 0 and b["gt"].max() <= 1
    # the input is the crop downsampled: its mean colour matches the sampled pixels' mean
    assert float((b["inp"].mean((2, 3)) - b["gt"].mean(1)).abs().max()) < 0.1


def test_loss_falls(tmp_path, images):
    result = T.train(images, tmp_path / "run", config=tiny_config(tmp_path), progress=False)
    losses = [v for _, v in result["history"]]
    assert len(losses) == 40
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    assert (tmp_path / "run" / "model.pth").exists() and (tmp_path / "run" / "last.pth").exists()
    load_weights(tmp_path / "run" / "model.pth")  # a loadable checkpoint in the official layout


def test_resume_gives_the_same_weights(tmp_path, images):
    cfg = tiny_config(tmp_path, steps=20)
    straight = T.train(images, tmp_path / "a", config=cfg, progress=False)
    T.train(images, tmp_path / "b", config={**cfg, "steps": 10}, progress=False)
    resumed = T.train(images, tmp_path / "b", config=cfg, progress=False)
    assert resumed["step"] == 20 and len(resumed["history"]) == 20
    assert [v for _, v in resumed["history"]] == [v for _, v in straight["history"]]
    for a, b in zip(straight["model"].state_dict().values(), resumed["model"].state_dict().values()):
        assert torch.equal(a, b)


def test_fine_tune_starts_from_the_checkpoint(tmp_path, images):
    cfg = tiny_config(tmp_path, steps=1)
    start = save_weights(tiny(seed=5), tmp_path / "start.pth")
    result = T.train(images, tmp_path / "ft", config={**cfg, "optimizer": {"name": "adam", "lr": 1e-9}},
                     init=start, progress=False)
    for a, b in zip(tiny(seed=5).state_dict().values(), result["model"].state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    with pytest.raises(T.TrainError, match="--init starts a new run"):
        T.train(images, tmp_path / "ft", config=cfg, init=start, progress=False)


def test_cli_train(tmp_path, images, capsys):
    cfg = tiny_config(tmp_path, steps=3)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(cfg))
    out = tmp_path / "run"
    assert main(["liif", "train", "--images", str(images), "-o", str(out), "--config", str(path),
                 "--quiet", "--threads", "1"]) == 0
    assert "weights" in capsys.readouterr().out
    assert main(["liif", "train", "--images", str(images), "-o", str(out), "--config", str(path),
                 "--steps", "5", "--quiet"]) == 0
    assert "resuming" in capsys.readouterr().out
    assert torch.load(out / "last.pth", weights_only=True)["step"] == 5


@pytest.mark.parametrize("change, message", [
    ({"steps": 0}, "steps must be"),
    ({"data": {"inp_size": 12, "scale_min": 3, "scale_max": 2, "sample_q": 10, "batch_size": 1}},
     "scale_min <= scale_max"),
    ({"optimizer": {"name": "sgd", "lr": 1}}, "adam"),
])
def test_bad_configs(tmp_path, images, capsys, change, message):
    cfg = {**tiny_config(tmp_path), **change}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(cfg))
    assert main(["liif", "train", "--images", str(images), "-o", str(tmp_path / "r"), "--config",
                 str(path), "--quiet"]) == 2
    assert message in capsys.readouterr().err


def test_images_too_small(tmp_path, images, capsys):
    assert main(["liif", "train", "--images", str(images), "-o", str(tmp_path / "r"), "--quiet"]) == 2
    assert "smaller than the largest training crop (192x192)" in capsys.readouterr().err
