"""The Numba-backed ImageLoss against its pure-torch twin: value, gradient, SSIM metric, fallbacks."""

import pytest
import torch

from imagegs import metrics
from imagegs.loss import ImageLoss, reference_loss

TOL = {torch.float64: dict(rtol=1e-9, atol=1e-12), torch.float32: dict(rtol=2e-4, atol=1e-6)}


def _pair(shape, dtype, seed=0, equal_frac=0.1):
    """A target in [0, 1] and a noisy render of it, with some pixels exactly equal (|x-y|' = 0)."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.rand(shape, generator=gen, dtype=torch.float64)
    x = y + 0.15 * torch.randn(shape, generator=gen, dtype=torch.float64)
    x = torch.where(torch.rand(shape, generator=gen, dtype=torch.float64) < equal_frac, y, x)
    return x.to(dtype), y.to(dtype)


def _loss_and_grad(fn, x, scale=1.0):
    x = x.clone().requires_grad_()
    loss = fn(x)
    (loss * scale).backward()
    return loss.detach(), x.grad


def _check(shape, dtype, l1_weight, ssim_weight, scale=1.0, seed=0):
    x, y = _pair(shape, dtype, seed)
    fast = ImageLoss(y, l1_weight=l1_weight, ssim_weight=ssim_weight)
    loss, grad = _loss_and_grad(fast, x, scale)
    ref_loss, ref_grad = _loss_and_grad(
        lambda r: reference_loss(r, y, l1_weight=l1_weight, ssim_weight=ssim_weight), x, scale)
    assert loss.dtype == ref_loss.dtype and grad.dtype == dtype and grad.shape == x.shape
    tol = TOL[dtype]
    torch.testing.assert_close(loss, ref_loss, **tol)
    # gradients are O(1/M) per pixel: compare relative to their largest magnitude
    g_scale = ref_grad.abs().max().item() or 1.0
    torch.testing.assert_close(grad / g_scale, ref_grad / g_scale, rtol=tol["rtol"], atol=10 * tol["rtol"])


SHAPES = [(3, 5, 7), (1, 1, 1), (1, 1, 13), (2, 12, 1), (3, 11, 11), (1, 37, 53), (9, 64, 48),
          (3, 45, 70), (1, 16, 33)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference_sizes(shape, dtype):
    _check(shape, dtype, 1.0, 0.1, seed=sum(shape))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("weights", [(1.0, 0.0), (0.0, 1.0), (0.7, 2.5), (0.0, 0.0)])
@pytest.mark.parametrize("shape", [(3, 5, 7), (3, 40, 29)])
def test_matches_reference_weights(shape, weights, dtype):
    _check(shape, dtype, *weights)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("channels", [1, 3, 9, 16])
def test_matches_reference_channels_and_grad_scale(channels, dtype):
    scale = float(torch.empty(()).uniform_(-3.0, 3.0, generator=torch.Generator().manual_seed(channels)))
    _check((channels, 23, 31), dtype, 1.0, 0.1, scale=scale, seed=channels)


def test_gradient_through_a_graph_and_accumulation():
    """The loss of a non-leaf render back-propagates, and repeated backward calls accumulate."""
    x, y = _pair((3, 20, 24), torch.float64)
    loss_fn = ImageLoss(y)
    a = x.clone().requires_grad_()
    for _ in range(2):
        loss_fn(a * 2.0 - 1.0).backward()
    b = x.clone().requires_grad_()
    for _ in range(2):
        reference_loss(b * 2.0 - 1.0, y).backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-9, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(3, 5, 7), (3, 48, 37), (1, 64, 64)])
def test_ssim_metric_matches(shape, dtype):
    x, y = _pair(shape, dtype, seed=3)
    got = ImageLoss(y).ssim(x)
    want = metrics.ssim(x, y)
    tol = dict(rtol=0, atol=1e-12) if dtype == torch.float64 else dict(rtol=0, atol=2e-6)
    torch.testing.assert_close(got, want, **tol)
    # and the loss's SSIM term is that value
    loss = ImageLoss(y, l1_weight=0.0, ssim_weight=1.0)(x)
    torch.testing.assert_close(loss, 1.0 - want, **tol)


def test_no_grad_value_matches_grad_value():
    x, y = _pair((3, 30, 40), torch.float32)
    loss_fn = ImageLoss(y)
    with_grad = loss_fn(x.clone().requires_grad_()).detach()
    with torch.no_grad():
        no_grad = loss_fn(x.clone().requires_grad_())
    assert not no_grad.requires_grad
    torch.testing.assert_close(no_grad, with_grad, rtol=0, atol=0)
    torch.testing.assert_close(loss_fn(x), with_grad, rtol=0, atol=0)


def test_float64_render_against_float32_target():
    """The render's dtype decides the precision, as with torch's type promotion.

    (The reference squares the float32 target in float32, hence the looser tolerance.)
    """
    x, y = _pair((3, 17, 19), torch.float64)
    _, grad = _loss_and_grad(ImageLoss(y.float()), x)
    _, ref_grad = _loss_and_grad(lambda r: reference_loss(r, y.float()), x)
    assert grad.dtype == torch.float64
    torch.testing.assert_close(grad, ref_grad, rtol=1e-6, atol=1e-12)


def test_target_is_fixed_at_construction():
    x, y = _pair((3, 16, 16), torch.float64)
    loss_fn = ImageLoss(y)
    before = loss_fn(x)
    y.zero_()
    torch.testing.assert_close(loss_fn(x), before, rtol=0, atol=0)


def test_unsupported_dtype_falls_back_to_reference():
    x, y = _pair((3, 16, 16), torch.float64)
    x, y = x.bfloat16(), y.bfloat16()
    torch.testing.assert_close(ImageLoss(y)(x), reference_loss(x, y), rtol=0, atol=0)


def test_nan_propagates():
    x, y = _pair((1, 12, 12), torch.float32)
    x[0, 3, 4] = float("nan")
    loss, grad = _loss_and_grad(ImageLoss(y), x)
    assert torch.isnan(loss) and torch.isnan(grad).any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("wshape", [(3, 23, 31), (23, 31), (3, 1, 1), (1, 23, 31)])
def test_pixel_weights_match_reference(wshape, dtype):
    """Weighted loss and gradient (per pixel, per channel, or both) equal the torch twin's."""
    x, y = _pair((3, 23, 31), dtype, seed=5)
    pw = torch.rand(wshape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    fast = ImageLoss(y, pixel_weights=pw)
    loss, grad = _loss_and_grad(fast, x)
    ref_loss, ref_grad = _loss_and_grad(lambda r: reference_loss(r, y, pixel_weights=pw), x)
    tol = TOL[dtype]
    torch.testing.assert_close(loss, ref_loss, **tol)
    g_scale = ref_grad.abs().max().item()
    torch.testing.assert_close(grad / g_scale, ref_grad / g_scale, rtol=tol["rtol"], atol=10 * tol["rtol"])
    with torch.no_grad():
        smap = metrics.ssim_map(x, y)[0].double()
    w = torch.broadcast_to(pw, (3, 23, 31))
    torch.testing.assert_close(fast.ssim(x).double(), (w * smap).sum() / w.sum(), **tol)


def test_pixel_weights_ones_give_the_plain_loss():
    x, y = _pair((3, 20, 17), torch.float32, seed=2)
    plain, weighted = _loss_and_grad(ImageLoss(y), x), _loss_and_grad(ImageLoss(y, pixel_weights=torch.ones(20, 17)), x)
    torch.testing.assert_close(plain[0], weighted[0], rtol=0, atol=0)
    torch.testing.assert_close(plain[1], weighted[1], rtol=0, atol=0)


def test_pixel_weights_steer_the_gradient():
    """Zero weight on a pixel: neither term pulls it; the rest still does."""
    x, y = _pair((1, 16, 16), torch.float64, seed=3)
    pw = torch.ones(16, 16)
    pw[:8] = 0.0
    _, grad = _loss_and_grad(ImageLoss(y, pixel_weights=pw), x)
    assert grad[0, 8 + 6:].abs().min() > 0  # rows far from the zero region (SSIM window radius 5)
    assert grad[0, :8 - 6].abs().max() == 0


@pytest.mark.parametrize("bad, msg", [(torch.ones(5, 5), "do not fit"), (-torch.ones(8, 8), "non-negative"),
                                      (torch.zeros(8, 8), "all zero"),
                                      (torch.full((8, 8), float("nan")), "finite")])
def test_pixel_weights_bad(bad, msg):
    with pytest.raises(ValueError, match=msg):
        ImageLoss(torch.rand(3, 8, 8), pixel_weights=bad)
