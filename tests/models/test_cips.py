"""CIPS (Anokhin et al.): the generator's equations — positional encoding [sin(B_fo (x, y)), e_co(x, y)], modulated
per-pixel layers with to-RGB skips — by hand, and its defining property: pixels are conditionally independent
given w, so a patch rendered alone equals the same patch of the full image, at any resolution."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import paperzoo as pz
from paperzoo.models.generative.cips import coordinate_grid, from_official
from paperzoo.weights import load_weights


def _model():
    torch.manual_seed(0)
    return pz.create_model("cips", img_size=8, latent_dim=16, width=16, layers=4, mapping_depth=2, disc_channels=8)


@pytest.mark.paper("cips")
def test_positional_encoding_is_fourier_features_and_coordinate_embeddings(record_property) -> None:
    g = _model().generator
    coords = coordinate_grid(8).expand(2, -1, -1, -1)
    enc = g.encoding(coords)
    xy = coords[0].reshape(-1, 2)
    b_fo, bias = g.fourier.weight[:, :, 0, 0], g.fourier.bias
    fo = torch.sin(xy @ b_fo.t() + bias).t().reshape(16, 8, 8)  # sin(B_fo (x, y)^T + b), 16 of the 32 channels
    err = float((enc[0, :16] - fo).abs().max())
    record_property("abs_err_fourier_features", err)
    assert err < 1e-5
    assert torch.allclose(enc[1, 16:], g.coord_embeddings[0], atol=1e-6)  # e_co exactly on the training grid
    mid = g.encoding(torch.tensor([[[[(coordinate_grid(8)[0, 0, 0] + coordinate_grid(8)[0, 1, 0]) / 2, -1.0]]]]))
    assert torch.allclose(mid[0, 16:, 0, 0], g.coord_embeddings[0, :, 0, :2].mean(1), atol=1e-6)  # bilinear between


def _lrelu(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x + b[:, None], 0.2) * 2 ** 0.5


@pytest.mark.paper("cips")
def test_the_generator_is_a_per_pixel_modulated_mlp_with_rgb_skips(record_property) -> None:
    """By hand, per pixel: w = mapping(pixelnorm(z)) with equalised layers (lr multiplier 0.01); h_0 = encoding;
    h_l = lrelu(demod(s_l * W_l / sqrt(fan_in)) h_{l-1} + b_l) sqrt 2 with s_l = A_l(w); after every second layer
    past the first, rgb += (s * W_rgb / sqrt(fan_in)) h + b_rgb; the image is (rgb + 1) / 2."""
    model = _model()
    g = model.generator
    with torch.no_grad():  # every bias away from its zero init, so that each one is exercised
        for name, p in g.named_parameters():
            if name.endswith("bias") and "modulation" not in name:
                p.add_(0.3 * torch.randn_like(p))
    z = torch.randn(2, 16)
    w = z / z.pow(2).mean(1, keepdim=True).add(1e-8).sqrt()
    for lin in g.mapping.layers:
        w = F.leaky_relu(w @ (lin.weight * 0.01 / 4).t() + lin.bias * 0.01, 0.2) * 2 ** 0.5  # fan-in 16
    assert torch.allclose(w, g.mapping(z), atol=1e-5)

    def modfc(layer, h, demod=True):
        s = layer.modulation.weight @ w.t() / layer.modulation.weight.shape[1] ** 0.5 + layer.modulation.bias[:, None]
        weight = layer.weight[None] / layer.weight.shape[1] ** 0.5 * s.t()[:, None, :]  # (B, out, in)
        if demod:
            weight = weight / (weight.pow(2).sum(2, keepdim=True) + 1e-8).sqrt()
        return weight @ h

    h = g.encoding(coordinate_grid(8).expand(2, -1, -1, -1)).flatten(2)  # (B, C, N)
    h = _lrelu(modfc(g.conv1, h), g.conv1.bias)
    rgb = 0
    for i, t in enumerate(g.to_rgb):
        for layer in g.layers[2 * i: 2 * i + 2]:
            h = _lrelu(modfc(layer, h), layer.bias)
        rgb = rgb + modfc(t, h, demod=False) + t.bias[:, None]
    expected = ((rgb + 1) / 2).view(2, 3, 8, 8)
    err = float((g(z) - expected).abs().max())
    record_property("abs_err_generator_by_hand", err)
    assert err < 1e-4


@pytest.mark.paper("cips")
def test_per_pixel_noise_is_a_learned_scalar_times_seeded_gaussian_noise() -> None:
    """The official StyledConv adds noise N(0, 1) per pixel times a learned scalar (0 at init) before the bias and
    the nonlinearity; the noise comes from the generator passed in, so seeded samples repeat."""
    g = _model().generator
    z = torch.randn(2, 16)
    plain = g(z)
    with torch.no_grad():
        g.conv1.noise.fill_(0.7)
    a = g(z, generator=torch.Generator().manual_seed(3))
    b = g(z, generator=torch.Generator().manual_seed(3))
    c = g(z, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.allclose(a, c) and not torch.allclose(a, plain)
    w = g.mapping(z)
    layer = g.conv1
    enc = g.encoding(coordinate_grid(8).expand(2, -1, -1, -1))
    s = layer.modulation(w)
    out = torch.einsum("oi,bihw->bohw", layer.weight / layer.weight.shape[1] ** 0.5, enc * s[:, :, None, None])
    out = out * torch.rsqrt(s.pow(2) @ (layer.weight.pow(2) / layer.weight.shape[1]).t() + 1e-8)[:, :, None, None]
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    expected = F.leaky_relu(out + 0.7 * noise + layer.bias.view(1, -1, 1, 1), 0.2) * 2 ** 0.5
    assert torch.allclose(layer(enc, w, torch.Generator().manual_seed(3)), expected, atol=1e-5)


def _official_fixture():
    from safetensors import safe_open

    path = Path(__file__).parents[1] / "fixtures" / "cips" / "cipsskip_reduced.safetensors"
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _regenerate(shapes: list) -> dict[str, torch.Tensor]:
    """The fixture's weights, drawn again as tests/fixtures/cips/README.md says."""
    g = torch.Generator().manual_seed(2024)
    out = {}
    for k, shape in shapes:
        if k.endswith("noise.weight"):
            out[k] = torch.zeros(shape)
            continue
        std, mean = 1.0, 0.0
        if k.startswith("style.") and k.endswith("weight"):
            std = 100.0
        elif k.endswith("modulation.bias"):
            std, mean = 0.2, 1.0
        elif k.endswith("bias"):
            std = 0.2
        elif k.startswith("lff"):
            std = 1.5
        out[k] = torch.randn(shape, generator=g) * std + mean
    return out


