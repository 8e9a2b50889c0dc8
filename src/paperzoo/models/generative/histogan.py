"""HistoGAN (Afifi, Brubaker and Brown, CVPR 2021, arXiv:2011.11731): a StyleGAN2-like generator whose colours are
controlled by a target colour histogram.

* **RGB-uv histogram** (§3.1, Eq. 1-3): each pixel of an image in [0, 1] is taken to log-chroma coordinates in
  three projections — (u, v) = (log R/G, log R/B), (log G/R, log G/B), (log B/R, log B/G) — and votes into an
  h x h grid of bins over [-3, 3]^2 with the differentiable **inverse-quadratic kernel**
  k(d) = (1 + (d / tau)^2)^-1 in u and in v, weighted by its intensity I_y = sqrt(R^2 + G^2 + B^2); the three
  planes together are normalised to sum to one. h = 64, tau = 0.02; images larger than 150 px are resized first.
* **Histogram loss** (Eq. 5): the Hellinger distance H(H_g, H_t) = (1/sqrt 2) ||sqrt H_t - sqrt H_g||_2 between
  the histogram of a generated image and the target histogram, added (weight alpha) to the generator's
  adversarial loss.
* **Generator** (§3.2): StyleGAN2's mapping network and modulated/demodulated convolutions; the target histogram
  is projected by a small fully connected network (the "histogram projection") to a latent that replaces the
  style of the **last two blocks**, which mostly set the colours.

ReHistoGAN, the recolouring encoder-decoder of §4, is in ``rehistogan.py``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError, unknown
from ...registry import register_model
from ...tasks.generative import Phase

EPS = 1e-6
KERNELS = ("inverse-quadratic", "RBF", "thresholding")


# ------------------------------------------------------------------------------------------- the histogram
def rgbuv_histogram(images: torch.Tensor, bins: int = 64, sigma: float = 0.02, boundary: tuple[float, float] = (-3.0, 3.0),
                    method: str = "inverse-quadratic", intensity_scale: bool = True, max_size: int = 150,
                    resizing: str = "interpolation") -> torch.Tensor:
    """The RGB-uv histogram (B, 3, bins, bins) of images (B, 3, H, W) in [0, 1] (values outside are clamped).

    Images larger than ``max_size`` are first resized (``interpolation``: bilinear to max_size x max_size;
    ``sampling``: every (H / bins)-th row and column, as the official code does, which takes ``bins`` of them).
    """
    if images.ndim != 4 or images.shape[1] < 3:
        raise ConfigError(f"the RGB-uv histogram needs RGB images (B, 3, H, W), got shape {tuple(images.shape)}")
    if method not in KERNELS:
        raise unknown("histogram kernel", method, KERNELS)
    x = images[:, :3].clamp(0, 1)
    if x.shape[2] > max_size or x.shape[3] > max_size:
        if resizing == "interpolation":
            x = F.interpolate(x, size=(max_size, max_size), mode="bilinear", align_corners=False)
        elif resizing == "sampling":
            rows = torch.linspace(0, x.shape[2], bins + 1, dtype=torch.float64)[:-1].long().to(x.device)
            cols = torch.linspace(0, x.shape[3], bins + 1, dtype=torch.float64)[:-1].long().to(x.device)
            x = x.index_select(2, rows).index_select(3, cols)
        else:
            raise unknown("histogram resizing", resizing, ("interpolation", "sampling"))
    pixels = x.flatten(2)  # (B, 3, N)
    log = torch.log(pixels + EPS)
    u = log - log[:, [1, 0, 0]]  # log R/G, log G/R, log B/R
    v = log - log[:, [2, 2, 1]]  # log R/B, log G/B, log B/G
    centres = torch.linspace(boundary[0], boundary[1], bins, device=x.device, dtype=torch.float64).to(x.dtype)
    ku, kv = (_kernel(t.unsqueeze(-1) - centres, method, sigma, boundary, bins) for t in (u, v))
    weight = torch.sqrt(pixels.pow(2).sum(1) + EPS) if intensity_scale else torch.ones_like(pixels[:, 0])
    hist = torch.einsum("bn,bcnu,bcnv->bcuv", weight, ku, kv)
    return hist / (hist.sum(dim=(1, 2, 3), keepdim=True) + EPS)


def _kernel(d: torch.Tensor, method: str, sigma: float, boundary: tuple[float, float], bins: int) -> torch.Tensor:
    """k(d) of the signed distance d between a pixel's coordinate and a bin centre."""
    if method == "inverse-quadratic":
        return torch.reciprocal(1 + (d * (1 / sigma)).square())
    if method == "RBF":
        return torch.exp(-(d * (1 / sigma)).square())
    d = d.abs()
    width = (abs(boundary[0]) + abs(boundary[1])) / bins  # thresholding: the bin the pixel falls in (not differentiable)
    return (d <= width / 2).to(d.dtype)


