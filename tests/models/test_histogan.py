"""HistoGAN (Afifi et al.): the RGB-uv histogram equals the official ``RGBuvHistBlock`` (a committed fixture of its
outputs, tests/fixtures/histogan), the Hellinger histogram loss on hand-made histograms, and the generator takes
the histogram into its last two blocks only."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import paperzoo as pz
from paperzoo.metrics.generative import hellinger
from paperzoo.models.generative.histogan import hellinger_loss, official_histogram_loss, rgbuv_histogram

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "histogan" / "rgbuv_hist.safetensors"
CASES = {
    "small_hist": ("small", {}),
    "large_hist_interpolation": ("large", {"max_size": 32}),
    "large_hist_sampling": ("large", {"max_size": 32, "resizing": "sampling"}),
    "small_hist_rbf_sigma0.1": ("small", {"bins": 16, "method": "RBF", "sigma": 0.1}),
    "small_hist_noscale_16": ("small", {"bins": 16, "intensity_scale": False}),
}


@pytest.mark.paper("histogan")
@pytest.mark.parametrize("case", sorted(CASES))
def test_histogram_equals_the_official_block(case: str, record_property) -> None:
    """64 bins, inverse-quadratic kernel (tau 0.02), intensity weighting, [-3, 3], resizing of large images."""
    data = load_file(str(FIXTURE))
    source, kwargs = CASES[case]
    ours = rgbuv_histogram(data[source], **kwargs)
    expected = data[case]
    err = float((ours - expected).abs().max() / expected.abs().max())
    record_property(f"max_rel_err_vs_official_{case}", err)
    assert ours.shape == expected.shape and err < 1e-5, err


@pytest.mark.paper("histogan")
def test_histogram_is_differentiable_and_sums_to_one() -> None:
    x = torch.rand(2, 3, 8, 8, requires_grad=True)
    h = rgbuv_histogram(x)
    assert h.shape == (2, 3, 64, 64) and torch.allclose(h.sum(dim=(1, 2, 3)), torch.ones(2), atol=1e-5)
    h[:, 0, 40:].sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


@pytest.mark.paper("histogan")
def test_histogram_places_a_grey_pixel_at_the_centre_and_a_reddish_one_off_it() -> None:
    """A grey pixel has log R/G = log R/B = 0: bin (31.5, 31.5) of every plane; a pixel with R = e G = e B has
    (u, v) = (1, 1) in the R plane."""
    grey = torch.full((1, 3, 1, 1), 0.5)
    h = rgbuv_histogram(grey)
    assert set(h[0, 0].flatten().topk(4).indices.tolist()) == {31 * 64 + 31, 31 * 64 + 32, 32 * 64 + 31, 32 * 64 + 32}
    red = torch.tensor([0.9, 0.9 / math.e, 0.9 / math.e]).view(1, 3, 1, 1)
    hr = rgbuv_histogram(red)[0, 0]
    centres = torch.linspace(-3, 3, 64)
    i, j = divmod(int(hr.argmax()), 64)
    assert abs(centres[i] - 1) < 0.05 and abs(centres[j] - 1) < 0.05


@pytest.mark.paper("histogan")
def test_hellinger_distance_on_hand_made_histograms(record_property) -> None:
    """H(p, p) = 0; disjoint supports: 1; p = (1/2, 1/2), q = (1, 0): sqrt((sqrt(1/2) - 1)^2 + 1/2) / sqrt 2
    = sqrt(1 - sqrt(1/2)) = 0.5412; HistoGAN's training loss equals Eq. 5 for one image."""
    p = torch.tensor([[0.5, 0.5, 0.0, 0.0]])
    q = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    r = torch.tensor([[0.0, 0.0, 0.25, 0.75]])
    assert float(hellinger(p, p)) == 0.0
    assert abs(float(hellinger(p, r)) - 1.0) < 1e-7
    value = float(hellinger(p, q))
    record_property("hellinger_half_half_vs_one_zero", value)
    assert abs(value - math.sqrt(1 - math.sqrt(0.5))) < 1e-7 and abs(value - 0.5412) < 1e-4
    assert abs(float(hellinger_loss(p, q)) - value) < 1e-6
    assert abs(float(official_histogram_loss(p, q)) - value) < 1e-7
    batch = torch.cat([p, r]), torch.cat([q, p])
    assert abs(float(hellinger_loss(*batch)) - (value + 1.0) / 2) < 1e-6  # Eq. 5 per image, averaged


@pytest.mark.paper("histogan")
def test_the_histogram_sets_the_style_of_the_last_two_blocks() -> None:
    torch.manual_seed(0)
    model = pz.create_model("histogan", img_size=16, channels=8, latent_dim=16, bins=16)
    z, h = torch.randn(2, 16), rgbuv_histogram(torch.rand(2, 3, 8, 8), bins=16)
    styles = model.styles(z, h)
    w, wh = model.mapping(z), model.hist_projection(h.flatten(1))
    assert len(styles) == 3 and torch.equal(styles[0], w) and torch.equal(styles[1], wh) and torch.equal(styles[2], wh)
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a = model.generate(z, h, g1)
    b = model.generate(z, h.roll(1, 0), g2)
    assert a.shape == (2, 3, 16, 16) and not torch.allclose(a, b)
    plain = pz.create_model("histogan", img_size=16, channels=8, latent_dim=16, bins=16, conditioned=False)
    assert plain.hist_projection is None and all(torch.equal(s, plain.mapping(z)) for s in plain.styles(z, None))


@pytest.mark.paper("histogan")
def test_modulated_convolution_is_stylegan2s_weight_demodulation(record_property) -> None:
    """The per-sample modulated, demodulated kernel w'_jik = s_i w_jik / sqrt(sum_ik (s_i w_jik)^2 + 1e-8), applied
    image by image, equals the layer's output."""
    from paperzoo.models.generative.histogan import ModulatedConv

    torch.manual_seed(0)
    conv = ModulatedConv(4, 5, 3, style_dim=6)
    x, w = torch.randn(3, 4, 7, 7), torch.randn(3, 6)
    s = conv.style(w)
    expected = []
    for i in range(3):
        k = conv.weight * s[i].view(1, -1, 1, 1)
        k = k / (k.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
        expected.append(torch.nn.functional.conv2d(x[i:i + 1], k, padding=1))
    err = float((conv(x, w) - torch.cat(expected)).abs().max())
    record_property("max_abs_err_modulated_conv", err)
    assert err < 1e-5
