import numpy as np
import pytest
import torch

from imagegs import Gaussians


def random_gaussians(n, height, width, channels=3, *, scale=(0.5, 6.0), seed=0, dtype=torch.float64,
                     spread=(0.0, 1.0)):
    """Random Gaussians; ``spread`` sets the xy range (beyond [0,1] puts some outside the image)."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = spread
    xy = lo + (hi - lo) * torch.rand(n, 2, generator=gen, dtype=dtype)
    s = scale[0] + (scale[1] - scale[0]) * torch.rand(n, 2, generator=gen, dtype=dtype)
    rot = (torch.rand(n, generator=gen, dtype=dtype) - 0.5) * 7.0
    col = torch.rand(n, channels, generator=gen, dtype=dtype) * 2 - 0.5
    return Gaussians(xy, s, rot, col, height, width)


@pytest.fixture
def astronaut_small():
    from skimage import data, transform

    img = transform.resize(data.astronaut(), (64, 64), anti_aliasing=True)
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
