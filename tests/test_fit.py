import numpy as np
import pytest
import torch

from imagegs import render
from imagegs.fitting import FitConfig, FitState, fit
from imagegs.optim import Adam
from imagegs.init import init_positions, sample_without_replacement
from imagegs.metrics import psnr


def test_fit_improves_and_grows_to_budget(astronaut_small):
    hist = []
    g = fit(astronaut_small, num_gaussians=400, max_steps=240, add_steps=(40, 80, 120, 160),
            eval_every=40, history=hist)
    assert g.num == 400  # 200 at init + 4 additions of 50
    assert [r["gaussians"] for r in hist][:4] == [200, 250, 300, 350]
    assert (g.scale > 0).all() and g.xy.dtype == torch.float32
    final = psnr(render(g).clamp(0, 1), astronaut_small)
    assert final > hist[0]["psnr"] + 1.0
    assert final > 20.0


def test_fit_state_step_is_the_fits_step(astronaut_small):
    """fit() runs FitState.step (the step imagegs.bench.speed times): with no additions, no decay
    and no plateau before the last step, a fit of S steps is S FitState steps, bit for bit."""
    img = astronaut_small[:, :32, :40]
    options = dict(num_gaussians=80, max_steps=7, init_ratio=1.0, top_k=8, seed=2)
    g = fit(img, schedule="official", **options)
    state = FitState(img, FitConfig(**options))
    losses = [float(state.step()) for _ in range(7)]
    got = state.gaussians()
    for a, b in zip((g.xy, g.scale, g.rot, g.color), (got.xy, got.scale, got.rot, got.color)):
        assert torch.equal(a, b)
    assert losses[-1] < losses[0] and g.fit_info["steps"] == state.steps == 7


def test_fit_state_adds_gaussians_with_fresh_moments(astronaut_small):
    state = FitState(astronaut_small, FitConfig(num_gaussians=30))
    state.step()
    state.add(torch.full((5, 2), 0.5), torch.zeros(5, 3))
    assert state.num == 35 and all(p.shape[0] == 35 for p in state.params)
    assert all((m[30:] == 0).all() for m in state.opt.m)
    state.step()  # the grown parameters optimise
    assert torch.isfinite(state.gaussians().scale).all()


def test_coarse_to_fine_fits_low_resolution_first(astronaut_small):
    """coarse=((4, a), (2, b)): steps up to a render at 1/4 size against the area-downscaled
    target, up to b at 1/2, then full size; the Gaussians stay in native units, and the coarse
    start helps (the full-size PSNR after the coarse steps is above that of the initial model)."""
    img = astronaut_small[:, :64, :64]
    hist: list = []
    g = fit(img, num_gaussians=200, max_steps=60, add_steps=(10, 30), coarse=((4, 20), (2, 40)),
            eval_every=10, history=hist)
    assert [r["factor"] for r in hist] == [4, 4, 2, 2, 1, 1]
    assert g.height == 64 and g.width == 64 and g.num == 200 and g.fit_info["levels"] == [100, 50, 50]
    state = FitState(img, FitConfig(num_gaussians=200))
    state.set_factor(4)
    assert state.render().shape == (3, 16, 16)
    assert torch.allclose(state.view, torch.nn.functional.avg_pool2d(img[None], 4)[0])
    coarse_only = fit(img, num_gaussians=200, max_steps=40, add_steps=(10, 30), coarse=((4, 20), (2, 40)))
    before = psnr(render(FitState(img, FitConfig(num_gaussians=200)).gaussians()).clamp(0, 1), img)
    assert psnr(render(coarse_only).clamp(0, 1), img) > before + 1.0
    for bad in (((2, 10), (4, 20)), ((4, 20), (2, 10)), ((1, 10),), ((4,),)):
        with pytest.raises(ValueError, match="coarse"):
            fit(img, num_gaussians=20, coarse=bad)


