"""Adversarial Autoencoders (Makhzani et al., 2015, arXiv:1511.05644).

An autoencoder whose code is regularised by an adversarial network: a discriminator learns to tell samples of an
imposed prior p(z) from codes of the encoder q(z|x), and the encoder, playing the generator, learns to fool it, so
that the *aggregated posterior* q(z) = E_x q(z|x) matches p(z) (§2). Training alternates, per mini-batch (§2):

* the **reconstruction phase**: encoder and decoder minimise the reconstruction error of x;
* the **regularisation phase**: first the discriminator is updated to separate prior samples (label 1) from codes
  (label 0), then the encoder is updated to make the discriminator call its codes prior samples.

Once q(z) matches p(z), decoding prior samples generates data. The forms of the paper, one ``mode`` each:

* ``unsupervised``: the code is z; priors ``gaussian``, ``mixture`` (10 2-D Gaussians) and ``swiss_roll`` (§2);
  with ``prior_labels=True`` the label also goes to the discriminator as a one-hot vector (with one extra slot for
  unlabelled samples) and a labelled sample's prior draw comes from its class's part of the prior (§2.3, Fig. 4);
* ``supervised``: the one-hot label goes to the decoder, so z learns only the style (§5, Fig. 7);
* ``semi-supervised``: the encoder outputs a categorical y (softmax) and a style z; two discriminators impose a
  Categorical prior on y and a Gaussian on z; a **semi-supervised classification phase** minimises the
  cross-entropy of q(y|x) on the labelled samples of the batch (label >= 0) (§6, Fig. 8);
* ``clustering``: the semi-supervised network without the classification phase; y's classes are clusters (§7).

The paper's MNIST networks (Appendix A): encoder, decoder and discriminator each have two hidden layers of 1000
ReLU units; the decoder ends in a sigmoid; the encoder's code is deterministic (a linear output layer).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, unknown
from ...registry import register_model
from ...tasks.generative import Phase

MODES = ("unsupervised", "supervised", "semi-supervised", "clustering")
PRIORS = ("gaussian", "mixture", "swiss_roll")


# ------------------------------------------------------------------------------------------- priors
def gaussian_prior(n: int, dim: int, generator: torch.Generator | None = None, std: float = 1.0,
                   device: torch.device | str = "cpu") -> torch.Tensor:
    """n draws of N(0, std^2 I) in ``dim`` dimensions."""
    return std * torch.randn(n, dim, generator=generator, device=device)


def mixture_means(k: int = 10, radius: float = 2.0) -> torch.Tensor:
    """Centres of the ``k`` components of the mixture prior: evenly spaced on a circle."""
    angle = 2 * math.pi * torch.arange(k, dtype=torch.float32) / k
    return radius * torch.stack([angle.cos(), angle.sin()], 1)


def mixture_prior(n: int, labels: torch.Tensor | None = None, k: int = 10, generator: torch.Generator | None = None,
                  radius: float = 2.0, std: tuple[float, float] = (0.5, 0.1), device: torch.device | str = "cpu"
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """n draws of a mixture of ``k`` 2-D Gaussians (the paper's Fig. 2b/4): component j is centred at radius
    ``radius`` and angle 2 pi j / k, elongated along the radius (standard deviations ``std`` along and across it).
    ``labels`` (-1: any) pick the component of each draw; returns (z, component)."""
    comp = torch.randint(0, k, (n,), generator=generator, device=device)
    if labels is not None:
        labels = labels.to(device)
        comp = torch.where(labels >= 0, labels, comp)
    local = torch.randn(n, 2, generator=generator, device=device) * torch.tensor(std, device=device)
    angle = 2 * math.pi * comp.float() / k
    c, s = angle.cos(), angle.sin()
    x = local[:, 0] + radius
    y = local[:, 1]
    return torch.stack([c * x - s * y, s * x + c * y], 1), comp


def swiss_roll_prior(n: int, labels: torch.Tensor | None = None, k: int = 10, generator: torch.Generator | None = None,
                     turns: float = 1.5, noise: float = 0.05, device: torch.device | str = "cpu"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """n draws of the 2-D swiss roll (Fig. 4b): u ~ U(0, 1), angle t = 2 pi turns sqrt(u), point
    (t cos t, t sin t) / (2 pi turns) plus Gaussian ``noise``. The roll is cut into ``k`` equal segments of u; a label
    j >= 0 draws u from segment j. Returns (z, segment)."""
    u = torch.rand(n, generator=generator, device=device)
    seg = (u * k).long().clamp_max(k - 1)
    if labels is not None:
        labels = labels.to(device)
        u = torch.where(labels >= 0, (labels.clamp_min(0).float() + u) / k, u)
        seg = torch.where(labels >= 0, labels, seg)
    t = 2 * math.pi * turns * u.sqrt()
    z = torch.stack([t * t.cos(), t * t.sin()], 1) / (2 * math.pi * turns)
    return z + noise * torch.randn(n, 2, generator=generator, device=device), seg


# ------------------------------------------------------------------------------------------- networks
def mlp(sizes: list[int], out_act: nn.Module | None = None) -> nn.Sequential:
    """Linear layers of ``sizes`` with ReLU between them (and ``out_act`` after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU(inplace=True))
    if out_act is not None:
        layers.append(out_act)
    return nn.Sequential(*layers)


def _bce_real(logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))


