"""Image -> .igs -> image: quantisation-aware fitting, rate control, decoding, the CLI."""

import functools
import re
from dataclasses import replace

import numpy as np
import pytest
import torch
from skimage import data, transform

from imagegs import codec, fit, igsfile, metrics, ratecontrol, render
from imagegs.cli import main
from imagegs.fitting import SCHEDULES
from imagegs.loss import normalize_pixel_weights
from imagegs.quantize import Bits, dequantize, quantize


@pytest.fixture(scope="module")
def coffee():
    img = transform.resize(data.coffee(), (48, 72), anti_aliasing=True)
    return (img * 255).round().astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    t = lambda x: torch.from_numpy(x).permute(2, 0, 1).double() / 255  # noqa: E731
    return metrics.psnr(t(a), t(b))


def test_fit_reports_levels_and_lod_training(coffee):
    g = fit(coffee, num_gaussians=400, max_steps=120)
    assert g.fit_info["levels"] == [200, 100, 100] and g.num == 400  # additions at 50, 100
    g2 = fit(coffee, num_gaussians=400, max_steps=120, lod_training=True)
    assert g2.fit_info["levels"] == [200, 100, 100]
    assert not torch.equal(g.xy, g2.xy)
    with pytest.raises(ValueError, match="lod_every"):
        fit(coffee, num_gaussians=400, lod_training=True, lod_every=0)


def test_quantisation_aware_fit_sees_the_file(coffee):
    """With quant_bits the fit's forward is the decoder's image, bit for bit (same grids,
    canonical axes, clipped colour range), and quantising happens only from quant_start on."""
    import sys

    from imagegs.renderer import project, rasterize

    fit_mod = sys.modules["imagegs.fitting"]
    bits = Bits(10, 5, 5, 5)
    g = fit(coffee, num_gaussians=300, max_steps=60, quant_bits=bits.as_tuple(), quant_start=0.5)
    h, w = coffee.shape[:2]
    with torch.no_grad():
        xy, inv, r, c = fit_mod._fake_quantize_params(g.xy, 1 / g.scale, g.rot, g.color, bits)
        m, con, rad = project(xy, inv, r, height=h, width=w, native_height=h, native_width=w,
                              inverse_scale=True)
        seen = rasterize(m, con, c, rad, h, w)
        decoded = render(dequantize(quantize(g, bits)))
    torch.testing.assert_close(seen, decoded, atol=1e-5, rtol=0)
    assert not torch.allclose(render(g), decoded, atol=1e-3)  # 5 bits do change the image
    # quant_start=1.0: never quantised, the same fit as without quant_bits
    g2 = fit(coffee, num_gaussians=300, max_steps=60, quant_bits=bits.as_tuple(), quant_start=1.0)
    g3 = fit(coffee, num_gaussians=300, max_steps=60)
    torch.testing.assert_close(g2.xy, g3.xy)


@pytest.mark.parametrize("bpp", [1.5, 4.0])
def test_rate_control_hits_the_target(coffee, bpp):
    enc = codec.compress(coffee, bpp=bpp, max_steps=80)
    h, w = coffee.shape[:2]
    assert enc.bpp == 8 * len(enc.data) / (h * w)
    assert (1 - ratecontrol.RATE_TOLERANCE) * bpp <= enc.bpp <= bpp
    assert sum(enc.levels) == enc.num
    out = codec.decode(enc.data)
    assert out.shape == coffee.shape and out.dtype == np.uint8
    assert _psnr(out, coffee) > 18