def test_coarse_factors_follow_the_density(astronaut_small):
    """coarse_density: each factor is lowered until a Gaussian keeps that many coarse pixels
    (equal factors merged, the later last step kept; below 2: full size), and the fit runs the
    capped plan (recorded in fit_info)."""
    plan = ((4, 800), (2, 1600))
    for n, want in ((600, plan), (3500, ((3, 800), (2, 1600))), (7000, ((2, 1600),)), (14000, ())):
        assert FitConfig(num_gaussians=n, coarse=plan, coarse_density=16.0).coarse_plan(768, 1024) == want
    assert FitConfig(num_gaussians=14000, coarse=plan).coarse_plan(768, 1024) == plan  # 0: no cap
    img = astronaut_small[:, :64, :64]
    hist: list = []
    g = fit(img, num_gaussians=64, max_steps=40, add_steps=(10,), coarse=((4, 20), (2, 30)), coarse_density=16.0,
            eval_every=10, history=hist)  # 64 * 64 / 64 = 64 pixels each: 1/2 allowed, 1/4 not
    assert [r["factor"] for r in hist] == [2, 2, 2, 1]
    assert g.fit_info["config"]["coarse"] == ((2, 30),)
    with pytest.raises(ValueError, match="coarse_density"):
        fit(img, num_gaussians=20, coarse_density=-1.0)


def test_full_additions_sample_the_full_size_error(astronaut_small):
    """full_additions: during coarse steps, added Gaussians land on native pixel centres (the
    full-size error), not on coarse ones."""
    img = astronaut_small[:, :64, :64]
    for full in (False, True):
        g = fit(img, num_gaussians=120, max_steps=30, add_steps=(10, 20), coarse=((4, 30),), lr_xy=0.0,
                full_additions=full)
        added = g.xy[60:].double()
        on_native = torch.allclose(added * 64 - 0.5, (added * 64 - 0.5).round(), atol=1e-3)
        on_coarse = torch.allclose(added * 16 - 0.5, (added * 16 - 0.5).round(), atol=1e-3)
        assert on_native == full and on_coarse != full


def test_full_additions_follow_the_steering(astronaut_small):
    """A steered coarse-to-fine fit with full_additions samples the full-size error weighted by the
    full-size steering: its additions land on native pixel centres, in the important region."""
    img = astronaut_small[:, :64, :64]
    imp = np.zeros((64, 64), np.float32)
    imp[:, :16] = 1.0  # the left quarter matters
    g = fit(img, num_gaussians=120, max_steps=30, add_steps=(10, 20), coarse=((4, 30),), lr_xy=0.0,
            full_additions=True, importance=imp, importance_strength=1000.0)
    added = g.xy[60:].double()
    assert torch.allclose(added * 64 - 0.5, (added * 64 - 0.5).round(), atol=1e-3)
    assert (added[:, 0] < 0.25).float().mean() > 0.9


def test_final_steps_end_a_coarse_fit_at_full_size(astronaut_small):
    """final_steps (the c2f schedule's 400): a fit whose steps all run below full size ends with
    full-size steps at the decayed rates, and is closer at full size for it."""
    img = astronaut_small[:, :48, :48]
    opts = dict(num_gaussians=80, max_steps=60, add_steps=(20,), coarse=((2, 60),))
    coarse_only = fit(img, **opts)
    finished = fit(img, **opts, final_steps=40)
    assert finished.fit_info["steps"] == 100 and coarse_only.fit_info["steps"] == 60
    assert finished.fit_info["config"]["final_steps"] == 40 and finished.num == coarse_only.num
    assert psnr(render(finished).clamp(0, 1), img) > psnr(render(coarse_only).clamp(0, 1), img) + 0.5
    assert fit(img, schedule="c2f", num_gaussians=10, max_steps=4).fit_info["steps"] == 4 + 400
    with pytest.raises(ValueError, match="final_steps"):
        fit(img, num_gaussians=10, final_steps=-1)


