"""DC-VAE (Parmar et al.): the instance-level contrastive loss, the set-level adversarial loss and the KL term on
hand-made cases, and which networks each training phase moves."""
from __future__ import annotations

import math

import pytest
import torch

import paperzoo as pz
from paperzoo.models.generative.dc_vae import gaussian_kl, instance_contrastive_loss, set_adversarial_losses


@pytest.mark.paper("dc-vae")
def test_instance_contrastive_loss_on_hand_cases(record_property) -> None:
    """K orthonormal features, each reconstruction equal to its input: every logit row is (1/tau on the diagonal, 0
    elsewhere), so L = log(1 + (K - 1) e^{-1/tau}); pairing each reconstruction with another input's features
    instead gives L = log(1 + (K - 1) e^{1/tau}) ... here with one swap, computed term by term."""
    k, tau = 4, 0.5
    f = torch.eye(k) * 3.0  # scale does not matter: cosine similarity
    same = instance_contrastive_loss(f, f, tau)
    expected = math.log(1 + (k - 1) * math.exp(-1 / tau))
    record_property("abs_err_matched_case", abs(float(same) - expected))
    assert abs(float(same) - expected) < 1e-6
    swapped = instance_contrastive_loss(f[[1, 0, 2, 3]], f, tau)  # x^_0 looks like x_1 and x^_1 like x_0
    wrong = math.log(math.exp(1 / tau) + (k - 1)) - 0.0  # -log(e^0 / (e^{1/tau} + 3 e^0)) for rows 0 and 1
    right = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + k - 1))
    assert abs(float(swapped) - (2 * wrong + 2 * right) / 4) < 1e-6
    # a reconstruction 60 degrees from its input and orthogonal to the others
    rec = torch.tensor([[0.5, math.sqrt(3) / 2, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    inp = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    row0 = -math.log(math.exp(0.5 / tau) / (math.exp(0.5 / tau) + math.exp(math.sqrt(3) / 2 / tau) + 1))
    row = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2))
    assert abs(float(instance_contrastive_loss(rec, inp, tau)) - (row0 + 2 * row) / 3) < 1e-6


@pytest.mark.paper("dc-vae")
def test_set_adversarial_loss_and_kl_on_hand_cases() -> None:
    """Logits 0 (D = 1/2): D loss 2 log 2, G loss log 2; D(x) = sigmoid(2), D(x~) = sigmoid(-1): by hand.
    KL(N(1, 1) || N(0, 1)) = 1/2; KL(N(0, e^2) || N(0, 1)) = (e^2 - 2 - 1) / 2."""
    d, g = set_adversarial_losses(torch.zeros(3, 1), torch.zeros(5, 1))
    assert abs(float(d) - 2 * math.log(2)) < 1e-6 and abs(float(g) - math.log(2)) < 1e-6
    d, g = set_adversarial_losses(torch.tensor([[2.0]]), torch.tensor([[-1.0]]))
    sig = lambda t: 1 / (1 + math.exp(-t))
    assert abs(float(d) - (-math.log(sig(2)) - math.log(1 - sig(-1)))) < 1e-6
    assert abs(float(g) - (-math.log(sig(-1)))) < 1e-6
    kl = gaussian_kl(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]))
    assert abs(float(kl) - (0.5 + (math.exp(2) - 2 - 1) / 2)) < 1e-5


@pytest.mark.paper("dc-vae")
def test_phases_and_their_losses() -> None:
    """Discriminator phase: the discriminator's set-level loss on real vs (reconstructions + prior samples) plus the
    contrastive loss on its features; autoencoder phase: encoder and decoder with KL + contrastive + adversarial.
    The plain VAE has one phase (pixel cross-entropy + KL) and no discriminator."""
    torch.manual_seed(0)
    model = pz.create_model("dcvae", img_size=8, width=4, latent_dim=4, feature_dim=8)
    assert [(p.name, list(p.modules)) for p in model.phases()] == [
        ("discriminator", ["discriminator"]), ("autoencoder", ["encoder", "decoder"])]
    x = torch.rand(4, 3, 8, 8)
    loss, logs = model.autoencoder_loss(x, torch.Generator().manual_seed(0))
    assert set(logs) == {"kl", "inst", "g_adv"} and abs(float(loss) - (logs["kl"] + logs["inst"] + logs["g_adv"])) < 1e-5
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())
    d_loss, d_logs = model.discriminator_loss(x, torch.Generator().manual_seed(0))
    model.zero_grad()
    d_loss.backward()
    assert all(p.grad is None for p in model.encoder.parameters()) and model.discriminator.head.weight.grad is not None
    vae = pz.create_model("dcvae", img_size=8, width=4, latent_dim=4, mode="vae")
    assert [p.name for p in vae.phases()] == ["autoencoder"] and not hasattr(vae, "discriminator")
    assert model.sample(3, torch.Generator().manual_seed(0)).shape == (3, 3, 8, 8)
