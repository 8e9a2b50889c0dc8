"""CIPS: Conditionally-Independent Pixel Synthesis (Anokhin et al., "Image Generators with Conditionally-Independent
Pixel Synthesis", arXiv:2011.12026).

The generator has no spatial convolutions and no upsampling: every pixel's colour is computed independently from
its coordinates (x, y) in [-1, 1] and the image's style vector w, so the image can be rendered at any resolution and
any subset of pixels (patch by patch) gives the same values as the full render.

* **Positional encoding** (§3.1): the concatenation of Fourier features e_fo = sin(B_fo (x, y)^T) with a learned
  matrix B_fo, and learned **coordinate embeddings** e_co — one vector per pixel of the training grid (read off by
  bilinear interpolation at other coordinates, exact on the training grid).
* **Mapping network**: z -> w by a multilayer perceptron (StyleGAN2's).
* **Modulated fully connected layers**: StyleGAN2's weight modulation/demodulation on 1x1 layers (a per-pixel
  linear layer whose weights the style scales), leaky ReLU; every second layer a modulated to-RGB layer whose
  outputs are summed (the skip connections of §3.2).
* A StyleGAN2-style residual discriminator; non-saturating losses with an R1 penalty.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...registry import register_model
from ...tasks.generative import Phase
from .histogan import Discriminator, ModulatedConv, _mlp


def coordinate_grid(size: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(size, size, 2) coordinates (x, y) of a size x size grid whose corner pixels sit at -1 and 1."""
    t = torch.linspace(-1, 1, size, device=device, dtype=dtype)
    y, x = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([x, y], -1)


class CIPSGenerator(nn.Module):
    """Mapping network, positional encoding and the stack of modulated per-pixel layers."""

    def __init__(self, img_size: int, latent_dim: int, width: int, layers: int, mapping_depth: int) -> None:
        super().__init__()
        if layers % 2:
            raise ConfigError(f"CIPS needs an even number of modulated layers (a to-RGB after every second), got {layers}")
        self.img_size, self.latent_dim = img_size, latent_dim
        self.mapping = _mlp([latent_dim] + [latent_dim] * mapping_depth)
        self.fourier = nn.Linear(2, width // 2, bias=False)  # B_fo
        nn.init.uniform_(self.fourier.weight, -math.sqrt(9 / 2), math.sqrt(9 / 2))
        self.coord_embeddings = nn.Parameter(torch.randn(1, width - width // 2, img_size, img_size))  # e_co
        self.layers = nn.ModuleList(ModulatedConv(width, width, 1, latent_dim) for _ in range(layers))
        self.to_rgb = nn.ModuleList(ModulatedConv(width, 3, 1, latent_dim, demodulate=False) for _ in range(layers // 2))
        self.rgb_bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def encoding(self, coords: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) positional encoding of coordinates (B, H, W, 2): [sin(B_fo (x, y)), e_co(x, y)]."""
        fo = torch.sin(self.fourier(coords)).permute(0, 3, 1, 2)
        emb = self.coord_embeddings.expand(len(coords), -1, -1, -1)
        co = F.grid_sample(emb, coords, mode="bilinear", padding_mode="border", align_corners=True)
        return torch.cat([fo, co], 1)

    def render(self, w: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] (B, 3, H, W) of styles w (B, latent) at coordinates (B, H, W, 2)."""
        h = self.encoding(coords)
        rgb = self.rgb_bias
        for i, layer in enumerate(self.layers):
            h = F.leaky_relu(layer(h, w), 0.2)
            if i % 2 == 1:
                rgb = rgb + self.to_rgb[i // 2](h, w)
        return torch.sigmoid(rgb)

    def forward(self, z: torch.Tensor, size: int | None = None, coords: torch.Tensor | None = None) -> torch.Tensor:
        if coords is None:
            coords = coordinate_grid(size or self.img_size, z.device, z.dtype).expand(len(z), -1, -1, -1)
        return self.render(self.mapping(z), coords)


class CIPS(nn.Module):
    """CIPS generator and a StyleGAN2-style discriminator (trained at ``img_size``)."""

    def __init__(self, img_size: int = 32, latent_dim: int = 128, width: int = 128, layers: int = 8,
                 mapping_depth: int = 4, disc_channels: int = 64, r1: float = 1.0, num_classes: int = 0,
                 in_chans: int = 3) -> None:
        super().__init__()
        if in_chans != 3:
            raise ConfigError(f"CIPS generates RGB images (in_chans=3), got in_chans={in_chans}")
        if img_size & (img_size - 1) or img_size < 8:
            raise ConfigError(f"CIPS's discriminator needs a power-of-two image size >= 8, got {img_size}")
        self.img_size, self.r1 = img_size, r1
        self.generator = CIPSGenerator(img_size, latent_dim, width, layers, mapping_depth)
        self.discriminator = Discriminator(img_size, [disc_channels] * min(int(math.log2(img_size)) - 2, 4))

    def generate(self, n: int, generator: torch.Generator | None = None, size: int | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        device = device or self.generator.rgb_bias.device
        z = torch.randn(n, self.generator.latent_dim, generator=generator, device=device)
        return self.generator(z, size)

    def discriminator_loss(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """softplus(-D(x)) + softplus(D(G(z))) + r1/2 E|grad_x D(x)|^2."""
        with torch.no_grad():
            fake = self.generate(len(x), generator, device=x.device)
        real = x.detach().requires_grad_(self.r1 > 0)
        d_real = self.discriminator(real)
        loss = F.softplus(-d_real).mean() + F.softplus(self.discriminator(fake)).mean()
        logs = {}
        if self.r1 > 0:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            penalty = grad.pow(2).flatten(1).sum(1).mean()
            loss = loss + self.r1 / 2 * penalty
            logs["r1"] = float(penalty.detach())
        return loss, logs

    def generator_loss(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        return F.softplus(-self.discriminator(self.generate(len(x), generator, device=x.device))).mean(), {}

    def phases(self) -> list[Phase]:
        return [Phase("discriminator", ["discriminator"], lambda m, x, y, g: m.discriminator_loss(x, g), betas=(0.0, 0.99)),
                Phase("generator", ["generator"], lambda m, x, y, g: m.generator_loss(x, g), betas=(0.0, 0.99))]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, size: int | None = None) -> torch.Tensor:
        return self.generate(n, generator, size)

    @torch.no_grad()
    def evaluate_batch(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per image: the discriminator's score of the real image and of a generated one (a GAN's training signal;
        sample quality is measured by FID in the reproduction)."""
        g = torch.Generator(device=x.device).manual_seed(0)
        return {"d_real": self.discriminator(x).flatten(), "d_fake": self.discriminator(self.generate(len(x), g, device=x.device)).flatten()}


@register_model(paper="cips", task="generative", input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                num_classes=0, notes="a small CIPS (the paper's: 14 modulated layers of 512 at 256 px)")
def cips(img_size: int = 32, in_chans: int = 3, num_classes: int = 0, **kwargs) -> CIPS:
    """CIPS: coordinate-based generator (Fourier features + coordinate embeddings, modulated per-pixel layers)."""
    return CIPS(img_size=img_size, in_chans=in_chans, num_classes=num_classes, **kwargs)