def test_refine_continues_a_pruned_model(astronaut_small):
    """refine: more full-size steps on a given model (e.g. what pruning kept) at the decayed
    learning rates; the count, order, names and fit_info stay, and the fit improves."""
    from imagegs.fitting import refine

    img = astronaut_small[:, :48, :48]
    g = fit(img, num_gaussians=120, max_steps=80, add_steps=(20,))[40:]
    before = psnr(render(g).clamp(0, 1), img)
    r = refine(g, img, 60, top_k=8)
    assert r.num == g.num and r.fit_info == g.fit_info and r.height == 48
    assert psnr(render(r).clamp(0, 1), img) > before + 0.5
    assert refine(g, img, 0) is g


def test_stochastic_steps_render_windows_of_the_image(astronaut_small):
    """crop: a step renders one of 3 x 3 tile-aligned windows of ~crop of the view's area, the
    first and last meeting the edges; the window's pixels are the whole rendering's (up to float
    rounding of the shifted means, which can swap near-tied top-K neighbours)."""
    from skimage import data, transform

    from imagegs.fitting import _make_config
    from imagegs.renderer.constants import TILE

    img = torch.from_numpy(np.ascontiguousarray(
        transform.resize(data.astronaut(), (100, 140), anti_aliasing=True).transpose(2, 0, 1))).float()
    st = FitState(img, _make_config(None, "fast", dict(num_gaussians=300, crop=0.25)))
    for _ in range(30):
        st.step()
    wins = {st.window() for _ in range(200)}
    assert len(wins) == 9
    for x0, y0, x1, y1 in wins:
        assert x0 % TILE == 0 and y0 % TILE == 0 and 0.4 < (x1 - x0) / 140 < 0.6 and 0.4 < (y1 - y0) / 100 < 0.6
    assert {w[0] for w in wins} >= {0} and {w[2] for w in wins} >= {140} and {w[3] for w in wins} >= {100}
    full = st.render().detach()
    for x0, y0, x1, y1 in wins:
        part = st.render(None, (x0, y0, x1, y1)).detach()
        diff = (part - full[:, y0:y1, x0:x1]).abs()
        assert part.shape == (3, y1 - y0, x1 - x0) and float(diff.max()) < 5e-3 and float(diff.mean()) < 1e-4
    assert FitState(img, _make_config(None, "fast", dict(num_gaussians=30))).window() is None
    st.set_factor(2)  # a coarse view has its own windows
    x0, y0, x1, y1 = max(st.window() for _ in range(50))
    assert (x1, y1) == (70, 50) and st.render(None, (x0, y0, x1, y1)).shape == (3, y1 - y0, x1 - x0)
    with pytest.raises(ValueError, match="crop"):
        fit(img, num_gaussians=30, crop=1.0)


def test_a_fit_with_stochastic_steps_converges(astronaut_small):
    """Windows of a third of the image still fit the whole (13.1 dB at the start)."""
    g = fit(astronaut_small, num_gaussians=200, max_steps=150, crop=0.3, seed=1)
    assert psnr(render(g).clamp(0, 1), astronaut_small) > 18


def test_fit_is_deterministic(astronaut_small):
    a = fit(astronaut_small[:, :32, :32], num_gaussians=60, max_steps=30, add_steps=(10,))
    b = fit(astronaut_small[:, :32, :32], num_gaussians=60, max_steps=30, add_steps=(10,))
    torch.testing.assert_close(a.xy, b.xy, rtol=0, atol=0)
    c = fit(astronaut_small[:, :32, :32], num_gaussians=60, max_steps=30, add_steps=(10,), seed=1)
    assert not torch.equal(a.xy, c.xy)



def test_fit_is_deterministic_across_processes():
    # thread scheduling, allocation addresses or hash seeds must not leak into the result
    import subprocess
    import sys
    code = ("import hashlib, numpy as np, torch; from skimage import data; from imagegs import fit; "
            "img = torch.from_numpy(np.ascontiguousarray(data.astronaut()[100:164, 180:260].transpose(2, 0, 1))).float() / 255; "
            "g = fit(img, num_gaussians=300, max_steps=60, add_steps=(20, 40), eval_every=20); "
            "print(hashlib.sha256(b''.join(t.numpy().tobytes() for t in (g.xy, g.scale, g.rot, g.color))).hexdigest())")
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
            for _ in range(2)]
    assert len(runs[0]) == 64 and runs[0] == runs[1]