def test_bit_depths_and_count_settle_or_cycle():
    """default_bits depends on the count and the count on the bits. Where they settle, one
    (bits, count) pair is a fixed point; where they cycle (1024^2 at 0.3 bpp: 6 bits ask for a
    count that asks for 7 and back), every pair of the cycle is returned, entered from either side."""
    h = w = 1024
    cycles = 0
    for bpp in (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0):
        budget = bpp * h * w / 8 * ratecontrol.OVERSHOOT
        pairs = ratecontrol.settle_bits(h, w, budget, 3, ratecontrol.default_bits(h, w))
        for i, (bits, n) in enumerate(pairs):
            assert n == ratecontrol.count_for_budget(budget, bits, 3)
            assert ratecontrol.default_bits(h, w, num_gaussians=n) == pairs[(i + 1) % len(pairs)][0]
        cycles += len(pairs) > 1
    assert cycles >= 1
    budget = 0.3 * h * w / 8 * ratecontrol.OVERSHOOT
    for start in (Bits(12, 7, 7, 7), Bits(12, 6, 6, 6), Bits(16, 8, 8, 8)):
        assert {b for b, _ in ratecontrol.settle_bits(h, w, budget, 3, start)} == {Bits(12, 6, 6, 6), Bits(12, 7, 7, 7)}


def test_a_cycle_encodes_both_depths_and_keeps_the_closer_file(monkeypatch, coffee):
    """Where the depths cycle, both are fitted (schedules other than c2f: one fit each) and the file
    that decodes closer is returned."""
    h, w = coffee.shape[:2]
    pair = [(Bits(10, 6, 6, 6), 300), (Bits(10, 7, 7, 7), 260)]
    monkeypatch.setattr(codec, "settle_bits", lambda *a, **k: pair)
    enc = codec.compress(coffee, bpp=3.0, max_steps=60, schedule="fast")
    assert enc.fit_info["bits_tried"] == [str(b) for b, _ in pair]
    errs = enc.fit_info["mse_tried"]
    assert enc.bits == pair[int(np.argmin(errs))][0] and enc.fits >= 2
    assert len(enc.data) <= 3.0 * h * w / 8
    mse = float(np.mean((codec.decode(enc.data).astype(float) - coffee) ** 2)) / 255**2
    assert abs(mse - min(errs)) < 0.25 * min(errs) + 1e-4  # the returned file is the measured one


def test_one_fit_derives_both_depths_from_one_fit(monkeypatch, coffee):
    """one_fit: where the depths cycle, one fit (for the larger count) is pruned to the budget at
    each depth, and the closer file kept; QAT cannot share a float fit."""
    h, w = coffee.shape[:2]
    pair = [(Bits(10, 6, 6, 6), 300), (Bits(10, 7, 7, 7), 260)]
    monkeypatch.setattr(codec, "settle_bits", lambda *a, **k: pair)
    fitted = []
    real_fit = codec.fit
    monkeypatch.setattr(codec, "fit", lambda *a, **k: fitted.append(k["num_gaussians"]) or real_fit(*a, **k))
    enc = codec.compress(coffee, bpp=3.0, max_steps=60, one_fit=True)
    assert fitted[0] == 300 and enc.fits == len(fitted)
    assert enc.fit_info["bits_tried"] == [str(b) for b, _ in pair]
    assert enc.bits == pair[int(np.argmin(enc.fit_info["mse_tried"]))][0]
    assert (1 - ratecontrol.RATE_TOLERANCE) * 3.0 * h * w / 8 <= len(enc.data) <= 3.0 * h * w / 8
    with pytest.raises(ValueError, match="one_fit.*qat"):
        codec.compress(coffee, bpp=3.0, max_steps=60, one_fit=True, qat=0.0)


def test_c2f_schedule_brings_its_coding_defaults(monkeypatch, coffee):
    """schedule="c2f" (the coarse-to-fine encoder) refines the pruned fit and shares one fit
    between bit depths unless told otherwise; other schedules do neither."""
    seen = []
    real = codec._at_rate
    monkeypatch.setattr(codec, "_at_rate", lambda job, depths, *a: seen.append((job.refine_steps, len(depths)))
                        or real(job, depths, *a))
    pair = [(Bits(10, 6, 6, 6), 300), (Bits(10, 7, 7, 7), 260)]
    monkeypatch.setattr(codec, "settle_bits", lambda *a, **k: pair)
    codec.compress(coffee, bpp=3.0, schedule="c2f", max_steps=40)
    assert seen == [(SCHEDULES["c2f"]["final_steps"], 2)]
    seen.clear()
    codec.compress(coffee, bpp=3.0, schedule="c2f", max_steps=40, refine_steps=0, one_fit=False)
    assert seen == [(0, 1), (0, 1)]
    seen.clear()
    codec.compress(coffee, bpp=3.0, schedule="fast", max_steps=40)
    assert seen == [(0, 1), (0, 1)]


