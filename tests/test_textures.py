"""Texture sets: map kinds, scalar maps as one channel, normal maps, kinds in the .igs, per-map
weights, bad inputs as one line, and ``imagegs bench textures`` end to end on a tiny stack."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from imagegs import codec, igsfile
from imagegs.bench import textures as bench
from imagegs.cli import main
from imagegs.io import read_image
from imagegs.metrics import angular_error
from imagegs.textures import (TextureError, assign_kinds, channel_weights, finish_maps, kind_from_name,
                              parse_map_weights, parse_maps, renormalize_normals)

SIZE = 24


def _normals(h: int, w: int) -> np.ndarray:
    """(H, W, 3) uint8: a smooth bump, unit normals in the (n + 1) / 2 encoding."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    n = np.stack([0.4 * np.sin(6 * x), 0.4 * np.cos(5 * y), np.ones_like(x)], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    return np.rint((n + 1) / 2 * 255).astype(np.uint8)


def _albedo(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)], -1).astype(np.uint8)


def _grey(h: int, w: int) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return ((x * 7 + y * 3) % 200 + 20).astype(np.uint8)


def make_stack(folder, size=SIZE, *, gloss="rgb-grey"):
    """rock_albedo (RGB), rock_normal (RGB), rock_gloss (RGB grey, R-only or grey L)."""
    folder.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(_albedo(size, size)).save(folder / "rock_albedo.png")
    PILImage.fromarray(_normals(size, size)).save(folder / "rock_normal.png")
    g = _grey(size, size)
    arr = {"rgb-grey": np.stack([g] * 3, -1), "red": np.stack([g, 0 * g, 0 * g], -1), "L": g}[gloss]
    PILImage.fromarray(arr).save(folder / "rock_gloss.png")
    return folder


def _run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ------------------------------------------------------------------------------------ kinds


@pytest.mark.parametrize("stem, kind", [
    ("rock_albedo", "colour"), ("Rock_Diffuse", "colour"), ("wall_BaseColor", "colour"),
    ("rock_normal", "normal"), ("rock_NRM", "normal"), ("rock_n", "normal"), ("normal", "normal"),
    ("brick-norm", "normal"), ("rock_gloss", "scalar"), ("rock_Roughness", "scalar"),
    ("rock_metal", "scalar"), ("rock_AO", "scalar"), ("rock_height", "scalar"), ("gloss", "scalar"),
    ("photo", None), ("rockn", None), ("snormal", None), ("gloss_extra", None)])
def test_kind_from_suffix(stem, kind):
    assert kind_from_name(stem) == kind


def test_parse_maps_and_weights():
    assert parse_maps("a:colour, b:NORMAL,c:scalar,d:color") == {
        "a": "colour", "b": "normal", "c": "scalar", "d": "colour"}
    assert parse_map_weights("normal:2, gloss:0.5") == {"normal": 2.0, "gloss": 0.5}
    for bad, match in (("a:metal", "unknown map kind 'metal'"), ("a", "name:value"), ("", "at least one")):
        with pytest.raises(TextureError, match=match):
            parse_maps(bad)
    for bad in ("normal:-1", "normal:x", "normal:nan"):
        with pytest.raises(TextureError, match="finite number >= 0"):
            parse_map_weights(bad)


def test_assign_kinds_overrides_and_unknown_names():
    names = ["rock_albedo", "rock_normal", "mask"]
    assert assign_kinds(names) == ["colour", "normal", "colour"]
    assert assign_kinds(names, "MASK:scalar,rock_normal:colour") == ["colour", "colour", "scalar"]
    with pytest.raises(TextureError, match="no map named 'rough'.*rock_albedo, rock_normal, mask"):
        assign_kinds(names, {"rough": "scalar"})


def test_channel_weights_by_name_kind_and_default():
    groups = [("albedo", 3), ("gloss", 1), ("normal", 3)]
    kinds = ["colour", "scalar", "normal"]
    w = channel_weights(groups, kinds, {"normal": 2, "GLOSS": 0.5})
    assert w.shape == (7, 1, 1)
    assert w.flatten().tolist() == [1, 1, 1, 0.5, 2, 2, 2]
    assert channel_weights(groups, kinds).flatten().tolist() == [1.0] * 7  # the measured default
    with pytest.raises(TextureError, match="no map or kind named 'rough'"):
        channel_weights(groups, kinds, {"rough": 1})
    with pytest.raises(TextureError, match="above 0"):
        channel_weights(groups, kinds, {"colour": 0, "normal": 0, "scalar": 0})


