"""Fitting Gaussians to an image: Image-GS's optimisation loop.

Content-adaptive initialisation (half the budget), Adam with per-attribute learning rates,
error-guided progressive addition of the rest (the optimiser state grows with the Gaussians),
then a plateau schedule: evaluate every ``eval_every`` steps, divide the learning rates by
``lr_decay`` after ``plateau_steps`` without improvement, stop at the next plateau.

Scales are optimised as inverse scales (1 / pixels), as in the official code, so that the given
learning rate is a relative step; the sign of an inverse scale is irrelevant (only its square
enters the conic).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from . import _jit, metrics
from ._workers import torch_serial
from .defaults import DEFAULT_NUM_GAUSSIANS, DEFAULT_TOP_K, check_top_k
from .gaussians import Gaussians
from .init import as_image, error_blur_kernel, gaussian_blur, init_positions, pixel_centres
from .init import gradient_map, sample_without_replacement
from .loss import ImageLoss, normalize_pixel_weights
from .optim import Adam
from .quantize import Bits, color_clip, canonicalize, fake_quantize
from .renderer import BACKENDS, prefilter, project, rasterize, render
from .renderer.constants import TILE

__all__ = ["FitConfig", "FitState", "fit", "refine", "SCHEDULES", "FitDivergedError"]

# Std (native pixels, times the downscaling factor) of the pixel filter a coarse-to-fine step
# widens each Gaussian by: sqrt(1/12), a box the size of a native pixel, so that the rendering
# approximates the area-downscaled target it is compared with.
COARSE_FILTER_SIGMA = 0.29


class FitDivergedError(ValueError):
    """The optimisation produced non-finite values (learning rates too high for this image)."""


@dataclass(frozen=True)
class FitConfig:
    """Every setting of a fit. Defaults: the official Image-GS values except the schedule."""

    num_gaussians: int = DEFAULT_NUM_GAUSSIANS
    top_k: int | None = DEFAULT_TOP_K  # 0 or None: every Gaussian of the tile
    init_ratio: float = 0.5  # share of the budget placed at initialisation
    init_scale: float = 5.0  # pixels
    init_random_ratio: float = 0.3  # share of initial positions drawn uniformly
    add_steps: tuple[int, ...] = (500, 1000, 1500, 2000)  # error-guided additions (rest split evenly)
    add_color: str = "residual"  # colour of added Gaussians: "residual" (official) or "target"
    lr_xy: float = 5e-4
    lr_scale: float = 2e-3  # on inverse scales
    lr_rot: float = 2e-3
    lr_color: float = 5e-3
    l1_weight: float = 1.0
    ssim_weight: float = 0.1
    max_steps: int = 10_000
    min_steps_after_add: int = 3000  # max_steps is raised to last addition + this
    eval_every: int = 100
    plateau_steps: int = 1000
    plateau_psnr: float = 0.1  # dB
    plateau_ssim: float = 1e-3
    lr_decay: float = 10.0
    max_decays: int = 1
    decay_steps: tuple[int, ...] = ()  # also divide learning rates by lr_decay at these steps
    seed: int = 0
    backend: str = "auto"
    # Quantisation-aware fitting: bits per value of (position, scale, rotation, colour), or None.
    # The render sees the values the .igs file will hold (straight-through estimator).
    quant_bits: tuple[int, int, int, int] | None = None
    quant_start: float = 0.0  # share of max_steps fitted in float before quantisation starts
    # Level-of-detail training: on one step in ``lod_every`` after the first addition, fit the
    # render of a random coarser prefix (whole levels) instead of the full set, so each level
    # stands alone. Astronaut: every 4th step, coarsest level 32.6 dB instead of 22.7, full image
    # -0.83 dB; every 2nd step, 33.9 dB and -1.27 dB.
    lod_training: bool = False
    lod_every: int = 4
    # Coarse-to-fine: (factor, last step) pairs, factors decreasing and last steps increasing. Up to
    # ``last`` the fit renders at 1/factor of the native size (the same Gaussians: positions and
    # scales are resolution independent) against the area-downscaled target, and error-guided
    # additions sample the low-resolution error map; a step there costs ~1/factor^2 of a full one.
    # After the last pair it fits at full size. () = always full size.
    coarse: tuple[tuple[int, int], ...] = ()
    # Coarse-to-fine follows the density: each factor f of ``coarse`` is lowered until a Gaussian
    # of the final count N still has this many coarse pixels, H W / (f^2 N) >= coarse_density
    # (factors below 2 are dropped, their steps then run at the next scale); 0 = no cap. Measured:
    # at ~14 coarse pixels per Gaussian the coarse steps cannot place them (docs/NOTES.md).
    coarse_density: float = 0.0
    # Error-guided additions during coarse steps sample the full-size error (a forward-only render
    # at native size) instead of the coarse one, so added Gaussians can land on detail finer than
    # a coarse pixel (thin lines), weighted by the full-size importance steering if any.
    full_additions: bool = False
    # Stochastic steps: each renders, and differentiates, one of 3 x 3 windows of about this share
    # of the view (the image, or its coarse version), at random (tile-aligned: the whole
    # rendering's pixels up to float rounding). 0 = the whole view.
    crop: float = 0.0
    # Full-size steps after the schedule's, at its decayed learning rates (:func:`refiner`), for a
    # schedule whose steps end below full size (c2f). :func:`imagegs.codec.compress` runs them on
    # the Gaussians it keeps after pruning to the rate instead (its ``refine_steps``).
    final_steps: int = 0

    def validate(self, height: int, width: int) -> None:
        """Raise ValueError for settings that cannot work on a ``height`` x ``width`` image."""
        def need(cond, msg):
            if not cond:
                raise ValueError(msg)
        need(isinstance(self.num_gaussians, int) and 1 <= self.num_gaussians, f"num_gaussians must be a positive integer, got {self.num_gaussians!r}")
        need(self.num_gaussians <= height * width, f"num_gaussians ({self.num_gaussians}) exceeds the pixel count ({height * width})")
        check_top_k(self.top_k)
        need(0.0 < self.init_ratio <= 1.0, f"init_ratio must be in (0, 1], got {self.init_ratio}")
        need(0.0 <= self.init_random_ratio <= 1.0, f"init_random_ratio must be in [0, 1], got {self.init_random_ratio}")
        need(math.isfinite(self.init_scale) and self.init_scale > 0, f"init_scale must be positive, got {self.init_scale}")
        need(all(isinstance(s, int) and s > 0 for s in self.add_steps) and list(self.add_steps) == sorted(set(self.add_steps)), f"add_steps must be increasing positive integers, got {self.add_steps}")
        need(self.add_color in ("residual", "target"), f"add_color must be 'residual' or 'target', got {self.add_color!r}")
        for name in ("lr_xy", "lr_scale", "lr_rot", "lr_color", "l1_weight", "ssim_weight"):
            v = getattr(self, name)
            need(math.isfinite(v) and v >= 0, f"{name} must be a finite non-negative number, got {v}")
        need(self.l1_weight + self.ssim_weight > 0, "at least one loss weight must be positive")
        need(isinstance(self.max_steps, int) and self.max_steps >= 1, f"max_steps must be a positive integer, got {self.max_steps!r}")
        need(self.eval_every >= 1 and self.plateau_steps >= 1, "eval_every and plateau_steps must be positive")
        need(self.lr_decay > 1.0, f"lr_decay must be > 1, got {self.lr_decay}")
        need(all(isinstance(s, int) and s > 0 for s in self.decay_steps), f"decay_steps must be positive integers, got {self.decay_steps}")
        need(self.max_decays >= 0 and self.min_steps_after_add >= 0, "max_decays and min_steps_after_add must be >= 0")
        need(self.backend in BACKENDS, f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.quant_bits is not None:
            Bits(*self.quant_bits)  # validates
        need(isinstance(self.lod_every, int) and self.lod_every >= 1, f"lod_every must be a positive integer, got {self.lod_every!r}")
        need(0.0 <= self.quant_start <= 1.0, f"quant_start must be in [0, 1], got {self.quant_start}")
        need(math.isfinite(self.crop) and 0 <= self.crop < 1, f"crop must be in [0, 1), got {self.crop}")
        need(isinstance(self.final_steps, int) and self.final_steps >= 0,
             f"final_steps must be a non-negative integer, got {self.final_steps!r}")
        need(math.isfinite(self.coarse_density) and self.coarse_density >= 0,
             f"coarse_density must be a finite non-negative number, got {self.coarse_density}")
        need(all(isinstance(p, tuple) and len(p) == 2 and all(isinstance(v, int) and v >= 1 for v in p)
                 for p in self.coarse)
             and all(a[0] > b[0] > 1 and a[1] < b[1] for a, b in zip(self.coarse, self.coarse[1:]))
             and all(f > 1 for f, _ in self.coarse),
             f"coarse must be (factor, last step) pairs of integers, factors > 1 decreasing and last "
             f"steps increasing, got {self.coarse}")

    def coarse_plan(self, height: int, width: int) -> tuple[tuple[int, int], ...]:
        """:attr:`coarse` with every factor capped by :attr:`coarse_density` for a ``height`` x
        ``width`` image (equal capped factors merged, the later last step kept)."""
        if self.coarse_density <= 0:
            return self.coarse
        cap = int(math.sqrt(height * width / (self.num_gaussians * self.coarse_density)))
        plan: list[tuple[int, int]] = []
        for f, last in self.coarse:
            f = min(f, cap)
            if f < 2:
                break
            if plan and plan[-1][0] == f:
                plan[-1] = (f, last)
            else:
                plan.append((f, last))
        return tuple(plan)

    def factor_at(self, step: int) -> int:
        """The downscaling factor of step ``step`` (1-based) under :attr:`coarse` (1 = full size)."""
        return next((f for f, last in self.coarse if step <= last), 1)


# Named schedules. "official" is the authors' long schedule (10k steps max, plateau-driven, ~7.5k
# steps on astronaut). "fast" (the default) is tuned for time-to-quality on a CPU: the same
# additions compressed into the first 200 steps, higher learning rates (2x position, 4x colour,
# 8x scale and rotation), a fixed budget of 1200 steps with one decay at step 950. On astronaut
# (512^2, 10k Gaussians) it reaches 38.4 dB in ~46 s where "official" reaches 38.3 dB in ~344 s
# (benchmarks/results/schedule_*.json). "quality" is "fast" run twice as long (2400 steps, the
# decay at 1900) for compression, where every 0.1 dB counts: on the ten 1024-px RD images it
# gained +0.27 dB at 0.3 bpp and +0.17 to +0.30 from 0.2 to 1 bpp for ~1.4x the encode time, but
# lost 0.40 dB at 0.05 bpp (docs/NOTES.md); the RD benchmark uses it.
_FAST = dict(add_steps=(50, 100, 150, 200), max_steps=1200, min_steps_after_add=0,
             decay_steps=(950,), plateau_steps=400, eval_every=100,
             lr_xy=1e-3, lr_color=2e-2, lr_scale=1.6e-2, lr_rot=1.6e-2)
# "c2f" (coarse to fine) is the encoder's schedule: 800 steps at 1/4 size, 800 at 1/2 (each
# factor capped so that a Gaussian keeps >= 16 coarse pixels: dense fits run finer, or at full
# size), error-guided additions from the full-size error, no decay, then 400 full-size steps at
# the decayed rates; :func:`imagegs.codec.compress` prunes the fit to the rate before those, and
# runs them on the Gaussians it keeps (docs/NOTES.md).
SCHEDULES: dict[str, dict] = {
    "official": {},
    "fast": _FAST,
    "quality": dict(_FAST, max_steps=2400, decay_steps=(1900,)),
    "c2f": dict(_FAST, coarse=((4, 800), (2, 1600)), coarse_density=16.0, full_additions=True, max_steps=1600,
                decay_steps=(), final_steps=400),
}


def _make_config(config: FitConfig | None, schedule: str, overrides: dict) -> FitConfig:
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {sorted(SCHEDULES)}")
    names = {f.name for f in fields(FitConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise TypeError(f"unknown fit option(s): {', '.join(bad)}")
    base = config if config is not None else FitConfig(**SCHEDULES[schedule])
    for key in ("add_steps", "decay_steps"):
        if key in overrides:
            overrides[key] = tuple(overrides[key])
    if "coarse" in overrides:
        overrides["coarse"] = tuple(tuple(p) if isinstance(p, (list, tuple)) else p for p in overrides["coarse"])
    if "top_k" in overrides:  # a plain int or None (0 means None), whatever integer type was given
        overrides["top_k"] = check_top_k(overrides["top_k"])
    if overrides.get("quant_bits") is not None:
        overrides["quant_bits"] = Bits.parse(overrides["quant_bits"]).as_tuple()
    return replace(base, **overrides)


class FitState:
    """The optimisation state of a fit: the parameters with their Adam state, the loss, the target.

    ``step()`` is exactly one step of :func:`fit`'s loop (projection, forward render, loss,
    backward, Adam, scale clamp); :func:`fit` adds the schedule around it (additions, evaluation,
    decays) and ``imagegs.bench.speed`` times it. The parameters ``params`` are (xy, inverse
    scales, rotation, colour): scales are optimised as inverse scales (see the module docstring).
    """

    def __init__(self, target: torch.Tensor, cfg: FitConfig, num: int | None = None, *,
                 weight_map: np.ndarray | None = None, rng: np.random.Generator | None = None,
                 quant_from: int = 0, start: Gaussians | None = None, pixel_weights=None,
                 steering: np.ndarray | None = None):
        """Initialise ``num`` Gaussians (default ``cfg.num_gaussians``) on ``target`` (C, H, W):
        content-adaptive positions (``weight_map`` or the image gradient), ``cfg.init_scale``,
        rotation 0, the colour of the pixel underneath. ``rng`` (default: seeded by ``cfg.seed``)
        draws the positions; the render is quantisation-aware after step ``quant_from`` when
        ``cfg.quant_bits`` is set. ``start``: begin from this model instead (fresh Adam moments).
        ``pixel_weights``: loss weights broadcastable to (C, H, W) (see :class:`ImageLoss`).
        ``steering``: (H, W) importance weights (``1 + strength * importance``,
        :func:`imagegs.importance.steering_weights`): they multiply the loss weights, the initial
        sampling's map and the error that error-guided additions sample (:meth:`addition_weights`)."""
        c, h, w = target.shape
        cfg.validate(h, w)
        n0 = start.num if start is not None else cfg.num_gaussians if num is None else num
        self.cfg, self.target, self.height, self.width = cfg, target, h, w
        self.rng = np.random.default_rng(cfg.seed) if rng is None else rng
        self.quant_from, self.steps = quant_from, 0
        self.flat_target = target.permute(1, 2, 0).reshape(-1, c)
        self.steering = None if steering is None else torch.as_tensor(np.asarray(steering, np.float64))
        if self.steering is not None:
            if tuple(self.steering.shape) != (h, w):
                raise ValueError(f"importance weights of shape {tuple(self.steering.shape)} do not fit a "
                                 f"{w}x{h} image")
            if weight_map is None:  # the gradient map the initial sampling would use, steered
                weight_map = gradient_map(target) ** 2
            weight_map = np.asarray(weight_map, np.float64) * self.steering.numpy()
            pixel_weights = steered_pixel_weights(pixel_weights, self.steering, (c, h, w))
        if start is not None:
            params = [t.detach().clone() for t in (start.xy, 1.0 / start.scale, start.rot, start.color)]
        else:
            xy = init_positions(target, n0, random_ratio=cfg.init_random_ratio, weight_map=weight_map, rng=self.rng)
            params = [xy, self._inverse_scales(n0), torch.zeros(n0), self.flat_target[_pixel_index(xy, h, w)].clone()]
        self.opt = Adam([p.requires_grad_() for p in params], [cfg.lr_xy, cfg.lr_scale, cfg.lr_rot, cfg.lr_color])
        self.factor = 1
        self.pixel_weights = (None if pixel_weights is None
                              else normalize_pixel_weights(pixel_weights, (c, h, w)).to(torch.float32))
        self.view, self.view_weights = target, self.pixel_weights
        self.loss_fn = self._loss(target, self.pixel_weights)
        self._window_losses: dict[tuple, ImageLoss | None] = {}  # by (factor, window)

    def _loss(self, view: torch.Tensor, pixel_weights: torch.Tensor | None) -> ImageLoss:
        return ImageLoss(view, l1_weight=self.cfg.l1_weight, ssim_weight=self.cfg.ssim_weight,
                         pixel_weights=pixel_weights)

    def set_factor(self, factor: int) -> None:
        """Fit at 1/``factor`` of the native size from now on: ``view`` becomes the target
        area-downscaled to round(H / factor) x round(W / factor) (at least 1 px) and the loss
        compares the rendering at that size with it; 1 = the native target."""
        if factor == self.factor:
            return
        h, w = self.height, self.width
        size = (max(1, round(h / factor)), max(1, round(w / factor)))
        def scaled(t):
            return t if t is None or factor == 1 else F.interpolate(t[None], size=size, mode="area")[0]
        self.factor, self.view, self.view_weights = factor, scaled(self.target), scaled(self.pixel_weights)
        self.loss_fn = self._loss(self.view, self.view_weights)

    def addition_weights(self) -> torch.Tensor | None:
        """The steering weights at the current scale ((h, w) of ``view``, area-downscaled under
        coarse-to-fine), by which error-guided additions multiply the error; None without steering."""
        if self.steering is None or self.factor == 1:
            return self.steering
        return F.interpolate(self.steering[None, None], size=tuple(self.view.shape[1:]), mode="area")[0, 0]

    @property
    def params(self) -> list[torch.Tensor]:
        """(xy, inverse scales, rotation, colour), the optimised tensors."""
        return self.opt.params

    @property
    def num(self) -> int:
        return int(self.opt.params[0].shape[0])

    def _inverse_scales(self, n: int) -> torch.Tensor:
        return torch.full((n, 2), 1.0 / self.cfg.init_scale)

    def render(self, n: int | None = None, window: tuple[int, int, int, int] | None = None) -> torch.Tensor:
        """The current model's (first ``n`` Gaussians') rendering at the size of ``view`` (the
        native size unless :meth:`set_factor` chose a coarser one), (C, h, w), with autograd;
        with a ``window`` (x0, y0, x1, y1) of ``view``, that window only (the Gaussians shifted
        by its origin: tile-aligned, so the same pixels as the whole rendering's)."""
        cfg, (oh, ow) = self.cfg, self.view.shape[1:]
        xy, inv_s, rot, col = (t[:n] for t in self.opt.params)
        if cfg.quant_bits is not None and self.steps > self.quant_from:
            xy, inv_s, rot, col = _fake_quantize_params(xy, inv_s, rot, col, Bits(*cfg.quant_bits))
        if self.factor == 1:
            means, conics, radii = project(xy, inv_s, rot, height=oh, width=ow, native_height=self.height,
                                           native_width=self.width, inverse_scale=True)
        else:  # widened by the pixel filter of the coarse pixels (amplitudes left at 1: see above)
            means, conics, radii, _ = prefilter(xy, 1.0 / inv_s.abs(), rot, height=oh, width=ow,
                                                native_height=self.height, native_width=self.width,
                                                sigma=COARSE_FILTER_SIGMA)
        if window is not None:
            x0, y0, x1, y1 = window
            means, (oh, ow) = means - means.new_tensor([x0, y0]), (y1 - y0, x1 - x0)
        return rasterize(means, conics, col, radii, oh, ow, top_k=cfg.top_k, backend=cfg.backend)

    def window(self) -> tuple[int, int, int, int] | None:
        """The (x0, y0, x1, y1) window of ``view`` for a stochastic step (:attr:`FitConfig.crop`),
        one of 3 x 3 at random, or None for the whole view (no crop, or a view too small). Its
        sides are the view's times sqrt(crop) (whole tiles less); the first and last positions
        meet the edges, the middle one is centred, all at multiples of TILE. Few windows, so that
        each one's loss (and its target statistics, which cost more than the window's render) is
        made once."""
        if not self.cfg.crop:
            return None
        (h, w), s = self.view.shape[1:], math.sqrt(self.cfg.crop)
        ky, kx = (min(max(0, round(n * (1 - s) / TILE)), (n - 1) // TILE) for n in (h, w))
        if ky == kx == 0:
            return None
        y0, x0 = (TILE * (k * int(self.rng.integers(0, 3)) // 2) for k in (ky, kx))
        return x0, y0, x0 + w - TILE * kx, y0 + h - TILE * ky

    def _window_loss(self, win: tuple[int, int, int, int]) -> ImageLoss | None:
        """The loss on the window ``win`` of ``view``, made once per scale and window (None where
        its pixel weights are all zero)."""
        key = (self.factor, win)
        if key not in self._window_losses:
            x0, y0, x1, y1 = win
            pw = None if self.view_weights is None else self.view_weights[:, y0:y1, x0:x1]
            ok = pw is None or bool((pw > 0).any())
            self._window_losses[key] = self._loss(self.view[:, y0:y1, x0:x1], pw) if ok else None
        return self._window_losses[key]

    def step(self, prefix: int | None = None) -> torch.Tensor:
        """One optimisation step on the rendering of the first ``prefix`` Gaussians (default all),
        or on a random window of it (:attr:`FitConfig.crop`); returns the loss (detached)."""
        self.steps += 1
        win = self.window()
        loss_fn = self.loss_fn if win is None else self._window_loss(win)
        if loss_fn is None:
            win, loss_fn = None, self.loss_fn
        with torch_serial(self.cfg.backend != "reference" and self.target.device.type == "cpu"):
            loss = loss_fn(self.render(prefix, win))
            loss.backward()
            self.opt.step()
            _clamp_inverse_scales(self.opt.params[1], self.height, self.width)
        return loss.detach()

    def add(self, xy: torch.Tensor, color: torch.Tensor) -> None:
        """Append Gaussians at ``xy`` (n, 2) with ``color`` (n, C), the initial scale and rotation 0."""
        n = len(xy)
        self.opt.grow([xy, self._inverse_scales(n), torch.zeros(n), color])

    def gaussians(self, fit_info: dict | None = None) -> Gaussians:
        """The current model as :class:`Gaussians` (detached copies, positive scales)."""
        xy, inv_s, rot, col = (p.detach() for p in self.opt.params)
        return Gaussians(xy.clone(), 1.0 / inv_s.abs(), rot.clone(), col.clone(), self.height, self.width,
                         fit_info=fit_info or {})


def fit(image, *, schedule: str = "fast", config: FitConfig | None = None, progress: bool = False,
        history: list | None = None, weight_map: np.ndarray | None = None, pixel_weights=None,
        importance=None, importance_strength: float | None = None, **options) -> Gaussians:
    """Fit Gaussians to an image.

    Args:
        image: (C, H, W) tensor or (H, W[, C]) array (uint8/uint16 or float in [0, 1]); any C.
        schedule: "fast" (default, tuned for time-to-quality), "quality" (twice as long, for
            compression) or "official" (the authors' schedule).
        config: a full FitConfig (``schedule`` is then ignored); ``**options`` override single
            fields, e.g. ``num_gaussians=5000, top_k=10, max_steps=3000, seed=1``.
        progress: show a progress bar (step, Gaussians, PSNR, it/s).
        history: if a list, evaluation records {step, seconds, psnr, ssim, gaussians} are appended.
        weight_map: optional (H, W) importance map used instead of the gradient for initialisation.
        pixel_weights: optional loss weights broadcastable to (C, H, W): (H, W) per pixel, (C, 1, 1)
            per channel; normalised to mean 1 (see :class:`imagegs.loss.ImageLoss`).
        importance: what matters most in the image (semantics-aware fitting): a grey map file
            (any size), "saliency", "faces" or an (H', W') array (see
            :func:`imagegs.importance.importance_map`). Each pixel then weighs
            ``1 + importance_strength * importance`` in the loss, in the initial sampling
            (multiplying the gradient map or ``weight_map``) and in the error that error-guided
            additions sample. None (default): no steering.
        importance_strength: how strongly (default
            :data:`imagegs.importance.DEFAULT_IMPORTANCE_STRENGTH`; 0 = no steering).
    Returns:
        The fitted Gaussians (float32, scales positive, in order of addition: earlier = coarser),
        with ``fit_info`` {steps, seconds, config, levels}.
    """
    cfg = _make_config(config, schedule, dict(options))
    target = as_image(image)
    c, h, w = target.shape
    cfg.validate(h, w)
    cfg = replace(cfg, coarse=cfg.coarse_plan(h, w))
    torch.manual_seed(cfg.seed)
    t_start = time.perf_counter()

    total = cfg.num_gaussians
    adds = [s for s in cfg.add_steps if s < cfg.max_steps] if cfg.init_ratio < 1.0 else []
    n0 = total if not adds else int(math.ceil(cfg.init_ratio * total))
    per_add = [((total - n0) * (i + 1)) // len(adds) - ((total - n0) * i) // len(adds) for i in range(len(adds))]
    max_steps = max(cfg.max_steps, (adds[-1] + cfg.min_steps_after_add) if adds else 0)

    steering = importance_steering(target, importance, importance_strength)
    state = FitState(target, cfg, n0, weight_map=weight_map, quant_from=int(cfg.quant_start * max_steps),
                     pixel_weights=pixel_weights, steering=steering)
    rng = state.rng
    full_maps = grid, blurred_target = _addition_maps(target)  # full size (also for full_additions)
    levels = [n0]  # Gaussians per level of detail: the initial set, then one level per addition

    best_psnr = best_ssim = -math.inf
    stale = decays = 0
    # compile (or load) the kernels before the bar starts, so its rate is the steps' alone
    _jit.prepare("fit-reference" if cfg.backend == "reference" else "fit", notice=progress)
    bar = _progress(max_steps + cfg.final_steps, progress)
    step = 0
    try:
        for step in range(1, max_steps + 1):
            if cfg.factor_at(step) != state.factor:  # coarse-to-fine: a new scale, a new plateau
                state.set_factor(cfg.factor_at(step))
                grid, blurred_target = _addition_maps(state.view)
                best_psnr = best_ssim = -math.inf
                stale = 0
            prefix = None
            if cfg.lod_training and len(levels) > 1 and (step - 1) % cfg.lod_every == 0:
                prefix = sum(levels[:int(rng.integers(1, len(levels)))])
            loss = state.step(prefix)
            bar.update(1)
            if step in cfg.decay_steps:
                state.opt.scale_lr(1.0 / cfg.lr_decay)
            all_added = not adds or step >= adds[-1]
            evaluate = step % cfg.eval_every == 0 or step == max_steps
            adding = bool(adds) and step in adds
            if evaluate or adding:  # one render serves both
                with torch.no_grad():
                    cur = state.render()
            if evaluate:
                with torch.no_grad():
                    shown = cur.clamp(0, 1)
                    p_now = metrics.psnr(shown, state.view)
                    s_now = float(state.loss_fn.ssim(shown))
                if not math.isfinite(loss.item()) or not all(torch.isfinite(p).all() for p in state.params):
                    raise FitDivergedError(f"the fit diverged at step {step} (non-finite values); "
                                           "try lower learning rates (e.g. schedule='official')")
                n_now = state.num
                if history is not None:
                    history.append(dict(step=step, seconds=time.perf_counter() - t_start, psnr=p_now,
                                        ssim=s_now, gaussians=n_now, loss=float(loss), factor=state.factor))
                bar.set_postfix(N=n_now, psnr=f"{p_now:.2f}", refresh=False)
                if all_added:  # the official plateau rule
                    if p_now <= best_psnr + cfg.plateau_psnr or s_now <= best_ssim + cfg.plateau_ssim:
                        stale += cfg.eval_every
                        if stale >= cfg.plateau_steps:
                            stale = 0
                            decays += 1
                            if decays > cfg.max_decays:
                                break
                            state.opt.scale_lr(1.0 / cfg.lr_decay)
                    else:
                        best_psnr, best_ssim, stale = p_now, s_now, 0
            if adding:
                k = per_add[adds.index(step)]
                with torch.no_grad():
                    steer = state.addition_weights()
                    a_grid, a_target, a_view = grid, blurred_target, state.view
                    if cfg.full_additions and state.factor > 1:
                        (a_grid, a_target), a_view, steer = full_maps, target, state.steering
                        cur = render(state.gaussians(), top_k=cfg.top_k, backend=cfg.backend)
                    diff = a_target - cur  # (C, h, w) at the scale sampled
                    err = diff.abs().mean(0).double() ** 2
                    err = (err if steer is None else err * steer).reshape(-1)
                    idx = torch.from_numpy(sample_without_replacement(err.numpy(), k, rng))
                    source = diff if cfg.add_color == "residual" else a_view
                    new_col = source.permute(1, 2, 0).reshape(-1, c)[idx]
                    state.add(a_grid[idx], new_col)
                    levels.append(len(idx))
        g = state.gaussians()
        if cfg.final_steps and g.num:  # full size at last, at the decayed rates
            final = refiner(g, target, config=replace(cfg, final_steps=0), pixel_weights=state.pixel_weights)
            for _ in range(cfg.final_steps):
                final.step()
                bar.update(1)
            g = finished(g, final)
            step += cfg.final_steps
    finally:
        bar.close()
    return replace(g, fit_info=dict(steps=step, seconds=time.perf_counter() - t_start, config=asdict(cfg),
                                    levels=levels))


def refiner(g: Gaussians, image, *, schedule: str = "fast", config: FitConfig | None = None,
            pixel_weights=None, **options) -> FitState:
    """A :class:`FitState` that continues ``g`` (N >= 1) with full-size steps on ``image`` at the
    schedule's learning rates after its decays (``lr_decay`` ** len(decay_steps), at least one),
    with fresh Adam moments: what a fit's last steps do, for a model that changed after its fit
    (the codec prunes Gaussians to meet a rate; the rest then re-fit the holes, instead of the
    colours alone). ``pixel_weights``: as in :func:`fit`. :func:`refine` runs it; the codec steps
    several at once to compare bit depths (:func:`finished`)."""
    cfg = _make_config(config, schedule, dict(options, num_gaussians=max(g.num, 1)))
    decay = cfg.lr_decay ** max(1, len(cfg.decay_steps))
    cfg = replace(cfg, lr_xy=cfg.lr_xy / decay, lr_scale=cfg.lr_scale / decay, lr_rot=cfg.lr_rot / decay,
                  lr_color=cfg.lr_color / decay, quant_bits=None, coarse=())
    return FitState(as_image(image), cfg, start=g, pixel_weights=pixel_weights)


def finished(g: Gaussians, state: FitState) -> Gaussians:
    """``g`` with the parameters of ``state`` (a :func:`refiner` of it): fit_info, names and order kept."""
    out = state.gaussians()
    return replace(g, xy=out.xy, scale=out.scale, rot=out.rot, color=out.color)


def refine(g: Gaussians, image, steps: int, *, schedule: str = "fast", config: FitConfig | None = None,
           pixel_weights=None, **options) -> Gaussians:
    """``g`` after ``steps`` more full-size steps on ``image`` (:func:`refiner`). Keeps ``g``'s
    fit_info, names and order; ``g`` itself when there is nothing to do."""
    if g.num == 0 or steps <= 0:
        _make_config(config, schedule, dict(options, num_gaussians=max(g.num, 1)))  # options still checked
        return g
    state = refiner(g, image, schedule=schedule, config=config, pixel_weights=pixel_weights, **options)
    for _ in range(steps):
        state.step()
    return finished(g, state)


def importance_steering(image: torch.Tensor, importance, strength: float | None) -> np.ndarray | None:
    """The (H, W) steering weights ``1 + strength * importance`` of :func:`fit`'s ``importance``
    options for the (C, H, W) ``image`` (None without importance or at strength 0)."""
    from .importance import DEFAULT_IMPORTANCE_STRENGTH, check_strength, importance_map, steering_weights

    s = check_strength(DEFAULT_IMPORTANCE_STRENGTH if strength is None else strength)
    if importance is None or s == 0:
        return None
    return steering_weights(importance_map(image, importance), s)


def steered_pixel_weights(pixel_weights, steering, shape: tuple[int, int, int]):
    """The loss weights of a steered fit: ``pixel_weights`` (broadcastable to ``shape`` = (C, H, W),
    or None) times the (H, W) ``steering`` weights (or None: ``pixel_weights`` unchanged)."""
    if steering is None:
        return pixel_weights
    st = torch.as_tensor(np.asarray(steering, np.float64))
    return st if pixel_weights is None else normalize_pixel_weights(pixel_weights, shape) * st


def _addition_maps(view: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where error-guided additions sample, for a (C, h, w) target ``view``: its pixel centres
    ([0, 1]^2 units, so the same positions at any scale) and the target blurred as the official
    code blurs it before taking the error."""
    h, w = view.shape[1:]
    blur_k = error_blur_kernel(h, w)
    return pixel_centres(h, w), (gaussian_blur(view, blur_k) if blur_k else view)


def _fake_quantize_params(xy: torch.Tensor, inv_s: torch.Tensor, rot: torch.Tensor, col: torch.Tensor,
                          bits: Bits) -> tuple[torch.Tensor, ...]:
    """The fit's parameters as the .igs file will hold them (see :mod:`imagegs.quantize`), with
    straight-through gradients: canonical axes, log-scales and colours on min/max grids, angle on
    the periodic grid of [0, pi)."""
    scale, r = canonicalize(1.0 / inv_s.abs(), rot)
    log_s = fake_quantize(torch.log(scale), bits.scale)
    return (fake_quantize(xy, bits.position), torch.exp(-log_s),
            fake_quantize(r, bits.rotation, periodic=math.pi), fake_quantize(col, bits.color, clip=color_clip(bits.color)))


@torch.no_grad()
def _clamp_inverse_scales(inv: torch.Tensor, height: int, width: int, max_inv: float = 1e3) -> None:
    """Keep |1 / scale| in [4 / max(height, width), max_inv] (scales below a quarter of the image's
    longer side), preserving its sign (so Adam's moments stay consistent). Without this, a large
    step can carry an inverse scale through ~0: a Gaussian larger than the image that touches every
    tile and, at 0, a NaN gradient."""
    sign = torch.where(inv < 0, -1.0, 1.0)
    inv.copy_(sign * inv.abs().clamp_(4.0 / max(height, width), max_inv))


def _pixel_index(xy: torch.Tensor, h: int, w: int) -> torch.Tensor:
    j = (xy[:, 0] * w).long().clamp_(0, w - 1)
    i = (xy[:, 1] * h).long().clamp_(0, h - 1)
    return i * w + j


class _NoBar:
    def update(self, n): pass
    def set_postfix(self, *a, **k): pass
    def close(self): pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="step", dynamic_ncols=True, desc="fit")