def test_refine_steps_refit_the_pruned_model(coffee):
    """refine_steps: the kept Gaussians get more full-size steps before the polish; the file
    still lands within the rate, and a bad count is one clear error."""
    h, w = coffee.shape[:2]
    enc = codec.compress(coffee, bpp=3.0, max_steps=60, refine_steps=30, schedule="fast")
    assert (1 - ratecontrol.RATE_TOLERANCE) * 3.0 * h * w / 8 <= len(enc.data) <= 3.0 * h * w / 8
    plain = codec.compress(coffee, bpp=3.0, max_steps=60, schedule="fast")
    assert _psnr(codec.decode(enc.data), coffee) > _psnr(codec.decode(plain.data), coffee)
    with pytest.raises(ValueError, match="refine_steps"):
        codec.compress(coffee, bpp=3.0, refine_steps=-1)


def test_depths_are_probed_then_only_the_closest_is_refined(monkeypatch, coffee):
    """With two bit depths from one fit, each pruned model gets PROBE_STEPS refine steps and only
    the one predicted to decode closest gets the rest; the file names both depths it tried."""
    from imagegs.fitting import FitState

    steps = []
    real_step = FitState.step
    monkeypatch.setattr(FitState, "step", lambda self, *a: steps.append(self) or real_step(self, *a))
    pair = [(Bits(10, 6, 6, 6), 300), (Bits(10, 7, 7, 7), 260)]
    monkeypatch.setattr(codec, "settle_bits", lambda *a, **k: pair)
    enc = codec.compress(coffee, bpp=3.0, max_steps=40, one_fit=True, refine_steps=150)
    per_state = sorted(sum(t is s for t in steps) for s in {id(t): t for t in steps}.values())  # fit, refiners
    assert per_state == [40, codec.PROBE_STEPS, 150]
    assert len(enc.fit_info["bits_tried"]) == 2 and str(enc.bits) in enc.fit_info["bits_tried"]
    chosen = enc.fit_info["bits_tried"].index(str(enc.bits))
    assert enc.fit_info["mse_tried"][chosen] == min(enc.fit_info["mse_tried"])


def test_a_fixed_count_is_refined_too(monkeypatch, coffee):
    """--gaussians N with c2f: its fit stops at the coarse scales, so the kept model is refined
    at full size (CODING's refine_steps) as at a rate."""
    from imagegs.fitting import FitState

    steps = []
    real_step = FitState.step
    monkeypatch.setattr(FitState, "step", lambda self, *a: steps.append(self) or real_step(self, *a))
    enc = codec.compress(coffee, num_gaussians=120, max_steps=40)
    assert len(steps) == 40 + SCHEDULES["c2f"]["final_steps"] and enc.num == 120


def test_neighbour_depths():
    """A one-fit encode whose default depths settle on one candidate also tries the depth above
    (6 -> 7, 7 -> 8; 8 is the most the defaults give), from the same fit."""
    assert ratecontrol.neighbour_depths(Bits(12, 6, 6, 6)) == [Bits(12, 7, 7, 7)]
    assert ratecontrol.neighbour_depths(Bits(12, 7, 7, 7)) == [Bits(12, 8, 8, 8)]
    assert ratecontrol.neighbour_depths(Bits(12, 8, 8, 8)) == []
    assert ratecontrol.neighbour_depths(Bits(12, 8, 6, 6)) == []  # not a default depth


