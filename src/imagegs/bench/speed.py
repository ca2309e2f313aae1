"""Speed of one fitting step and of one forward render, on a fit-like state.

    python -m imagegs.bench.speed --height 512 --width 512 --gaussians 10000 --backend cpu \\
        --steps 50 --json speed.json

The state is the fit's own initialisation (``imagegs.fitting.FitState``, default FitConfig):
all N Gaussians at ``init_positions`` (30 % uniform, the rest by squared image gradient), scale
5 px, rotation 0, colour of the pixel underneath, inverse scales as optimised parameters. The
target is scikit-image's astronaut resized to H x W (channels repeated to C) or uniform noise.

Timed, after warm-up (the first call of each, which includes Numba compilation or loading its
cache, is timed and reported separately):
- step: ``FitState.step``, the fit's own step: projection + render forward + loss (``ImageLoss``,
  L1 + 0.1 SSIM) + backward + Adam update + scale clamp;
- forward: the render alone, without autograd (what ``imagegs render`` does).
Each of ``--repeats`` rounds times ``--steps`` calls of each; medians / p10 / p90 are over all.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable

import numpy as np
import torch

from ..defaults import DEFAULT_TOP_K
from ..fitting import FitConfig, FitState

__all__ = ["fit_state", "run", "format_table", "IMAGES"]

IMAGES = ("astronaut", "random")


def target_image(height: int, width: int, channels: int, image: str = "astronaut",
                 seed: int = 0) -> torch.Tensor:
    """(C, H, W) float32 target: the astronaut resized (channels cycled to C), or uniform noise."""
    if image == "random":
        return torch.rand(channels, height, width, generator=torch.Generator().manual_seed(seed))
    from skimage import data, transform

    rgb = transform.resize(data.astronaut(), (height, width), anti_aliasing=True)  # float64 in [0, 1]
    chw = np.ascontiguousarray(rgb.transpose(2, 0, 1)[np.arange(channels) % 3], dtype=np.float32)
    return torch.from_numpy(chw)


def fit_state(target: torch.Tensor, num: int, *, top_k: int | None, backend: str,
              seed: int = 0) -> tuple[Callable[[], object], Callable[[], torch.Tensor]]:
    """The fit's initial state for ``num`` Gaussians; returns (step, forward).

    ``step`` is :meth:`imagegs.fitting.FitState.step`, the very step of ``imagegs.fit``'s loop
    (projection, render, loss, backward, Adam, scale clamp); ``forward()`` renders the current
    state without autograd.
    """
    state = FitState(target, FitConfig(num_gaussians=num, top_k=top_k, backend=backend, seed=seed))

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return state.render()

    return state.step, forward


def _time_ms(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def _stats(samples: list[float]) -> dict[str, float]:
    p10, p50, p90 = np.percentile(samples, [10, 50, 90])
    return {"median": float(p50), "p10": float(p10), "p90": float(p90)}


def machine() -> dict:
    """CPU model, core and thread counts, library versions."""
    import numba

    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), model)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": model, "cores": os.cpu_count(), "usable_cores": usable,
        "torch_threads": torch.get_num_threads(), "numba_threads": numba.get_num_threads(),
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "numba": numba.__version__, "numpy": np.__version__,
    }


def run(*, height: int, width: int, gaussians: int, backend: str = "cpu", steps: int = 20,
        top_k: int | None = DEFAULT_TOP_K, channels: int = 3, repeats: int = 1, image: str = "astronaut",
        seed: int = 0, warmup: int = 2) -> dict:
    """Time ``steps`` x ``repeats`` fit steps and forward renders; returns the result record."""
    target = target_image(height, width, channels, image, seed)
    step, forward = fit_state(target, gaussians, top_k=top_k, backend=backend, seed=seed)
    # First calls: JIT compilation or cache load (forward first, so each pays for its own kernels).
    first_forward = _time_ms(forward)
    first_step = _time_ms(step)
    for _ in range(warmup):
        step(), forward()
    step_ms: list[float] = []
    forward_ms: list[float] = []
    for _ in range(repeats):
        step_ms += [_time_ms(step) for _ in range(steps)]
        forward_ms += [_time_ms(forward) for _ in range(steps)]
    s, f = _stats(step_ms), _stats(forward_ms)
    return {
        "machine": machine(),
        "settings": dict(height=height, width=width, gaussians=gaussians, backend=backend,
                         steps=steps, top_k=top_k, channels=channels, repeats=repeats, image=image,
                         seed=seed, warmup=warmup, dtype="float32"),
        "median_ms_step": s["median"], "p10_ms_step": s["p10"], "p90_ms_step": s["p90"],
        "median_ms_forward": f["median"], "p10_ms_forward": f["p10"], "p90_ms_forward": f["p90"],
        # first calls include Numba compilation (or loading its on-disk cache); excluded above
        "first_call_ms_step": first_step, "first_call_ms_forward": first_forward,
        "compile_ms_estimate": max(0.0, first_step - s["median"]) + max(0.0, first_forward - f["median"]),
        "samples_ms_step": step_ms, "samples_ms_forward": forward_ms,
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def format_table(result: dict) -> str:
    """A short human-readable summary of a :func:`run` record."""
    st, m = result["settings"], result["machine"]
    k = st["top_k"] if st["top_k"] is not None else "all"
    lines = [
        f"{st['width']}x{st['height']}, {st['channels']} ch, {st['gaussians']} Gaussians, top-k {k}, "
        f"backend {st['backend']}; {m['cpu']}, {m['torch_threads']} torch / {m['numba_threads']} numba threads",
        f"{'ms':<10}{'median':>10}{'p10':>10}{'p90':>10}   ({len(result['samples_ms_step'])} samples)",
    ]
    for name in ("step", "forward"):
        lines.append(f"{name:<10}" + "".join(f"{result[f'{q}_ms_{name}']:>10.2f}" for q in ("median", "p10", "p90")))
    lines.append(f"first calls (compile / cache load): step {result['first_call_ms_step']:.0f} ms, "
                 f"forward {result['first_call_ms_forward']:.0f} ms")
    return "\n".join(lines)
