"""LIIF model pieces: registry, official key names, coordinates, unfolding, ensemble, cell."""

import pytest
import torch
import torch.nn.functional as F

from imagegs.liif import models as M
from imagegs.liif.models import LIIF, make, make_coord

TINY = {"name": "liif", "args": {
    "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 2, "n_feats": 8,
                                                       "no_upsampling": True}},
    "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [16, 16]}}}}


def tiny(seed=0, **liif_args) -> LIIF:
    torch.manual_seed(seed)
    spec = {"name": "liif", "args": {**TINY["args"], **liif_args}}
    return make(spec).eval()


def random_queries(b, q, seed=1):
    gen = torch.Generator().manual_seed(seed)
    coord = torch.rand(b, q, 2, generator=gen) * 2 - 1  # anywhere in [-1, 1], borders included
    coord[:, :4] = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [0.0, 0.0]])
    cell = torch.rand(b, q, 2, generator=gen) * 0.2 + 0.01
    return coord, cell


def test_make_coord_pixel_centres():
    c = make_coord((4, 2), flatten=False)
    assert c.shape == (4, 2, 2)
    torch.testing.assert_close(c[:, 0, 0], torch.tensor([-0.75, -0.25, 0.25, 0.75]))
    torch.testing.assert_close(c[0, :, 1], torch.tensor([-0.5, 0.5]))
    assert make_coord((3, 5)).shape == (15, 2)


def test_registry_errors():
    with pytest.raises(ValueError, match="unknown model"):
        make({"name": "nope", "args": {}})
    with pytest.raises(ValueError, match="bad arguments"):
        make({"name": "mlp", "args": {"in_dim": 3, "out_dim": 3, "hidden_list": [4], "x": 1}})
    with pytest.raises(ValueError, match="no_upsampling"):
        make({"name": "edsr-baseline", "args": {"no_upsampling": False}})


def official_keys():
    """Parameter names and shapes of the official EDSR-baseline-LIIF checkpoint."""
    keys = {}
    for m in ("sub_mean", "add_mean"):
        keys[f"encoder.{m}.weight"] = (3, 3, 1, 1)
        keys[f"encoder.{m}.bias"] = (3,)
    keys["encoder.head.0.weight"], keys["encoder.head.0.bias"] = (64, 3, 3, 3), (64,)
    for i in range(16):
        for j in (0, 2):
            keys[f"encoder.body.{i}.body.{j}.weight"] = (64, 64, 3, 3)
            keys[f"encoder.body.{i}.body.{j}.bias"] = (64,)
    keys["encoder.body.16.weight"], keys["encoder.body.16.bias"] = (64, 64, 3, 3), (64,)
    dims = [580, 256, 256, 256, 256, 3]
    for n, (i, o) in enumerate(zip(dims[:-1], dims[1:])):
        keys[f"imnet.layers.{2 * n}.weight"] = (o, i)
        keys[f"imnet.layers.{2 * n}.bias"] = (o,)
    return keys


def test_edsr_baseline_liif_has_the_official_keys():
    model = make(M.default_spec())
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == official_keys()
    assert model.spec == M.default_spec()