def test_fit_grey_and_many_channels():
    rng = np.random.default_rng(0)
    img = rng.random((24, 20, 9)).astype(np.float32)
    g = fit(img, num_gaussians=50, max_steps=20, add_steps=(5,))
    assert g.channels == 9 and render(g).shape == (9, 24, 20)
    g = fit(img[..., 0], num_gaussians=50, max_steps=20, add_steps=(5,))
    assert g.channels == 1


def test_plateau_stops_early():
    img = np.full((32, 32, 3), 0.5, np.float32)  # nothing to learn: plateaus at once
    hist = []
    fit(img, num_gaussians=20, max_steps=5000, add_steps=(10,), eval_every=10, plateau_steps=30,
        min_steps_after_add=0, history=hist)
    assert hist[-1]["step"] < 200


@pytest.mark.parametrize("bad,match", [
    (dict(num_gaussians=0), "num_gaussians"), (dict(num_gaussians=10**6), "exceeds"),
    (dict(top_k=65), "top_k"), (dict(lr_xy=-1.0), "lr_xy"), (dict(backend="gpu"), "backend"),
    (dict(add_steps=(5, 3)), "add_steps"), (dict(init_scale=0.0), "init_scale"),
])
def test_bad_options(bad, match):
    with pytest.raises(ValueError, match=match):
        fit(np.zeros((16, 16)), **{"num_gaussians": 10, **bad})
    with pytest.raises(TypeError, match="unknown fit option"):
        fit(np.zeros((16, 16)), bogus=1)
    with pytest.raises(ValueError, match="schedule"):
        fit(np.zeros((16, 16)), schedule="warp")


def test_adam_grow_keeps_state_and_matches_torch():
    p = torch.randn(5, 2, requires_grad=True)
    q = p.detach().clone().requires_grad_()
    ours, ref = Adam([p], [0.1], eps=1e-8), torch.optim.Adam([q], lr=0.1, eps=1e-8)
    for _ in range(3):
        g = torch.randn(5, 2)
        ours.params[0].grad = g.clone()
        q.grad = g.clone()
        ours.step()
        ref.step()
    torch.testing.assert_close(ours.params[0].detach(), q.detach())
    m_before = ours.m[0].clone()
    ours.grow([torch.ones(3, 2)])
    assert ours.params[0].shape == (8, 2) and ours.params[0].requires_grad
    torch.testing.assert_close(ours.m[0][:5], m_before)
    assert ours.m[0][5:].abs().sum() == 0 and ours.v[0][5:].abs().sum() == 0


def test_sampling_without_replacement():
    rng = np.random.default_rng(0)
    p = np.zeros(1000)
    p[:10] = 1.0
    idx = sample_without_replacement(p, 10, rng)
    assert sorted(idx.tolist()) == list(range(10))
    idx = sample_without_replacement(p, 50, rng)  # more than the support: unique, all support
    assert len(set(idx.tolist())) == 50 and set(range(10)) <= set(idx.tolist())
    img = torch.zeros(1, 40, 40)
    img[:, :, 20:] = 1.0  # one vertical edge
    xy = init_positions(img, 60, random_ratio=0.0, rng=rng)  # edge support: 80 pixels
    assert ((xy[:, 0] * 40 - 20).abs() < 2).all()  # all on the edge


