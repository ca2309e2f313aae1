"""The Gaussians container: fit_info is a declared field that travels with the model."""

from dataclasses import fields, replace

import torch

from imagegs import Gaussians


def random_gaussians(n: int, height: int, width: int) -> Gaussians:
    gen = torch.Generator().manual_seed(n)
    return Gaussians(torch.rand(n, 2, generator=gen, dtype=torch.float64), torch.ones(n, 2, dtype=torch.float64),
                     torch.zeros(n, dtype=torch.float64), torch.rand(n, 3, generator=gen, dtype=torch.float64),
                     height, width)


def test_fit_info_is_a_field_kept_by_copies():
    g = replace(random_gaussians(6, 10, 12), fit_info={"steps": 3, "levels": [4, 2]})
    assert replace(g, color=g.color * 2).fit_info == {"steps": 3, "levels": [4, 2]}
    for copy in (g.to(torch.float32), g.detach(), g[:3], g[torch.tensor([0, 5])]):
        assert copy.fit_info == g.fit_info
        assert copy.fit_info is not g.fit_info  # a copy: editing one model's info leaves the other's
    (info,) = [f for f in fields(Gaussians) if f.name == "fit_info"]
    assert not info.compare  # provenance, not part of the model's value...
    assert "fit_info" not in repr(g)  # ...nor shown
    assert random_gaussians(2, 4, 4).fit_info == {}  # default: empty, not shared between models
    assert random_gaussians(2, 4, 4).fit_info is not random_gaussians(2, 4, 4).fit_info
