"""CIPS (Anokhin et al.): the generator's equations — positional encoding [sin(B_fo (x, y)), e_co(x, y)], modulated
per-pixel layers with to-RGB skips — by hand, and its defining property: pixels are conditionally independent
given w, so a patch rendered alone equals the same patch of the full image, at any resolution."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import paperzoo as pz
from paperzoo.models.generative.cips import coordinate_grid


def _model():
    torch.manual_seed(0)
    return pz.create_model("cips", img_size=8, latent_dim=16, width=16, layers=4, mapping_depth=2, disc_channels=8)


@pytest.mark.paper("cips")
def test_positional_encoding_is_fourier_features_and_coordinate_embeddings(record_property) -> None:
    g = _model().generator
    coords = coordinate_grid(8).expand(2, -1, -1, -1)
    enc = g.encoding(coords)
    xy = coords[0].reshape(-1, 2)
    fo = torch.sin(xy @ g.fourier.weight.t()).t().reshape(8, 8, 8)  # sin(B_fo (x, y)^T), 8 of the 16 channels
    err = float((enc[0, :8] - fo).abs().max())
    record_property("abs_err_fourier_features", err)
    assert err < 1e-6
    assert torch.allclose(enc[1, 8:], g.coord_embeddings[0], atol=1e-6)  # e_co exactly on the training grid
    mid = g.encoding(torch.tensor([[[[(coordinate_grid(8)[0, 0, 0] + coordinate_grid(8)[0, 1, 0]) / 2, -1.0]]]]))
    assert torch.allclose(mid[0, 8:, 0, 0], g.coord_embeddings[0, :, 0, :2].mean(1), atol=1e-6)  # bilinear between


@pytest.mark.paper("cips")
def test_the_generator_is_a_per_pixel_modulated_mlp_with_rgb_skips(record_property) -> None:
    """By hand: h_0 = encoding; h_l = lrelu(demod(s_l * W_l) h_{l-1}) per pixel; rgb = sigmoid(b + sum of the
    modulated to-RGB of h_2, h_4)."""
    model = _model()
    g = model.generator
    z = torch.randn(2, 16)
    w = g.mapping(z)
    h = g.encoding(coordinate_grid(8).expand(2, -1, -1, -1)).flatten(2)  # (B, C, N)
    rgb = g.rgb_bias.flatten(1)[..., None]
    for i, layer in enumerate(g.layers):
        s = layer.style(w)
        weight = layer.weight[:, :, 0, 0][None] * s[:, None, :]  # (B, out, in)
        weight = weight / (weight.pow(2).sum(2, keepdim=True) + 1e-8).sqrt()
        h = F.leaky_relu(weight @ h, 0.2)
        if i % 2:
            t = g.to_rgb[i // 2]
            rgb = rgb + (t.weight[:, :, 0, 0][None] * t.style(w)[:, None, :]) @ h
    expected = torch.sigmoid(rgb).view(2, 3, 8, 8)
    err = float((g(z) - expected).abs().max())
    record_property("abs_err_generator_by_hand", err)
    assert err < 1e-5


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
        assert full.shape == (2, 3, size, size) and err < 1e-6


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