def hellinger_loss(generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 5 per image, averaged over the batch: (1/sqrt 2) ||sqrt H_t - sqrt H_g||_2."""
    diff = target.clamp_min(0).sqrt() - generated.clamp_min(0).sqrt()
    return (diff.pow(2).flatten(1).sum(1) + 1e-12).sqrt().mean() / math.sqrt(2)


def official_histogram_loss(generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The official training code's form: (1/sqrt 2) ||sqrt H_t - sqrt H_g||_2 over the whole batch, divided by the
    batch size (equal to Eq. 5 for one image)."""
    diff = target.sqrt() - generated.sqrt()
    return diff.pow(2).sum().sqrt() / math.sqrt(2) / len(target)


# ------------------------------------------------------------------------------------------- StyleGAN2 parts
class ModulatedConv(nn.Module):
    """StyleGAN2's weight modulation (and demodulation): w'_ijk = s_i w_ijk / sqrt(sum_ik (s_i w_ijk)^2 + eps)
    (i input channel, j output channel, k kernel tap)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, style_dim: int, demodulate: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel, kernel) / math.sqrt(in_ch * kernel * kernel))
        self.style = nn.Linear(style_dim, in_ch)
        nn.init.ones_(self.style.bias)
        self.demodulate, self.padding, self.out_ch = demodulate, kernel // 2, out_ch

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.style(w)  # (B, in)
        # scaling the input channels by s equals scaling the weights' input slices; demodulation is then a
        # per-sample, per-output-channel factor (StyleGAN2's non-fused form: plain convolutions, no groups)
        out = F.conv2d(x * s[:, :, None, None], self.weight, padding=self.padding)
        if self.demodulate:
            d = torch.rsqrt(s.pow(2) @ self.weight.pow(2).sum(dim=(2, 3)).t() + 1e-8)  # (B, out)
            out = out * d[:, :, None, None]
        return out


class SynthesisBlock(nn.Module):
    """Upsample x2 (but the first), two modulated 3x3 convolutions with per-pixel noise and leaky ReLU, and a
    modulated 1x1 to-RGB added to the upsampled RGB of the previous block (StyleGAN2's skip generator)."""

    def __init__(self, in_ch: int, out_ch: int, style_dim: int, upsample: bool) -> None:
        super().__init__()
        self.upsample = upsample
        self.conv1 = ModulatedConv(in_ch, out_ch, 3, style_dim)
        self.conv2 = ModulatedConv(out_ch, out_ch, 3, style_dim)
        self.noise1 = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.noise2 = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.bias1 = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.bias2 = nn.Parameter(torch.zeros(1, out_ch, 1, 1))
        self.to_rgb = ModulatedConv(out_ch, 3, 1, style_dim, demodulate=False)

    def forward(self, x, rgb, w, noise: tuple[torch.Tensor, torch.Tensor], latent: torch.Tensor | None = None):
        """``latent`` (ReHistoGAN's skip connections) is added between the two convolutions."""
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.leaky_relu(self.conv1(x, w) + self.noise1 * noise[0] + self.bias1, 0.2)
        if latent is not None:
            x = x + latent
        x = F.leaky_relu(self.conv2(x, w) + self.noise2 * noise[1] + self.bias2, 0.2)
        out = self.to_rgb(x, w)
        if rgb is not None:
            out = out + F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
        return x, out


class ConstantInput(nn.Module):
    """The learned 4x4 input of the synthesis network."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, channels, 4, 4))


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.LeakyReLU(0.2)]
    return nn.Sequential(*layers)


class Discriminator(nn.Module):
    """StyleGAN2-like residual discriminator: per resolution two 3x3 convolutions and a 1x1 skip, halving the size
    down to 4x4, then a linear score."""

    def __init__(self, img_size: int, channels: list[int]) -> None:
        super().__init__()
        blocks = []
        c_in = 3
        for c in channels:
            blocks.append(nn.ModuleDict({"conv": nn.Sequential(nn.Conv2d(c_in, c, 3, padding=1), nn.LeakyReLU(0.2),
                                                               nn.Conv2d(c, c, 3, padding=1), nn.LeakyReLU(0.2)),
                                         "skip": nn.Conv2d(c_in, c, 1)}))
            c_in = c
        self.blocks = nn.ModuleList(blocks)
        final = img_size // 2 ** len(channels)
        self.head = nn.Linear(c_in * final * final, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * 2 - 1
        for b in self.blocks:
            x = F.avg_pool2d((b["conv"](x) + b["skip"](x)) / math.sqrt(2), 2)
        return self.head(x.flatten(1))


class HistoGAN(nn.Module):
    """Generator (mapping network, histogram projection, synthesis) and discriminator of HistoGAN.

    ``conditioned=False`` gives the same network without the histogram: every block's style comes from the
    mapping network and the loss has no histogram term (the unconditioned baseline)."""

    def __init__(self, img_size: int = 64, latent_dim: int = 128, channels: int = 64, mapping_depth: int = 4,
                 bins: int = 64, alpha: float = 2.0, hist_size: int = 150, conditioned: bool = True,
                 num_classes: int = 0, in_chans: int = 3, r1: float = 0.0) -> None:
        super().__init__()
        if in_chans != 3:
            raise ConfigError(f"HistoGAN generates RGB images (in_chans=3), got in_chans={in_chans}")
        n_blocks = int(math.log2(img_size)) - 1  # 4 -> img_size
        if 2 ** (n_blocks + 1) != img_size or n_blocks < 2:
            raise ConfigError(f"HistoGAN needs a power-of-two image size >= 8, got {img_size}")
        self.img_size, self.latent_dim, self.bins, self.alpha, self.hist_size = img_size, latent_dim, bins, alpha, hist_size
        self.conditioned, self.r1 = conditioned, r1
        self.mapping = _mlp([latent_dim] + [latent_dim] * mapping_depth)
        self.hist_projection = _mlp([3 * bins * bins, 2 * latent_dim, latent_dim]) if conditioned else None
        widths = [channels] * n_blocks
        self.input = ConstantInput(channels)
        self.blocks = nn.ModuleList(SynthesisBlock(channels, w, latent_dim, upsample=i > 0) for i, w in enumerate(widths))
        self.discriminator = Discriminator(img_size, [channels] * min(n_blocks, 4))
        self.register_buffer("reference_histograms", torch.full((8, 3, bins, bins), 1.0 / (3 * bins * bins)))

    # ------------------------------------------------------------------ the generator
    def histogram(self, images: torch.Tensor) -> torch.Tensor:
        return rgbuv_histogram(images, self.bins, max_size=self.hist_size)

    def styles(self, z: torch.Tensor, histograms: torch.Tensor | None) -> list[torch.Tensor]:
        """One style per block: the mapping network's w, and for the last two blocks the histogram projection."""
        w = self.mapping(z)
        out = [w] * len(self.blocks)
        if self.conditioned:
            if histograms is None:
                raise ConfigError("the conditioned HistoGAN needs target histograms")
            wh = self.hist_projection(histograms.flatten(1))
            out[-2:] = [wh, wh]
        return out

    def generate(self, z: torch.Tensor, histograms: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [0, 1] from latents ``z`` (and target histograms)."""
        x = self.input.const.expand(len(z), -1, -1, -1)
        rgb = None
        for block, w in zip(self.blocks, self.styles(z, histograms)):
            size = x.shape[-1] * (2 if block.upsample else 1)
            noise = tuple(torch.randn(len(z), 1, size, size, generator=generator, device=z.device) for _ in range(2))
            x, rgb = block(x, rgb, w, noise)
        return torch.sigmoid(rgb)

    def forward(self, z: torch.Tensor, histograms: torch.Tensor | None = None) -> torch.Tensor:
        return self.generate(z, histograms)

    # ------------------------------------------------------------------ losses
    def _latents(self, n: int, generator: torch.Generator | None, device) -> torch.Tensor:
        return torch.randn(n, self.latent_dim, generator=generator, device=device)

    def discriminator_loss(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """softplus(-D(x)) + softplus(D(G(z, H_t))) (+ R1 on real images: r1/2 E|grad_x D(x)|^2)."""
        target = self.histogram(x).roll(1, 0) if self.conditioned else None  # another image's colours
        with torch.no_grad():
            fake = self.generate(self._latents(len(x), generator, x.device), target, generator)
        real = x.detach().requires_grad_(self.r1 > 0)
        d_real = self.discriminator(real)
        loss = F.softplus(-d_real).mean() + F.softplus(self.discriminator(fake)).mean()
        if self.r1 > 0:
            (grad,) = torch.autograd.grad(d_real.sum(), real, create_graph=True)
            loss = loss + self.r1 / 2 * grad.pow(2).flatten(1).sum(1).mean()
        return loss

    def generator_loss(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """softplus(-D(G(z, H_t))) + alpha * H(H(G(z, H_t)), H_t), H_t the histograms of the batch's images."""
        target = self.histogram(x).roll(1, 0).detach() if self.conditioned else None
        fake = self.generate(self._latents(len(x), generator, x.device), target, generator)
        adv = F.softplus(-self.discriminator(fake)).mean()
        if not self.conditioned:
            return adv, {}
        with torch.no_grad():  # keep some real histograms for sampling
            k = min(len(target), len(self.reference_histograms))
            self.reference_histograms[:k].copy_(target[:k])
        hist = hellinger_loss(self.histogram(fake), target)
        return adv + self.alpha * hist, {"hist_loss": float(hist.detach())}

    def phases(self) -> list[Phase]:
        """Discriminator, then generator (mapping, histogram projection, synthesis) — Adam with beta1 = 0, as StyleGAN2."""
        gen = ["mapping", "blocks"] + (["hist_projection"] if self.conditioned else [])
        gen = ["input"] + gen
        gen_params = Phase("generator", gen, lambda m, x, y, g: m.generator_loss(x, g), betas=(0.0, 0.99))
        return [Phase("discriminator", ["discriminator"], lambda m, x, y, g: (m.discriminator_loss(x, g), {}),
                      betas=(0.0, 0.99)), gen_params]

    # ------------------------------------------------------------------ sampling and evaluation
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, histograms: torch.Tensor | None = None) -> torch.Tensor:
        device = self.input.const.device
        if self.conditioned and histograms is None:
            ref = self.reference_histograms
            histograms = ref[torch.arange(n, device=device) % len(ref)]
        return self.generate(self._latents(n, generator, device), histograms, generator)

    @torch.no_grad()
    def evaluate_batch(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per image: the Hellinger distance between the histogram of an image generated for the histogram of a
        real image and that target histogram (an unconditioned model generates without it)."""
        target = self.histogram(x)
        g = torch.Generator(device=x.device).manual_seed(0)
        fake = self.generate(self._latents(len(x), g, x.device), target if self.conditioned else None, g)
        diff = target.sqrt() - self.histogram(fake).sqrt()
        return {"hellinger": diff.pow(2).flatten(1).sum(1).sqrt() / math.sqrt(2)}


@register_model(paper="histogan", task="generative", input_size=(3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                num_classes=0, notes="a StyleGAN2-like generator (no progressive growing) at 64 px; histogram 64 bins")
def histogan(img_size: int = 64, in_chans: int = 3, num_classes: int = 0, **kwargs) -> HistoGAN:
    """HistoGAN; ``conditioned=False`` is the same GAN without the histogram (the baseline)."""
    return HistoGAN(img_size=img_size, in_chans=in_chans, num_classes=num_classes, **kwargs)
