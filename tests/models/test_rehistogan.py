"""ReHistoGAN (Afifi et al., §4): the recolouring networks equal the official ones (a committed fixture of their
output, tests/fixtures/histogan), and the training losses — the Laplacian reconstruction loss, the variance term, the
mixed target histograms — by hand."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

import paperzoo as pz
from paperzoo.errors import ConfigError
from paperzoo.models.generative.rehistogan import gaussian_kernel, laplacian, laplacian_loss, variance_loss
from paperzoo.weights import load_weights

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "histogan" / "rehistogan_reduced.safetensors"


def _fixture():
    with safe_open(str(FIXTURE), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def _regenerate(shapes: list) -> dict[str, torch.Tensor]:
    """The fixture's weights, drawn again as tests/fixtures/histogan/README.md says."""
    g = torch.Generator().manual_seed(2024)
    return {k: torch.randn(shape, generator=g) * (0.1 if k.endswith("bias") else 0.15) for k, shape in shapes}


@pytest.mark.paper("histogan")
def test_recolouring_networks_equal_the_official_rehistogan(record_property) -> None:
    """Encoder-decoder, both histogram projections, the skip connections to the head and HistoGAN's two head blocks:
    the official weights load with ``source="official"`` and our raw output equals theirs for the same noise."""
    data, meta = _fixture()
    state = _regenerate(json.loads(meta["shapes"]))
    drift = max(abs(float(state[k].double().sum()) - v) / max(1.0, abs(v)) for k, v in json.loads(meta["weight_sums"]).items())
    assert drift < 1e-5, "the regenerated fixture weights differ from the ones the official output was made with"
    cfg = json.loads(meta["config"])
    model = pz.create_model("rehistogan", img_size=cfg["image_size"], capacity=cfg["network_capacity"], bins=cfg["hist"],
                            latent_dim=cfg["latent_dim"], projection_depth=cfg["style_depth"])
    assert len(model.decoder_blocks) == 1 and len(model.encoder_blocks) == 3
    load_weights(model, state, source="official", skip=["discriminator"])
    with torch.no_grad():
        out = model(data["x"], data["target_hist"], noise=data["noise_bhw1"].permute(0, 3, 2, 1))
        other = model(data["x"], data["target_hist"], noise=data["noise_bhw1"].permute(0, 3, 1, 2))
    expected = data["output"]
    rel = float((out - expected).abs().max() / expected.abs().max())
    record_property("rel_err_vs_official_rehistogan", rel)
    assert out.shape == expected.shape and rel < 1e-5
    # the official head reads its noise transposed (permute(0, 3, 2, 1)); the untransposed noise is off
    assert float((other - expected).abs().max() / expected.abs().max()) > 1e-3


@pytest.mark.paper("histogan")
def test_laplacian_reconstruction_loss_by_hand() -> None:
    """One bright pixel (0.5 in R, 0.25 in B) in a zero 5x5 image: the Laplacian of the channel sum is -4 * 0.75 at the
    pixel and 0.75 at its four neighbours; against a zero image the loss is (4 + 4 * 1) * 0.75 / 25."""
    x = torch.zeros(1, 3, 5, 5)
    x[0, 0, 2, 2], x[0, 2, 2, 2] = 0.5, 0.25
    lap = laplacian(x)[0, 0]
    expected = torch.zeros(5, 5)
    expected[2, 2] = -3.0
    expected[1, 2] = expected[3, 2] = expected[2, 1] = expected[2, 3] = 0.75
    assert torch.allclose(lap, expected)
    assert abs(float(laplacian_loss(x, torch.zeros_like(x))) - 6.0 / 25) < 1e-6
    # a uniform colour shift keeps the structure: no change inside (the zero padding sees it at the border)
    assert torch.allclose(laplacian(x + 0.3)[..., 1:-1, 1:-1], laplacian(x)[..., 1:-1, 1:-1], atol=1e-6)