# ------------------------------------------------------------------------------- reading maps


@pytest.mark.parametrize("gloss", ["rgb-grey", "red", "L"])
def test_scalar_maps_are_one_channel(tmp_path, gloss):
    img = read_image(make_stack(tmp_path / "s", gloss=gloss))
    assert img.groups == [("rock_albedo", 3), ("rock_gloss", 1), ("rock_normal", 3)]
    assert img.kinds == ["colour", "scalar", "normal"] and img.map_kinds() == img.kinds
    assert img.channel_names[3] == "rock_gloss.L" and img.pixels.shape == (7, SIZE, SIZE)
    np.testing.assert_array_equal(np.rint(img.pixels[3].numpy() * 255).astype(np.uint8), _grey(SIZE, SIZE))


def test_maps_option_overrides_and_plain_images_have_no_kinds(tmp_path):
    folder = make_stack(tmp_path / "s")
    img = read_image(folder, maps="rock_gloss:colour")
    assert img.groups[1] == ("rock_gloss", 3) and img.kinds[1] == "colour"
    PILImage.fromarray(_albedo(8, 8)).save(tmp_path / "photo.png")
    assert read_image(tmp_path / "photo.png").map_kinds() is None


def test_scalar_map_must_be_grey_and_normal_needs_three_channels(tmp_path):
    folder = make_stack(tmp_path / "s")
    PILImage.fromarray(_albedo(SIZE, SIZE)).save(folder / "rock_gloss.png")  # colour, not grey
    with pytest.raises(TextureError, match="rock_gloss.png: a scalar map must be grey"):
        read_image(folder)
    PILImage.fromarray(_grey(SIZE, SIZE)).save(tmp_path / "x_normal.png")
    with pytest.raises(TextureError, match="x_normal.png: a normal map needs 3 channels"):
        read_image(tmp_path / "x_normal.png")


# ------------------------------------------------------------------------------------ normals


def test_renormalize_gives_unit_vectors_in_the_same_encoding():
    gen = torch.Generator().manual_seed(0)
    v = torch.rand(3, 8, 9, generator=gen, dtype=torch.float64)
    v[:, 0, 0] = 0.5  # the zero vector -> flat +Z
    r = renormalize_normals(v)
    n = r * 2 - 1
    torch.testing.assert_close(torch.linalg.vector_norm(n, dim=0), torch.ones(8, 9, dtype=torch.float64))
    assert r[:, 0, 0].tolist() == [0.5, 0.5, 1.0]
    assert angular_error(v[:, 1:], r[:, 1:]) < 1e-6  # directions unchanged
    unit = torch.from_numpy(_normals(6, 6).transpose(2, 0, 1) / 255.0)
    assert (renormalize_normals(unit) - unit).abs().max() < 1 / 255  # unit normals stay (8-bit rounding)
    stack = torch.cat([torch.full((1, 8, 9), 0.3, dtype=torch.float64), v])
    out = finish_maps(stack, [("gloss", 1), ("normal", 3)], ["scalar", "normal"])
    assert torch.equal(out[0], stack[0]) and torch.equal(out[1:], r)


def test_angular_error_known_angles():
    def encode(theta_deg):
        t = math.radians(theta_deg)
        n = torch.tensor([math.sin(t), 0.0, math.cos(t)], dtype=torch.float64).view(3, 1, 1).expand(3, 4, 4)
        return (n + 1) / 2

    assert angular_error(encode(0), encode(0)) == pytest.approx(0, abs=1e-5)
    assert angular_error(encode(0), encode(10)) == pytest.approx(10, abs=1e-6)
    assert angular_error(encode(-20), encode(25)) == pytest.approx(45, abs=1e-6)
    half = ((encode(30) * 2 - 1) * 0.5 + 1) / 2  # a shortened vector: same angle
    assert angular_error(encode(0), half) == pytest.approx(30, abs=1e-6)
    with pytest.raises(ValueError, match="3, H, W"):
        angular_error(torch.zeros(1, 4, 4), torch.zeros(1, 4, 4))


# ------------------------------------------------------------------------------------ .igs


@pytest.fixture(scope="module")
def encoded(tmp_path_factory):
    folder = make_stack(tmp_path_factory.mktemp("stack") / "s")
    image = read_image(folder)
    return image, codec.compress(image, num_gaussians=60, max_steps=40, polish_steps=10,
                                 map_weights={"normal": 2})


