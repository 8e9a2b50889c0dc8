"""CIPS: Conditionally-Independent Pixel Synthesis (Anokhin et al., "Image Generators with Conditionally-Independent
Pixel Synthesis", CVPR 2021, arXiv:2011.13775; official code saic-mdal/CIPS).

The catalog files this slug under arXiv:2011.12026 ("Adversarial Generation of Continuous Images", Skorokhodov et al.,
INR-GAN), a sibling coordinate-based generator; the issue that asked for it names CIPS and its official repository,
which is what is built here.

The generator has no spatial convolutions and no upsampling: every pixel's colour is computed independently from
its coordinates (x, y) in [-1, 1] and the image's style vector w, so the image can be rendered at any resolution and
any subset of pixels (patch by patch) gives the same values as the full render. The layout is the official
``CIPSskip``:

* **Mapping network**: pixel norm, then ``mapping_depth`` equalised-learning-rate linear layers (learning-rate
  multiplier 0.01) with the scaled leaky ReLU lrelu(x + b) sqrt 2 (StyleGAN2's), z -> w.
* **Positional encoding** (§3.1): the concatenation of Fourier features e_fo = sin(B_fo (x, y)^T + b_fo) (a 1x1
  convolution of the coordinates, uniform init in ±sqrt(9/2)) with learned **coordinate embeddings** e_co, one
  ``hidden``-vector per pixel of the training grid (read off by bilinear interpolation elsewhere).
* **Modulated fully connected layers** (ModFC): StyleGAN2's weight modulation/demodulation on per-pixel linear
  layers (equalised learning rate, the style's affine map initialised to bias 1), then per-pixel noise times a learned
  scalar (initialised to 0), a bias and the scaled leaky ReLU. A first layer maps the 2·hidden encoding to the first
  width; after it come pairs of layers, each pair followed by a modulated (not demodulated) to-RGB layer with a bias
  whose outputs are summed (the skip connections of §3.2). 15 layers in the paper's 256 px model (``cips_256``).
* The official generator outputs colours in [-1, 1]; ours gives (rgb + 1) / 2, images in [0, 1] as every paperzoo
  generator, and ``source="official"`` loads its weights (``g_ema``) unchanged.
* A StyleGAN2-style residual discriminator (ours, not the official one, which also reads the coordinates);
  non-saturating losses with an R1 penalty.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...registry import register_model
from ...tasks.generative import Phase
from ...weights import register_converter
from .histogan import Discriminator


def coordinate_grid(size: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(size, size, 2) coordinates (x, y) of a size x size grid whose corner pixels sit at -1 and 1."""
    t = torch.linspace(-1, 1, size, device=device, dtype=dtype)
    y, x = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([x, y], -1)


def scaled_lrelu(x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """StyleGAN2's biased leaky ReLU: lrelu(x + b, 0.2) * sqrt 2 (b over dim 1)."""
    return F.leaky_relu(x + bias.view(1, -1, *([1] * (x.ndim - 2))), 0.2) * math.sqrt(2)


class EqualLinear(nn.Module):
    """Equalised learning rate: weights stored as N(0, 1) / lr_mul and used times lr_mul / sqrt(fan_in); the bias is
    used times lr_mul; ``activate`` applies the scaled leaky ReLU."""

    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_dim), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.activate:
            return scaled_lrelu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class MappingNetwork(nn.Module):
    """z -> w: pixel norm, then ``depth`` equalised linear layers with the scaled leaky ReLU."""

    def __init__(self, dim: int, depth: int, lr_mul: float = 0.01) -> None:
        super().__init__()
        self.layers = nn.ModuleList(EqualLinear(dim, dim, lr_mul=lr_mul, activate=True) for _ in range(depth))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z * torch.rsqrt(z.pow(2).mean(1, keepdim=True) + 1e-8)
        for layer in self.layers:
            x = layer(x)
        return x


