"""Very Deep VAE (Child): the official openai/vdvae model (a reduced configuration, random perturbed weights,
committed as tests/fixtures/vdvae) loaded through the key map gives the same ELBO terms, per-layer KLs and
mixture-of-logistics likelihood; the released CIFAR-10 configuration has the paper's 39M parameters."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import paperzoo as pz
from paperzoo.models.generative.vdvae import dmol_nll, gaussian_kl, parse_layers

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "vdvae" / "reduced.safetensors"
REDUCED = dict(img_size=8, width=16, zdim=4, num_mixtures=2, enc_blocks="8x1,8d2,4x1,4d4,1x1",
               dec_blocks="1x1,4m1,4x1,8m4,8x1")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def fixture() -> dict[str, torch.Tensor]:
    return load_file(str(FIXTURE))


@pytest.mark.paper("vdvae")
def test_elbo_terms_equal_the_official_model(fixture, record_property) -> None:
    """Same seed for the posterior draws (one normal draw per stochastic layer, in the same order): the same
    distortion per image, KL per layer and image, and -ELBO."""
    state = {k[len("weights."):]: v for k, v in fixture.items() if k.startswith("weights.")}
    model = pz.load_weights(pz.create_model("vdvae", **REDUCED), state, source="official")
    x = (fixture["x_nhwc"].permute(0, 3, 1, 2) + 1) / 2
    torch.manual_seed(123)
    with torch.no_grad():
        acts = model.encode(x * 2 - 1)
        params, kls = model.decode(acts, len(x))
    torch.manual_seed(123)
    with torch.no_grad():
        out = model.elbo(x)
    kl_per_block = torch.stack([k.flatten(1).sum(1) for k in kls], 1)
    errs = {"elbo": _rel(out["elbo"].mean(), fixture["elbo"][0]),
            "distortion": _rel(out["distortion"], fixture["distortion_per_image"]),
            "kl_per_block": _rel(kl_per_block, fixture["kl_per_block"]),
            "dmol_params": _rel(params.permute(0, 2, 3, 1), fixture["dmol_params_nhwc"])}
    for k, v in errs.items():
        record_property(f"max_rel_err_vs_official_{k}", v)
    assert max(errs.values()) < 1e-5, errs
    assert abs(float(out["rate"].mean()) - float(fixture["rate"][0])) < 1e-6


@pytest.mark.paper("vdvae")
def test_mixture_of_logistics_likelihood_equals_the_official(fixture, record_property) -> None:
    """The official output parameters and 8-bit images give the official distortion (nats per dimension)."""
    params = fixture["dmol_params_nhwc"].permute(0, 3, 1, 2)
    x = fixture["x_nhwc"].permute(0, 3, 1, 2)
    err = _rel(dmol_nll(params, x, 2), fixture["distortion_per_image"])
    record_property("max_rel_err_dmol_nll", err)
    assert err < 1e-6


@pytest.mark.paper("vdvae")
def test_one_logistic_on_hand_cases() -> None:
    """K = 1, mean 0, scale 1, no colour coefficients: p(x = 0) = sigmoid(1/255) - sigmoid(-1/255) per channel;
    p(x = -1) = sigmoid(-1 + 1/255) (the lower edge bin)."""
    params = torch.zeros(1, 10, 1, 1)
    nll0 = dmol_nll(params, torch.zeros(1, 3, 1, 1), 1)
    p = 1 / (1 + math.exp(-1 / 255)) - 1 / (1 + math.exp(1 / 255))
    assert abs(float(nll0) + math.log(p)) < 1e-4
    edge = dmol_nll(params, -torch.ones(1, 3, 1, 1), 1)
    assert abs(float(edge) + math.log(1 / (1 + math.exp(1 - 1 / 255)))) < 1e-5
    kl = gaussian_kl(torch.tensor(1.0), torch.tensor(0.0), torch.tensor(0.0), torch.tensor(math.log(2.0)))
    assert abs(float(kl) - (math.log(2) - 0.5 + 0.5 * 2 / 4)) < 1e-6  # log(s_p/s_q) + (s_q^2 + dmu^2)/(2 s_p^2) - 1/2


@pytest.mark.paper("vdvae")
def test_cifar10_configuration_has_39m_parameters(record_property) -> None:
    with torch.device("meta"):
        model = pz.create_model("vdvae_cifar10")
    n = sum(p.numel() for p in model.parameters())
    record_property("params_m_cifar10", n / 1e6)
    assert len(model.enc_blocks) == 33 and len(model.dec_blocks) == 43 and len(parse_layers("32x21,16m8")) == 22
    assert abs(n / 1e6 - 39.0) < 0.5, n
