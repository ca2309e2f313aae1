"""LIIF (Chen, Liu, Wang, CVPR 2021): encoders, MLP decoder, the local implicit image function.

A tiny registry turns a *spec* ``{"name": ..., "args": {...}}`` into a module (``make(spec)``), as
in the authors' code, so that their checkpoints -- ``{"model": {"name", "args", "sd"}}`` -- load
key for key: module and parameter names here are theirs (``encoder.head.0.weight``,
``encoder.body.3.body.0.weight``, ``imnet.layers.0.weight``, ...), including the EDSR mean-shift
layers that their encoder carries but never applies.

:class:`LIIF` has two query paths that compute the same function:

- :meth:`LIIF.query_reference`, a line-by-line transcription of the official ``query_rgb``:
  unfold the features to 9C channels, and for each of the 4 local-ensemble shifts sample the
  nearest latent and its centre, build the decoder input [latent (9C), relative coordinate (2),
  relative cell (2)] and run the whole MLP.
- :meth:`LIIF.query`, the fast path. The MLP's first layer is linear, so its 9C-column block is
  applied once per low-resolution pixel -- a 3x3 convolution of the features with that block
  (unfolding is exactly the 3x3 neighbourhood, zero padded) -- and each query only adds the four
  coordinate/cell columns. Per query and shift the cost falls from 580x256 to 4x256 multiply-adds
  in that layer, and the unfolded 9C-channel map is never built. The latent is chosen with the
  same ``grid_sample`` call as the official code (on an index map), so the selection, rel_coord,
  rel_cell and ensemble weights are bit-identical; the outputs agree to float32 rounding (the
  first layer sums its products in another order).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MODELS", "register", "make", "make_coord", "EDSR", "RDN", "MLP", "LIIF", "Latents",
           "default_spec", "ENSEMBLE_EPS", "CLAMP_EPS"]

MODELS: dict[str, Callable[..., nn.Module]] = {}
# oneDNN's Linear with a fused activation (what torch.compile uses on CPUs); None where missing.
_FUSED_LINEAR = (getattr(torch.ops.mkldnn, "_linear_pointwise", None)
                 if torch.backends.mkldnn.is_available() else None)
ENSEMBLE_EPS = 1e-6  # official eps_shift: keeps a query exactly between two latents off the tie
CLAMP_EPS = 1e-6  # shifted coordinates are clamped to [-1 + eps, 1 - eps]


def register(name: str) -> Callable:
    """Decorator: make ``name`` available to :func:`make`."""
    def decorator(factory):
        MODELS[name] = factory
        return factory
    return decorator


def make(spec: dict, *, args: dict | None = None, load_sd: bool = False) -> nn.Module:
    """Build the module a spec names: ``MODELS[spec["name"]](**spec["args"], **args)``.

    ``load_sd=True`` also loads ``spec["sd"]`` strictly (every key, no extra ones). The module
    keeps its spec (without weights) as ``model.spec``, which checkpoints store beside the weights.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"a model spec is a dict with a 'name' and 'args', got {spec!r:.80}")
    if spec["name"] not in MODELS:
        raise ValueError(f"unknown model {spec['name']!r}; known: {', '.join(sorted(MODELS))}")
    model_args = copy.deepcopy(spec.get("args") or {})
    model_args.update(args or {})
    try:
        model = MODELS[spec["name"]](**model_args)
    except TypeError as e:
        raise ValueError(f"bad arguments for model {spec['name']!r}: {e}") from None
    model.spec = {"name": spec["name"], "args": copy.deepcopy(spec.get("args") or {})}
    if load_sd:
        model.load_state_dict(spec["sd"], strict=True)
    return model


def make_coord(shape: tuple[int, ...], *, flatten: bool = True) -> torch.Tensor:
    """Pixel-centre coordinates in [-1, 1] (official ``make_coord``).

    Returns (prod(shape), len(shape)) if ``flatten`` else (*shape, len(shape)); entry i of axis d
    is ``-1 + r + 2 r i`` with ``r = 1 / shape[d]``, computed exactly as the official code does.
    """
    seqs = [axis_coord(n) for n in shape]
    ret = torch.stack(torch.meshgrid(*seqs, indexing="ij"), dim=-1)
    return ret.view(-1, ret.shape[-1]) if flatten else ret


