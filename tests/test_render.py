"""The fused CPU kernels against the pure-PyTorch reference: forward and every gradient."""

import math

import pytest
import torch

from imagegs import Gaussians, render
from imagegs.renderer import project, rasterize

from conftest import random_gaussians


def _forward_backward(g, backend, top_k, height=None, width=None, seed=1):
    params = [t.detach().clone().requires_grad_() for t in (g.xy, g.scale, g.rot, g.color)]
    gg = Gaussians(*params, g.height, g.width)
    # point-sampled: the training kernel has no anti-aliasing amplitudes (test_forward.py covers them)
    img = render(gg, height, width, top_k=top_k, backend=backend, antialias=False)
    cot = torch.randn(img.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(img.dtype)
    (img * cot).sum().backward()
    return img.detach(), [p.grad for p in params]


def _compare(g, top_k=10, height=None, width=None, rtol=1e-9, atol=1e-10):
    ref_img, ref_grads = _forward_backward(g, "reference", top_k, height, width)
    cpu_img, cpu_grads = _forward_backward(g, "cpu", top_k, height, width)
    torch.testing.assert_close(cpu_img, ref_img, rtol=rtol, atol=atol)
    for name, a, b in zip(("xy", "scale", "rot", "color"), cpu_grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m: f"grad {name}: {m}")
    return ref_img


@pytest.mark.parametrize("height,width", [(16, 16), (37, 53), (64, 48), (5, 90)])
@pytest.mark.parametrize("top_k", [10, 3, None])
def test_cpu_matches_reference_sizes(height, width, top_k):
    g = random_gaussians(150, height, width, seed=height * width)
    _compare(g, top_k=top_k)


@pytest.mark.parametrize("channels", [1, 3, 9, 16])
def test_cpu_matches_reference_channels(channels):
    g = random_gaussians(120, 40, 33, channels=channels, seed=channels)
    img = _compare(g)
    assert img.shape == (channels, 40, 33)


def test_outside_and_partly_outside():
    # centres spread over [-0.5, 1.5]^2: many wholly outside the image, many straddling the border
    g = random_gaussians(300, 48, 40, spread=(-0.5, 1.5), scale=(0.5, 12.0), seed=3)
    _compare(g)


@pytest.mark.parametrize("scale", [(1e-3, 0.05), (40.0, 300.0), (0.5, 1.0)])
def test_tiny_and_huge_scales(scale):
    g = random_gaussians(80, 35, 45, scale=scale, seed=4)
    _compare(g)


def test_nearly_degenerate():
    g = random_gaussians(80, 40, 40, seed=5)
    g.scale[:, 1] = g.scale[:, 0] * 1e-3  # needles: axis ratio 1000
    # conic condition number ~1e6: float64 rounding of q (forward and backward evaluate it in
    # different coordinates) is ~1e-10 relative, and q ~ 0 may fall either side of its clamp
    _compare(g, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("height,width", [(30, 30), (77, 41), (200, 13)])
def test_other_sizes_and_aspect(height, width):
    g = random_gaussians(150, 40, 40, seed=6)  # native 40x40, rendered at another size/aspect
    _compare(g, height=height, width=width)


def test_float32_forward_close():
    g = random_gaussians(400, 64, 64, seed=7, dtype=torch.float32)
    a = render(g, backend="reference")
    b = render(g, backend="cpu")
    torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("top_k", [10, None])
def test_float32_gradients_close(top_k):
    # the fit's precision: float32 kernels against the float64 reference on the same values
    g32 = random_gaussians(400, 70, 83, seed=8, dtype=torch.float32)
    g64 = Gaussians(*(t.double() for t in (g32.xy, g32.scale, g32.rot, g32.color)), g32.height, g32.width)
    img32, grads32 = _forward_backward(g32, "cpu", top_k)
    img64, grads64 = _forward_backward(g64, "reference", top_k)
    torch.testing.assert_close(img32.double(), img64, rtol=1e-4, atol=1e-5)
    for name, a, b in zip(("xy", "scale", "rot", "color"), grads32, grads64):
        scale = b.abs().max().item()
        torch.testing.assert_close(a.double(), b, rtol=1e-3, atol=1e-4 * scale, msg=lambda m: f"grad {name}: {m}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("top_k", [10, 3])
def test_backward_selects_what_the_forward_blended(dtype, top_k):
    # the backward recomputes each lane's selection keys in another compiled kernel; they must equal
    # the forward's bit for bit, i.e. every pixel selects exactly min(K, tile-list length) entries
    import numba
    import numpy as np
    from imagegs.renderer import _backward, _forward
    from imagegs.renderer.forward import _key_proto, prepare, training_outputs
    g = random_gaussians(3000, 100, 120, scale=(0.5, 12.0), seed=5, dtype=dtype)
    h, w = g.height, g.width
    means, conics, radii = project(g.xy, g.scale, g.rot, height=h, width=w, native_height=h, native_width=w)
    m, con, qo, col, offsets, ids = prepare(means, conics, g.color, radii, None, h, w)
    blend, kth, won = training_outputs(m, col.shape[1], len(offsets) - 1, len(ids))
    out = np.empty((col.shape[1], h, w), m.dtype)
    stats = np.empty((len(offsets) - 1, _forward.NSTATS), np.int64)
    _forward.forward(m, con, qo, col, offsets, ids, h, w, top_k, 1e-4, 0, 0, w, h, out, stats, _key_proto(m),
                   _forward.LANES, numba.get_num_threads(), blend, kth, won)
    grad = np.random.default_rng(0).standard_normal(out.shape).astype(m.dtype)
    counts = np.zeros((h, w), np.int32)
    _backward.backward(m, con, col, offsets, ids, h, w, grad, blend, kth, won, _forward.LANES, 1, counts)
    ntx = (w + 15) // 16
    lengths = np.diff(offsets).reshape(-1, ntx)
    expect = np.minimum(np.repeat(np.repeat(lengths, 16, 0), 16, 1)[:h, :w], top_k)
    assert (lengths >= top_k).mean() > 0.5  # most tiles have a real choice to make
    np.testing.assert_array_equal(counts, expect)


def test_finite_differences_reference():
    g = random_gaussians(6, 9, 11, channels=2, scale=(1.5, 4.0), seed=8)
    params = [t.detach().clone().requires_grad_() for t in (g.xy, g.scale, g.rot, g.color)]

    def fn(xy, scale, rot, color):
        return render(Gaussians(xy, scale, rot, color, 9, 11), top_k=3, backend="reference")

    assert torch.autograd.gradcheck(fn, params, eps=1e-6, atol=1e-5, rtol=1e-4)


def test_topk_keeps_largest():
    # one pixel, 3 Gaussians at known distances: with K=2 only the two nearest are blended
    means = torch.tensor([[0.5, 0.5], [1.5, 0.5], [3.5, 0.5]], dtype=torch.float64)
    conics = torch.tensor([[1.0, 0.0, 1.0]] * 3, dtype=torch.float64)
    colors = torch.tensor([[1.0], [2.0], [100.0]], dtype=torch.float64)
    radii = torch.full((3,), 10.0, dtype=torch.float64)
    for backend in ("reference", "cpu"):
        out = rasterize(means, conics, colors, radii, 1, 1, top_k=2, eps=1e-4, backend=backend)
        w = torch.tensor([1.0, math.exp(-0.5)], dtype=torch.float64)
        expect = (w * torch.tensor([1.0, 2.0], dtype=torch.float64)).sum() / (w.sum() + 1e-4)
        torch.testing.assert_close(out[0, 0, 0], expect)


def test_projection_rescales_covariance():
    g = random_gaussians(5, 20, 30, seed=9)
    m1, c1, r1 = project(g.xy, g.scale, g.rot, height=20, width=30, native_height=20, native_width=30)
    m2, c2, r2 = project(g.xy, g.scale, g.rot, height=40, width=90, native_height=20, native_width=30)
    torch.testing.assert_close(m2, m1 * torch.tensor([3.0, 2.0], dtype=m1.dtype))
    a = torch.tensor([3.0, 2.0], dtype=m1.dtype)
    # conic' = A^-1 conic A^-1 with A = diag(3, 2)
    torch.testing.assert_close(c2, c1 / torch.stack([a[0] * a[0], a[0] * a[1], a[1] * a[1]]))
    # covariance from conic, then check radius = 3 sqrt(lambda_max)
    for c, r in ((c1, r1), (c2, r2)):
        cov = torch.linalg.inv(torch.stack([torch.stack([c[:, 0], c[:, 1]], -1),
                                            torch.stack([c[:, 1], c[:, 2]], -1)], -2))
        torch.testing.assert_close(r, 3 * torch.linalg.eigvalsh(cov)[:, -1].sqrt())


def test_empty_and_bad_input():
    g = random_gaussians(0, 10, 10)
    for backend in ("reference", "cpu"):
        assert render(g, backend=backend).abs().max() == 0
    g = random_gaussians(5, 10, 10)
    with pytest.raises(ValueError, match="backend"):
        render(g, backend="cuda-magic")
    with pytest.raises(ValueError, match="output size"):
        render(g, 0, 10)
    with pytest.raises(ValueError, match="top_k"):
        render(g, top_k=-1)
    g.scale[0, 0] = -1.0
    with pytest.raises(ValueError, match="positive"):
        render(g)
    g.scale[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        render(g)


def test_extreme_needles_stay_finite_float32():
    # axis ratio 5e5 in float32: the rounded conic can be indefinite (q < 0); q is clamped at 0,
    # so weights stay <= 1, the blend stays within the colours' range and gradients stay finite
    g = random_gaussians(200, 64, 64, seed=12, dtype=torch.float32)
    g.scale[:, 0] = 1e-3
    g.scale[:, 1] = 500.0
    for backend in ("reference", "cpu"):
        img, grads = _forward_backward(g, backend, 10)
        assert torch.isfinite(img).all()
        assert img.min() >= g.color.min() - 1e-3 and img.max() <= g.color.max() + 1e-3
        for grad in grads:
            assert torch.isfinite(grad).all()


def test_kernels_are_compiled_with_the_one_tile_size():
    """TILE has one definition (renderer.project); the Numba kernels import it and compile it in.
    Their on-disk cache does not notice a change to an imported global: if TILE changed and this
    fails, delete src/imagegs/renderer/__pycache__/*.nbi and *.nbc."""
    import numpy as np

    from imagegs.renderer import TILE, _forward, _kernels

    assert _kernels.TILE is TILE and _forward.TILE is TILE
    height, width = 2 * TILE + 3, 3 * TILE + 1
    ntx = math.ceil(width / TILE)
    means = np.array([[1.5 * TILE, 1.5 * TILE], [width - 1.0, height - 1.0]])
    offsets, ids = _kernels.bin_tiles(means, np.array([1.0, 1.0]), height, width)
    assert len(offsets) == ntx * math.ceil(height / TILE) + 1  # the compiled tile grid
    tile_of = {int(ids[j]): t for t in range(len(offsets) - 1) for j in range(offsets[t], offsets[t + 1])}
    assert tile_of == {0: ntx + 1, 1: len(offsets) - 2}
    assert _forward.SUB * _forward.BLOCK == TILE