def _bce_fake(logits: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits))


class AdversarialAutoencoder(nn.Module):
    """Encoder, decoder and discriminator(s) of an AAE (see the module docstring for ``mode`` and ``prior``).

    ``encoder`` maps a flattened image to the code (semi-supervised/clustering: K class logits then the style
    code); ``decoder`` maps [one-hot label or class probabilities,] code to pixel logits (the sigmoid is applied
    in ``decode``); ``discriminator`` scores codes (semi-supervised: ``discriminator`` on the style and
    ``cat_discriminator`` on the class probabilities)."""

    def __init__(self, img_size: int = 28, in_chans: int = 1, code_dim: int = 8, hidden: int = 1000,
                 num_classes: int = 10, mode: str = "unsupervised", prior: str = "gaussian",
                 prior_labels: bool = False, prior_std: float = 1.0, reg_lr_scale: float = 1.0) -> None:
        super().__init__()
        if mode not in MODES:
            raise unknown("AAE mode", mode, MODES)
        if prior not in PRIORS:
            raise unknown("AAE prior", prior, PRIORS)
        if prior != "gaussian" and (code_dim != 2 or mode != "unsupervised"):
            raise ConfigError(f"the {prior} prior is 2-D and for the unsupervised form: set code_dim=2, mode=unsupervised")
        if prior_labels and prior == "gaussian":
            raise ConfigError("prior_labels needs a prior with one part per class (mixture or swiss_roll)")
        self.img_size, self.in_chans, self.code_dim, self.num_classes = img_size, in_chans, code_dim, num_classes
        self.mode, self.prior, self.prior_labels, self.prior_std = mode, prior, prior_labels, prior_std
        self.reg_lr_scale = reg_lr_scale  # learning rate of the regularisation phase relative to the others
        d = in_chans * img_size * img_size
        categorical = mode in ("semi-supervised", "clustering")
        k_in = num_classes if mode in ("supervised", "semi-supervised", "clustering") else 0
        self.encoder = mlp([d, hidden, hidden, code_dim + (num_classes if categorical else 0)])
        self.decoder = mlp([code_dim + k_in, hidden, hidden, d])
        self.discriminator = mlp([code_dim + (num_classes + 1 if prior_labels else 0), hidden, hidden, 1])
        if categorical:
            self.cat_discriminator = mlp([num_classes, hidden, hidden, 1])

    # ------------------------------------------------------------------ the networks
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(style code z, class logits or None) of images in [0, 1]."""
        h = self.encoder(x.flatten(1))
        if self.mode in ("semi-supervised", "clustering"):
            return h[:, self.num_classes:], h[:, :self.num_classes]
        return h, None

    def decoder_input(self, z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """What the decoder reads: z, with the label (supervised: one-hot; categorical forms: probabilities)."""
        if self.mode == "unsupervised":
            return z
        return torch.cat([y, z], 1)

    def decode_logits(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        out = self.decoder(self.decoder_input(z, y))
        return out.view(-1, self.in_chans, self.img_size, self.img_size)

    def decode(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.decode_logits(z, y))

    def reconstruct_logits(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        z, logits = self.encode(x)
        if self.mode == "supervised":
            y = F.one_hot(labels.clamp_min(0), self.num_classes).to(z.dtype)
        elif logits is not None:
            y = logits.softmax(1)
        else:
            y = None
        return self.decode_logits(z, y)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstructions in [0, 1] of images in [0, 1]."""
        if labels is None:
            labels = torch.zeros(len(x), dtype=torch.long, device=x.device)
        return torch.sigmoid(self.reconstruct_logits(x, labels))

    def sample_prior(self, n: int, labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
        """n draws of the imposed prior on z (``labels`` pick parts of a mixture or swiss roll)."""
        if self.prior == "gaussian":
            return gaussian_prior(n, self.code_dim, generator, self.prior_std, device)
        fn = mixture_prior if self.prior == "mixture" else swiss_roll_prior
        return fn(n, labels, self.num_classes, generator, device=device)[0]

    def _disc_input(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if not self.prior_labels:
            return z
        slot = torch.where(labels >= 0, labels, torch.full_like(labels, self.num_classes))  # K: unlabelled
        return torch.cat([z, F.one_hot(slot, self.num_classes + 1).to(z.dtype)], 1)

    # ------------------------------------------------------------------ the paper's objectives
    def reconstruction_loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Reconstruction phase: the cross-entropy of the sigmoid decoder's pixels against x, per pixel."""
        return F.binary_cross_entropy_with_logits(self.reconstruct_logits(x, labels), x)

    def discriminator_loss(self, x: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None
                           ) -> torch.Tensor:
        """Regularisation phase, discriminator: -log D(z') - log(1 - D(q(z|x))) for z' ~ p(z) (and, in the
        categorical forms, the same for y' ~ Cat(K) against q(y|x) with the second discriminator)."""
        z, logits = self.encode(x)
        z = z.detach()
        prior_labels = labels if self.prior_labels else None
        z_prior = self.sample_prior(len(x), prior_labels, generator, x.device)
        loss = _bce_real(self.discriminator(self._disc_input(z_prior, labels))) + \
            _bce_fake(self.discriminator(self._disc_input(z, labels)))
        if logits is not None:
            y_prior = F.one_hot(torch.randint(0, self.num_classes, (len(x),), generator=generator, device=x.device),
                                self.num_classes).to(z.dtype)
            loss = loss + _bce_real(self.cat_discriminator(y_prior)) + \
                _bce_fake(self.cat_discriminator(logits.detach().softmax(1)))
        return loss

    def generator_loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Regularisation phase, generator (the encoder): -log D(q(z|x)) (and -log D_cat(q(y|x)))."""
        z, logits = self.encode(x)
        loss = _bce_real(self.discriminator(self._disc_input(z, labels)))
        if logits is not None:
            loss = loss + _bce_real(self.cat_discriminator(logits.softmax(1)))
        return loss

    def classification_loss(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Semi-supervised classification phase: cross-entropy of q(y|x) on the labelled samples (label >= 0)."""
        _, logits = self.encode(x)
        labelled = labels >= 0
        if not bool(labelled.any()):
            return logits.sum() * 0.0
        return F.cross_entropy(logits[labelled], labels[labelled])

    def phases(self) -> list[Phase]:
        """Per mini-batch: reconstruction, then the regularisation phase (discriminator, then generator), then
        (semi-supervised) classification. Each phase has its own Adam, so each moves the encoder by about the
        learning rate whatever its gradient's size: ``reg_lr_scale`` < 1 keeps the regularisation from swamping the
        classification phase (the paper balances its phases by their SGD learning rates)."""
        gan = (0.5, 0.999)
        r = self.reg_lr_scale
        discs = ["discriminator"] + (["cat_discriminator"] if hasattr(self, "cat_discriminator") else [])
        phases = [
            Phase("reconstruction", ["encoder", "decoder"], lambda m, x, y, g: (m.reconstruction_loss(x, y), {})),
            Phase("discriminator", discs, lambda m, x, y, g: (m.discriminator_loss(x, y, g), {}), r, gan),
            Phase("generator", ["encoder"], lambda m, x, y, g: (m.generator_loss(x, y), {}), r, gan),
        ]
        if self.mode == "semi-supervised":
            phases.append(Phase("classification", ["encoder"], lambda m, x, y, g: (m.classification_loss(x, y), {})))
        return phases

    # ------------------------------------------------------------------ generation and evaluation
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, labels: torch.Tensor | None = None) -> torch.Tensor:
        """n images decoded from prior draws (labelled forms: row-wise classes 0..K-1 unless ``labels``)."""
        device = next(self.parameters()).device
        if labels is None:
            labels = torch.arange(n, device=device) % self.num_classes
        if self.mode == "unsupervised":
            return self.decode(self.sample_prior(n, labels if self.prior_labels else None, generator, device))
        z = gaussian_prior(n, self.code_dim, generator, self.prior_std, device)
        return self.decode(z, F.one_hot(labels.to(device), self.num_classes).float())

    @torch.no_grad()
    def evaluate_batch(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-sample reconstruction BCE and MSE; for the categorical forms also the classification error."""
        logits = self.reconstruct_logits(x, labels)
        out = {"recon_bce": F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).mean(1),
               "recon_mse": (torch.sigmoid(logits) - x).pow(2).flatten(1).mean(1)}
        if self.mode == "semi-supervised":
            out["error"] = (self.encode(x)[1].argmax(1) != labels).float()
        return out


def paper_mnist_params(code_dim: int = 8, hidden: int = 1000, pixels: int = 784) -> dict[str, int]:
    """Parameter counts of the paper's MNIST networks (two hidden layers of ``hidden`` units each), by hand."""
    def layers(sizes: list[int]) -> int:
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))

    return {"encoder": layers([pixels, hidden, hidden, code_dim]), "decoder": layers([code_dim, hidden, hidden, pixels]),
            "discriminator": layers([code_dim, hidden, hidden, 1])}


@register_model(paper="aae", task="generative", input_size=(1, 28, 28), mean=(0.0,), std=(1.0,), num_classes=10,
                notes="the paper's MNIST networks: 2 x 1000 ReLU units in encoder, decoder and discriminator; code 8-D")
def aae(img_size: int = 28, in_chans: int = 1, num_classes: int = 10, code_dim: int = 8, hidden: int = 1000,
        mode: str = "unsupervised", prior: str = "gaussian", prior_labels: bool = False, **kwargs) -> AdversarialAutoencoder:
    """Adversarial autoencoder; ``mode`` unsupervised | supervised | semi-supervised | clustering, ``prior``
    gaussian | mixture | swiss_roll (the last two 2-D)."""
    return AdversarialAutoencoder(img_size, in_chans, code_dim, hidden, num_classes, mode, prior, prior_labels, **kwargs)
