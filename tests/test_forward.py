"""The forward-only decode kernels: whole images, regions, random access, anti-aliasing."""

import math

import numpy as np
import pytest
import torch

from imagegs import Gaussians, decode_pixels, render
from imagegs.renderer import prefilter, project, rasterize

from conftest import random_gaussians


def _pixel_centres(height, width, dtype=torch.float64):
    i, j = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                          indexing="ij")
    return torch.stack([(j.reshape(-1) + 0.5) / width, (i.reshape(-1) + 0.5) / height], 1).to(dtype)


@pytest.mark.parametrize("height,width", [(16, 16), (37, 53), (64, 48), (5, 90)])
@pytest.mark.parametrize("top_k", [10, 3, 1, None])
def test_decode_matches_reference_and_training_forward(height, width, top_k):
    g = random_gaussians(150, height, width, seed=height * width + 1)
    dec = render(g, top_k=top_k)  # no gradient: the decode kernel
    ref = render(g, top_k=top_k, backend="reference")
    torch.testing.assert_close(dec, ref, rtol=1e-9, atol=1e-10)
    params = [t.detach().clone().requires_grad_() for t in (g.xy, g.scale, g.rot, g.color)]
    train = render(Gaussians(*params, height, width), top_k=top_k, backend="cpu").detach()
    torch.testing.assert_close(dec, train, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("channels", [1, 3, 9])
@pytest.mark.parametrize("amplitude", [False, True])
def test_decode_channels_and_amplitudes(channels, amplitude):
    g = random_gaussians(200, 45, 61, channels=channels, spread=(-0.2, 1.2), seed=channels)
    means, conics, radii = project(g.xy, g.scale, g.rot, height=45, width=61, native_height=45, native_width=61)
    qoff = None
    if amplitude:  # amplitudes exp(-o/2) in (1e-3, 1]: reorders the top K
        qoff = torch.rand(g.num, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 14
    args = (means, conics, g.color, radii, 45, 61)
    dec = rasterize(*args, qoff=qoff)
    ref = rasterize(*args, qoff=qoff, backend="reference")
    torch.testing.assert_close(dec, ref, rtol=1e-9, atol=1e-10)
    if amplitude:
        assert (dec - rasterize(*args)).abs().max() > 1e-2  # the amplitudes matter


def test_decode_float32_close_to_float64():
    g = random_gaussians(400, 64, 80, seed=7)
    a = render(g)
    b = render(g.to(torch.float32))
    assert b.dtype == torch.float32
    torch.testing.assert_close(b.double(), a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("region", [(0, 0, 53, 37), (5, 7, 40, 30), (16, 16, 32, 32), (52, 36, 53, 37),
                                    (0, 20, 53, 21), (9, 0, 10, 37)])
def test_region_equals_crop(region):
    g = random_gaussians(250, 37, 53, seed=11)
    full = render(g)
    x0, y0, x1, y1 = region
    out = render(g, region=region)
    assert out.shape == (3, y1 - y0, x1 - x0)
    assert torch.equal(out, full[:, y0:y1, x0:x1])  # bit for bit
    ref = render(g, region=region, backend="reference")
    torch.testing.assert_close(ref, full[:, y0:y1, x0:x1], rtol=1e-9, atol=1e-10)


def test_region_at_other_size_with_antialias():
    g = random_gaussians(300, 64, 64, seed=12)
    full = render(g, 40, 50)
    assert torch.equal(render(g, 40, 50, region=(3, 30, 50, 40)), full[:, 30:40, 3:50])


def test_region_with_gradient_uses_reference():
    g = random_gaussians(60, 32, 32, seed=13)
    params = [t.detach().clone().requires_grad_() for t in (g.xy, g.scale, g.rot, g.color)]
    out = render(Gaussians(*params, 32, 32), region=(4, 4, 20, 12))
    out.sum().backward()
    assert params[0].grad is not None and params[0].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="reference"):
        render(Gaussians(*params, 32, 32), region=(4, 4, 20, 12), backend="cpu")


@pytest.mark.parametrize("region", [(0, 0, 0, 5), (3, 3, 2, 9), (-1, 0, 5, 5), (0, 0, 54, 10), (0, 0, 10, 38),
                                    (0.5, 0, 5, 5), (1, 2, 3), "abc"])
def test_bad_region(region):
    g = random_gaussians(10, 37, 53)
    with pytest.raises(ValueError, match="region"):
        render(g, region=region)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("height,width", [(37, 53), (64, 48)])
def test_decode_pixels_at_centres_equals_render(dtype, height, width):
    g = random_gaussians(300, 40, 40, seed=21).to(dtype)
    for top_k in (10, None):
        img = render(g, height, width, top_k=top_k)
        vals = decode_pixels(g, _pixel_centres(height, width), height=height, width=width, top_k=top_k)
        assert vals.dtype == dtype and vals.shape == (height * width, 3)
        if dtype == torch.float32:  # (j + 0.5) / W * W rounds to j + 0.5: the same value exactly
            assert torch.equal(vals, img.reshape(3, -1).T)
        else:  # in float64, (j + 0.5) / W * W can be j + 0.5 +- 1 ulp
            torch.testing.assert_close(vals, img.reshape(3, -1).T, rtol=1e-12, atol=1e-13)


def test_decode_pixels_random_points_match_reference():
    g = random_gaussians(300, 50, 70, spread=(-0.1, 1.1), seed=22)
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(3000, 2, generator=gen, dtype=torch.float64)
    xy[:5] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [0.5, 1.0]], dtype=torch.float64)
    for size in ((50, 70), (23, 31), (120, 77)):  # native, antialiased, upscaled grids
        for top_k in (10, 2, None):
            a = decode_pixels(g, xy, height=size[0], width=size[1], top_k=top_k)
            b = decode_pixels(g, xy, height=size[0], width=size[1], top_k=top_k, backend="reference")
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def test_decode_pixels_few_and_clustered_points():
    g = random_gaussians(200, 64, 64, seed=23)
    img = render(g)
    # one point, then 200 points in one pixel (many chunks of one tile), then an empty query
    xy = torch.tensor([[20.5 / 64, 33.5 / 64]], dtype=torch.float64)
    assert torch.equal(decode_pixels(g, xy)[0], img[:, 33, 20])
    many = xy.repeat(200, 1)
    assert torch.equal(decode_pixels(g, many), img[:, 33, 20].expand(200, 3))
    assert decode_pixels(g, torch.empty(0, 2, dtype=torch.float64)).shape == (0, 3)
    assert decode_pixels(g, np.array([[0.5, 0.5]])).shape == (1, 3)  # numpy input