def test_kinds_round_trip_and_normals_decode_to_unit_vectors(encoded):
    image, enc = encoded
    h = codec.read_igs_header(enc.data)
    assert h.kinds == ["colour", "scalar", "normal"] and h.groups == image.groups
    assert enc.data[len(igsfile.MAGIC)] == 2  # kinds make the file version 2
    assert enc.bppc == pytest.approx(8 * len(enc.data) / (SIZE * SIZE * 7))
    out = codec.decode(enc.data, as_uint8=False)
    n = out[4:7] * 2 - 1
    torch.testing.assert_close(torch.linalg.vector_norm(n, dim=0), torch.ones(SIZE, SIZE), atol=1e-5, rtol=0)


def test_files_without_kinds_stay_version_1_and_bad_kinds_are_refused(encoded):
    _, enc = encoded
    q = igsfile.unpack(enc.data)[0]
    plain, _ = igsfile.pack(q, [q.num])
    assert plain[len(igsfile.MAGIC)] == 1 and igsfile.read_header(plain).kinds is None
    with pytest.raises(ValueError, match="a normal map has 3 channel"):
        igsfile.pack(q, [q.num], kinds=["colour", "normal", "normal"])
    with pytest.raises(ValueError, match="per channel group"):
        igsfile.pack(q, [q.num], kinds=["colour", "scalar"])
    # a version-1 file carrying field 13 is refused: the field exists from version 2 on
    v1 = bytearray(enc.data)
    v1[len(igsfile.MAGIC)] = 1
    with pytest.raises(igsfile.IGSFileError, match="unknown header field 13"):
        igsfile.read_header(bytes(v1))


# ------------------------------------------------------------------------------- command line


def test_cli_encode_info_decode_a_texture_set(tmp_path, capsys):
    folder = make_stack(tmp_path / "s", gloss="red")
    igs = tmp_path / "m.igs"
    rc, out, err = _run(capsys, "encode", folder, "-o", igs, "--gaussians", "40", "--steps", "30",
                        "--polish-steps", "5", "--quiet", "--map-weights", "normal:2")
    assert rc == 0, err
    assert "BPPC" in out and "rock_normal (normal)" in out and "angular error" in out
    rc, out, _ = _run(capsys, "info", igs)
    assert rc == 0 and "map kinds  rock_albedo: colour, rock_gloss: scalar, rock_normal: normal" in out
    assert "BPPC" in out and ".igs v2" in out
    rc, out, _ = _run(capsys, "decode", igs, "-o", tmp_path / "d.png")
    assert rc == 0
    assert PILImage.open(tmp_path / "d_rock_gloss.png").mode == "L"
    n = np.asarray(PILImage.open(tmp_path / "d_rock_normal.png")).astype(np.float64) / 255 * 2 - 1
    assert np.abs(np.linalg.norm(n, axis=-1) - 1).max() < 0.01  # unit vectors, 8-bit encoding


@pytest.mark.parametrize("extra, match", [
    (("--maps", "rock_gloss:shiny"), "unknown map kind 'shiny'"),
    (("--maps", "rough:scalar"), "no map named 'rough'"),
    (("--map-weights", "rough:2"), "no map or kind named 'rough'"),
    (("--map-weights", "normal:-2"), "finite number >= 0"),
])
def test_cli_bad_texture_options_are_one_line(tmp_path, capsys, extra, match):
    folder = make_stack(tmp_path / "s")
    rc, _, err = _run(capsys, "encode", folder, "-o", tmp_path / "m.igs", "--gaussians", "20", "--steps", "5",
                      "--quiet", *extra)
    assert rc == 2 and match in err and len(err.strip().splitlines()) == 1


def test_cli_fit_takes_maps_too(tmp_path, capsys):
    folder = make_stack(tmp_path / "s")
    rc, _, err = _run(capsys, "fit", folder, "-o", tmp_path / "m.gsm", "--maps", "rock_gloss:glossy", "--quiet")
    assert rc == 2 and "unknown map kind 'glossy'" in err and len(err.strip().splitlines()) == 1
    rc, _, err = _run(capsys, "fit", folder, "-o", tmp_path / "m.gsm", "--maps", "rock_gloss:colour",
                      "--gaussians", "20", "--steps", "5", "--quiet")
    assert rc == 0, err
    from imagegs import load_model

    assert load_model(tmp_path / "m.gsm").gaussians.groups[1] == ("rock_gloss", 3)


