"""Quantisation of Gaussian attributes and the bitstream transforms (.igs payload)."""

import math

import numpy as np
import pytest
import torch

from conftest import random_gaussians
from imagegs import bitstream, render
from imagegs.quantize import Bits, color_clip, canonicalize, dequantize, fake_quantize, quantize


def test_bits_parse():
    assert Bits.parse(12) == Bits(12, 12, 12, 12)
    assert Bits.parse("14,8,7,10") == Bits(14, 8, 7, 10)
    assert Bits.parse("position=12,color=6") == Bits(12, 16, 16, 6)
    assert Bits.parse((10, 8, 8, 8)) == Bits(10, 8, 8, 8)
    assert Bits(16, 16, 16, 16).payload_bits(3) == 128  # the official formula: (2+2+1+3) * 16
    for bad in ("3", "17", "1,2", "a,b,c,d", "size=8", (8, 8, 8)):
        with pytest.raises(ValueError):
            Bits.parse(bad)


def test_canonicalize_is_the_same_function():
    g = random_gaussians(300, 40, 56, seed=3, dtype=torch.float32)
    s, r = canonicalize(g.scale, g.rot)
    assert (s[:, 0] >= s[:, 1]).all() and (r >= 0).all() and (r < math.pi).all()
    from dataclasses import replace

    a = render(g, top_k=None, backend="reference")
    b = render(replace(g, scale=s, rot=r), top_k=None, backend="reference")
    torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-4)


@pytest.mark.parametrize("bits", [16, 8, 4])
def test_quantize_error_bounds(bits):
    g = random_gaussians(500, 64, 80, channels=5, seed=1, dtype=torch.float32)
    q = quantize(g, bits)
    d = dequantize(q)
    assert d.num == g.num and d.channels == 5 and (d.height, d.width) == (64, 80)
    step = lambda lo, hi: (hi - lo) / (2**bits - 1)  # noqa: E731
    for col in range(2):
        lo, hi = q.pos_range[col]
        assert (d.xy[:, col] - g.xy[:, col]).abs().max() <= step(lo, hi) / 2 * 1.001 + 1e-7
    for c in range(5):  # colours: clipped to their quantile range at <= 7 bits, then rounded
        lo, hi = q.color_range[c]
        if bits > 7:
            assert lo == g.color[:, c].min() and hi == g.color[:, c].max()
        assert lo <= g.color[:, c].min() + 0.05 and hi >= g.color[:, c].max() - 0.05  # 0.2% clipped
        expect = g.color[:, c].clamp(float(lo), float(hi))
        assert (d.color[:, c] - expect).abs().max() <= step(lo, hi) / 2 * 1.001 + 1e-6
    s, r = canonicalize(g.scale, g.rot)
    for col in range(2):
        lo, hi = q.scale_range[col]
        err = (torch.log(d.scale[:, col]) - torch.log(s[:, col])).abs().max()
        assert err <= step(lo, hi) / 2 * 1.001 + 1e-5
    dr = torch.remainder(d.rot - r + math.pi / 2, math.pi) - math.pi / 2  # periodic difference
    assert dr.abs().max() <= math.pi / 2**bits / 2 + 1e-6
    # 16 bits: the rendering barely changes
    if bits == 16:
        # (plain sum: a top-K selection may flip between near-tied Gaussians)
        torch.testing.assert_close(render(d, top_k=None, backend="reference"),
                                   render(g, top_k=None, backend="reference"),
                                   atol=2e-3, rtol=0)


def test_quantize_constant_columns_and_empty():
    g = random_gaussians(10, 16, 16, seed=2, dtype=torch.float32)
    g.color[:] = 0.25
    d = dequantize(quantize(g, 6))
    assert torch.equal(d.color, torch.full_like(d.color, 0.25))
    empty = dequantize(quantize(g[:0], 8))
    assert empty.num == 0


def test_quantize_rejects_bad_values():
    g = random_gaussians(10, 16, 16, seed=2, dtype=torch.float32)
    g.xy[3, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        quantize(g, 8)


def test_fake_quantize_forward_is_quantize_and_backward_identity():
    g = random_gaussians(200, 32, 32, seed=4, dtype=torch.float32)
    q = dequantize(quantize(g, 7))
    col = g.color.clone().requires_grad_()
    fq = fake_quantize(col, 7, clip=color_clip(7))
    torch.testing.assert_close(fq, q.color, atol=1e-6, rtol=0)
    fq.sum().backward()
    assert torch.equal(col.grad, torch.ones_like(col))
    rot = torch.tensor([0.0, 1.0, 3.1, 3.14159, -0.2])
    rq = fake_quantize(rot, 4, periodic=math.pi)
    steps = rq / (math.pi / 16)
    torch.testing.assert_close(steps, steps.round(), atol=1e-4, rtol=0)


def test_morton_round_trip():
    rng = np.random.default_rng(0)
    for b in (4, 11, 16):
        x, y = rng.integers(0, 2**b, 1000), rng.integers(0, 2**b, 1000)
        m = bitstream.morton_encode(x, y, b)
        assert m.max() < 2 ** (2 * b)
        x2, y2 = bitstream.morton_decode(m, b)
        assert (x2 == x).all() and (y2 == y).all()


@pytest.mark.parametrize("coder", sorted(bitstream.CODER_NAMES))
@pytest.mark.parametrize("bits", [(16, 16, 16, 16), (10, 5, 4, 7)])
def test_level_round_trip(coder, bits):
    rng = np.random.default_rng(1)
    n, pb = 777, bits[0]
    pos = rng.integers(0, 2**pb, (n, 2))
    pos[5] = pos[6]  # duplicates are fine
    widths = [bits[1], bits[1], bits[2], bits[3], bits[3], bits[3]]
    cols = [rng.integers(0, 2**w, n) for w in widths]
    cols[4] = np.clip(cols[3] + rng.integers(-3, 4, n), 0, 2**bits[3] - 1)  # a predictable channel
    preds = bitstream.choose_predictors(cols, widths, [0, 0, 1, 2, 2, 2])
    assert preds[4] == 3
    block, order = bitstream.encode_level(pos, cols, pos_bits=pb, bits=widths, preds=preds, coder=coder)
    p2, c2 = bitstream.decode_level(block, n, pos_bits=pb, bits=widths, preds=preds, coder=coder)
    assert (p2 == pos[order]).all()
    for a, b in zip(cols, c2):
        assert (b == a[order]).all()
    with pytest.raises(bitstream.BitstreamError):
        bitstream.decode_level(block, n + 1, pos_bits=pb, bits=widths, preds=preds, coder=coder)
