"""One home per default and limit: every entry point that takes a K applies the same check."""

import numpy as np
import pytest
import torch

from imagegs import defaults, igsfile, render
from imagegs.codec import compress
from imagegs.fitting import FitConfig, fit
from imagegs.quantize import Bits, quantize
from imagegs.renderer import decode_pixels


def _model():
    gen = torch.Generator().manual_seed(0)
    from imagegs import Gaussians
    return Gaussians(torch.rand(20, 2, generator=gen), 1 + 3 * torch.rand(20, 2, generator=gen),
                     torch.rand(20, generator=gen), torch.rand(20, 3, generator=gen), 16, 16)


@pytest.mark.parametrize("k, want", [(None, None), (0, None), (1, 1), (10, 10), (defaults.MAX_TOP_K, defaults.MAX_TOP_K),
                                     (np.int64(7), 7)])
def test_check_top_k_accepts(k, want):
    got = defaults.check_top_k(k)
    assert got == want and (got is None or type(got) is int)


@pytest.mark.parametrize("k", [-1, defaults.MAX_TOP_K + 1, 2.5, 10.0, "10", True])
def test_check_top_k_rejects_with_the_callers_name(k):
    with pytest.raises(ValueError, match=r"^--top-k must be an integer from 1 to 64"):
        defaults.check_top_k(k, name="--top-k")


@pytest.mark.parametrize("k", [-1, defaults.MAX_TOP_K + 1])
def test_every_entry_point_rejects_the_same_values(k):
    g = _model()
    q = quantize(g, Bits(10, 8, 8, 8))
    calls = [lambda: render(g, top_k=k), lambda: decode_pixels(g, torch.rand(5, 2), top_k=k),
             lambda: FitConfig(top_k=k, num_gaussians=10).validate(16, 16), lambda: fit(torch.rand(3, 8, 8), top_k=k),
             lambda: igsfile.pack(q, [g.num], top_k=k), lambda: compress(torch.rand(3, 8, 8), top_k=k)]
    for call in calls:
        with pytest.raises(ValueError, match="top_k must be an integer from 1 to 64"):
            call()


def test_zero_and_none_mean_the_whole_tile():
    g = _model()
    assert torch.equal(render(g, top_k=0), render(g, top_k=None))
    assert not torch.equal(render(g, top_k=1), render(g, top_k=None))
    FitConfig(top_k=0, num_gaussians=10).validate(16, 16)
    data, _ = igsfile.pack(quantize(g, Bits(10, 8, 8, 8)), [g.num], top_k=0)
    assert igsfile.read_header(data).top_k is None


def test_defaults_are_the_ones_used():
    assert FitConfig().top_k == defaults.DEFAULT_TOP_K and FitConfig().num_gaussians == defaults.DEFAULT_NUM_GAUSSIANS
    from imagegs.renderer import _forward
    assert _forward.FAST_K == defaults.DEFAULT_TOP_K  # the kernel's unrolled K is the default K