def test_decode_pixels_gradient_through_reference():
    g = random_gaussians(40, 24, 24, seed=24)
    params = [t.detach().clone().requires_grad_() for t in (g.xy, g.scale, g.rot, g.color)]
    xy = torch.rand(50, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    decode_pixels(Gaussians(*params, 24, 24), xy).sum().backward()
    assert params[3].grad.abs().sum() > 0


@pytest.mark.parametrize("xy,match", [
    (torch.zeros(5, 3), "shape"), (torch.zeros(5), "shape"), (torch.tensor([[0.5, float("nan")]]), "NaN"),
    (torch.tensor([[0.5, 1.5]]), r"\[0, 1\]"), (torch.tensor([[-0.1, 0.5]]), r"\[0, 1\]"),
    ("points", "xy"), (torch.tensor([[True, False]]), "real")])
def test_decode_pixels_bad_input(xy, match):
    g = random_gaussians(10, 20, 20)
    with pytest.raises(ValueError, match=match):
        decode_pixels(g, xy)


def test_bad_filter_sigma():
    g = random_gaussians(10, 20, 20)
    for s in (-1.0, float("nan"), "x"):
        with pytest.raises(ValueError, match="filter_sigma"):
            render(g, 10, 10, filter_sigma=s)


# ---------------------------------------------------------------------------------- antialias


def test_antialias_identical_at_native_and_above():
    g = random_gaussians(200, 40, 50, seed=31)
    for h, w in ((40, 50), (80, 100), (41, 50), (40, 173)):
        a = render(g, h, w, antialias=True)
        b = render(g, h, w, antialias=False)
        assert torch.equal(a, b)


def test_prefilter_keeps_integral_and_widens():
    g = random_gaussians(50, 60, 60, seed=32)
    h, w = 20, 30  # ratios 3 (y) and 2 (x)
    m0, c0, r0 = project(g.xy, g.scale, g.rot, height=h, width=w, native_height=60, native_width=60)
    m1, c1, r1, qoff = prefilter(g.xy, g.scale, g.rot, height=h, width=w, native_height=60, native_width=60,
                                 sigma=0.5)
    torch.testing.assert_close(m1, m0)

    def cov(c):
        det = c[:, 0] * c[:, 2] - c[:, 1] ** 2
        return torch.stack([c[:, 2] / det, -c[:, 1] / det, c[:, 0] / det], 1)  # (xx, xy, yy)

    v0, v1 = cov(c0), cov(c1)
    # Sigma' = Sigma + sigma^2 (1 - 1/r^2) per axis, in output pixels
    torch.testing.assert_close(v1[:, 0] - v0[:, 0], torch.full_like(v0[:, 0], 0.25 * (1 - 1 / 4)))
    torch.testing.assert_close(v1[:, 2] - v0[:, 2], torch.full_like(v0[:, 0], 0.25 * (1 - 1 / 9)))
    torch.testing.assert_close(v1[:, 1], v0[:, 1])
    det0 = v0[:, 0] * v0[:, 2] - v0[:, 1] ** 2
    det1 = v1[:, 0] * v1[:, 2] - v1[:, 1] ** 2
    amp = torch.exp(-qoff / 2)
    torch.testing.assert_close(amp * det1.sqrt(), det0.sqrt())  # the integral is kept
    assert (r1 >= r0).all()


def _zone_plate_gaussians(n, dtype=torch.float64):
    """Tiny Gaussians on a grid coloured by a zone plate cos(k r^2): frequencies up to Nyquist."""
    side = int(round(math.sqrt(n)))
    c = (torch.arange(side, dtype=dtype) + 0.5) / side
    y, x = torch.meshgrid(c, c, indexing="ij")
    r2 = (x - 0.5) ** 2 + (y - 0.5) ** 2
    val = 0.5 + 0.5 * torch.cos(math.pi * side * r2 * 1.9)
    xy = torch.stack([x.reshape(-1), y.reshape(-1)], 1)
    scale = torch.full((side * side, 2), 0.6, dtype=dtype)
    return Gaussians(xy, scale, torch.zeros(side * side, dtype=dtype), val.reshape(-1, 1), side, side)


def test_antialias_reduces_aliasing_on_a_zone_plate():
    g = _zone_plate_gaussians(96 * 96)
    native = render(g)  # (1, 96, 96)
    for factor in (3, 4):
        # the ideal downscale: the native image box-filtered (nearly flat grey where the plate's
        # frequency exceeds the new Nyquist rate; point sampling folds it into moire instead)
        ideal = torch.nn.functional.avg_pool2d(native[None], factor)[0]
        size = 96 // factor
        err_naive = (render(g, size, size, antialias=False) - ideal).pow(2).mean().sqrt()
        err_aa = (render(g, size, size, antialias=True) - ideal).pow(2).mean().sqrt()
        assert err_aa < 0.6 * err_naive, (factor, float(err_aa), float(err_naive))


def test_antialias_decode_matches_reference_and_points():
    g = random_gaussians(300, 64, 80, seed=33)
    for h, w in ((32, 40), (21, 29), (64, 20)):
        a = render(g, h, w)
        b = render(g, h, w, backend="reference")
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
        vals = decode_pixels(g.to(torch.float32), _pixel_centres(h, w), height=h, width=w)
        assert torch.equal(vals, render(g.to(torch.float32), h, w).reshape(3, -1).T)


def test_antialias_gradient_auto_reference_and_cpu_error():
    g = random_gaussians(30, 32, 32, seed=34)
    params = [t.detach().clone().requires_grad_() for t in (g.xy, g.scale, g.rot, g.color)]
    gg = Gaussians(*params, 32, 32)
    render(gg, 16, 16, supersample=1).sum().backward()  # auto: the reference differentiates the filter
    assert params[1].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="reference"):
        render(gg, 16, 16, backend="cpu", supersample=1)
    # 2 x 2 sub-samples land on the native grid: no prefilter, the training kernel differentiates
    assert render(gg, 16, 16, backend="cpu").requires_grad
    assert render(gg, 16, 16, backend="cpu", antialias=False).requires_grad


def test_supersampling_averages_prefiltered_subsamples():
    g = random_gaussians(300, 60, 90, seed=35)
    # 60x90 -> 20x40: 3 x 3 sub-samples (ceil(90/40) = 3 across, 60/20 = 3 down), each prefiltered
    # for the remaining ratio (2.25 / 3 < 1 across: no widening there)
    out = render(g, 20, 40)
    hi = render(g, 60, 120, antialias=False)  # the sub-sample grid, at or above native: unfiltered
    torch.testing.assert_close(out, torch.nn.functional.avg_pool2d(hi[None], 3)[0], rtol=1e-12, atol=1e-12)
    only = render(g, 20, 40, supersample=1)  # the prefilter alone
    assert (only - out).abs().max() > 1e-3
    with pytest.raises(ValueError, match="supersample"):
        render(g, 20, 40, supersample=0)
