"""Dual Contradistinctive Generative Autoencoder (Parmar, Li, Tu et al., CVPR 2021, arXiv:2011.10063).

A VAE whose pixel reconstruction term is replaced by two discriminative ("contradistinctive") objectives that use a
discriminator D with a feature extractor h and a real/fake head:

* **instance-level contrastive loss** (§3.2): a reconstruction x^_i must be closer, in D's feature space, to its own
  input x_i than to the other images of the batch:
  L_inst = -(1/K) sum_i log [ exp(f(x^_i, x_i)) / sum_j exp(f(x^_i, x_j)) ], with f(a, b) = cos(h(a), h(b)) / tau;
* **set-level adversarial loss** (§3.3): as in a GAN, D tells real images from generated ones — the decoder's
  samples Dec(z), z ~ N(0, I), and the reconstructions — and the decoder learns to fool it (non-saturating form);
* the VAE's KL term KL(q(z|x) || N(0, I)) (closed form) keeps the code a proper latent space to sample from.

Training alternates two phases per batch: the discriminator (adversarial loss, plus the contrastive loss through its
features), then the encoder and decoder (KL + contrastive + adversarial). ``mode="vae"`` is the plain VAE with the
same encoder and decoder (pixel cross-entropy + KL), the baseline the paper improves on.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, unknown
from ...registry import register_model
from ...tasks.generative import Phase

MODES = ("dc-vae", "vae")


# ------------------------------------------------------------------------------------------- the losses
def instance_contrastive_loss(rec_features: torch.Tensor, input_features: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """L_inst: cross-entropy of picking x_i among the batch's inputs for reconstruction x^_i, with logits
    cos(h(x^_i), h(x_j)) / tau."""
    a = F.normalize(rec_features.flatten(1), dim=1)
    b = F.normalize(input_features.flatten(1), dim=1)
    logits = a @ b.t() / tau
    return F.cross_entropy(logits, torch.arange(len(a), device=a.device))


def set_adversarial_losses(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(discriminator loss -E log D(x) - E log(1 - D(x~)), generator loss -E log D(x~)) with D = sigmoid(logit)."""
    d = F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    return d, F.softplus(-fake_logits).mean()