@pytest.mark.paper("cips")
def test_official_cipsskip_outputs_are_reproduced(record_property) -> None:
    """saic-mdal/CIPS's CIPSskip (8 px, hidden 16, style 16, 2 mapping layers; its widths are fixed at 512): its
    weights load with ``source="official"``, and our renders equal its outputs (rescaled to [-1, 1]) at the training
    size in training mode (embeddings as stored) and at 16 px in eval mode (grid_sample, align_corners=False)."""
    tensors, meta = _official_fixture()
    shapes = json.loads(meta["shapes"])
    state = _regenerate(shapes)
    sums = json.loads(meta["weight_sums"])
    drift = max(abs(float(state[k].double().sum()) - v) / max(1.0, abs(v)) for k, v in sums.items())
    assert drift < 1e-5, "the regenerated fixture weights differ from the ones the official outputs were made with"
    cfg = json.loads(meta["config"])
    model = pz.create_model("cips", img_size=cfg["size"], latent_dim=cfg["style_dim"], width=cfg["hidden_size"],
                            mapping_depth=cfg["n_mlp"], channels=[512, 512], hidden=cfg["hidden_size"])
    load_weights(model, state, source="official", skip=["discriminator"])
    z = tensors["z"]
    train = model.generator(z) * 2 - 1
    model.generator.align_corners = False
    big = model.generator(z, 2 * cfg["size"]) * 2 - 1
    for name, ours, ref in (("8px", train, tensors["rgb_train_8px"]), ("16px", big, tensors["rgb_eval_16px"])):
        rel = float((ours - ref).abs().max() / ref.abs().max())
        record_property(f"rel_err_official_{name}", rel)
        assert ours.shape == ref.shape and rel < 1e-5, name
    model.generator.align_corners = True  # ours reads the embeddings exactly on the grid: off the official eval render
    assert float((model.generator(z, 16) * 2 - 1 - tensors["rgb_eval_16px"]).abs().max()) > 1e-3


@pytest.mark.paper("cips")
def test_cips_256_has_the_official_layout_and_size() -> None:
    """The official 256 px CIPSskip's state dict (key names and shapes, recorded in the fixture) maps one to one onto
    ``cips_256``'s generator: 44,317,092 parameters (the paper quotes 45.9M for its model)."""
    _, meta = _official_fixture()
    with torch.device("meta"):
        model = pz.create_model("cips_256")
        official = {k: torch.empty(shape) for k, shape in json.loads(meta["shapes_256"])}
    mapped = from_official(official, model)
    own = {k: v.shape for k, v in model.state_dict().items() if k.startswith("generator.")}
    assert {k: v.shape for k, v in mapped.items()} == own
    assert sum(p.numel() for p in model.generator.parameters()) == 44_317_092
    assert len(model.generator.layers) + 1 == 15  # the paper's 15 modulated fully connected layers


@pytest.mark.paper("cips")
def test_patchwise_rendering_equals_the_full_image_at_any_resolution(record_property) -> None:
    g = _model().generator
    z = torch.randn(2, 16)
    for size in (8, 20):
        full = g(z, size)
        coords = coordinate_grid(size)[3:7, 2:8].expand(2, -1, -1, -1)  # a 4 x 6 patch
        patch = g(z, coords=coords)
        err = float((patch - full[:, :, 3:7, 2:8]).abs().max())
        record_property(f"abs_err_patch_vs_full_{size}px", err)
        assert full.shape == (2, 3, size, size) and err < 1e-5  # float rounding: grid_sample vs the stored grid


@pytest.mark.paper("cips")
def test_phases_and_r1() -> None:
    """Discriminator phase: non-saturating loss + r1/2 |grad_x D(x)|^2; generator phase moves the generator only."""
    model = _model()
    assert [(p.name, list(p.modules)) for p in model.phases()] == [("discriminator", ["discriminator"]),
                                                                   ("generator", ["generator"])]
    x = torch.rand(3, 3, 8, 8)
    loss, logs = model.discriminator_loss(x, torch.Generator().manual_seed(0))
    model.r1 = 0.0
    plain, _ = model.discriminator_loss(x, torch.Generator().manual_seed(0))
    assert abs(float(loss - plain) - 0.5 * logs["r1"]) < 1e-5 and logs["r1"] > 0