def test_one_fit_encode_tries_the_neighbours(monkeypatch, coffee):
    monkeypatch.setattr(codec, "settle_bits", lambda *a, **k: [(Bits(10, 6, 6, 6), 300)])
    fitted = []
    real_fit = codec.fit
    monkeypatch.setattr(codec, "fit", lambda *a, **k: fitted.append(k["num_gaussians"]) or real_fit(*a, **k))
    enc = codec.compress(coffee, bpp=3.0, max_steps=40, refine_steps=20)
    assert enc.fit_info["bits_tried"] == [str(Bits(10, 6, 6, 6)), str(Bits(10, 7, 7, 7))]
    assert fitted[0] == 300  # the larger count (6 bits)
    plain = codec.compress(coffee, bpp=3.0, max_steps=40, refine_steps=20, one_fit=False)
    assert "bits_tried" not in plain.fit_info and plain.bits == Bits(10, 6, 6, 6)


def test_predicted_error_extrapolates_the_gain_per_doubling():
    """Half the error from 50 to 100 steps: another two doublings (to 400 steps) quarter it again."""
    assert codec._predicted_error(0.4, 0.2, doublings=2) == pytest.approx(0.05)
    assert codec._predicted_error(0.4, 0.2, doublings=0) == 0.2
    assert codec._predicted_error(0.0, 0.0, doublings=2) == 0.0


def test_a_polish_that_decodes_worse_is_dropped(monkeypatch, coffee):
    """The colour polish is kept only where its file decodes closer than the unpolished one (its
    varied colours cost bytes, and the re-pruning can lose more than it gains)."""
    plain = codec.compress(coffee, bpp=3.0, max_steps=60, polish_steps=0)
    real = codec.polish_colors
    monkeypatch.setattr(codec, "polish_colors", lambda g, *a, **k: (lambda gp, q: (
        gp.__class__(**{**gp.__dict__, "color": gp.color * 0}), q))(*real(g, *a, **k)))
    spoiled = codec.compress(coffee, bpp=3.0, max_steps=60)
    assert spoiled.data == plain.data


def test_coverage_is_each_gaussians_summed_blend_weight(coffee):
    """coverage() (one backward pass of the fast kernels) against the torch reference renderer's
    autograd; the weights of a pixel sum to ~1, so the total is ~the pixel count."""
    g = fit(coffee, num_gaussians=150, max_steps=40)
    cov = ratecontrol.coverage(g)
    ones = torch.ones(g.num, 1, dtype=torch.float64, requires_grad=True)
    g64 = g.to(torch.float64)
    from dataclasses import replace as _replace
    render(_replace(g64, color=ones), backend="reference").sum().backward()
    torch.testing.assert_close(cov.double(), ones.grad[:, 0], atol=1e-3, rtol=1e-4)
    assert (cov >= 0).all() and 0.97 * coffee.shape[0] * coffee.shape[1] < cov.sum() <= coffee.shape[0] * coffee.shape[1]


def test_pruning_keeps_the_ranking_that_decodes_better(coffee):
    """The rate control prunes to the budget by coverage or by addition order, whichever file
    decodes closer to the image; the level layout follows the kept Gaussians."""
    g = fit(coffee, num_gaussians=400, max_steps=150)
    levels, bits = g.fit_info["levels"], Bits(10, 6, 6, 6)
    target = torch.from_numpy(coffee).permute(2, 0, 1).float() / 255
    pack = functools.partial(codec._pack, bits=bits, top_k=10, metadata=None)
    full, _ = pack(g, levels)
    budget = 0.75 * len(full)
    data, gq, lv, kept = ratecontrol.fit_budget(g, target, levels, budget, pack, 10)
    assert len(data) <= budget and sum(lv) == gq.num == kept.num and len(lv) <= len(levels)
    mse = lambda m: float(((ratecontrol.rasterize_model(m, 10) - target) ** 2).mean())  # noqa: E731
    errors = []
    for order in (torch.argsort(ratecontrol.coverage(g), descending=True, stable=True), torch.arange(g.num)):
        def packed(n):
            pruned, lv_n = ratecontrol.prune(g, levels, order, n)
            return pack(pruned, lv_n)
        n = gq.num
        while len(packed(n + 1)[0]) <= budget:
            n += 1  # the most this ranking fits in the budget
        while len(packed(n)[0]) > budget:
            n -= 1
        errors.append(mse(packed(n)[1]))
    assert mse(gq) == pytest.approx(min(errors), rel=1e-6)
    assert max(errors) > 1.2 * min(errors)  # the choice matters