def gaussian_kl(mu: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) = 1/2 sum(mu^2 + sigma^2 - log sigma^2 - 1), per sample."""
    return 0.5 * (mu.pow(2) + log_var.exp() - log_var - 1).flatten(1).sum(1)


# ------------------------------------------------------------------------------------------- networks
def _down(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True))


def _up(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Discriminator(nn.Module):
    """DCGAN-style: ``features`` h (strided convolutions, then a linear layer) and a real/fake ``head``."""

    def __init__(self, in_chans: int, img_size: int, width: int, levels: int, feature_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_chans, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        c = width
        for _ in range(levels - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            c *= 2
        s = img_size // 2 ** levels
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Linear(c * s * s, feature_dim), nn.LeakyReLU(0.2))
        self.head = nn.Linear(feature_dim, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.features(x * 2 - 1)
        return self.head(h), h


class DCVAE(nn.Module):
    """Encoder q(z|x) (mean and log-variance), decoder (a DCGAN generator) and discriminator of DC-VAE."""

    def __init__(self, img_size: int = 32, in_chans: int = 3, latent_dim: int = 64, width: int = 32,
                 feature_dim: int = 128, tau: float = 0.1, mode: str = "dc-vae", num_classes: int = 0,
                 inst_weight: float = 1.0, adv_weight: float = 1.0) -> None:
        super().__init__()
        if mode not in MODES:
            raise unknown("DC-VAE mode", mode, MODES)
        levels = int(math.log2(img_size)) - 2  # down to 4x4
        if 2 ** (levels + 2) != img_size or levels < 1:
            raise ConfigError(f"DC-VAE needs a power-of-two image size >= 8, got {img_size}")
        self.img_size, self.in_chans, self.latent_dim, self.tau, self.mode = img_size, in_chans, latent_dim, tau, mode
        self.inst_weight, self.adv_weight = inst_weight, adv_weight
        enc: list[nn.Module] = [nn.Conv2d(in_chans, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        c = width
        for _ in range(levels - 1):
            enc.append(_down(c, 2 * c))
            c *= 2
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(c * 16, 2 * latent_dim))
        dec: list[nn.Module] = [nn.Linear(latent_dim, c * 16), nn.Unflatten(1, (c, 4, 4)), nn.BatchNorm2d(c), nn.ReLU(True)]
        for _ in range(levels - 1):
            dec.append(_up(c, c // 2))
            c //= 2
        self.decoder = nn.Sequential(*dec, nn.ConvTranspose2d(c, in_chans, 4, 2, 1))
        if mode == "dc-vae":
            self.discriminator = Discriminator(in_chans, img_size, width, levels + 1, feature_dim)

    def posterior(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, log_var = self.encoder(x * 2 - 1).chunk(2, dim=1)
        return mu, log_var.clamp(-10, 6)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstructions (from the posterior mean) of images in [0, 1]."""
        return self.decode(self.posterior(x)[0])

    def _reconstruct(self, x: torch.Tensor, generator: torch.Generator | None):
        mu, log_var = self.posterior(x)
        z = mu + (0.5 * log_var).exp() * torch.randn(mu.shape, generator=generator, device=mu.device)
        return self.decoder(z), mu, log_var

    def _prior_samples(self, n: int, generator, device) -> torch.Tensor:
        return self.decode(torch.randn(n, self.latent_dim, generator=generator, device=device))

    # ------------------------------------------------------------------ phases
    def discriminator_loss(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            rec = torch.sigmoid(self._reconstruct(x, generator)[0])
            fake = self._prior_samples(len(x), generator, x.device)
        real_logit, h_real = self.discriminator(x)
        rec_logit, h_rec = self.discriminator(rec)
        fake_logit, _ = self.discriminator(fake)
        d_loss, _ = set_adversarial_losses(real_logit, torch.cat([rec_logit, fake_logit]))
        inst = instance_contrastive_loss(h_rec, h_real, self.tau)
        return d_loss + self.inst_weight * inst, {"d_adv": float(d_loss.detach()), "d_inst": float(inst.detach())}

    def autoencoder_loss(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        logits, mu, log_var = self._reconstruct(x, generator)
        kl = gaussian_kl(mu, log_var).mean() / x[0].numel()  # per dimension, as the reconstruction terms
        if self.mode == "vae":
            rec = F.binary_cross_entropy_with_logits(logits, x)
            return rec + kl, {"recon": float(rec.detach()), "kl": float(kl.detach())}
        rec = torch.sigmoid(logits)
        fake = self._prior_samples(len(x), generator, x.device)
        _, h_real = self.discriminator(x)
        rec_logit, h_rec = self.discriminator(rec)
        fake_logit, _ = self.discriminator(fake)
        _, g_adv = set_adversarial_losses(torch.zeros(1, device=x.device), torch.cat([rec_logit, fake_logit]))
        inst = instance_contrastive_loss(h_rec, h_real, self.tau)
        loss = kl + self.inst_weight * inst + self.adv_weight * g_adv
        return loss, {"kl": float(kl.detach()), "inst": float(inst.detach()), "g_adv": float(g_adv.detach())}

    def phases(self) -> list[Phase]:
        ae = Phase("autoencoder", ["encoder", "decoder"], lambda m, x, y, g: m.autoencoder_loss(x, g), betas=(0.5, 0.999))
        if self.mode == "vae":
            return [ae]
        return [Phase("discriminator", ["discriminator"], lambda m, x, y, g: m.discriminator_loss(x, g),
                      betas=(0.5, 0.999)), ae]

    # ------------------------------------------------------------------ sampling and evaluation
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return self._prior_samples(n, generator, next(self.parameters()).device)

    @torch.no_grad()
    def evaluate_batch(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per image: reconstruction MSE and the sharpness ratio (variance of the Laplacian of the reconstruction
        over that of the input; 1 = as sharp as the input)."""
        rec = self(x)
        return {"recon_mse": (rec - x).pow(2).flatten(1).mean(1), "sharpness": laplacian_variance(rec) /
                laplacian_variance(x).clamp_min(1e-12)}


def laplacian_variance(images: torch.Tensor) -> torch.Tensor:
    """Per image: the variance of the 3x3 Laplacian of the grey image (a common sharpness measure)."""
    grey = images.mean(1, keepdim=True)
    k = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]], device=images.device, dtype=images.dtype)
    lap = F.conv2d(grey, k.view(1, 1, 3, 3))
    return lap.flatten(1).var(1)


@register_model(paper="dc-vae", task="generative", input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                num_classes=0, notes="DCGAN-style encoder/decoder/discriminator (the paper's CIFAR-10 setting is 32 px)")
def dcvae(img_size: int = 32, in_chans: int = 3, num_classes: int = 0, **kwargs) -> DCVAE:
    """DC-VAE; ``mode="vae"`` is the plain VAE with the same encoder and decoder."""
    return DCVAE(img_size=img_size, in_chans=in_chans, num_classes=num_classes, **kwargs)