class ModFC(nn.Module):
    """A modulated fully connected layer applied to every pixel of (B, C, H, W): s = A(w) (bias 1), weights
    W' = s_i W_ji / sqrt(fan_in), demodulated to unit norm per output (``demodulate``). ``activate``: then per-pixel
    noise times a learned scalar, a bias and the scaled leaky ReLU (the official StyledConv); otherwise a to-RGB layer
    (a bias, no noise, no nonlinearity)."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, demodulate: bool = True, activate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.noise = nn.Parameter(torch.zeros(1)) if activate else None
        self.scale, self.demodulate, self.activate = 1 / math.sqrt(in_ch), demodulate, activate

    def forward(self, x: torch.Tensor, w: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        s = self.modulation(w)  # (B, in)
        weight = self.weight[None] * (self.scale * s[:, None, :])  # per-sample weights (B, out, in)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.pow(2).sum(2, keepdim=True) + 1e-8)
        b, c, h, wd = x.shape
        out = torch.bmm(weight, x.reshape(b, c, h * wd)).view(b, -1, h, wd)  # the 1x1 layer of every pixel at once
        if not self.activate:
            return out + self.bias.view(1, -1, 1, 1)
        noise = torch.randn(b, 1, h, wd, generator=generator, device=out.device, dtype=out.dtype)
        return scaled_lrelu(out + self.noise * noise, self.bias)


class CIPSGenerator(nn.Module):
    """Mapping network, positional encoding and the stack of modulated per-pixel layers (the official CIPSskip).

    ``channels``: the width of each pair of layers (default ``layers // 2`` times ``width``); ``hidden``: the size of
    the Fourier features and of the coordinate embeddings (default ``width``). ``align_corners`` is how the coordinate
    embeddings are read off the grid: True (default) makes them exact on the training grid at every call; the
    official code takes them as stored while training at the training size and otherwise samples with False."""

    def __init__(self, img_size: int, latent_dim: int, width: int, layers: int, mapping_depth: int,
                 channels: list[int] | None = None, hidden: int | None = None, lr_mlp: float = 0.01,
                 align_corners: bool = True) -> None:
        super().__init__()
        if channels is None:
            if layers % 2 or layers < 2:
                raise ConfigError(f"CIPS needs an even number >= 2 of modulated layers after the first (a to-RGB after "
                                  f"every second), got {layers}")
            channels = [width] * (layers // 2)
        hidden = hidden or width
        self.img_size, self.latent_dim, self.align_corners = img_size, latent_dim, align_corners
        self.mapping = MappingNetwork(latent_dim, mapping_depth, lr_mlp)
        self.fourier = nn.Conv2d(2, hidden, 1)  # B_fo (and its bias)
        nn.init.uniform_(self.fourier.weight, -math.sqrt(9 / 2), math.sqrt(9 / 2))
        self.coord_embeddings = nn.Parameter(torch.randn(1, hidden, img_size, img_size))  # e_co
        self.conv1 = ModFC(2 * hidden, channels[0], latent_dim)
        self.layers, self.to_rgb = nn.ModuleList(), nn.ModuleList()
        c_in = channels[0]
        for c in channels:
            self.layers.extend([ModFC(c_in, c, latent_dim), ModFC(c, c, latent_dim)])
            self.to_rgb.append(ModFC(c, 3, latent_dim, demodulate=False, activate=False))
            c_in = c

    def encoding(self, coords: torch.Tensor, on_grid: bool = False) -> torch.Tensor:
        """(B, 2 hidden, H, W) positional encoding of coordinates (B, H, W, 2): [sin(B_fo (x, y) + b), e_co(x, y)].
        ``on_grid``: the coordinates are the training grid, where (with ``align_corners``) e_co is read as stored."""
        fo = torch.sin(self.fourier(coords.permute(0, 3, 1, 2)))
        emb = self.coord_embeddings.expand(len(coords), -1, -1, -1)
        if not (on_grid and self.align_corners):
            emb = F.grid_sample(emb, coords, mode="bilinear", padding_mode="border", align_corners=self.align_corners)
        return torch.cat([fo, emb], 1)

    def render(self, w: torch.Tensor, coords: torch.Tensor, generator: torch.Generator | None = None,
               on_grid: bool = False) -> torch.Tensor:
        """Images in [0, 1] (B, 3, H, W) of styles w (B, latent) at coordinates (B, H, W, 2); ``generator`` draws the
        per-pixel noise."""
        h = self.conv1(self.encoding(coords, on_grid), w, generator)
        rgb = 0.0
        for i, to_rgb in enumerate(self.to_rgb):
            h = self.layers[2 * i + 1](self.layers[2 * i](h, w, generator), w, generator)
            rgb = rgb + to_rgb(h, w)
        return (rgb + 1) / 2

    def forward(self, z: torch.Tensor, size: int | None = None, coords: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        on_grid = coords is None and (size or self.img_size) == self.img_size
        if coords is None:
            coords = coordinate_grid(size or self.img_size, z.device, z.dtype).expand(len(z), -1, -1, -1)
        return self.render(self.mapping(z), coords, generator, on_grid)


class CIPS(nn.Module):
    """CIPS generator and a StyleGAN2-style discriminator (trained at ``img_size``)."""

    def __init__(self, img_size: int = 32, latent_dim: int = 128, width: int = 128, layers: int = 8,
                 mapping_depth: int = 4, disc_channels: int = 64, r1: float = 1.0, num_classes: int = 0,
                 in_chans: int = 3, channels: list[int] | None = None, hidden: int | None = None, lr_mlp: float = 0.01,
                 align_corners: bool = True) -> None:
        super().__init__()
        if in_chans != 3:
            raise ConfigError(f"CIPS generates RGB images (in_chans=3), got in_chans={in_chans}")
        if img_size & (img_size - 1) or img_size < 8:
            raise ConfigError(f"CIPS's discriminator needs a power-of-two image size >= 8, got {img_size}")
        self.img_size, self.r1 = img_size, r1
        self.generator = CIPSGenerator(img_size, latent_dim, width, layers, mapping_depth, channels, hidden, lr_mlp,
                                       align_corners)
        self.discriminator = Discriminator(img_size, [disc_channels] * min(int(math.log2(img_size)) - 2, 4))

    def generate(self, n: int, generator: torch.Generator | None = None, size: int | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
        device = device or self.generator.coord_embeddings.device
        z = torch.randn(n, self.generator.latent_dim, generator=generator, device=device)
        return self.generator(z, size, generator=generator)

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
                num_classes=0, notes="a small CIPS (the paper's 256 px model is cips_256)")
def cips(img_size: int = 32, in_chans: int = 3, num_classes: int = 0, **kwargs) -> CIPS:
    """CIPS: coordinate-based generator (Fourier features + coordinate embeddings, modulated per-pixel layers)."""
    return CIPS(img_size=img_size, in_chans=in_chans, num_classes=num_classes, **kwargs)


def official_channels(img_size: int, channel_multiplier: int = 2) -> list[int]:
    """The official CIPSskip's widths of its log2(img_size) - 1 layer pairs: 512 for the first four, then
    256, 128, 64, 32, 16 times ``channel_multiplier``."""
    table = [512, 512, 512, 512] + [c * channel_multiplier for c in (256, 128, 64, 32, 16)]
    return table[: int(math.log2(img_size)) - 1]


@register_model(paper="cips", task="generative", input_size=(3, 256, 256), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                num_classes=0, notes="the paper's 256 px CIPS generator (official CIPSskip: 15 modulated layers, "
                "hidden 512, style 512, 8 mapping layers; 44.3M parameters in the generator)")
def cips_256(img_size: int = 256, in_chans: int = 3, num_classes: int = 0, **kwargs) -> CIPS:
    """The official 256 px configuration (``source="official"`` loads its ``g_ema``, with ``skip=["discriminator"]``)."""
    kwargs = {"latent_dim": 512, "width": 512, "mapping_depth": 8, "channels": official_channels(img_size),
              "disc_channels": 128, **kwargs}
    return CIPS(img_size=img_size, in_chans=in_chans, num_classes=num_classes, **kwargs)


# ------------------------------------------------------------------------------------------- official weights
@register_converter("cips", "official")
def from_official(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """saic-mdal/CIPS's generator (a training checkpoint's ``g_ema``, or a CIPSskip state dict) to ours:
    ``style.{j+1}`` -> ``mapping.layers.j``, ``lff.ffm.conv`` -> ``fourier``, ``emb.input`` -> ``coord_embeddings``,
    ``conv1``/``linears.i`` (``conv.weight`` squeezed, ``conv.modulation``, ``noise.weight``, ``activate.bias``) ->
    ``conv1``/``layers.i``, ``to_rgbs.i`` (``conv.weight``, ``conv.modulation``, ``bias``) -> ``to_rgb.i``, all under
    ``generator.``. The official discriminator (it reads the coordinates too) is not ours: load with
    ``skip=["discriminator"]``."""
    if "g_ema" in state:
        state = state["g_ema"]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key.removeprefix("module.")
        p = k.split(".")
        if p[0] == "style":
            new = f"mapping.layers.{int(p[1]) - 1}.{p[-1]}"
        elif k.startswith("lff.ffm.conv."):
            new = "fourier." + p[-1]
        elif k == "emb.input":
            new = "coord_embeddings"
        elif p[0] in ("conv1", "linears", "to_rgbs"):
            layer = "conv1" if p[0] == "conv1" else {"linears": "layers.", "to_rgbs": "to_rgb."}[p[0]] + p[1]
            rest = p[1:] if p[0] == "conv1" else p[2:]
            if rest == ["conv", "weight"]:
                new, value = layer + ".weight", value.reshape(value.shape[1], value.shape[2])
            elif rest[:2] == ["conv", "modulation"]:
                new = f"{layer}.modulation.{rest[2]}"
            elif rest == ["noise", "weight"]:
                new = layer + ".noise"
            elif rest in (["activate", "bias"], ["bias"]):
                new, value = layer + ".bias", value.flatten()
            else:
                new = k
        else:
            new = k
        out["generator." + new] = value
    return out