def test_colour_polish_recovers_quantisation_error(coffee):
    g = fit(coffee, num_gaussians=300, max_steps=150)
    bits = Bits(9, 5, 5, 5)
    target = torch.from_numpy(coffee).permute(2, 0, 1).float() / 255
    plain, q0 = codec.polish_colors(g, target, bits, steps=0)
    polished, grid = codec.polish_colors(g, target, bits, steps=150)
    torch.testing.assert_close(plain.xy, polished.xy)  # geometry untouched
    d0, gq0 = codec._pack(plain, [g.num], bits=bits, top_k=10, metadata=None, ranges=q0)
    d1, gq1 = codec._pack(polished, [g.num], bits=bits, top_k=10, metadata=None, ranges=grid)
    mse = lambda m: float(((render(m) - target) ** 2).mean())  # noqa: E731
    assert mse(gq1) < 0.985 * mse(gq0)  # measured: -2.4%
    # the file holds the geometry it was polished on (the ranges were reused)
    torch.testing.assert_close(gq1.scale, gq0.scale)


def test_colour_polish_is_the_least_squares_colours(coffee):
    """The polish's conjugate gradients reach the (weighted) least-squares colours of the quantised
    geometry: its reference twin builds the blend matrix A column by column (one render per
    Gaussian with a unit colour) and solves min || sqrt(W) (A c - y) || densely."""
    img = coffee[:24, :32]
    g = fit(img, num_gaussians=40, max_steps=60)
    bits = Bits(10, 6, 6, 6)
    target = torch.from_numpy(img).permute(2, 0, 1).double() / 255
    weights = torch.rand(1, 24, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64) + 0.5
    polished, _ = codec.polish_colors(g, target.float(), bits, steps=200, pixel_weights=weights)
    gq = dequantize(quantize(g, bits))
    columns = []
    for i in range(gq.num):
        unit = torch.zeros(gq.num, 1)
        unit[i] = 1
        columns.append(render(replace(gq, color=unit)).reshape(-1).double())
    a = torch.stack(columns, 1)  # (pixels, N)
    wn = normalize_pixel_weights(weights, (3, 24, 32)).double()[0].reshape(-1, 1).sqrt()
    want = torch.linalg.lstsq(wn * a, wn * target.reshape(3, -1).T).solution  # (N, 3)
    torch.testing.assert_close(polished.color.double(), want, atol=2e-3, rtol=0)
    torch.testing.assert_close(polished.xy, gq.xy)  # geometry: the quantised one


def test_rate_control_errors(coffee):
    with pytest.raises(codec.RateControlError, match="too few"):
        codec.compress(coffee, bpp=0.01)
    for bad in (0, -1, float("nan"), "x"):
        with pytest.raises(ValueError):
            codec.compress(coffee, bpp=bad)
    for bad in (-1, 1.5, "x"):
        with pytest.raises(ValueError, match="polish_steps"):
            codec.compress(coffee, bpp=1, polish_steps=bad)
    with pytest.raises(ValueError, match="either"):
        codec.compress(coffee, bpp=1, num_gaussians=10)


def test_decode_sizes_lod_and_gaussians(coffee):
    enc = codec.compress(coffee, num_gaussians=300, max_steps=100, bits=16)
    g = codec.decode_gaussians(enc.data)
    torch.testing.assert_close(g.xy, enc.gaussians.xy)
    assert codec.read_igs_header(enc.data).num == g.num == enc.num
    assert codec.decode(enc.data, height=96, width=144).shape == (96, 144, 3)
    full = _psnr(codec.decode(enc.data), coffee)
    coarse = _psnr(codec.decode(enc.data, lod=1), coffee)
    assert coarse < full
    img = codec.decode(enc.data, as_uint8=False)
    assert img.shape == (3, 48, 72) and img.dtype == torch.float32


