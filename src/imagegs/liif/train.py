"""Training LIIF with the paper's recipe (``imagegs liif train``).

One step, as the official ``train_liif.py`` with the ``sr-implicit-downsampled`` wrapper: for each
of ``batch_size`` samples pick an image, a scale s ~ U(scale_min, scale_max) and a random
round(48 s)^2 high-resolution crop; the input is that crop downsampled bicubically (Pillow, 8 bits)
to 48x48; flips and a transpose augment both; 2304 of the crop's pixels, drawn without
replacement, are the queries (coordinates, cell 2 / round(48 s), colours). The loss is L1 between
the predicted and true colours, both normalised as (x - 0.5) / 0.5; Adam, learning rate 1e-4,
halved at the milestones. The recipe is a JSON file (``train_edsr-baseline-liif.json`` next to
this module, the default); ``--config`` takes another.

Runs are resumable: every ``save_every`` steps, and at the end, ``OUT/last.pth`` is replaced
atomically by a checkpoint in the official layout (``{"model": {name, args, sd}, "optimizer":
{name, args, sd}}``) plus the step, the loss history, the configuration and the random states
(NumPy generator and torch), so that stopping and resuming gives the same weights as an
uninterrupted run. ``--init CHECKPOINT`` starts from another checkpoint's weights (fine-tuning);
its model spec replaces the config's. The final weights also go to ``OUT/model.pth``.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image as PILImage

from ..io import image_files, read_image, to_uint8
from .models import LIIF, make, make_coord
from .weights import _read_checkpoint, load_weights, save_weights

__all__ = ["DEFAULT_CONFIG", "load_config", "ImageBank", "sample_batch", "train", "CHECKPOINT", "FINAL",
           "TrainError"]

DEFAULT_CONFIG = Path(__file__).with_name("train_edsr-baseline-liif.json")
CHECKPOINT = "last.pth"
FINAL = "model.pth"


class TrainError(ValueError):
    """Bad configuration, data or checkpoint for training."""


def load_config(path: str | Path | None = None, **overrides) -> dict:
    """Read a training config (default: the paper's recipe) and apply top-level overrides.

    ``overrides`` may also set data fields by name (``batch_size=4``, ``inp_size=16``...).
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        cfg = json.loads(path.read_text())
    except OSError as e:
        raise TrainError(f"{path}: cannot read the config ({e.strerror})") from None
    except json.JSONDecodeError as e:
        raise TrainError(f"{path}: not valid JSON ({e})") from None
    for key, value in overrides.items():
        if value is None:
            continue
        if key in cfg.get("data", {}):
            cfg["data"][key] = value
        elif key == "lr":
            cfg["optimizer"]["lr"] = value
        else:
            cfg[key] = value
    _validate(cfg, path)
    return cfg


def _validate(cfg: dict, path: Path) -> None:
    def need(cond, msg):
        if not cond:
            raise TrainError(f"{path}: {msg}")
    for key in ("model", "data", "optimizer", "steps"):
        need(key in cfg, f"missing '{key}'")
    d = cfg["data"]
    for key in ("inp_size", "scale_min", "scale_max", "sample_q", "batch_size"):
        need(key in d, f"data: missing '{key}'")
    need(isinstance(d["inp_size"], int) and d["inp_size"] >= 2, "data.inp_size must be an integer >= 2")
    need(1 <= d["scale_min"] <= d["scale_max"], "data: need 1 <= scale_min <= scale_max")
    need(isinstance(d["sample_q"], int) and 1 <= d["sample_q"] <= d["inp_size"] ** 2 * d["scale_min"] ** 2,
         "data.sample_q must be between 1 and the pixels of the smallest crop (inp_size * scale_min)^2")
    need(isinstance(d["batch_size"], int) and d["batch_size"] >= 1, "data.batch_size must be >= 1")
    need(cfg["optimizer"].get("name") == "adam", "only the 'adam' optimizer is supported")
    need(cfg["optimizer"].get("lr", 0) > 0, "optimizer.lr must be > 0")
    need(isinstance(cfg["steps"], int) and cfg["steps"] >= 1, "steps must be a positive integer")
    need(cfg.get("loss", "l1") == "l1", "only the 'l1' loss is supported")


class ImageBank:
    """Every image of a folder, in memory as (H, W, 3) uint8 (grey made RGB, alpha dropped)."""

    def __init__(self, folder: str | Path, *, min_size: int):
        paths = image_files(folder)
        self.images: list[np.ndarray] = []
        for p in paths:
            px = read_image(p, alpha="drop").pixels
            if px.shape[0] == 1:
                px = px.expand(3, -1, -1)
            arr = to_uint8(px)
            if min(arr.shape[:2]) < min_size:
                raise TrainError(f"{p}: {arr.shape[1]}x{arr.shape[0]} is smaller than the largest "
                                 f"training crop ({min_size}x{min_size}); remove it or lower "
                                 "scale_max / inp_size")
            self.images.append(arr)
        self.paths = paths

    def __len__(self) -> int:
        return len(self.images)


def _bicubic_u8(arr: np.ndarray, size: int) -> np.ndarray:
    return np.array(PILImage.fromarray(arr).resize((size, size), PILImage.Resampling.BICUBIC))


def sample_batch(bank: ImageBank, data: dict, rng: np.random.Generator) -> dict[str, torch.Tensor]:
    """One training batch (``sr-implicit-downsampled`` with a fixed input size).

    Returns ``inp`` (B, 3, n, n), ``coord`` and ``cell`` (B, Q, 2), ``gt`` (B, Q, 3), in [0, 1]
    (not yet normalised); n = inp_size, Q = sample_q.
    """
    n = data["inp_size"]
    inps, coords, cells, gts = [], [], [], []
    for _ in range(data["batch_size"]):
        img = bank.images[rng.integers(len(bank))]
        s = rng.uniform(data["scale_min"], data["scale_max"])
        w_hr = round(n * s)
        y0 = rng.integers(img.shape[0] - w_hr + 1)
        x0 = rng.integers(img.shape[1] - w_hr + 1)
        hr = img[y0:y0 + w_hr, x0:x0 + w_hr]
        lr = _bicubic_u8(np.ascontiguousarray(hr), n)
        if data.get("augment", False):
            flips = rng.random(3) < 0.5
            if flips[0]:
                hr, lr = hr[::-1], lr[::-1]
            if flips[1]:
                hr, lr = hr[:, ::-1], lr[:, ::-1]
            if flips[2]:
                hr, lr = hr.transpose(1, 0, 2), lr.transpose(1, 0, 2)
        hr_t = torch.from_numpy(np.ascontiguousarray(hr)).float().div_(255)
        pick = torch.from_numpy(rng.choice(w_hr * w_hr, data["sample_q"], replace=False))
        inps.append(torch.from_numpy(np.ascontiguousarray(lr)).float().div_(255).permute(2, 0, 1))
        coords.append(make_coord((w_hr, w_hr))[pick])
        gts.append(hr_t.reshape(-1, 3)[pick])
        cells.append(torch.full((data["sample_q"], 2), 2 / w_hr))
    return {"inp": torch.stack(inps), "coord": torch.stack(coords), "cell": torch.stack(cells),
            "gt": torch.stack(gts)}


def _lr_at(cfg: dict, step: int) -> float:
    drops = sum(step >= m for m in cfg.get("lr_milestones", []))
    return cfg["optimizer"]["lr"] * cfg.get("lr_gamma", 0.5) ** drops


def _norm(cfg: dict, which: str) -> tuple[float, float]:
    t = cfg.get("data_norm", {}).get(which, {"sub": 0.0, "div": 1.0})
    return float(t["sub"]), float(t["div"])


def _save(out: Path, model: LIIF, opt: torch.optim.Optimizer, cfg: dict, step: int,
          history: list, rng: np.random.Generator) -> None:
    save_weights(model, out / CHECKPOINT, extra={
        "optimizer": {"name": "adam", "args": {"lr": cfg["optimizer"]["lr"]}, "sd": opt.state_dict()},
        "step": step, "history": history, "config": json.dumps(cfg),
        "rng": {"numpy": json.dumps(rng.bit_generator.state), "torch": torch.get_rng_state()},
    })


def train(images: str | Path, out: str | Path, *, config: dict | None = None,
          init: str | Path | None = None, progress: bool = True) -> dict:
    """Train (or resume, or fine-tune) a LIIF; returns {"step", "history", "model"}.

    ``history`` holds (step, loss) for every step of this and earlier sessions of the run.
    Resumes from ``out/last.pth`` when it exists (``init`` is then an error).
    """
    cfg = copy.deepcopy(config) if config is not None else load_config()
    out = Path(out)
    data = cfg["data"]
    bank = ImageBank(images, min_size=round(data["inp_size"] * data["scale_max"]))
    rng = np.random.default_rng(cfg.get("seed", 0))
    torch.manual_seed(cfg.get("seed", 0))
    last = out / CHECKPOINT
    step, history = 0, []
    if last.exists():
        if init is not None:
            raise TrainError(f"{out}: holds a run to resume ({CHECKPOINT}); --init starts a new "
                             "run, so give an empty output folder")
        ck = _read_checkpoint(last, "cpu")
        model = load_weights(last, eval=False)
        opt = torch.optim.Adam(model.parameters(), lr=cfg["optimizer"]["lr"])
        opt.load_state_dict(ck["optimizer"]["sd"])
        step, history = int(ck["step"]), list(ck["history"])
        rng.bit_generator.state = json.loads(ck["rng"]["numpy"])
        torch.set_rng_state(ck["rng"]["torch"])
    else:
        model = load_weights(init, eval=False) if init is not None else make(cfg["model"])
        opt = torch.optim.Adam(model.parameters(), lr=cfg["optimizer"]["lr"])
    model.train()
    inp_sub, inp_div = _norm(cfg, "inp")
    gt_sub, gt_div = _norm(cfg, "gt")
    total = cfg["steps"]
    save_every = max(1, int(cfg.get("save_every", 1000)))

    from tqdm import tqdm

    bar = tqdm(total=total, initial=step, disable=not progress, desc="train", dynamic_ncols=True)
    try:
        while step < total:
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, step)
            batch = sample_batch(bank, data, rng)
            pred = model((batch["inp"] - inp_sub) / inp_div, batch["coord"], batch["cell"])
            loss = torch.nn.functional.l1_loss(pred, (batch["gt"] - gt_sub) / gt_div)
            if not math.isfinite(loss.item()):
                raise TrainError(f"the loss became {loss.item()} at step {step}; lower the learning rate")
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            history.append((step, loss.item()))
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{_lr_at(cfg, step - 1):.1e}")
            if step % save_every == 0 or step == total:
                _save(out, model, opt, cfg, step, history, rng)
    finally:
        bar.close()
    save_weights(model, out / FINAL)
    return {"step": step, "history": history, "model": model}