@pytest.mark.paper("histogan")
def test_variance_term_by_hand() -> None:
    """-(beta / 10) sum|H_t - H_x| mean|s(g x) - s(g y)|, s the std over rows of the std over columns of the blurred
    image; with a 1x1 'blur' (kernel [[1]]) s is the plain nested std."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 3, 4, 4, generator=g), torch.rand(2, 3, 4, 4, generator=g)
    ht, hx = torch.rand(2, 3, 2, 2, generator=g), torch.rand(2, 3, 2, 2, generator=g)
    kernel = torch.ones(1, 1)
    spread = (x.std(2).std(2) - y.std(2).std(2)).abs().mean()
    expected = -(1.5 / 10) * (ht - hx).abs().sum() * spread
    assert torch.allclose(variance_loss(x, y, ht, hx, 1.5, kernel), expected)
    assert float(variance_loss(x, x, ht, hx, 1.5, kernel)) == 0.0
    k = gaussian_kernel(15, 5.0)
    assert k.shape == (15, 15) and abs(float(k.sum()) - 1) < 1e-6 and k.argmax() == 7 * 15 + 7


def _small(**kw):
    torch.manual_seed(0)
    return pz.create_model("rehistogan", img_size=16, capacity=4, bins=8, latent_dim=16, projection_depth=2, **kw)


@pytest.mark.paper("histogan")
def test_targets_mix_two_other_images_histograms() -> None:
    model = _small()
    x = torch.rand(4, 3, 16, 16)
    target = model.targets(x, torch.Generator().manual_seed(5))
    r = torch.rand((), generator=torch.Generator().manual_seed(5))
    hist = model.histogram(x)
    assert torch.allclose(target, r * hist.roll(1, 0) + (1 - r) * hist.roll(2, 0))
    assert torch.allclose(target.sum((1, 2, 3)), torch.ones(4), atol=1e-5)


def test_phases_train_every_recolouring_parameter_once() -> None:
    model = _small()
    d, g = model.phases()
    params = lambda phase: {id(p) for name in phase.modules for p in model.get_submodule(name).parameters()}  # noqa: E731
    assert params(d) == {id(p) for p in model.discriminator.parameters()}
    assert params(g) | params(d) == {id(p) for p in model.parameters()} and not params(g) & params(d)
    x = torch.rand(4, 3, 16, 16)
    loss, logs = model.generator_loss(x, torch.Generator().manual_seed(0))
    assert set(logs) == {"hist_loss", "rec_loss", "var_loss"} and torch.isfinite(loss)
    dloss, _ = model.discriminator_loss(x, torch.Generator().manual_seed(0))
    assert torch.isfinite(dloss)


def test_recolor_takes_histograms_or_images_and_checks_the_size() -> None:
    model = _small().eval()
    x, y = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    a = model.recolor(x, y, torch.Generator().manual_seed(0))
    b = model.recolor(x, model.histogram(y), torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert model.sample(3, torch.Generator().manual_seed(0)).shape == (3, 3, 16, 16)
    with pytest.raises(ConfigError, match="16 px"):
        model(torch.rand(1, 3, 32, 32), model.histogram(y[:1]))
    with pytest.raises(ConfigError, match="power-of-two"):
        pz.create_model("rehistogan", img_size=24)
    assert len(pz.create_model("rehistogan", capacity=2, bins=8, latent_dim=8).decoder_blocks) == 2  # 64 px: 6 - 4


def test_the_head_blocks_add_the_skip_features_between_their_convolutions() -> None:
    """With the skip convolutions' weights zero the encoder's full- and half-size features no longer reach the head."""
    model = _small().eval()
    x, t = torch.rand(2, 3, 16, 16), model.histogram(torch.rand(2, 3, 16, 16))
    noise = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        base = model(x, t, noise)
        model.skip1.weight.zero_()
        model.skip2.weight.zero_()
        cut = model(x, t, noise)
    assert not torch.allclose(base, cut)
    assert F.mse_loss(base, cut) > 0
