"""The decode kernels never read or write out of bounds (Numba's bounds checking, fresh compile)."""

import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import torch
    from imagegs import Gaussians, decode_pixels, render
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        for n, h, w, spread in ((40, 70, 90, 0.3), (0, 20, 20, 1.0), (300, 45, 61, 1.2), (5, 16, 16, 1.0)):
            xy = torch.rand(n, 2, generator=gen, dtype=dtype) * spread  # leaves most tiles/blocks empty
            scale = 0.5 + 4 * torch.rand(n, 2, generator=gen, dtype=dtype)
            g = Gaussians(xy, scale, torch.rand(n, generator=gen, dtype=dtype),
                          torch.rand(n, 3, generator=gen, dtype=dtype), h, w)
            pts = torch.rand(700, 2, generator=gen, dtype=torch.float64)
            pts[:4] = torch.tensor([[0.0, 0.0], [1.0, 1.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
            for k in (10, 3, None):
                for size in ((h, w), (h // 3 + 1, w // 2 + 1), (2 * h, w)):
                    for ss in (1, 4):
                        img = render(g, *size, top_k=k, supersample=ss)
                        assert torch.isfinite(img).all()
                        hh, ww = size
                        reg = render(g, *size, top_k=k, supersample=ss, region=(ww // 3, hh // 2, ww, hh))
                        assert torch.equal(reg, img[:, hh // 2:, ww // 3:])
                        vals = decode_pixels(g, pts, height=hh, width=ww, top_k=k, supersample=ss)
                        assert torch.isfinite(vals).all()
    print("ok")
""")


def test_decode_kernels_within_bounds(tmp_path):
    env = dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stderr[-3000:]
