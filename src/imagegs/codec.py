"""Image <-> .igs bytes: fitting, quantising and packing an image, and decoding the file.

``compress(image, bpp=0.3)`` fits Gaussians, quantises them, chooses the Gaussian count (and bit
depths) so that the *whole file* lands within 5% under the requested bits per pixel
(:mod:`imagegs.ratecontrol`), and returns the bytes with what it measured; ``encode`` returns
just the bytes. ``decode`` turns bytes back into an 8-bit image at any size, level of detail or
region, and ``decode_gaussians`` into a :class:`Gaussians` model.

Quantisation: by default the fit runs in float and the result is quantised (16-bit costs
~0.003 dB); ``qat=`` turns on the official quantisation-aware fitting (straight-through). After
quantisation (and pruning) the colours are re-fitted on the quantised geometry
(:func:`polish_colors`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import igsfile
from ._workers import torch_serial
from .defaults import DEFAULT_NUM_GAUSSIANS, DEFAULT_TOP_K, ENCODE_SCHEDULE, MAX_PIXELS, check_pixels, check_top_k
from .fitting import SCHEDULES, FitConfig, finished, fit, importance_steering, refiner, steered_pixel_weights
from .loss import normalize_pixel_weights
from .gaussians import Gaussians
from .importance import importance_map
from .init import as_image
from .io import Image, atomic_write, read_source
from .quantize import Bits, QuantizedGaussians, dequantize, quantize
from .ratecontrol import (MIN_GAUSSIANS, OVERSHOOT, RATE_TOLERANCE, Pack, RateControlError, count_for_budget,
                          decoded_mse, default_bits, fit_budget, neighbour_depths, predicted_bytes, settle_bits)
from .renderer import project, rasterize

__all__ = ["Encoded", "ENCODE_SCHEDULE", "compress", "encode", "decode", "decode_gaussians", "read_igs_header",
           "default_bits", "save_igs", "load_igs", "output_depths", "RateControlError"]

POLISH_STEPS = 20  # conjugate-gradient iterations of the colour polish (polish_colors)
# What a fit schedule asks of the encoder beyond the fit (``compress``'s one_fit default): "c2f"
# stops its fit after the coarse steps, prunes to the rate (one fit for both bit depths), then
# runs the schedule's final full-size steps on the kept Gaussians (``refine_steps``, default the
# schedule's ``final_steps``; docs/NOTES.md, "Encoder speed").
CODING: dict[str, dict] = {"c2f": dict(one_fit=True)}
PROBE_STEPS = 100  # refine steps every bit depth gets before the one to finish is chosen (_to_budget)


@dataclass
class Encoded:
    """The result of :func:`compress`: the file and what it took."""

    data: bytes
    gaussians: Gaussians  # the decoder's view (dequantised, in file order)
    bits: Bits
    levels: list[int]
    bpp: float
    fits: int = 1
    fit_info: dict = field(default_factory=dict)

    @property
    def num(self) -> int:
        return self.gaussians.num

    @property
    def bppc(self) -> float:
        """Bits per pixel per channel (BPPC, as neural texture compression papers report): the
        whole file's bits over height x width x channels."""
        return self.bpp / self.gaussians.channels

    def __repr__(self) -> str:
        g = self.gaussians
        return (f"Encoded({len(self.data):,} bytes, {self.bpp:.4f} bpp, {self.bppc:.4f} BPPC, {g.width}x{g.height}, "
                f"{self.num} Gaussians in {len(self.levels)} levels, bits {self.bits}, "
                f"{self.fits} fit(s))")


def _pack(g: Gaussians, levels: list[int], *, bits: Bits, top_k: int | None, metadata: dict | None,
          ranges: QuantizedGaussians | None = None, kinds: list[str] | None = None) -> tuple[bytes, Gaussians]:
    """The .igs bytes of ``g`` quantised to ``bits`` (on ``ranges``' grids if given), and the
    decoder's view of it (dequantised, in file order)."""
    q = quantize(g, bits, ranges=ranges)
    data, order = igsfile.pack(q, levels, top_k=top_k, metadata=metadata, kinds=kinds)
    return data, dequantize(q.take(order))


