"""Very Deep VAE (Child, 2020, arXiv:2011.10650): a top-down hierarchical VAE with many stochastic layers per
resolution, trained stably at depth.

* **Bottom-up encoder** (§3, Fig. 3): a 3x3 stem, then residual bottleneck blocks (1x1 reduce, two 3x3, 1x1
  expand, GELU before each conv) with average-pool downsampling; the activations at every resolution are kept.
* **Top-down decoder**: from a learned bias at the lowest resolution, one *decoder block* per stochastic layer.
  Each block computes the prior p(z_i | z_<i) and a state update from the top-down state x, the posterior
  q(z_i | x, z_<i) from x and the encoder's activation at that resolution, samples z_i (from q when encoding,
  from p when generating), adds its 1x1 projection to x and applies a residual block. ``m`` entries of the layer
  string upsample (nearest) a lower resolution's state into a new one.
* **Likelihood**: a discretised mixture of logistics over 8-bit pixels (PixelCNN++'s, with the sub-pixel
  autoregression of the colour channels); the loss is the negative ELBO per dimension: distortion + rate
  (the KL of every layer, analytic for the two diagonal Gaussians), reported in bits per dimension.
* **Stability** (§4): the last convolution of each residual branch and of the prior is scaled by 1/sqrt(depth)
  (the prior's zero-initialised), gradients are clipped, and **updates whose gradient norm exceeds a threshold
  are skipped** (``skip_threshold``; the task's gradient skipping); an EMA of the weights (``ema_decay``) is
  evaluated.

Inputs are images in [0, 1] (NCHW); ``source="official"`` loads the weights of openai/vdvae (its key names).
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

CIFAR10 = dict(width=384, zdim=16, bottleneck=0.25, num_mixtures=10, image_size=32,
               enc_blocks="32x11,32d2,16x6,16d2,8x6,8d2,4x3,4d4,1x3",
               dec_blocks="1x1,4m1,4x2,8m4,8x5,16m8,16x10,32m16,32x21")


def parse_layers(spec: str) -> list[tuple[int, int | None, str]]:
    """The layer string of the official configs: ``RxN`` N blocks at resolution R, ``RdK`` a block that then
    downsamples by K, ``RmS`` a decoder block at R mixing in the state of resolution S."""
    out: list[tuple[int, int | None, str]] = []
    for item in spec.split(","):
        if "x" in item:
            res, n = item.split("x")
            out += [(int(res), None, "")] * int(n)
        elif "m" in item:
            res, src = item.split("m")
            out.append((int(res), int(src), "m"))
        elif "d" in item:
            res, rate = item.split("d")
            out.append((int(res), int(rate), "d"))
        else:
            out.append((int(item), None, ""))
    return out


def conv(c_in: int, c_out: int, k: int, zero: bool = False) -> nn.Conv2d:
    c = nn.Conv2d(c_in, c_out, k, padding=k // 2)
    nn.init.zeros_(c.bias)
    if zero:
        nn.init.zeros_(c.weight)
    return c


class Bottleneck(nn.Module):
    """GELU -> 1x1 -> GELU -> 3x3 -> GELU -> 3x3 -> GELU -> 1x1 (3x3s become 1x1 below 3x3 maps), residual or not,
    then optional average-pool downsampling."""

    def __init__(self, c_in: int, c_mid: int, c_out: int, residual: bool, use_3x3: bool, down: int | None = None,
                 zero_last: bool = False) -> None:
        super().__init__()
        k = 3 if use_3x3 else 1
        self.reduce, self.conv1, self.conv2 = conv(c_in, c_mid, 1), conv(c_mid, c_mid, k), conv(c_mid, c_mid, k)
        self.expand = conv(c_mid, c_out, 1, zero=zero_last)
        self.residual, self.down = residual, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for c in (self.reduce, self.conv1, self.conv2, self.expand):
            h = c(F.gelu(h))
        out = x + h if self.residual else h
        return F.avg_pool2d(out, self.down) if self.down else out


def gaussian_kl(mu_q: torch.Tensor, mu_p: torch.Tensor, log_sigma_q: torch.Tensor, log_sigma_p: torch.Tensor) -> torch.Tensor:
    """KL(N(mu_q, sigma_q^2) || N(mu_p, sigma_p^2)) per element."""
    return (log_sigma_p - log_sigma_q - 0.5 + 0.5 * (log_sigma_q.exp().pow(2) + (mu_q - mu_p).pow(2))
            / log_sigma_p.exp().pow(2))


class TopDownBlock(nn.Module):
    """One stochastic layer of the decoder: prior and state update from x, posterior from [x, encoder activation],
    z's projection added to x, then a residual block."""

    def __init__(self, res: int, mixin: int | None, width: int, zdim: int, bottleneck: float, depth: int) -> None:
        super().__init__()
        self.res, self.mixin, self.zdim = res, mixin, zdim
        mid, use_3x3 = int(width * bottleneck), res > 2
        self.posterior = Bottleneck(2 * width, mid, 2 * zdim, residual=False, use_3x3=use_3x3)
        self.prior = Bottleneck(width, mid, 2 * zdim + width, residual=False, use_3x3=use_3x3, zero_last=True)
        self.z_proj = conv(zdim, width, 1)
        self.res_block = Bottleneck(width, mid, width, residual=True, use_3x3=use_3x3)
        with torch.no_grad():
            self.z_proj.weight.mul_(math.sqrt(1 / depth))
            self.res_block.expand.weight.mul_(math.sqrt(1 / depth))

    def _state(self, xs: dict[int, torch.Tensor], ref: torch.Tensor, width: int) -> torch.Tensor:
        x = xs.get(self.res)
        if x is None:
            x = ref.new_zeros(ref.shape[0], width, self.res, self.res)
        elif x.shape[0] != ref.shape[0]:
            x = x.expand(ref.shape[0], -1, -1, -1)
        if self.mixin is not None:
            x = x + F.interpolate(xs[self.mixin][:, :x.shape[1]], scale_factor=self.res // self.mixin)
        return x

    def forward(self, xs: dict[int, torch.Tensor], acts: torch.Tensor | None, n: int, width: int,
                temperature: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor | None:
        ref = acts if acts is not None else next(iter(xs.values())).expand(n, -1, -1, -1)
        x = self._state(xs, ref, width)
        post = self.posterior(torch.cat([x, acts], 1)) if acts is not None else None
        feats = self.prior(x)
        pm, pv, update = feats[:, :self.zdim], feats[:, self.zdim:2 * self.zdim], feats[:, 2 * self.zdim:]
        x = x + update
        kl = None
        if post is not None:  # encoding: z ~ q(z | x, activations)
            qm, qv = post.chunk(2, dim=1)
            z = qm + qv.exp() * torch.randn(qm.shape, generator=generator, device=qm.device, dtype=qm.dtype)
            kl = gaussian_kl(qm, pm, qv, pv)
        else:  # generating: z ~ p(z | x), optionally at a temperature
            if temperature is not None:
                pv = pv + math.log(temperature)
            z = pm + pv.exp() * torch.randn(pm.shape, generator=generator, device=pm.device, dtype=pm.dtype)
        xs[self.res] = self.res_block(x + self.z_proj(z))
        return kl


# ------------------------------------------------------------------------------------------- likelihood
def _mixture_params(params: torch.Tensor, k: int):
    """Split (B, 10K, H, W) into logits (B, K, H, W) and per channel means, log-scales, coefficients (B, 3, K, H, W)
    (the official layout: K logits, then for each colour channel K means, K log-scales, K coefficients)."""
    b, _, h, w = params.shape
    logits = params[:, :k]
    rest = params[:, k:].reshape(b, 3, 3 * k, h, w)
    return logits, rest[:, :, :k], rest[:, :, k:2 * k].clamp_min(-7.0), torch.tanh(rest[:, :, 2 * k:])


def dmol_nll(params: torch.Tensor, x: torch.Tensor, k: int, bins: int = 256) -> torch.Tensor:
    """Negative log-likelihood per dimension (B,) of images x in [-1, 1] (B, 3, H, W) under the discretised
    mixture of ``k`` logistics with sub-pixel autoregression: mean_g += c0 r, mean_b += c1 r + c2 g."""
    logits, means, log_scales, coeffs = _mixture_params(params, k)
    xe = x.unsqueeze(2)  # (B, 3, 1, H, W)
    r, g = xe[:, 0], xe[:, 1]
    m = torch.stack([means[:, 0], means[:, 1] + coeffs[:, 0] * r, means[:, 2] + coeffs[:, 1] * r + coeffs[:, 2] * g], 1)
    centred = xe - m
    inv = torch.exp(-log_scales)
    half = 1.0 / (bins - 1)
    plus, minus = inv * (centred + half), inv * (centred - half)
    cdf_delta = torch.sigmoid(plus) - torch.sigmoid(minus)
    log_cdf_plus = plus - F.softplus(plus)  # x = -1: everything below the upper edge
    log_one_minus_cdf_min = -F.softplus(minus)  # x = 1: everything above the lower edge
    mid = inv * centred
    log_pdf_mid = mid - log_scales - 2 * F.softplus(mid)
    inner = torch.where(cdf_delta > 1e-5, torch.log(cdf_delta.clamp_min(1e-12)), log_pdf_mid - math.log((bins - 1) / 2))
    log_probs = torch.where(xe < -0.999, log_cdf_plus, torch.where(xe > 0.999, log_one_minus_cdf_min, inner))
    log_mix = log_probs.sum(1) + torch.log_softmax(logits, 1)  # (B, K, H, W)
    return -torch.logsumexp(log_mix, 1).flatten(1).sum(1) / x[0].numel()


def dmol_sample(params: torch.Tensor, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A sample in [-1, 1] (B, 3, H, W): a component by Gumbel-max, then logistic noise channel by channel."""
    logits, means, log_scales, coeffs = _mixture_params(params, k)
    u = torch.rand(logits.shape, generator=generator, device=params.device).clamp(1e-5, 1 - 1e-5)
    sel = F.one_hot((logits - torch.log(-torch.log(u))).argmax(1), k).permute(0, 3, 1, 2).unsqueeze(1).to(params.dtype)
    mean, log_s, c = ((t * sel).sum(2) for t in (means, log_scales, coeffs))
    v = torch.rand(mean.shape, generator=generator, device=params.device).clamp(1e-5, 1 - 1e-5)
    x = mean + log_s.exp() * (torch.log(v) - torch.log(1 - v))
    r = x[:, 0].clamp(-1, 1)
    g = (x[:, 1] + c[:, 0] * r).clamp(-1, 1)
    b = (x[:, 2] + c[:, 1] * r + c[:, 2] * g).clamp(-1, 1)
    return torch.stack([r, g, b], 1)


# ------------------------------------------------------------------------------------------- the model
class VDVAE(nn.Module):
    """Encoder, top-down decoder and mixture-of-logistics output of a Very Deep VAE."""

    def __init__(self, image_size: int = 32, width: int = 384, zdim: int = 16, bottleneck: float = 0.25,
                 num_mixtures: int = 10, enc_blocks: str = CIFAR10["enc_blocks"], dec_blocks: str = CIFAR10["dec_blocks"],
                 in_chans: int = 3, grad_clip: float = 200.0, skip_threshold: float = 400.0, no_bias_above: int = 64) -> None:
        super().__init__()
        if in_chans != 3:
            raise ConfigError(f"VDVAE's mixture of logistics models RGB images (in_chans=3), got {in_chans}")
        self.image_size, self.width, self.zdim, self.k = image_size, width, zdim, num_mixtures
        self.grad_clip, self.skip_threshold = grad_clip, skip_threshold
        mid = int(width * bottleneck)
        enc = parse_layers(enc_blocks)
        self.stem = conv(3, width, 3)
        self.enc_blocks = nn.ModuleList(Bottleneck(width, mid, width, residual=True, use_3x3=res > 2,
                                                   down=rate if kind == "d" else None) for res, rate, kind in enc)
        with torch.no_grad():
            for b in self.enc_blocks:
                b.expand.weight.mul_(math.sqrt(1 / len(enc)))
        dec = parse_layers(dec_blocks)
        if max(r for r, _, _ in dec) != image_size:
            raise ConfigError(f"the decoder's layer string must end at the image size {image_size}: {dec_blocks}")
        self.dec_blocks = nn.ModuleList(TopDownBlock(res, src if kind == "m" else None, width, zdim, bottleneck, len(dec))
                                        for res, src, kind in dec)
        self.resolutions = sorted({r for r, _, _ in dec})
        self.start = nn.ParameterList(nn.Parameter(torch.zeros(1, width, r, r)) for r in self.resolutions if r <= no_bias_above)
        self.gain = nn.Parameter(torch.ones(1, width, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, width, 1, 1))
        self.out_conv = conv(width, 10 * num_mixtures, 1)

    # ------------------------------------------------------------------ passes
    def encode(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        """Bottom-up activations per resolution of images in [-1, 1]."""
        h = self.stem(x)
        acts = {h.shape[2]: h}
        for block in self.enc_blocks:
            h = block(h)
            acts[h.shape[2]] = h
        return acts

    def decode(self, acts: dict[int, torch.Tensor] | None, n: int, temperature: float | None = None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, list[torch.Tensor]]:
        xs = {p.shape[2]: p for p in self.start}
        if acts is None:
            xs = {r: p.expand(n, -1, -1, -1) for r, p in xs.items()}
        kls = []
        for block in self.dec_blocks:
            kl = block(xs, None if acts is None else acts[block.res], n, self.width, temperature, generator)
            if kl is not None:
                kls.append(kl)
        return self.out_conv(xs[self.image_size] * self.gain + self.bias), kls

    def elbo(self, images: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Per sample (nats per dimension): distortion -log p(x|z), rate sum_i KL_i, and their sum, -ELBO."""
        x = images * 2 - 1
        x = torch.round((x + 1) * 127.5) / 127.5 - 1  # 8-bit values
        params, kls = self.decode(self.encode(x), len(x), generator=generator)
        distortion = dmol_nll(params, x, self.k)
        rate = sum(kl.flatten(1).sum(1) for kl in kls) / x[0].numel()
        return {"distortion": distortion, "rate": rate, "elbo": distortion + rate}

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """The negative ELBO per dimension of each image (nats)."""
        return self.elbo(images)["elbo"]

    def phases(self) -> list[Phase]:
        """One phase: the negative ELBO, gradients clipped at ``grad_clip``, updates skipped above ``skip_threshold``."""
        def loss(m, x, y, g):
            out = m.elbo(x, g)
            return out["elbo"].mean(), {"distortion": float(out["distortion"].mean().detach()),
                                        "rate": float(out["rate"].mean().detach())}
        return [Phase("elbo", [""], loss,
                      betas=(0.9, 0.9), clip=self.grad_clip, skip_above=self.skip_threshold)]

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float | None = None) -> torch.Tensor:
        params, _ = self.decode(None, n, temperature, generator)
        return (dmol_sample(params, self.k, generator) + 1) / 2

    @torch.no_grad()
    def evaluate_batch(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.elbo(x, torch.Generator(device=x.device).manual_seed(0))
        return {"bits_per_dim": out["elbo"] / math.log(2), "distortion_bpd": out["distortion"] / math.log(2),
                "rate_bpd": out["rate"] / math.log(2)}


@register_model(paper="vdvae", task="generative", input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                num_classes=0, paper_params_m=39.0,
                notes="the released CIFAR-10 configuration (width 384, 16-D latents, 33 encoder and 43 decoder blocks)")
def vdvae_cifar10(image_size: int = 32, num_classes: int = 0, img_size: int | None = None, **kwargs) -> VDVAE:
    """VDVAE in the official CIFAR-10 configuration (39M parameters)."""
    return VDVAE(image_size=img_size or image_size, **kwargs)


@register_model(paper="vdvae", task="generative", input_size=(3, 32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                num_classes=0, notes="a small VDVAE for CPU miniatures (width 32, 8-D latents)")
def vdvae(img_size: int = 32, num_classes: int = 0, width: int = 32, zdim: int = 8, num_mixtures: int = 5,
          enc_blocks: str | None = None, dec_blocks: str | None = None, **kwargs) -> VDVAE:
    """A small VDVAE: per resolution two encoder and two decoder blocks down to 1x1 (``enc_blocks``/``dec_blocks``
    in the official layer-string syntax to change it)."""
    res = [r for r in (32, 16, 8, 4, 1) if r <= img_size] if img_size >= 4 else [img_size]
    if img_size not in res:
        res = [img_size] + [r for r in (4, 1) if r < img_size]
    enc = enc_blocks or ",".join(f"{r}x2,{r}d{r // nxt}" for r, nxt in zip(res[:-1], res[1:])) + f",{res[-1]}x2"
    dec = dec_blocks or ",".join([f"{res[-1]}x2"] + [f"{r}m{prev},{r}x2" for prev, r in zip(res[::-1][:-1], res[::-1][1:])])
    return VDVAE(image_size=img_size, width=width, zdim=zdim, num_mixtures=num_mixtures, enc_blocks=enc, dec_blocks=dec,
                 **kwargs)


# ------------------------------------------------------------------------------------------- official weights
@register_converter("vdvae", "official")
def from_official(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """openai/vdvae's key names (``encoder.in_conv``, ``encoder.enc_blocks.i.c1..c4``, ``decoder.dec_blocks.i.{enc,
    prior,z_proj,resnet}``, ``decoder.bias_xs``, ``decoder.gain/bias``, ``decoder.out_net.out_conv``) to ours."""
    convs = {"c1": "reduce", "c2": "conv1", "c3": "conv2", "c4": "expand"}
    parts = {"enc": "posterior", "prior": "prior", "z_proj": "z_proj", "resnet": "res_block"}
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key.removeprefix("module.")
        p = k.split(".")
        if k.startswith("encoder.in_conv."):
            new = "stem." + p[-1]
        elif k.startswith("encoder.enc_blocks."):
            new = f"enc_blocks.{p[2]}.{convs[p[3]]}.{p[4]}"
        elif k.startswith("decoder.dec_blocks."):
            part = parts[p[3]]
            new = f"dec_blocks.{p[2]}.{part}." + (p[4] if part == "z_proj" else f"{convs[p[4]]}.{p[5]}")
        elif k.startswith("decoder.bias_xs."):
            new = f"start.{p[2]}"
        elif k in ("decoder.gain", "decoder.bias"):
            new = p[1]
        elif k.startswith("decoder.out_net.out_conv."):
            new = "out_conv." + p[-1]
        else:
            new = k
        out[new] = value
    return out