def test_inverse_scales_stay_bounded(astronaut_small):
    # absurd scale learning rate: without the clamp inverse scales cross 0 (huge Gaussians, NaN)
    g = fit(astronaut_small, num_gaussians=100, max_steps=60, add_steps=(20,), lr_scale=5.0)
    assert torch.isfinite(g.scale).all()
    assert g.scale.max() <= 64 / 4 + 1e-3 and g.scale.min() >= 1e-3 - 1e-9


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fused_projection_matches_reference(dtype):
    # the fit's projection (inverse scales, CPU) runs as Numba kernels: forward and gradients against
    # the torch twin, on another output size and aspect than the native one, with signed inverses
    from imagegs.renderer.project import project, project_reference
    from conftest import random_gaussians
    g = random_gaussians(500, 30, 40, scale=(0.3, 9.0), seed=12, dtype=dtype)
    inv = 1.0 / g.scale * torch.where(torch.rand(500, 1, generator=torch.Generator().manual_seed(1)) < 0.3, -1.0, 1.0).to(dtype)
    kw = dict(height=75, width=50, native_height=30, native_width=40, inverse_scale=True)
    gen = torch.Generator().manual_seed(2)
    cot = [torch.randn(500, 2, generator=gen, dtype=dtype), torch.randn(500, 3, generator=gen, dtype=dtype)]
    outs = []
    for fn in (project, project_reference):
        params = [t.detach().clone().requires_grad_() for t in (g.xy, inv, g.rot)]
        means, conics, radii = fn(*params, **kw)
        assert not radii.requires_grad
        torch.autograd.backward([means, conics], cot)
        outs.append(([means.detach(), conics.detach(), radii], [p.grad for p in params]))
    tol = dict(rtol=2e-6, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    for a, b in zip(outs[0][0] + outs[0][1], outs[1][0] + outs[1][1]):
        torch.testing.assert_close(a, b, **tol)
    with torch.no_grad():  # no graph: the same values
        torch.testing.assert_close(project(g.xy, inv, g.rot, **kw)[1], outs[1][0][1], **tol)


def test_projection_from_inverse_scales_matches():
    from imagegs.renderer import project
    from conftest import random_gaussians

    g = random_gaussians(20, 30, 40, seed=11)
    a = project(g.xy, g.scale, g.rot, height=60, width=50, native_height=30, native_width=40)
    b = project(g.xy, -1.0 / g.scale, g.rot, height=60, width=50, native_height=30, native_width=40,
                inverse_scale=True)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)


def test_quality_schedule_is_fast_run_twice_as_long():
    from imagegs.fitting import SCHEDULES

    fast, quality = SCHEDULES["fast"], SCHEDULES["quality"]
    assert quality["max_steps"] == 2 * fast["max_steps"] and quality["decay_steps"][0] > fast["decay_steps"][0]
    assert {k: v for k, v in quality.items() if k not in ("max_steps", "decay_steps")} == \
        {k: v for k, v in fast.items() if k not in ("max_steps", "decay_steps")}
    img = np.random.default_rng(0).random((16, 16, 3))
    g = fit(img, num_gaussians=8, schedule="quality")
    assert g.fit_info["config"]["max_steps"] == 2400 and tuple(g.fit_info["config"]["decay_steps"]) == (1900,)


def test_pixel_weights_favour_the_weighted_region(astronaut_small):
    """Weight 9 on the left half, 1 on the right: the left half fits better than unweighted, the
    right half worse; also through coarse-to-fine (the weights are downscaled with the target)."""
    img = astronaut_small
    pw = torch.ones(64, 64)
    pw[:, :32] = 9.0
    options = dict(num_gaussians=120, max_steps=150, add_steps=(30, 60), coarse=((2, 40),), seed=1)
    plain, weighted = fit(img, **options), fit(img, pixel_weights=pw, **options)

    def half_psnr(g, sl):
        return psnr(render(g).clamp(0, 1)[:, :, sl], img[:, :, sl])

    left, right = slice(0, 32), slice(32, 64)
    assert half_psnr(weighted, left) > half_psnr(plain, left) + 0.5
    assert half_psnr(weighted, right) < half_psnr(plain, right)
    with pytest.raises(ValueError, match="do not fit"):
        fit(img, num_gaussians=10, max_steps=2, pixel_weights=torch.ones(5, 5))