def axis_coord(n: int) -> torch.Tensor:
    """(n,) float32 pixel-centre coordinates of one axis (one axis of :func:`make_coord`)."""
    r = (1 - (-1)) / (2 * n)
    return -1 + r + (2 * r) * torch.arange(n).float()


# ------------------------------------------------------------------------------------ encoders


class MeanShift(nn.Conv2d):
    """EDSR's fixed 1x1 colour shift. LIIF's encoder keeps it (its weights are in the checkpoints)
    but never applies it; we keep it too so that checkpoints load key for key."""

    def __init__(self, rgb_range: float = 1.0, rgb_mean=(0.4488, 0.4371, 0.4040),
                 rgb_std=(1.0, 1.0, 1.0), sign: int = -1):
        super().__init__(3, 3, kernel_size=1)
        std = torch.tensor(rgb_std)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1)
        self.bias.data = sign * rgb_range * torch.tensor(rgb_mean) / std
        for p in self.parameters():
            p.requires_grad = False


def _conv(cin: int, cout: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, padding=k // 2)


class ResBlock(nn.Module):
    """conv-ReLU-conv with an identity skip (``res_scale`` scales the residual)."""

    def __init__(self, n_feats: int, kernel_size: int = 3, res_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(_conv(n_feats, n_feats, kernel_size), nn.ReLU(True),
                                  _conv(n_feats, n_feats, kernel_size))
        self.res_scale = res_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mul(self.res_scale) + x


class EDSR(nn.Module):
    """EDSR without its upsampler (LIIF's encoder): (B, 3, H, W) -> (B, n_feats, H, W)."""

    def __init__(self, n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1.0,
                 rgb_range: float = 1.0, n_colors: int = 3):
        super().__init__()
        self.sub_mean = MeanShift(rgb_range)
        self.add_mean = MeanShift(rgb_range, sign=1)
        self.head = nn.Sequential(_conv(n_colors, n_feats, 3))
        self.body = nn.Sequential(*[ResBlock(n_feats, 3, res_scale) for _ in range(n_resblocks)],
                                  _conv(n_feats, n_feats, 3))
        self.out_dim = n_feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(x)
        return self.body(x) + x


def _no_upsampler(no_upsampling: bool) -> None:
    if not no_upsampling:
        raise ValueError("only encoders without an upsampler (no_upsampling: true) are supported; "
                         "LIIF replaces the upsampler")


@register("edsr-baseline")
def make_edsr_baseline(n_resblocks: int = 16, n_feats: int = 64, res_scale: float = 1.0,
                       scale: int = 2, no_upsampling: bool = True, rgb_range: float = 1.0) -> EDSR:
    """EDSR-baseline (16 blocks, 64 channels); ``scale`` is accepted for spec compatibility."""
    _no_upsampler(no_upsampling)
    return EDSR(n_resblocks, n_feats, res_scale, rgb_range)


@register("edsr")
def make_edsr(n_resblocks: int = 32, n_feats: int = 256, res_scale: float = 0.1, scale: int = 2,
              no_upsampling: bool = True, rgb_range: float = 1.0) -> EDSR:
    """Full EDSR (32 blocks, 256 channels, residual scaling 0.1)."""
    _no_upsampler(no_upsampling)
    return EDSR(n_resblocks, n_feats, res_scale, rgb_range)


class RDBConv(nn.Module):
    """One densely connected conv of an RDB: output = [input, ReLU(conv(input))]."""

    def __init__(self, cin: int, growth: int, k: int = 3):
        super().__init__()
        self.conv = nn.Sequential(_conv(cin, growth, k), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat((x, self.conv(x)), 1)


class RDB(nn.Module):
    """Residual dense block: C dense convs, 1x1 local feature fusion, identity skip."""

    def __init__(self, g0: int, growth: int, n_convs: int, k: int = 3):
        super().__init__()
        self.convs = nn.Sequential(*[RDBConv(g0 + c * growth, growth, k) for c in range(n_convs)])
        self.LFF = nn.Conv2d(g0 + n_convs * growth, g0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.LFF(self.convs(x)) + x


class RDN(nn.Module):
    """Residual dense network without its upsampler: (B, 3, H, W) -> (B, G0, H, W)."""

    CONFIGS = {"A": (20, 6, 32), "B": (16, 8, 64)}  # (blocks D, convs per block C, growth G)

    def __init__(self, G0: int = 64, RDNkSize: int = 3, RDNconfig: str = "B", n_colors: int = 3):
        super().__init__()
        if RDNconfig not in self.CONFIGS:
            raise ValueError(f"RDNconfig must be one of {sorted(self.CONFIGS)}, got {RDNconfig!r}")
        self.D, c, g = self.CONFIGS[RDNconfig]
        self.SFENet1 = _conv(n_colors, G0, RDNkSize)
        self.SFENet2 = _conv(G0, G0, RDNkSize)
        self.RDBs = nn.ModuleList([RDB(G0, g, c, RDNkSize) for _ in range(self.D)])
        self.GFF = nn.Sequential(nn.Conv2d(self.D * G0, G0, 1), _conv(G0, G0, RDNkSize))
        self.out_dim = G0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f1 = self.SFENet1(x)
        x = self.SFENet2(f1)
        outs = []
        for block in self.RDBs:
            x = block(x)
            outs.append(x)
        return self.GFF(torch.cat(outs, 1)) + f1


@register("rdn")
def make_rdn(G0: int = 64, RDNkSize: int = 3, RDNconfig: str = "B", scale: int = 2,
             no_upsampling: bool = True) -> RDN:
    """RDN (config B: 16 blocks of 8 convs, growth 64)."""
    _no_upsampler(no_upsampling)
    return RDN(G0, RDNkSize, RDNconfig)


# ------------------------------------------------------------------------------------- decoder


@register("mlp")
class MLP(nn.Module):
    """Linear-ReLU-...-Linear over the last dimension: (..., in_dim) -> (..., out_dim)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_list: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        last = in_dim
        for hidden in hidden_list:
            layers += [nn.Linear(last, hidden), nn.ReLU()]
            last = hidden
        layers.append(nn.Linear(last, out_dim))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape[:-1]
        return self.layers(x.reshape(-1, x.shape[-1])).view(*shape, -1)


# ---------------------------------------------------------------------------------------- LIIF


@dataclass
class Latents:
    """What the fast query path needs from one encoded image batch (see :meth:`LIIF.prepare`).

    Attributes:
        proj: (B * h * w, hidden) first decoder layer applied to every (unfolded) latent, plus its
            bias; row ``b * h * w + i * w + j`` is latent (i, j) of image b.
        height, width: h, w of the feature map.
        batch: B.
    """

    proj: torch.Tensor
    height: int
    width: int
    batch: int


@register("liif")
class LIIF(nn.Module):
    """Local implicit image function: encoder + MLP decoder queried at continuous coordinates.

    Images enter normalised as (x - 0.5) / 0.5 and predictions leave in that scale (the caller
    maps them back with * 0.5 + 0.5), as in the official training and test code.
    """

    def __init__(self, encoder_spec: dict, imnet_spec: dict | None = None,
                 local_ensemble: bool = True, feat_unfold: bool = True, cell_decode: bool = True):
        super().__init__()
        self.local_ensemble = local_ensemble
        self.feat_unfold = feat_unfold
        self.cell_decode = cell_decode
        self.encoder = make(encoder_spec)
        if imnet_spec is None:
            raise ValueError("LIIF needs a decoder (imnet_spec); the decoder-less variant only "
                             "samples features and is not supported")
        in_dim = self.encoder.out_dim * (9 if feat_unfold else 1) + 2 + (2 if cell_decode else 0)
        self.imnet = make(imnet_spec, args={"in_dim": in_dim})

    # -- shared pieces --------------------------------------------------------------------------

    def encode(self, inp: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised image -> (B, C, H, W) feature map (official ``gen_feat``)."""
        return self.encoder(inp)

    def shifts(self) -> list[tuple[int, int]]:
        """Local-ensemble offsets (vx, vy) in latent units, in the official order."""
        return [(vx, vy) for vx in (-1, 1) for vy in (-1, 1)] if self.local_ensemble else [(0, 0)]

    def _shifted(self, coord: torch.Tensor, vx: int, vy: int, h: int, w: int) -> torch.Tensor:
        """The query coordinate moved by (vx, vy) half-latents (+eps), clamped inside [-1, 1]."""
        eps = ENSEMBLE_EPS if self.local_ensemble else 0.0
        coord_ = coord.clone()
        coord_[..., 0] += vx * (2 / h / 2) + eps
        coord_[..., 1] += vy * (2 / w / 2) + eps
        return coord_.clamp_(-1 + CLAMP_EPS, 1 - CLAMP_EPS)

    @staticmethod
    def _nearest(grid: torch.Tensor, coord: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) map sampled at (N, Q, 2) (y, x) coordinates, nearest -> (N, Q, C)."""
        return F.grid_sample(grid, coord.flip(-1).unsqueeze(1), mode="nearest",
                             align_corners=False)[:, :, 0, :].permute(0, 2, 1)

    def _ensemble_weights(self, rel_coords: list[torch.Tensor]) -> list[torch.Tensor]:
        """Area weights of the shifts: each latent gets the area of the rectangle between the query
        and the *opposite* latent (official swap 0<->3, 1<->2), normalised to sum 1."""
        areas = [torch.abs(r[..., 0] * r[..., 1]) + 1e-9 for r in rel_coords]
        total = torch.stack(areas).sum(dim=0)
        if self.local_ensemble:
            areas = [areas[3], areas[2], areas[1], areas[0]]
        return [a / total for a in areas]

    def _rel_cell(self, cell: torch.Tensor, h: int, w: int) -> torch.Tensor:
        rel_cell = cell.clone()
        rel_cell[..., 0] *= h
        rel_cell[..., 1] *= w
        return rel_cell

    # -- reference path ---------------------------------------------------------------------------

    def query_reference(self, feat: torch.Tensor, coord: torch.Tensor,
                        cell: torch.Tensor | None = None) -> torch.Tensor:
        """Official ``query_rgb``: (B, C, h, w) features, (B, Q, 2) coords/cells -> (B, Q, out).

        Coordinates are (y, x) pixel centres in [-1, 1]; cells are (2 / H_out, 2 / W_out).
        """
        b, c, h, w = feat.shape
        if self.feat_unfold:
            feat = F.unfold(feat, 3, padding=1).view(b, c * 9, h, w)
        feat_coord = make_coord((h, w), flatten=False).to(feat).permute(2, 0, 1) \
            .unsqueeze(0).expand(b, 2, h, w)
        preds, rel_coords = [], []
        for vx, vy in self.shifts():
            coord_ = self._shifted(coord, vx, vy, h, w)
            q_feat = self._nearest(feat, coord_)
            q_coord = self._nearest(feat_coord, coord_)
            rel_coord = coord - q_coord
            rel_coord[..., 0] *= h
            rel_coord[..., 1] *= w
            inp = torch.cat([q_feat, rel_coord], dim=-1)
            if self.cell_decode:
                inp = torch.cat([inp, self._rel_cell(cell, h, w)], dim=-1)
            preds.append(self.imnet(inp))
            rel_coords.append(rel_coord)
        ret = 0
        for pred, weight in zip(preds, self._ensemble_weights(rel_coords)):
            ret = ret + pred * weight.unsqueeze(-1)
        return ret

    # -- fast path --------------------------------------------------------------------------------

    def _first_layer(self) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
        """(first Linear, its latent block as a conv weight (hidden, C, k, k), its 2-4 coordinate
        and cell columns (hidden, 2 or 4))."""
        first = self.imnet.layers[0]
        c = self.encoder.out_dim
        k = 3 if self.feat_unfold else 1
        n_latent = c * k * k
        # unfold's channel order is (c, ky, kx): exactly a conv weight's (in, kh, kw) layout
        return first, first.weight[:, :n_latent].reshape(-1, c, k, k), first.weight[:, n_latent:]

    def prepare(self, feat: torch.Tensor) -> Latents:
        """Apply the decoder's first layer to every latent once: (B, C, h, w) -> :class:`Latents`."""
        b, _, h, w = feat.shape
        first, w_latent, _ = self._first_layer()
        proj = F.conv2d(feat, w_latent, first.bias, padding=w_latent.shape[-1] // 2)
        return Latents(proj.permute(0, 2, 3, 1).reshape(b * h * w, -1), h, w, b)

    def query(self, latents: Latents, coord: torch.Tensor,
              cell: torch.Tensor | None = None) -> torch.Tensor:
        """Fast ``query_rgb``: same arguments and result as :meth:`query_reference`, from
        :meth:`prepare`'s latents. (B, Q, 2) coords and cells -> (B, Q, out)."""
        h, w, b = latents.height, latents.width, latents.batch
        q = coord.shape[1]
        _, _, w_extra = self._first_layer()
        # (row, col) of every latent, sampled with the official call: identical nearest choice
        index_map = torch.stack(torch.meshgrid(torch.arange(h, dtype=coord.dtype, device=coord.device),
                                               torch.arange(w, dtype=coord.dtype, device=coord.device),
                                               indexing="ij"))[None]
        axis_y = axis_coord(h).to(coord)
        axis_x = axis_coord(w).to(coord)
        base = (torch.arange(b, device=coord.device) * (h * w)).view(b, 1)
        rel_cell = self._rel_cell(cell, h, w) if self.cell_decode else None
        rel_coords, hiddens = [], []
        for vx, vy in self.shifts():
            coord_ = self._shifted(coord, vx, vy, h, w)
            ij = self._nearest(index_map, coord_.reshape(1, b * q, 2)).reshape(b, q, 2).long()
            q_coord = torch.stack([axis_y[ij[..., 0]], axis_x[ij[..., 1]]], dim=-1)
            rel_coord = coord - q_coord
            rel_coord[..., 0] *= h
            rel_coord[..., 1] *= w
            extra = torch.cat([rel_coord, rel_cell], dim=-1) if rel_cell is not None else rel_coord
            rows = (base + ij[..., 0] * w + ij[..., 1]).reshape(-1)
            hidden = latents.proj.index_select(0, rows)
            hidden = hidden.addmm_(extra.reshape(b * q, -1), w_extra.t()) if not hidden.requires_grad \
                else torch.addmm(hidden, extra.reshape(b * q, -1), w_extra.t())
            hiddens.append(hidden)
            rel_coords.append(rel_coord)
        ret = 0
        for hidden, weight in zip(hiddens, self._ensemble_weights(rel_coords)):
            ret = ret + self._decode_hidden(hidden).view(b, q, -1) * weight.unsqueeze(-1)
        return ret

    def _decode_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """The decoder after its first Linear, from that layer's (N, hidden) output.

        Without autograd on a CPU, each hidden Linear + ReLU is one oneDNN call with the bias and
        ReLU fused into the matrix product (no separate passes over the activations); otherwise
        plain Linear/ReLU modules. Both compute the same function (float32 rounding aside).
        """
        layers = list(self.imnet.layers)
        if len(layers) == 1:  # no hidden layer: the first Linear was the output layer
            return h
        fused = (_FUSED_LINEAR is not None and h.device.type == "cpu" and h.dtype == torch.float32
                 and not (torch.is_grad_enabled() and (h.requires_grad or self.training)))
        h = torch.relu_(h) if fused else torch.relu(h)  # the ReLU after the first Linear
        for i in range(2, len(layers), 2):
            lin = layers[i]
            if i + 1 < len(layers):  # Linear, ReLU
                h = _FUSED_LINEAR(h, lin.weight, lin.bias, "relu", [], "") if fused else torch.relu(lin(h))
            else:
                h = lin(h)
        return h

    def forward(self, inp: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor | None = None
                ) -> torch.Tensor:
        """(B, 3, H, W) normalised image, (B, Q, 2) coords/cells -> (B, Q, 3) normalised colours."""
        return self.query(self.prepare(self.encode(inp)), coord, cell)


def default_spec(encoder: str = "edsr-baseline", **encoder_args) -> dict:
    """The paper's LIIF spec: an encoder without upsampler, MLP 256 x 4, all three tricks on."""
    return {"name": "liif", "args": {
        "encoder_spec": {"name": encoder, "args": {"no_upsampling": True, **encoder_args}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [256, 256, 256, 256]}},
    }}
