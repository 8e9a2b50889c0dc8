"""Adversarial autoencoders (Makhzani et al.): the paper's two training phases as equations on hand-checkable cases,
its priors, and the sizes of its MNIST networks (Appendix A: two hidden layers of 1000 ReLU units each)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import paperzoo as pz
from paperzoo.models.generative.aae import gaussian_prior, mixture_means, mixture_prior, paper_mnist_params, swiss_roll_prior


def _small(**kw) -> nn.Module:
    torch.manual_seed(0)
    return pz.create_model("aae", img_size=4, hidden=6, **kw)


def _images(n: int = 5) -> torch.Tensor:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(1))


@pytest.mark.paper("aae")
def test_mnist_networks_have_the_papers_sizes(record_property) -> None:
    """784-1000-1000-8 encoder, 8-1000-1000-784 decoder (sigmoid), 8-1000-1000-1 discriminator, ReLU between."""
    with torch.device("meta"):
        model = pz.create_model("aae")
    widths = {name: [m.in_features for m in net if isinstance(m, nn.Linear)] + [net[-1].out_features]
              for name, net in (("encoder", model.encoder), ("decoder", model.decoder), ("discriminator", model.discriminator))}
    assert widths == {"encoder": [784, 1000, 1000, 8], "decoder": [8, 1000, 1000, 784], "discriminator": [8, 1000, 1000, 1]}
    assert all(sum(isinstance(m, nn.ReLU) for m in net) == 2 for net in (model.encoder, model.decoder, model.discriminator))
    counts = {name: sum(p.numel() for p in getattr(model, name).parameters()) for name in widths}
    record_property("params_encoder_decoder_discriminator", str(counts))
    assert counts == paper_mnist_params()  # (784*1000 + 1000) + (1000*1000 + 1000) + (1000*8 + 8) = 1,794,008 ...
    assert counts["encoder"] == 1_794_008


@pytest.mark.paper("aae")
def test_reconstruction_phase_is_the_pixel_cross_entropy(record_property) -> None:
    """The reconstruction phase: -mean[x log sigmoid(d(e(x))) + (1 - x) log(1 - sigmoid(d(e(x))))], by hand."""
    model, x = _small(), _images()
    h = x.flatten(1)
    for layer in model.encoder:
        h = layer(h)
    p = torch.sigmoid(model.decoder(h))
    expected = -(x.flatten(1) * p.log() + (1 - x.flatten(1)) * (1 - p).log()).mean()
    got = model.reconstruction_loss(x, torch.zeros(5, dtype=torch.long))
    record_property("abs_diff_reconstruction_loss", float((got - expected).abs()))
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.paper("aae")
def test_regularisation_phase_losses(record_property) -> None:
    """Discriminator: -log D(z') - log(1 - D(q(z|x))) with z' the prior draw of the same generator;
    generator (encoder): -log D(q(z|x)). D is the sigmoid of the discriminator's logit."""
    model, x = _small(), _images()
    y = torch.zeros(5, dtype=torch.long)
    z = model.encoder(x.flatten(1))
    z_prior = torch.randn(5, 8, generator=torch.Generator().manual_seed(3))
    d_real, d_fake = torch.sigmoid(model.discriminator(z_prior)), torch.sigmoid(model.discriminator(z))
    expected_d = -d_real.log().mean() - (1 - d_fake).log().mean()
    got_d = model.discriminator_loss(x, y, torch.Generator().manual_seed(3))
    got_g = model.generator_loss(x, y)
    record_property("abs_diff_discriminator_loss", float((got_d - expected_d).abs()))
    assert torch.allclose(got_d, expected_d, atol=1e-6)
    assert torch.allclose(got_g, -d_fake.log().mean(), atol=1e-6)
    # the discriminator's loss does not reach the encoder (its codes are fixed samples of q(z|x))
    got_d.backward()
    assert all(p.grad is None for p in model.encoder.parameters())


@pytest.mark.paper("aae")
def test_each_phase_updates_only_its_networks() -> None:
    """Reconstruction: encoder + decoder; discriminator: the discriminator(s); generator and classification: the
    encoder — the alternation of §2 (and §6 for the semi-supervised form)."""
    for mode, expected in (("unsupervised", {"reconstruction": ["encoder", "decoder"], "discriminator": ["discriminator"],
                                              "generator": ["encoder"]}),
                           ("semi-supervised", {"reconstruction": ["encoder", "decoder"],
                                                "discriminator": ["discriminator", "cat_discriminator"],
                                                "generator": ["encoder"], "classification": ["encoder"]}),
                           ("clustering", {"reconstruction": ["encoder", "decoder"],
                                           "discriminator": ["discriminator", "cat_discriminator"], "generator": ["encoder"]})):
        model = _small(mode=mode)
        assert {p.name: list(p.modules) for p in model.phases()} == expected, mode


@pytest.mark.paper("aae")
def test_semi_supervised_losses(record_property) -> None:
    """§6: the decoder reads [softmax q(y|x), z]; the categorical discriminator separates one-hot draws of Cat(K)
    from q(y|x); the classification phase is the cross-entropy on the labelled samples only (label -1: unlabelled)."""
    model, x = _small(mode="semi-supervised"), _images()
    labels = torch.tensor([3, -1, 0, -1, 9])
    h = model.encoder(x.flatten(1))
    logits, z = h[:, :10], h[:, 10:]
    expected_ce = F.cross_entropy(logits[[0, 2, 4]], labels[[0, 2, 4]])
    assert torch.allclose(model.classification_loss(x, labels), expected_ce, atol=1e-6)
    rec = model.decoder(torch.cat([logits.softmax(1), z], 1)).view(5, 1, 4, 4)
    assert torch.allclose(model.reconstruct_logits(x, labels), rec, atol=1e-6)
    g = torch.Generator().manual_seed(4)
    z_prior = torch.randn(5, 8, generator=g)
    y_prior = F.one_hot(torch.randint(0, 10, (5,), generator=g), 10).float()
    bce = F.binary_cross_entropy_with_logits
    d = model.discriminator
    c = model.cat_discriminator
    expected = (bce(d(z_prior), torch.ones(5, 1)) + bce(d(z), torch.zeros(5, 1)) +
                bce(c(y_prior), torch.ones(5, 1)) + bce(c(logits.softmax(1)), torch.zeros(5, 1)))
    got = model.discriminator_loss(x, labels, torch.Generator().manual_seed(4))
    record_property("abs_diff_semi_supervised_discriminator_loss", float((got - expected).abs()))
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.paper("aae")
def test_supervised_form_gives_the_label_to_the_decoder() -> None:
    """§5: the decoder reads [one-hot label, z]: the same code with two labels decodes to different images."""
    model = _small(mode="supervised")
    x = _images(2)
    a = model.reconstruct_logits(x, torch.tensor([0, 0]))
    b = model.reconstruct_logits(x, torch.tensor([0, 7]))
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    z = model.encoder(x.flatten(1))
    expected = model.decoder(torch.cat([F.one_hot(torch.tensor([0, 7]), 10).float(), z], 1)).view(2, 1, 4, 4)
    assert torch.allclose(b, expected, atol=1e-6)


@pytest.mark.paper("aae")
def test_priors(record_property) -> None:
    """Gaussian: N(0, I); mixture of 10 2-D Gaussians: a labelled draw lies near its component's centre on the
    circle; swiss roll: the label picks the segment of the roll, whose radius grows with the segment index."""
    g = torch.Generator().manual_seed(0)
    z = gaussian_prior(20000, 8, g)
    assert z.mean(0).abs().max() < 0.05 and (z.std(0) - 1).abs().max() < 0.05
    labels = torch.arange(20000) % 10
    zm, comp = mixture_prior(20000, labels, generator=g)
    assert torch.equal(comp, labels)
    centres = torch.stack([zm[labels == j].mean(0) for j in range(10)])
    err = float((centres - mixture_means()).norm(dim=1).max())
    record_property("mixture_centre_error", err)
    assert err < 0.03
    assert torch.allclose(mixture_means()[0], torch.tensor([2.0, 0.0])) and torch.allclose(
        mixture_means()[1], 2.0 * torch.tensor([math.cos(math.pi / 5), math.sin(math.pi / 5)]))
    unlabelled, comp = mixture_prior(20000, torch.full((20000,), -1), generator=g)
    assert torch.bincount(comp, minlength=10).min() > 1800  # all ten parts used
    zs, seg = swiss_roll_prior(20000, labels, generator=g, noise=0.0)
    assert torch.equal(seg, labels)
    radius = torch.stack([zs[labels == j].norm(dim=1).mean() for j in range(10)])
    assert bool((radius[1:] > radius[:-1]).all()) and float(zs.norm(dim=1).max()) <= 1.0 + 1e-6
    t = zs.norm(dim=1) * 2 * math.pi * 1.5  # on the roll: the point's angle is its (scaled) radius
    assert torch.allclose(torch.stack([t.cos(), t.sin()], 1) * zs.norm(dim=1, keepdim=True), zs, atol=1e-4)


@pytest.mark.paper("aae")
def test_label_conditioned_prior_draws_from_the_labels_part() -> None:
    """§2.3: with prior_labels the discriminator reads [z, one-hot(label or 'unlabelled')] and a labelled sample's
    prior draw comes from its class's component."""
    model = _small(code_dim=2, prior="mixture", prior_labels=True)
    assert model.discriminator[0].in_features == 2 + 11
    z = model.sample_prior(3000, torch.full((3000,), 4), torch.Generator().manual_seed(0))
    assert (z.mean(0) - mixture_means()[4]).norm() < 0.05