def polish_colors(g: Gaussians, target: torch.Tensor, bits: Bits, *, steps: int = POLISH_STEPS,
                  top_k: int | None = DEFAULT_TOP_K, pixel_weights=None) -> tuple[Gaussians, QuantizedGaussians]:
    """Re-fit the colours of ``g`` on its quantised geometry: the colours that decode closest.

    With positions, scales and angles fixed at the values the file will hold, the rendering is
    linear in the colours (each pixel blends its top-K Gaussians' colours with weights that the
    geometry alone sets), so the best colours solve a least-squares problem. ``steps`` iterations
    of conjugate gradients on its normal equations (CGLS: one render and one backward pass each)
    start from the quantised colours; :func:`quantize` then rounds them on the grid of ``g``'s
    quantisation. Measured at 1024 px, 0.3 bpp: 20 iterations, 0.5 s, +0.35 / +0.04 dB on
    dragonfly / concert over 200 straight-through Adam steps, 7 s (docs/NOTES.md).

    target: (C, H, W); ``pixel_weights`` (broadcastable to it, as in :func:`imagegs.fit`) weight the
    squared error. Returns the model (geometry dequantised, colours refined, in float) and the
    quantisation whose ranges :func:`quantize` must reuse so the file holds exactly this grid.
    """
    q = quantize(g, bits)
    gq = dequantize(q)
    if steps <= 0 or g.num == 0:
        return gq, q
    h, w = g.height, g.width
    means, conics, radii = project(gq.xy, gq.scale, gq.rot, height=h, width=w, native_height=h, native_width=w)
    pw = 1.0 if pixel_weights is None else normalize_pixel_weights(pixel_weights, tuple(target.shape)).to(target)

    def blend(colors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(colors as a leaf, their rendering A colors) - backward through it gives A^T v."""
        c = colors.detach().requires_grad_()
        return c, rasterize(means, conics, c, radii, h, w, top_k=top_k)

    def adjoint(leaf: torch.Tensor, image: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(image, leaf, grad_outputs=pw * v)[0]

    x = gq.color.clone()
    with torch_serial(target.device.type == "cpu"):
        leaf, img = blend(x)
        r = target - img.detach()  # the residual y - A x
        s = adjoint(leaf, img, r)  # A^T W r: minus the gradient
        p, gamma = s.clone(), float((s * s).sum())
        for _ in range(steps):
            leaf, ap = blend(p)
            apd = ap.detach()
            curv = float((pw * apd * apd).sum())
            if gamma <= 0 or curv <= 0:  # converged (or a direction that changes no pixel)
                break
            alpha = gamma / curv
            x, r = x + alpha * p, r - alpha * apd
            s = adjoint(leaf, ap, r)
            gamma, old = float((s * s).sum()), gamma
            p = s + (gamma / old) * p
    return replace(gq, color=x), q


@dataclass(frozen=True)
class _Job:
    """What every fit and every file of one :func:`compress` call share."""

    target: torch.Tensor  # (C, H, W)
    fit_options: dict  # for imagegs.fit (num_gaussians and QAT settings come per fit)
    names: dict  # channel_names and groups, given to every model
    qat: float | None
    polish_steps: int
    refine_steps: int
    top_k: int | None
    metadata: dict | None
    kinds: list[str] | None = None  # map kind per group (texture sets), stored in the file
    steering: np.ndarray | None = None  # (H, W) importance weights (see imagegs.fitting.fit)

    @property
    def pixels(self) -> int:
        return self.target.shape[1] * self.target.shape[2]

    @property
    def loss_weights(self):
        """What refine and the colour polish weight the error with: the fit's pixel weights, steered."""
        return steered_pixel_weights(self.fit_options.get("pixel_weights"), self.steering, tuple(self.target.shape))

    @property
    def error_weights(self) -> torch.Tensor | None:
        """The (H, W) importance weights the rate control's choices count the error with (None: uniform)."""
        return None if self.steering is None else torch.as_tensor(self.steering, dtype=torch.float32)

    def error(self, gq: Gaussians) -> float:
        """The decoded (importance-weighted) MSE of the decoder's model ``gq`` against the target:
        what every choice between files of one encode compares."""
        return decoded_mse(gq, self.target, self.top_k, self.error_weights)

    def packer(self, bits: Bits, ranges: QuantizedGaussians | None = None) -> Pack:
        """``pack(model, levels) -> (bytes, decoder's model)`` with this job's header fields."""
        return functools.partial(_pack, bits=bits, top_k=self.top_k, metadata=self.metadata, ranges=ranges,
                                 kinds=self.kinds)

    def encoded(self, data: bytes, gq: Gaussians, bits: Bits, levels: list[int], fits: int, info: dict
                ) -> Encoded:
        return Encoded(data, gq, bits, levels, 8 * len(data) / self.pixels, fits, info)


def _fit_named(job: _Job, n: int, bits: Bits) -> Gaussians:
    """Fit n Gaussians (quantisation-aware on ``bits`` when asked) and name them."""
    qat_options = {} if job.qat is None else dict(quant_bits=bits.as_tuple(), quant_start=float(job.qat))
    g = fit(job.target, num_gaussians=n, **job.fit_options, **qat_options)
    return replace(g, **job.names, fit_info=dict(g.fit_info, polish_steps=job.polish_steps))


def _refiners(job: _Job, models: list[Gaussians]) -> list:
    """A :func:`imagegs.fitting.refiner` per model, with the job's fit settings."""
    names = {f.name for f in dataclasses.fields(FitConfig)}
    options = {k: v for k, v in job.fit_options.items() if k in names}
    return [refiner(g, job.target, schedule=job.fit_options["schedule"], pixel_weights=job.loss_weights,
                    **options) for g in models]


def _polished(job: _Job, g: Gaussians, bits: Bits) -> tuple[Gaussians, QuantizedGaussians]:
    """:func:`polish_colors` with the job's settings; the names kept."""
    gp, grid = polish_colors(g, job.target, bits, steps=job.polish_steps, top_k=job.top_k,
                             pixel_weights=job.loss_weights)
    return replace(gp, **job.names), grid


def _at_count(job: _Job, n: int, bits: Bits) -> Encoded:
    """The file of a fit of exactly ``n`` Gaussians (no rate control), refined and polished as
    :func:`_to_budget` does, with no budget."""
    return _to_budget(job, _fit_named(job, n, bits), [bits], math.inf, 1)


def _too_low(job: _Job, budget: float) -> RateControlError:
    return RateControlError(f"{8 * budget / job.pixels:g} bpp ({budget:.0f} bytes) is too low for this image")


@dataclass
class _Candidate:
    """One bit depth's file of a fit pruned to the budget: what :func:`_to_budget` compares."""

    bits: Bits
    data: bytes
    gq: Gaussians  # the decoder's model
    levels: list[int]
    kept: Gaussians  # the float model behind it
    error: float  # _Job.error of gq (after a probe: the predicted error of the refined model)


def _pruned(job: _Job, g: Gaussians, levels: list[int], bits: Bits, budget: float,
            ranges: QuantizedGaussians | None = None) -> _Candidate | None:
    """``g`` at ``bits`` pruned to ``budget`` bytes (:func:`fit_budget`), measured; None if even
    one Gaussian does not fit."""
    got = fit_budget(g, job.target, levels, budget, job.packer(bits, ranges), job.top_k, job.error_weights)
    return None if got is None else _Candidate(bits, *got, error=job.error(got[1]))


def _predicted_error(half: float, full: float, *, doublings: float) -> float:
    """The error a refinement reaches after ``doublings`` more doublings of its steps, from its
    errors after half its steps and after all of them: the refinement gains about as many dB per
    doubling of its steps. It picked the final winner on 14 of 14 probes (10 images at 0.3 bpp,
    4 at 0.2; 100 probe steps, 400 refine steps), the error after the probe alone on 10 (up to
    0.57 dB lost): the depth with fewer, more precise Gaussians starts behind but gains faster."""
    if half <= 0 or full <= 0:
        return full
    return full * (full / half) ** doublings


def _to_budget(job: _Job, g: Gaussians, depths: list[Bits], budget: float, attempt: int) -> Encoded:
    """The file of the fit ``g`` within ``budget`` bytes, at the bit depth of ``depths`` that
    decodes closest.

    Each depth prunes ``g`` to the budget. With ``refine_steps``, each pruned model is re-fitted
    at full size (the holes pruning left) for PROBE_STEPS, and only the depth predicted to decode
    closest after all ``refine_steps`` is refined further (:func:`_predicted_error`). Then the
    colours are polished and the file pruned again if polishing grew it (it changes the colour
    codes, hence the size); the polished file is kept only if it decodes closer: on flat-colour
    images the polish's varied colours cost bytes, and the re-pruning more than the polish gains
    (-1.8 dB on vector-spacefun at 0.3 bpp; docs/NOTES.md, "Probing the bit depths")."""
    levels0 = g.fit_info["levels"]
    cands = [c for c in (_pruned(job, g, levels0, bits, budget) for bits in depths) if c is not None]
    if not cands:
        raise _too_low(job, budget)
    if job.refine_steps:  # re-fit the kept Gaussians at full size; probe every depth first
        states = _refiners(job, [c.kept for c in cands])
        probe = min(PROBE_STEPS, job.refine_steps) if len(cands) > 1 else 0
        if probe:
            for c, st in zip(cands, states):
                errors = []
                for n in (probe // 2, probe - probe // 2):
                    for _ in range(n):
                        st.step()
                    errors.append(job.error(job.packer(c.bits)(finished(c.kept, st), c.levels)[1]))
                c.error = _predicted_error(*errors, doublings=math.log2(job.refine_steps / probe))
        i = int(np.argmin([c.error for c in cands]))
        for _ in range(job.refine_steps - probe):
            states[i].step()
        best = _pruned(job, finished(cands[i].kept, states[i]), cands[i].levels, cands[i].bits, budget)
        if best is None:
            raise _too_low(job, budget)
    else:
        best = min(cands, key=lambda c: c.error)
    if job.polish_steps:
        gp, grid = _polished(job, best.kept, best.bits)
        polished = _pruned(job, gp, best.levels, best.bits, budget, grid)
        if polished is not None and polished.error <= best.error:
            best = polished
    info = dict(g.fit_info, fitted=g.num, pruned=g.num - best.gq.num)
    if len(cands) > 1:
        info.update(bits_tried=[str(c.bits) for c in cands], mse_tried=[round(c.error, 8) for c in cands])
    return job.encoded(best.data, best.gq, best.bits, best.levels, attempt, info)


def _at_rate(job: _Job, depths: list[Bits], n_plan: int, budget: float, max_fits: int) -> Encoded:
    """The largest file within ``budget`` from up to ``max_fits`` fits: each fit (of ``n_plan``
    Gaussians, quantisation-aware on ``depths[0]`` if the job asks) is pruned to the budget at
    every depth of ``depths`` and finished at the closest (:func:`_to_budget`); after an
    undershoot of more than RATE_TOLERANCE the count is corrected by the measured bytes per
    Gaussian and the fit repeated."""
    best: Encoded | None = None
    channels = job.target.shape[0]
    for attempt in range(1, max_fits + 1):
        n_fit = min(max(n_plan, 1), job.pixels)
        g = _fit_named(job, n_fit, depths[0])
        enc = _to_budget(job, g, depths, budget, attempt)
        if best is None or len(enc.data) > len(best.data):
            best = enc
        if len(enc.data) >= (1 - RATE_TOLERANCE) * budget or n_fit >= job.pixels:
            break
        per = (len(enc.data) - predicted_bytes(0, enc.bits, channels)) / max(enc.num, 1)
        n_plan = int((budget * OVERSHOOT - predicted_bytes(0, enc.bits, channels)) / per)
    assert best is not None
    best.fits = attempt
    return best


def _closest(job: _Job, encs: list[Encoded]) -> Encoded:
    """Of files at the same rate with different bit depths (separate fits), the one that decodes closest."""
    errors = [job.error(e.gaussians) for e in encs]
    best = encs[int(np.argmin(errors))]
    best.fits = sum(e.fits for e in encs)
    best.fit_info = dict(best.fit_info, bits_tried=[str(e.bits) for e in encs],
                         mse_tried=[round(x, 8) for x in errors])
    return best


def _check_bpp(bpp) -> float:
    """``bpp`` as a float; it must be a positive number."""
    try:
        bpp = float(bpp)
    except (TypeError, ValueError):
        raise ValueError(f"bpp must be a number, got {bpp!r}") from None
    if not math.isfinite(bpp) or bpp <= 0:
        raise ValueError(f"bpp must be a positive number, got {bpp}")
    return bpp


def compress(image, *, bpp: float | None = None, num_gaussians: int | None = None,
             bits: Bits | str | int | None = None, top_k: int | None = DEFAULT_TOP_K, lod_training: bool = False,
             qat: float | None = None, polish_steps: int = POLISH_STEPS,
             schedule: str = ENCODE_SCHEDULE, seed: int = 0, progress: bool = False, max_fits: int = 2,
             one_fit: bool | None = None, refine_steps: int | None = None,
             metadata: dict | None = None, channel_names: tuple[str, ...] | None = None,
             groups: list | None = None, kinds: list[str] | None = None,
             map_weights: dict[str, float] | None = None, importance=None,
             importance_strength: float | None = None, **fit_options) -> Encoded:
    """Fit and encode an image as an .igs file.

    Args:
        image: a path, an ``Image`` from ``read_image``, a (C, H, W) tensor or an (H, W[, C])
            array (uint8/uint16 or float in [0, 1]). A path or an ``Image`` also gives the file its
            channel names, groups (texture stacks) and source bit depths.
        bpp: target whole-file bits per pixel (8 * bytes / (H * W)); the file lands within 5% below.
        num_gaussians: a fixed Gaussian count instead of a target rate (default
            ``DEFAULT_NUM_GAUSSIANS``, 10,000, when neither is given).
        bits: bit depths (:class:`Bits`, ``16`` or ``"12,8,8,8"``); default :func:`default_bits`.
        qat: quantisation-aware fitting from this share of the steps on (0 = throughout, as the
            official code; 0.8 = after the learning-rate decay); None (default) fits in float and
            quantises after. Measured here, QAT did not beat quantising after the fit (docs/NOTES.md).
        polish_steps: steps of :func:`polish_colors` after quantisation (0: none).
        top_k, lod_training, schedule, seed, **fit_options: passed to :func:`imagegs.fit`; the
            schedule defaults to :data:`ENCODE_SCHEDULE` ("c2f"), not the plain fit's "fast".
        max_fits: fits allowed to meet the rate (the second corrects the count from the first's size).
        one_fit: fit once, for the largest count of the candidate bit depths, and derive each
            depth's file from that fit by pruning it to the budget; keep the one that decodes
            closer (with ``refine_steps``, the one predicted to after a short probe). The
            candidates: where the default depths cycle (every 1024-px image at 0.3 bpp,
            :func:`~imagegs.ratecontrol.settle_bits`), both; elsewhere the default and its
            :func:`~imagegs.ratecontrol.neighbour_depths` (the depth above). False: one fit per candidate of a
            cycle, no neighbours. Needs ``qat=None``. Default: the schedule's (:data:`CODING`;
            False for the others).
        refine_steps: after pruning a fit to the rate, fit every attribute of the kept
            Gaussians for this many more full-size steps (:func:`imagegs.fitting.refine`) before
            the colour polish; 0: none. Default: the schedule's ``final_steps`` (400 for c2f, 0
            for the others), which the fit then leaves to this refinement.
        metadata: small JSON-serialisable dict stored in the header.
        channel_names, groups: stored in the file (see :class:`Gaussians`); default: the image's.
        kinds: the map kind of each group (``colour``, ``normal``, ``scalar``; texture sets,
            :mod:`imagegs.textures`), stored in the file; default: the image's (file-name
            suffixes or ``read_image(maps=...)``). Normal maps are renormalised on decoding.
        map_weights: loss weight per map, ``{map name or kind: weight}`` (e.g. ``{"normal": 2}``);
            maps not named get :data:`imagegs.textures.DEFAULT_KIND_WEIGHTS` of their kind.
            Applied to stacks with kinds and whenever given, as per-channel ``pixel_weights``
            (multiplied with ``pixel_weights`` if both are given).
        importance, importance_strength: semantics-aware compression (see :func:`imagegs.fit`):
            the map is computed once and steers every fit, the pruning's refit and the colour
            polish; the rate control is unchanged (the file still lands within 5% below ``bpp``).
    """
    if isinstance(image, (str, os.PathLike)):
        image = read_source(image)
    if isinstance(image, Image):
        names, layers, depths = image.custom_layout()
        channel_names = names if channel_names is None else channel_names
        groups = layers if groups is None else groups
        if depths and not (metadata or {}).get("bit_depths"):
            metadata = dict(metadata or {}, bit_depths=depths)
        kinds = image.map_kinds() if kinds is None else kinds
    target = as_image(image)
    c, h, w = target.shape
    groups = [(str(a), int(b)) for a, b in groups] if groups else None
    kinds = igsfile.check_kinds(kinds, groups, c)
    if kinds is not None or map_weights:
        from .textures import channel_weights

        weights = channel_weights(groups or [("image", c)], kinds, map_weights)
        pw = fit_options.get("pixel_weights")
        fit_options["pixel_weights"] = weights if pw is None else weights * torch.as_tensor(
            np.asarray(pw) if not torch.is_tensor(pw) else pw, dtype=torch.float64)
    if bpp is not None and num_gaussians is not None:
        raise ValueError("give either bpp or num_gaussians, not both")
    coding = CODING.get(schedule, {})
    final_steps = fit_options.pop("final_steps", SCHEDULES.get(schedule, {}).get("final_steps", 0))
    refine_steps = final_steps if refine_steps is None else refine_steps  # after pruning, not in the fit
    if one_fit is None:
        one_fit = coding.get("one_fit", False) and qat is None
    for name, v in (("polish_steps", polish_steps), ("refine_steps", refine_steps)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {v!r}")
    k = check_top_k(top_k)
    if importance is not None:  # computed once (saliency, faces), then given to every fit as a map
        importance = importance_map(target, importance)
        fit_options = dict(fit_options, importance=importance, importance_strength=importance_strength)
    job = _Job(target=target, qat=qat, polish_steps=int(polish_steps), refine_steps=int(refine_steps), top_k=k,
               metadata=metadata, kinds=kinds,
               steering=importance_steering(target, importance, importance_strength),
               fit_options=dict(fit_options, top_k=k, lod_training=lod_training, schedule=schedule, seed=seed,
                                final_steps=0, progress=progress),
               names=dict(channel_names=tuple(channel_names) if channel_names else None,
                          groups=groups))
    if bpp is None:
        n = DEFAULT_NUM_GAUSSIANS if num_gaussians is None else num_gaussians
        fixed = default_bits(h, w, num_gaussians=n, channels=c) if bits is None else Bits.parse(bits)
        return _at_count(job, n, fixed)

    bpp = _check_bpp(bpp)
    budget = bpp * h * w / 8
    if bits is None:
        candidates = settle_bits(h, w, budget * OVERSHOOT, c, default_bits(h, w, channels=c))
        if one_fit and len(candidates) == 1:  # one fit serves several depths: probe the one above too
            candidates += [(b, count_for_budget(budget * OVERSHOOT, b, c)) for b in neighbour_depths(candidates[0][0])]
    else:
        fixed = Bits.parse(bits)
        candidates = [(fixed, count_for_budget(budget * OVERSHOOT, fixed, c))]
    if max(n for _, n in candidates) < MIN_GAUSSIANS:
        raise RateControlError(f"{bpp} bpp is {budget:.0f} bytes for this {w}x{h} image: too few for "
                               f"the header and a useful number of Gaussians; ask for more")
    candidates = [(b, n) for b, n in candidates if n >= MIN_GAUSSIANS]
    if one_fit and len(candidates) > 1:
        if qat is not None:
            raise ValueError("one_fit shares one float fit between bit depths: it needs qat=None")
        return _at_rate(job, [b for b, _ in candidates], max(n for _, n in candidates), budget, max_fits)
    encs = [_at_rate(job, [b], n, budget, max_fits) for b, n in candidates]
    return encs[0] if len(encs) == 1 else _closest(job, encs)


def encode(image, **options) -> bytes:
    """The .igs bytes of :func:`compress` (same arguments)."""
    return compress(image, **options).data


def _read(source: bytes | str | os.PathLike) -> tuple[bytes, str | None]:
    """The bytes of an .igs source, and its path for messages (None for bytes)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source), None
    return Path(source).read_bytes(), str(source)


def _parse(data: bytes, path: str | None, lod: int | None = None, *, header_only: bool = False):
    """``igsfile.read_header`` or ``igsfile.unpack`` of ``data``; errors name ``path`` if given."""
    try:
        return igsfile.read_header(data) if header_only else igsfile.unpack(data, lod=lod)
    except igsfile.IGSFileError as e:
        raise igsfile.IGSFileError(f"{path}: {e}") if path is not None else e from None


def read_igs_header(source: bytes | str | os.PathLike) -> igsfile.IGSHeader:
    """The header of an .igs file (bytes or path): size, count, bits, levels, top-k, metadata.

    Raises :class:`~imagegs.igsfile.IGSFileError` (naming the file) if it is not a valid .igs file.
    """
    return _parse(*_read(source), header_only=True)


def decode_gaussians(source: bytes | str | os.PathLike, *, lod: int | None = None) -> Gaussians:
    """The Gaussians of an .igs file (bytes or path): its first ``lod`` levels (default all).

    For the file's other facts (top-k, metadata, levels) see :func:`read_igs_header`.
    """
    q, _ = _parse(*_read(source), lod)
    return dequantize(q)


def decode(source: bytes | str | os.PathLike, *, height: int | None = None, width: int | None = None,
           lod: int | None = None, top_k: int | None | str = "file", as_uint8: bool = True,
           max_pixels: int = MAX_PIXELS, **render_options):
    """Decode an .igs file (bytes or path) to an image.

    Args:
        height, width: output size (default native; any size and aspect ratio).
        lod: number of levels of detail to use (default all; 1 = coarsest).
        top_k: blend size; default: the value the file was fitted with.
        as_uint8: return (H, W, C) uint8 (default) instead of a (C, H, W) float tensor.

    Normal maps of a texture set (map kinds in the file) come back as unit vectors, renormalised
    after rendering (:func:`imagegs.textures.finish_maps`).
        max_pixels: refuse outputs larger than this (default 2^28, as the command line), so that
            a small file whose header claims a huge size cannot exhaust memory; raise it deliberately.
        **render_options: passed to :func:`imagegs.render` (e.g. ``backend``, ``region``).
    """
    from .io import to_uint8
    from .renderer import render
    from .textures import finish_maps

    data, path = _read(source)
    header = _parse(data, path, header_only=True)  # cheap: refuse a huge output before decoding
    h = header.height if height is None else height
    w = header.width if width is None else width
    check_pixels(h, w, max_pixels=max_pixels, what=f"{path}: decoded image" if path else "decoded image")
    q, header = _parse(data, path, lod)
    k = header.top_k if top_k == "file" else top_k
    with torch.no_grad():
        img = render(dequantize(q), height, width, top_k=k, max_pixels=max_pixels, **render_options)
    img = finish_maps(img, header.groups, header.kinds)
    return to_uint8(img) if as_uint8 else img


def output_depths(groups: list, stored, override: int | None = None) -> list[int]:
    """Bits per sample to write each channel group with: ``override``, else the source's depths
    stored with the model when they are valid, else 8."""
    if override is not None:
        return [override] * len(groups)
    if isinstance(stored, list) and len(stored) == len(groups) and all(d in (8, 16) for d in stored):
        return stored
    return [8] * len(groups)


def save_igs(data: bytes, path: str | os.PathLike) -> Path:
    """Write .igs bytes atomically."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def load_igs(path: str | os.PathLike) -> bytes:
    """Read and check an .igs file's bytes (header and framing); raises IGSFileError if invalid."""
    data = Path(path).read_bytes()
    _parse(data, str(path), header_only=True)
    return data
