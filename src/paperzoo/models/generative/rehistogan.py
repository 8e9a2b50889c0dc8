"""ReHistoGAN (Afifi, Brubaker and Brown, CVPR 2021, §4): recolouring a real image to a target colour histogram.

An encoder-decoder feeds HistoGAN's last two (histogram-conditioned) generator blocks, in the layout of the official
code (mahmoudnafifi/HistoGAN, ``ReHistoGAN/rehistoGAN.py`` with its default ``skip_conn_to_GAN=True``):

* **Encoder**: a 3x3 convolution to ``capacity`` channels, then log2(size) - 2 residual blocks (two 3x3
  convolutions with instance norm and leaky ReLU beside a 1x1 shortcut), each followed by a strided 3x3 convolution;
  the widths double from 2 ``capacity``.
* **Decoder**: log2(size) - 4 blocks, each joining the current map with the encoder's map of the same size
  (concatenated after a 3x3 convolution), a 1x1 shortcut, a 3x3 convolution and a bilinear x2 upsampling; then a
  1x1 convolution to 8 ``capacity`` channels at a quarter of the image size.
* **HistoGAN head**: the two last generator blocks of HistoGAN (upsampling x2 each, modulated 3x3 convolutions,
  per-pixel noise, to-RGB skips), both styled by the histogram projection of the target histogram.
* **Skip connections to the head** (Fig. 4): the encoder's full- and half-size features (before downsampling) pass
  through modulated 3x3 convolutions, styled by a second histogram projection, and are added inside the head's
  blocks (between their two convolutions), which carries the image's detail past the bottleneck.

Training (the official trainer's losses; images in [0, 1]): the discriminator's hinge loss; for the recolouring
networks gamma * (-D(G(x, H_t))) + alpha * the Hellinger loss between the histogram of the output and the target
H_t + beta * the L1 distance between the Laplacians (summed over the colour channels) of the input and the output
(the structure-keeping reconstruction loss) + a **variance term** -(beta / 10) sum|H_t - H_x| *
mean|sigma(g * x) - sigma(g * G(x))| that rewards changing the contrast of the (Gaussian-blurred) image when the target
histogram is far from the input's. H_t mixes the histograms of two other images of the batch with a random ratio
(the official sampling of target histograms).
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
from .histogan import Discriminator, ModulatedConv, SynthesisBlock, _mlp, official_histogram_loss, rgbuv_histogram

LAPLACIAN = ((0.0, 1.0, 0.0), (1.0, -4.0, 1.0), (0.0, 1.0, 0.0))


def laplacian(images: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W): the 3x3 Laplacian of the sum of the colour channels (the official kernel is one 3-channel filter
    with one output), zero padding."""
    kernel = torch.tensor(LAPLACIAN, dtype=images.dtype, device=images.device).expand(1, images.shape[1], 3, 3)
    return F.conv2d(images, kernel, padding=1)


def laplacian_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean |lap(x) - lap(y)|: keeps the edges of the input while the colours change."""
    return (laplacian(x) - laplacian(y)).abs().mean()


def gaussian_kernel(size: int = 15, sigma: float = 5.0) -> torch.Tensor:
    """A normalised 2-D Gaussian (size, size)."""
    t = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def variance_loss(x: torch.Tensor, y: torch.Tensor, target: torch.Tensor, source: torch.Tensor, beta: float,
                  kernel: torch.Tensor) -> torch.Tensor:
    """-(beta / 10) * sum|H_t - H_x| * mean|s(g * x) - s(g * y)|, s the standard deviation over the rows of the
    standard deviations over the columns of each channel, g a Gaussian blur (valid convolution)."""
    k = kernel.to(x)[None, None].expand(x.shape[1], 1, -1, -1)

    def spread(img: torch.Tensor) -> torch.Tensor:
        blurred = F.conv2d(img, k, groups=img.shape[1])
        return blurred.std(dim=2).std(dim=2)

    return -(beta / 10) * (target - source).abs().sum() * (spread(x) - spread(y)).abs().mean()


class EncoderBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_res = nn.Conv2d(in_ch, out_ch, 1)
        self.net = nn.Sequential(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.InstanceNorm2d(out_ch), nn.LeakyReLU(0.2),
                                 nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.InstanceNorm2d(out_ch), nn.LeakyReLU(0.2))
        self.downsample = nn.Conv2d(out_ch, out_ch, 3, padding=1, stride=2)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the downsampled map, the map before downsampling)."""
        x = self.net(x) + self.conv_res(x)
        return self.downsample(x), x


class DecoderBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_res = nn.Conv2d(in_ch, out_ch, 1)
        self.block1 = nn.Sequential(nn.Conv2d(in_ch, in_ch, 3, padding=1), nn.LeakyReLU(0.2))
        self.block2 = nn.Sequential(nn.Conv2d(2 * in_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2))
        self.conv_out_latent = nn.Sequential(nn.Conv2d(out_ch, out_ch, 3, padding=1), nn.LeakyReLU(0.2))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        y = self.conv_out_latent(self.conv_res(x) + self.block2(torch.cat([self.block1(x), skip], 1)))
        return F.interpolate(y, scale_factor=2, mode="bilinear", align_corners=False)


class ReHistoGAN(nn.Module):
    """``recolor(images, target_histograms)`` gives the recoloured images in [0, 1]; ``forward`` the raw output."""

    def __init__(self, img_size: int = 64, latent_dim: int = 128, capacity: int = 16, bins: int = 64,
                 projection_depth: int = 8, alpha: float = 32.0, beta: float = 1.5, gamma: float = 2.0,
                 variance: bool = True, hist_size: int = 150, disc_channels: int | None = None,
                 num_classes: int = 0, in_chans: int = 3) -> None:
        super().__init__()
        if in_chans != 3:
            raise ConfigError(f"ReHistoGAN recolours RGB images (in_chans=3), got in_chans={in_chans}")
        levels = int(math.log2(img_size))
        if 2 ** levels != img_size or img_size < 16:
            raise ConfigError(f"ReHistoGAN needs a power-of-two image size >= 16, got {img_size}")
        if projection_depth < 2:
            raise ConfigError(f"the histogram projection needs at least 2 layers, got {projection_depth}")
        self.img_size, self.bins, self.hist_size = img_size, bins, hist_size
        self.alpha, self.beta, self.gamma, self.variance = alpha, beta, gamma, variance
        c = capacity
        enc = [c * 2 ** i for i in range(levels - 1)]  # c, 2c, ... : log2(size) - 2 blocks
        self.mapping = nn.Conv2d(3, c, 3, padding=1)
        self.encoder_blocks = nn.ModuleList(EncoderBlock(a, b) for a, b in zip(enc[:-1], enc[1:]))
        dec = enc[::-1][: levels - 3]  # from the bottleneck's width: log2(size) - 4 blocks
        self.decoder_blocks = nn.ModuleList(DecoderBlock(a, b) for a, b in zip(dec[:-1], dec[1:]))
        self.decoder_mapping = nn.Conv2d(dec[-1], 8 * c, 1)
        projection = [3 * bins * bins, 2 * latent_dim] + [latent_dim] * (projection_depth - 1)
        self.skip_projection = _mlp(projection)  # the encoder-decoder's own histogram projection
        self.skip1 = ModulatedConv(4 * c, 4 * c, 3, latent_dim)  # half-size encoder features -> first head block
        self.skip2 = ModulatedConv(2 * c, 2 * c, 3, latent_dim)  # full-size encoder features -> second head block
        self.hist_projection = _mlp(projection)  # HistoGAN's (styles the head)
        self.head = nn.ModuleList([SynthesisBlock(8 * c, 4 * c, latent_dim, upsample=True),
                                   SynthesisBlock(4 * c, 2 * c, latent_dim, upsample=True)])
        self.discriminator = Discriminator(img_size, [disc_channels or 2 * c] * min(levels - 2, 4))
        self.register_buffer("gauss", gaussian_kernel(min(15, img_size - 1) | 1, 5.0), persistent=False)
        self.register_buffer("reference_images", torch.full((8, 3, img_size, img_size), 0.5))

    # ------------------------------------------------------------------ recolouring
    def histogram(self, images: torch.Tensor) -> torch.Tensor:
        return rgbuv_histogram(images, self.bins, max_size=self.hist_size)

    def forward(self, x: torch.Tensor, target: torch.Tensor, noise: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """The raw output (B, 3, H, W) for images ``x`` in [0, 1] and target histograms (B, 3, bins, bins).
        ``noise`` (B, 1, H, W) is the head's per-pixel noise (uniform in [0, 1) as the official code; drawn from
        ``generator`` when not given; each block reads its top-left crop)."""
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ConfigError(f"ReHistoGAN was built for {self.img_size} px images, got {tuple(x.shape[-2:])}")
        if noise is None:
            noise = torch.rand(len(x), 1, self.img_size, self.img_size, generator=generator, device=x.device, dtype=x.dtype)
        wh = self.hist_projection(target.flatten(1))
        ws = self.skip_projection(target.flatten(1))
        h = self.mapping(x)
        downs, ups = [], []
        for block in self.encoder_blocks:
            h, up = block(h)
            downs.append(h)
            ups.append(up)
        for block, skip in zip(self.decoder_blocks, downs[::-1]):
            h = block(h, skip)
        h = self.decoder_mapping(h)
        latents = (self.skip1(ups[1], ws), self.skip2(ups[0], ws))
        rgb = None
        for block, latent in zip(self.head, latents):
            n = noise[..., : 2 * h.shape[-2], : 2 * h.shape[-1]]
            h, rgb = block(h, rgb, wh, (n, n), latent=latent)
        return rgb

    @torch.no_grad()
    def recolor(self, images: torch.Tensor, target: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [0, 1] recoloured to ``target``: histograms (B, 3, bins, bins), or target images whose
        histograms are taken."""
        if target.shape[-2:] != (self.bins, self.bins) or target.shape[1] != 3:
            target = self.histogram(target)
        return self(images, target, generator=generator).clamp(0, 1)

    # ------------------------------------------------------------------ losses
    def targets(self, x: torch.Tensor, generator: torch.Generator | None, hist: torch.Tensor | None = None) -> torch.Tensor:
        """Target histograms: r H(x_{i-1}) + (1 - r) H(x_{i-2}) (two other images of the batch, r uniform);
        ``hist``: the batch's histograms H(x), when already computed."""
        hist = self.histogram(x) if hist is None else hist
        r = torch.rand((), generator=generator, device=x.device)
        return (r * hist.roll(1, 0) + (1 - r) * hist.roll(2, 0)).detach()

    def discriminator_loss(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """relu(1 - D(x)) + relu(1 + D(G(x, H_t))) (the official hinge loss, in our sign: D is high on real)."""
        with torch.no_grad():
            fake = self(x, self.targets(x, generator), generator=generator)
        loss = F.relu(1 - self.discriminator(x)).mean() + F.relu(1 + self.discriminator(fake)).mean()
        return loss, {}

    def generator_loss(self, x: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        source = self.histogram(x).detach()
        target = self.targets(x, generator, source)
        fake = self(x, target, generator=generator)
        adv = -self.gamma * self.discriminator(fake).mean()
        hist = self.alpha * official_histogram_loss(self.histogram(F.relu(fake)), target)
        rec = self.beta * laplacian_loss(x, fake)
        loss = adv + hist + rec
        logs = {"hist_loss": float(hist.detach()), "rec_loss": float(rec.detach())}
        if self.variance:
            var = variance_loss(x, fake, target, source, self.beta, self.gauss)
            loss = loss + var
            logs["var_loss"] = float(var.detach())
        with torch.no_grad():  # keep some real images for the sample grid
            k = min(len(x), len(self.reference_images))
            self.reference_images[:k].copy_(x[:k])
        return loss, logs

    def phases(self) -> list[Phase]:
        """Discriminator, then the recolouring networks (encoder-decoder, projections, head); Adam betas (0.5, 0.9)
        as the official optimizers."""
        nets = ["mapping", "encoder_blocks", "decoder_blocks", "decoder_mapping", "skip_projection", "skip1", "skip2",
                "hist_projection", "head"]
        return [Phase("discriminator", ["discriminator"], lambda m, x, y, g: m.discriminator_loss(x, g), betas=(0.5, 0.9)),
                Phase("recolouring", nets, lambda m, x, y, g: m.generator_loss(x, g), betas=(0.5, 0.9))]

    # ------------------------------------------------------------------ sampling and evaluation
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Recolourings of the last training images kept (``reference_images``), each to the next one's histogram."""
        ref = self.reference_images
        idx = torch.arange(n, device=ref.device) % len(ref)
        images = ref[idx]
        return self.recolor(images, self.histogram(ref[(idx + 1) % len(ref)]), generator)

    @torch.no_grad()
    def evaluate_batch(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per image, recoloured to the next image's histogram: the Hellinger distance of the output's histogram to
        the target (``hellinger``), the input's own distance to it (``hellinger_input``) and the Laplacian L1 between
        input and output (``structure``)."""
        target = self.histogram(x.roll(1, 0))
        g = torch.Generator(device=x.device).manual_seed(0)
        out = self.recolor(x, target, g)

        def dist(images: torch.Tensor) -> torch.Tensor:
            return (target.sqrt() - self.histogram(images).sqrt()).pow(2).flatten(1).sum(1).sqrt() / math.sqrt(2)

        return {"hellinger": dist(out), "hellinger_input": dist(x),
                "structure": (laplacian(x) - laplacian(out)).abs().flatten(1).mean(1)}


@register_model(paper="histogan", task="generative", input_size=(3, 64, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                num_classes=0, notes="ReHistoGAN: recolours an image to a target histogram (encoder-decoder + "
                "HistoGAN head, the official layout at capacity 16)")
def rehistogan(img_size: int = 64, in_chans: int = 3, num_classes: int = 0, **kwargs) -> ReHistoGAN:
    """ReHistoGAN; ``model.recolor(images, target_images_or_histograms)``."""
    return ReHistoGAN(img_size=img_size, in_chans=in_chans, num_classes=num_classes, **kwargs)


# ------------------------------------------------------------------------------------------- official weights
def _style(prefix: str, key: str, value: torch.Tensor) -> tuple[str, torch.Tensor]:
    """An official ``to_style`` / ``to_latent`` linear layer feeds ``weight * (style + 1)``: ours holds the + 1 in
    the bias of its style layer."""
    return f"{prefix}.style.{key}", value + 1 if key == "bias" else value


@register_converter("rehistogan", "official")
def from_official(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """mahmoudnafifi/HistoGAN's ReHistoGAN (``ED.``, ``H.``, ``G.`` of a saved ``GAN`` state dict) to ours.

    The decoder blocks' ``conv_out_rgb`` is dropped (the official head discards that RGB); the official
    discriminator (``D.``) is not ours: load with ``skip=["discriminator"]``; ``reference_images`` keeps the model's."""
    state = state.get("GAN", state)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key.removeprefix("module.")
        p = k.split(".")
        if k.startswith("D."):
            continue
        if p[0] == "ED":
            rest = ".".join(p[1:])
            if "conv_out_rgb" in rest:
                continue
            if p[1] == "hist_projection":
                out[f"skip_projection.{p[3]}.{p[4]}"] = value
            elif p[1] in ("to_latent_1", "to_latent_2"):
                name, v = _style("skip" + p[1][-1], p[2], value)
                out[name] = v
            elif p[1] in ("conv_latent_1", "conv_latent_2"):
                out[f"skip{p[1][-1]}.weight"] = value
            else:
                out[rest] = value
        elif p[0] == "H":
            out[f"hist_projection.{p[2]}.{p[3]}"] = value
        elif p[0] == "G":
            block, part = f"head.{p[2]}", p[3]
            if part in ("to_style1", "to_style2"):
                name, v = _style(f"{block}.conv{part[-1]}", p[4], value)
            elif part in ("conv1", "conv2"):
                name, v = f"{block}.{part}.weight", value
            elif part in ("to_noise1", "to_noise2"):
                name = f"{block}.{'noise' if p[4] == 'weight' else 'bias'}{part[-1]}"
                v = value.reshape(1, -1, 1, 1)
            elif part == "to_rgb":
                name, v = _style(f"{block}.to_rgb", p[5], value) if p[4] == "to_style" else (f"{block}.to_rgb.weight", value)
            else:
                name, v = k, value
            out[name] = v
        else:
            out[k] = value
    out.setdefault("reference_images", model.reference_images)  # ours only: the images the sample grid recolours
    return out
