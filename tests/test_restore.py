"""Joint compression and restoration: noise estimate, automatic budget, ``imagegs restore`` and
``imagegs bench restore`` (tiny images, short fits)."""

import json

import numpy as np
import pytest
from PIL import Image as PILImage

import imagegs
from imagegs import restoration
from imagegs.bench import restore as bench
from imagegs.cli import main
from imagegs.metrics import psnr

STEPS = 150  # short fits: the tests check behaviour, not the benchmark's figures


def _shapes(h=64, w=64):
    """A clean synthetic picture: a smooth gradient with a disc and a bar (uint8 RGB)."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.stack([0.2 + 0.5 * x, 0.3 + 0.4 * y, 0.6 - 0.3 * x * y], -1)
    img[(x - 0.35) ** 2 + (y - 0.4) ** 2 < 0.04] = (0.9, 0.2, 0.1)
    img[(np.abs(x - 0.75) < 0.08) & (y > 0.2) & (y < 0.85)] = (0.1, 0.1, 0.5)
    return np.rint(img * 255).astype(np.uint8)


def _noisy(clean, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(np.rint(clean + rng.normal(0, sigma, clean.shape)), 0, 255).astype(np.uint8)


def _psnr8(a, b):
    return psnr(a.astype(np.float64), b.astype(np.float64), data_range=255.0)


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_noise_estimate_is_close_on_a_synthetic_image():
    clean = _shapes(128, 128)
    for sigma in (5, 15, 30):
        est = restoration.estimate_noise(_noisy(clean, sigma))
        assert est == pytest.approx(sigma, rel=0.15), (sigma, est)
    assert restoration.estimate_noise(clean) < 2


def test_content_features_see_content_not_noise():
    clean = _shapes(128, 128)
    flat = np.full_like(clean, 128)
    busy = restoration.content_features(clean)["detail"]
    assert restoration.content_features(_noisy(clean, 20))["detail"] == pytest.approx(busy, abs=1.5)
    assert restoration.content_features(_noisy(flat, 20))["detail"] < busy / 2


def test_auto_budget_shrinks_with_noise_and_grows_with_size():
    counts = [restoration.auto_budget(256, 256, s, 15.0) for s in (5, 10, 25, 50)]
    assert counts == sorted(counts, reverse=True) and counts[0] > counts[-1]
    assert restoration.auto_budget(512, 512, 25, 15.0) > restoration.auto_budget(256, 256, 25, 15.0)


def test_restore_picks_fewer_gaussians_for_noisier_input():
    clean = _shapes()
    low = imagegs.restore(_noisy(clean, 5), max_steps=20, polish_steps=0)
    high = imagegs.restore(_noisy(clean, 40), max_steps=20, polish_steps=0)
    assert low.estimated and high.estimated and high.sigma > low.sigma
    assert high.encoded.num < low.encoded.num


def test_restore_improves_psnr_and_returns_the_decoded_file():
    clean = _shapes()
    noisy = _noisy(clean, 25)
    r = imagegs.restore(noisy, max_steps=STEPS)
    out = imagegs.io.to_uint8(r.image)
    assert _psnr8(out, clean) > _psnr8(noisy, clean) + 3
    assert np.array_equal(out, imagegs.decode(r.data))  # the image is the file, decoded
    assert r.budget == "auto" and r.gaussians.num == r.encoded.num


def test_restore_overrides():
    noisy = _noisy(_shapes(32, 32), 25)
    r = imagegs.restore(noisy, gaussians=40, noise=10, max_steps=20, polish_steps=0)
    assert (r.encoded.num, r.sigma, r.estimated, r.budget) == (40, 10.0, False, "gaussians")
    r = imagegs.restore(noisy, bpp=4.0, max_steps=20, polish_steps=0)
    assert r.budget == "bpp" and r.encoded.bpp <= 4.0


@pytest.mark.parametrize("kwargs, match", [({"noise": -1}, ">= 0"), ({"noise": "loud"}, "'auto' or"),
                                           ({"bpp": 1, "gaussians": 10}, "not both")])
def test_restore_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        imagegs.restore(_shapes(16, 16), **kwargs)


def test_cli_restore_writes_image_and_file(tmp_path, capsys):
    src = tmp_path / "noisy.png"
    PILImage.fromarray(_noisy(_shapes(32, 32), 20)).save(src)
    rc, out, err = _run(capsys, "restore", src, "-o", tmp_path / "clean.png", "--igs", tmp_path / "c.igs",
                        "--steps", 20, "--quiet")
    assert rc == 0, err
    assert "noise" in out and "automatic budget" in out
    assert PILImage.open(tmp_path / "clean.png").size == (32, 32)
    assert np.array_equal(np.asarray(PILImage.open(tmp_path / "clean.png")), imagegs.decode(tmp_path / "c.igs"))


@pytest.mark.parametrize("args, match", [
    (("--noise", "-3"), "--noise"),
    (("--bpp", "0.3", "--gaussians", "10"), "--gaussians"),
    (("--noise", "abc"), "--noise"),
])
def test_cli_restore_bad_options_one_line(tmp_path, capsys, args, match):
    src = tmp_path / "in.png"
    PILImage.fromarray(_shapes(16, 16)).save(src)
    rc, _, err = _run(capsys, "restore", src, "-o", tmp_path / "o.png", *args)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and match in err
    assert not (tmp_path / "o.png").exists()


def test_cli_restore_unreadable_input_one_line(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_text("not an image")
    rc, _, err = _run(capsys, "restore", bad, "-o", tmp_path / "o.png")
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "broken.png" in err


def test_degradations_are_seeded_and_distinct():
    clean = _shapes(32, 32)
    a = bench.degrade(clean, "noise25", image="x")
    assert np.array_equal(a, bench.degrade(clean, "noise25", image="x"))
    assert not np.array_equal(a, bench.degrade(clean, "noise25", image="y"))
    assert np.std(a.astype(float) - clean) == pytest.approx(25, rel=0.15)
    jpeg = bench.degrade(clean, "jpeg10")
    assert jpeg.shape == clean.shape and not np.array_equal(jpeg, clean)
    with pytest.raises(ValueError, match="unknown degradation"):
        bench.degrade(clean, "blur3")


def test_bench_restore_end_to_end_and_resume(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    # large enough that JPEG's smallest file (its headers) is below restore's
    PILImage.fromarray(_shapes(64, 80)).save(folder / "shapes.png")
    out = tmp_path / "out"
    argv = ["bench", "restore", "--images", folder, "--samples", "", "--out", out, "--degradations", "noise25",
            "--methods", "degraded,restore,tv,jpeg", "--steps", 20, "--quiet"]
    rc, stdout, err = _run(capsys, *argv)
    assert rc == 0, err
    lines = (out / "records.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["method"] for x in lines) == ["degraded", "jpeg", "restore", "tv"]
    summary = json.loads((out / "summary.json").read_text())
    row = summary["table"]["noise25"]
    assert row["restore"]["bpp"] > 0 and row["jpeg"]["bpp"] <= row["restore"]["bpp"] + 1e-9
    assert "over_input" in summary["targets"]["noise25"] and "| restore |" in stdout
    assert (out / "restore_psnr.png").stat().st_size > 0

    def fail(task):
        raise AssertionError(f"recomputed {task['method']}")
    monkeypatch.setattr(bench, "run_task", fail)  # a rerun finds every record
    rc, _, err = _run(capsys, *argv)
    assert rc == 0, err
    assert len((out / "records.jsonl").read_text().splitlines()) == 4


@pytest.mark.parametrize("args, match", [(("--degradations", "blur"), "unknown 'blur'"),
                                         (("--methods", "jpeg"), "add restore"),
                                         (("--samples", "nosuch"), "nosuch")])
def test_bench_restore_bad_options_one_line(tmp_path, capsys, args, match):
    rc, _, err = _run(capsys, "bench", "restore", "--out", tmp_path / "o", *args)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and match in err


def test_bench_restore_through_the_batch_executor(tmp_path, capsys):
    """--workers 1: the same tasks on a local Dask cluster give the same records (timings aside),
    the codec matched to restore's size included."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    PILImage.fromarray(_shapes(32, 32)).save(folder / "shapes.png")
    common = ["bench", "restore", "--images", folder, "--samples", "", "--degradations", "noise25",
              "--methods", "degraded,restore,jpeg", "--steps", 10, "--quiet", "--threads", 1]
    records = {}
    for name, extra in (("local", ()), ("cluster", ("--workers", 1))):
        rc, _, err = _run(capsys, *common, "--out", tmp_path / name, *extra)
        assert rc == 0, err
        lines = [json.loads(x) for x in (tmp_path / name / "records.jsonl").read_text().splitlines()]
        records[name] = {r["method"]: (r["psnr"], r.get("bpp")) for r in lines}
    assert records["cluster"] == records["local"] and set(records["local"]) == {"degraded", "restore", "jpeg"}