def test_decode_caps_pixels_and_errors_name_the_file(coffee, tmp_path):
    """A small file whose header claims a huge size is refused before any allocation (default cap
    2^28 pixels, as the command line), unless max_pixels is raised; errors name the user's file."""
    enc = codec.compress(coffee, num_gaussians=50, max_steps=20)
    path = codec.save_igs(enc.data, tmp_path / "c.igs")
    with pytest.raises(ValueError, match="over the limit of 268,435,456 pixels"):
        codec.decode(path, height=20000, width=20000)
    assert codec.decode(path, height=4, width=6, max_pixels=24).shape == (4, 6, 3)
    with pytest.raises(ValueError, match="over the limit of 23 pixels"):
        codec.decode(path, height=4, width=6, max_pixels=23)
    cut = tmp_path / "cut.igs"
    cut.write_bytes(enc.data[:-10])
    for fn in (codec.decode, codec.decode_gaussians, codec.read_igs_header, codec.load_igs):
        with pytest.raises(igsfile.IGSFileError, match=f"^{re.escape(str(cut))}: truncated file: "):
            fn(cut)
    text = tmp_path / "text.igs"
    text.write_text("hello")
    with pytest.raises(igsfile.IGSFileError, match=f"^{re.escape(str(text))}: not an .igs file"):
        codec.decode(text)


def test_encoded_repr_is_a_summary(coffee):
    enc = codec.compress(coffee, num_gaussians=50, max_steps=20)
    text = repr(enc)
    assert text.startswith(f"Encoded({len(enc.data):,} bytes, ") and "50 Gaussians" in text
    assert "tensor" not in text and len(text) < 200


def test_cli_encode_decode_info(tmp_path, coffee, capsys):
    from PIL import Image

    src = tmp_path / "coffee.png"
    Image.fromarray(coffee).save(src)
    out = tmp_path / "c.igs"
    assert main(["encode", str(src), "-o", str(out), "--bpp", "3", "--steps", "60", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "bpp" in text and "PSNR" in text
    assert 0.95 * 3 <= 8 * out.stat().st_size / (48 * 72) <= 3
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert ".igs v1" in text and "level 1" in text
    png = tmp_path / "d.png"
    assert main(["decode", str(out), "-o", str(png), "--scale", "2", "--lod", "2"]) == 0
    assert Image.open(png).size == (144, 96)
    assert main(["decode", str(out), "-o", str(png), "--scale", "0.5", "--region", "4,2,20,14"]) == 0
    assert Image.open(png).size == (16, 12)
    # errors: one line, exit 2, nothing written
    bad = tmp_path / "bad.igs"
    bad.write_bytes(out.read_bytes()[:-5])
    assert main(["decode", str(bad), "-o", str(tmp_path / "x.png")]) == 2
    assert "truncated" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    assert main(["decode", str(out), "-o", str(tmp_path / "x.png"), "--lod", "9"]) == 2
    assert "level of detail" in capsys.readouterr().err
    assert main(["encode", str(src), "-o", str(out), "--bits", "3"]) == 2
    assert "bits" in capsys.readouterr().err
    assert main(["encode", str(src), "-o", str(out), "--bpp", "0.001", "--quiet"]) == 2
    assert "bpp" in capsys.readouterr().err
    assert main(["encode", str(src), "-o", str(out), "--polish-steps", "-1", "--quiet"]) == 2
    assert "polish-steps" in capsys.readouterr().err


def test_cli_encode_texture_stack_keeps_maps(tmp_path, coffee):
    from PIL import Image

    folder = tmp_path / "stack"
    folder.mkdir()
    Image.fromarray(coffee).save(folder / "albedo.png")
    Image.fromarray(coffee[..., 0]).save(folder / "gloss.png")
    out = tmp_path / "m.igs"
    assert main(["encode", str(folder), "-o", str(out), "--gaussians", "200", "--steps", "40", "--quiet"]) == 0
    h = igsfile.read_header(out.read_bytes())
    assert h.channels == 4 and h.groups == [("albedo", 3), ("gloss", 1)]
    assert main(["decode", str(out), "-o", str(tmp_path / "d.png")]) == 0
    assert (tmp_path / "d_albedo.png").exists() and (tmp_path / "d_gloss.png").exists()