def test_cli_maps_of_different_sizes_are_one_line(tmp_path, capsys):
    folder = make_stack(tmp_path / "s")
    PILImage.fromarray(_normals(SIZE, SIZE + 4)).save(folder / "rock_normal.png")
    rc, _, err = _run(capsys, "encode", folder, "-o", tmp_path / "m.igs", "--gaussians", "20", "--quiet")
    assert rc == 2 and "same size" in err and "rock_normal.png 28x24" in err
    assert len(err.strip().splitlines()) == 1


# ------------------------------------------------------------------------------------ benchmark


def test_bench_textures_end_to_end_and_resumes(tmp_path, capsys, monkeypatch):
    stacks = tmp_path / "stacks"
    make_stack(stacks / "rock", size=48)
    out = tmp_path / "out"
    argv = ["bench", "textures", "--stacks", stacks, "--out", out, "--rates", "0.5,8",
            "--methods", "imagegs-joint,imagegs-separate,astc-12x12,jpeg", "--max-side", "40",
            "--schedule", "fast", "--steps", "40", "--quiet"]
    rc, stdout, err = _run(capsys, *argv)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    recs = {r["method"]: r for r in summary["records"] if r["rate"] in (8, None)}
    # 0.5 bits per texel is too few bytes for 40x40 maps: recorded as failed, not a crash
    assert {(r["method"], r["rate"]) for r in summary["failed"]} == {("imagegs-joint", 0.5),
                                                                     ("imagegs-separate", 0.5)}
    assert set(recs) == {"imagegs-joint", "imagegs-separate", "astc-12x12", "jpeg"}
    joint, sep, astc = recs["imagegs-joint"], recs["imagegs-separate"], recs["astc-12x12"]
    assert (joint["width"], joint["channels"], joint["files"], sep["files"]) == (40, 7, 1, 3)
    assert joint["bits_per_texel"] <= 8 and sep["bits_per_texel"] <= 8
    assert joint["bppc"] == pytest.approx(joint["bits_per_texel"] / 7)
    assert astc["bits_per_texel"] == pytest.approx(3 * 8 * 16 * 16 / (40 * 40))  # 4x4 blocks of 12x12, 3 maps
    assert joint["random_access"] and astc["random_access"] and not recs["jpeg"]["random_access"]
    for r in recs.values():
        kinds = {m["map"]: m for m in r["maps"]}
        assert "angle" in kinds["rock_normal"] and "angle" not in kinds["rock_albedo"]
        assert 10 < r["psnr"] < 80 and r["normal_angle"] >= 0
    assert set(summary["targets"]["rock"]) >= {"joint_minus_separate_db", "astc12_psnr"}
    assert "| imagegs joint |" in (out / "table.md").read_text() and (out / "textures.png").stat().st_size > 0
    assert "ASTC 12x12" in stdout

    calls = []
    monkeypatch.setattr(bench, "run_task", lambda task: calls.append(task))
    rc, _, _ = _run(capsys, *argv)
    assert rc == 0 and calls == []  # everything came from the cache


def test_bench_textures_through_the_executor_gives_the_same_records(tmp_path, monkeypatch):
    """``executor={"workers": 0}``: the batch executor's in-process loop, the stacks' maps sent
    with each task (not read by it)."""
    make_stack(tmp_path / "stacks" / "rock", size=32)
    monkeypatch.setattr(bench, "load_stack", lambda folder, max_side=None, _real=bench.load_stack: (
        calls.append(folder), _real(folder, max_side=max_side))[1])
    calls: list = []
    kw = {"rates": [8], "methods": "astc-12x12,jpeg", "progress": False}
    here = bench.run_textures(tmp_path / "stacks", tmp_path / "a", **kw)
    calls.clear()
    there = bench.run_textures(tmp_path / "stacks", tmp_path / "b", executor={"workers": 0}, **kw)
    assert len(calls) == 2  # the check before any work, and once to send the maps; no task read them
    def strip(recs):  # without the timings
        return [{k: v for k, v in r.items() if not k.endswith("_s")} for r in recs]

    assert strip(here["records"]) == strip(there["records"]) and len(there["records"]) == 2


def test_bench_textures_bad_input(tmp_path, capsys):
    rc, _, err = _run(capsys, "bench", "textures", "--stacks", tmp_path, "--out", tmp_path / "o")
    assert rc == 2 and "no sub-folders" in err
    make_stack(tmp_path / "rock")
    rc, _, err = _run(capsys, "bench", "textures", "--stacks", tmp_path, "--out", tmp_path / "o",
                      "--methods", "astc-13x13")
    assert rc == 2 and "unknown method 'astc-13x13'" in err
