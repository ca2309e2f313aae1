"""The CPU kernels never read or write out of bounds (Numba's bounds checking, fresh compile).

An out-of-bounds read of an empty block's colour array once made random pixels NaN on large,
sparse images; garbage memory is usually finite, so only bounds checking catches such bugs.
"""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import torch
    from imagegs import Gaussians, render
    gen = torch.Generator().manual_seed(0)
    for n, h, w, spread in ((40, 70, 90, 0.3), (0, 20, 20, 1.0), (300, 45, 61, 1.2)):
        xy = torch.rand(n, 2, generator=gen) * spread  # leaves most tiles/blocks empty
        scale = 0.5 + 4 * torch.rand(n, 2, generator=gen)
        params = [t.requires_grad_() for t in (xy, scale, torch.rand(n, generator=gen), torch.rand(n, 3, generator=gen))]
        for k in (10, 3, None):
            img = render(Gaussians(*params, h, w), top_k=k, backend="cpu")
            assert torch.isfinite(img).all()
            img.sum().backward()
    print("ok")
""")


def test_kernels_within_bounds(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