def test_rdn_encoder_shapes():
    enc = make({"name": "rdn", "args": {"RDNconfig": "A", "G0": 8, "no_upsampling": True}})
    assert enc(torch.rand(1, 3, 5, 7)).shape == (1, 8, 5, 7)
    assert len(enc.RDBs) == 20
    model = make({"name": "liif", "args": {
        "encoder_spec": {"name": "rdn", "args": {"G0": 8, "RDNconfig": "A", "no_upsampling": True}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": [8]}}}})
    assert model.imnet.layers[0].in_features == 8 * 9 + 4
    coord, cell = random_queries(1, 10)
    assert model(torch.rand(1, 3, 6, 6), coord, cell).shape == (1, 10, 3)


@pytest.mark.parametrize("flags", [{}, {"local_ensemble": False}, {"feat_unfold": False},
                                   {"cell_decode": False}])
def test_fast_query_matches_reference(flags):
    model = tiny(**flags)
    feat = model.encode(torch.rand(2, 3, 7, 9) * 2 - 1)
    coord, cell = random_queries(2, 300)
    with torch.no_grad():
        ref = model.query_reference(feat, coord, cell if model.cell_decode else None)
        fast = model.query(model.prepare(feat), coord, cell if model.cell_decode else None)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=1e-5)


def test_fast_query_gradients_match_reference():
    model = tiny()
    inp = torch.rand(1, 3, 5, 6)
    coord, cell = random_queries(1, 64)
    grads = []
    for fast in (False, True):
        model.zero_grad()
        feat = model.encode(inp)
        out = model.query(model.prepare(feat), coord, cell) if fast else model.query_reference(feat, coord, cell)
        out.square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters() if p.requires_grad])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_first_layer_split_equals_unfold():
    """prepare() = first Linear applied to the 3x3-unfolded (zero-padded) latent, per pixel."""
    model = tiny()
    feat = torch.randn(1, 8, 4, 5)
    lat = model.prepare(feat)
    unfolded = F.unfold(feat, 3, padding=1).view(1, 72, 4, 5).permute(0, 2, 3, 1).reshape(20, 72)
    first = model.imnet.layers[0]
    expected = unfolded @ first.weight[:, :72].t() + first.bias
    torch.testing.assert_close(lat.proj, expected, atol=1e-5, rtol=1e-5)


def selector_liif(channels=3) -> LIIF:
    """A LIIF whose decoder returns the centre latent's features unchanged (features >= 0)."""
    model = make({"name": "liif", "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": channels}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": channels, "hidden_list": [channels]}}}})
    with torch.no_grad():
        first, last = model.imnet.layers[0], model.imnet.layers[2]
        first.weight.zero_()
        first.bias.zero_()
        for c in range(channels):
            first.weight[c, c * 9 + 4] = 1.0  # unfold order (c, ky, kx): centre is 4
        last.weight.copy_(torch.eye(channels))
        last.bias.zero_()
    return model.eval()


@pytest.mark.parametrize("path", ["reference", "fast"])
def test_local_ensemble_is_bilinear_interpolation(path):
    """With a decoder that returns the latent itself, the area-weighted ensemble of the 4 nearest
    latents (weights swapped to the opposite rectangles) is bilinear interpolation between pixel
    centres, clamped at the borders: grid_sample(bilinear, align_corners=False, border)."""
    model = selector_liif()
    feat = torch.rand(1, 3, 5, 7)
    coord, cell = random_queries(1, 500, seed=3)
    with torch.no_grad():
        out = (model.query_reference(feat, coord, cell) if path == "reference"
               else model.query(model.prepare(feat), coord, cell))
    expected = F.grid_sample(feat, coord.flip(-1).unsqueeze(1), mode="bilinear",
                             padding_mode="border", align_corners=False)[:, :, 0].permute(0, 2, 1)
    torch.testing.assert_close(out, expected, atol=2e-5, rtol=0)


def test_queries_at_latent_centres_return_the_latents():
    """Except on the last row and column: there both shifts of an axis clamp onto the same latent,
    every area is 1e-9 and the official weights degenerate to a plain average of the 4 picks (the
    reference transcription does the same; such queries occur at odd integer scales)."""
    model = selector_liif()
    feat = torch.rand(1, 3, 4, 6)
    coord = make_coord((4, 6))[None]
    with torch.no_grad():
        lat = model.prepare(feat)
        out = model.query(lat, coord, torch.full_like(coord, 0.5))[0].t().reshape(3, 4, 6)
        ref = model.query_reference(feat, coord, torch.full_like(coord, 0.5))[0].t().reshape(3, 4, 6)
    torch.testing.assert_close(out[:, :-1, :-1], feat[0, :, :-1, :-1], atol=1e-6, rtol=0)
    torch.testing.assert_close(out[:, 0, -1], (feat[0, :, 0, -1] + feat[0, :, 1, -1]) / 2)
    torch.testing.assert_close(out, ref, atol=1e-6, rtol=0)


def test_cell_enters_as_cell_times_feature_size():
    """The decoder sees rel_cell = (cell_y * h, cell_x * w) in its last two input columns."""
    model = selector_liif(channels=3)
    with torch.no_grad():
        first = model.imnet.layers[0]
        first.weight.zero_()
        first.weight[0, -2] = 1.0  # cell y
        first.weight[1, -1] = 1.0  # cell x
    feat = torch.rand(1, 3, 4, 10)
    coord = torch.tensor([[[0.1, -0.3], [0.9, 0.9]]])
    cell = torch.tensor([[[0.05, 0.02], [0.5, 0.25]]])
    for out in (model.query_reference(feat, coord, cell), model.query(model.prepare(feat), coord, cell)):
        torch.testing.assert_close(out[0, :, :2], cell[0] * torch.tensor([4.0, 10.0]), atol=1e-6, rtol=0)


def test_relative_coordinate_in_latent_units():
    """Without the ensemble, the decoder sees (query - nearest latent centre) * (h, w)."""
    model = selector_liif(channels=3)
    model.local_ensemble = False
    with torch.no_grad():
        first = model.imnet.layers[0]
        first.weight.zero_()
        first.bias.fill_(1.0)  # keep the ReLU open: output = 1 + rel
        first.weight[0, -4] = 1.0
        first.weight[1, -3] = 1.0
    feat = torch.rand(1, 3, 4, 4)  # centres at -0.75, -0.25, 0.25, 0.75
    coord = torch.tensor([[[-0.7, 0.3], [0.0001, -0.99]]])
    cell = torch.full_like(coord, 0.1)
    expected = torch.tensor([[0.05, 0.05], [-0.2499, -0.24]]) * 4 + 1
    for out in (model.query_reference(feat, coord, cell), model.query(model.prepare(feat), coord, cell)):
        torch.testing.assert_close(out[0, :, :2], expected, atol=1e-5, rtol=0)


def test_fused_and_plain_decoders_agree():
    model = tiny()
    h = torch.randn(50, 16)
    with torch.no_grad():
        fused = model._decode_hidden(h.clone())
    model.train()  # training mode takes the plain modules
    plain = model._decode_hidden(h.clone())
    expected = model.imnet.layers[1:](h.clone())
    torch.testing.assert_close(plain, expected)
    torch.testing.assert_close(fused, expected, atol=1e-6, rtol=1e-5)
    assert M._FUSED_LINEAR is not None  # the CPU build has oneDNN: the fast path is exercised


def test_mlp_without_hidden_layers():
    model = make({"name": "liif", "args": {
        "encoder_spec": {"name": "edsr-baseline", "args": {"n_resblocks": 1, "n_feats": 4}},
        "imnet_spec": {"name": "mlp", "args": {"out_dim": 3, "hidden_list": []}}}}).eval()
    feat = torch.rand(1, 4, 5, 5)
    coord, cell = random_queries(1, 20)
    with torch.no_grad():
        torch.testing.assert_close(model.query(model.prepare(feat), coord, cell),
                                   model.query_reference(feat, coord, cell), atol=1e-5, rtol=1e-5)
