"""MODNet: Real-Time Trimap-Free Portrait Matting via Objective Decomposition (Ke et al., 2020, arXiv:2011.11961).

The paper's point is that matting without a trimap can be split into three sub-objectives trained together
(sec. 3.1-3.3, Fig. 2), each a branch of one network:

* **Semantic estimation** (low-resolution branch S): a MobileNetV2 encoder (ours, section A) and a channel
  attention block on its 1/32 features, decoded to a coarse 1/16 foreground map s_p, supervised by the matte
  downsampled and blurred: L_s = 1/2 ||s_p - G(alpha_g)||^2 (eq. 1).
* **Detail prediction** (high-resolution branch D): from the image at 1/2 and 1/4 and the encoder's 1/2 and 1/4
  features plus S's features, a boundary detail matte d_p, supervised only inside the transition region of a
  trimap m_d (dilation minus erosion of the matte's boundary): L_d = m_d ||d_p - alpha_g||_1 (eq. 2).
* **Semantic-detail fusion** (branch F): S's and D's features and the image give the final matte alpha_p,
  supervised by an L1 loss and a compositional loss, with the boundary region up-weighted (L_alpha, eq. 3);
  the total is lambda_s L_s + lambda_d L_d + lambda_alpha L_alpha with 10, 10, 1 (the released trainer's scales).
* **SOC** (sub-objectives consistency, sec. 3.4): on unlabelled images of a new domain, the coarse semantics of
  the matte should agree with S's output, and the boundary details with a frozen copy's (``soc_losses``).

The layers follow the authors' released code (ZHKKKe/MODNet), whose released network uses a squeeze-and-excitation
block on the 1/32 features and IBNorm (half BatchNorm, half InstanceNorm) after each convolution; its checkpoints'
key layout loads with ``source="official"``. The efficient ASPP that the paper's later version describes is not in
the released code and is not implemented here.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PaperzooError
from ...registry import register_model
from ...weights import register_converter
from ..classification.mobilenetv2 import MobileNetV2

__all__ = ["MODNet", "gaussian_blur", "soc_losses", "supervised_losses", "transition_region"]


class IBNorm(nn.Module):
    """BatchNorm on the first half of the channels, InstanceNorm (no affine) on the rest."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.split = channels // 2
        self.bnorm = nn.BatchNorm2d(self.split)
        self.inorm = nn.InstanceNorm2d(channels - self.split, affine=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.bnorm(x[:, :self.split]), self.inorm(x[:, self.split:])], 1)


class ConvIBNormReLU(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, ibn: bool = True,
                 relu: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride=stride, padding=padding)]
        if ibn:
            layers.append(IBNorm(cout))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SEBlock(nn.Module):
    """Channel attention on the 1/32 features (reduction 4, no biases)."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3)))[:, :, None, None]


def _up(x: torch.Tensor, factor: float) -> torch.Tensor:
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


class LRBranch(nn.Module):
    """S: encoder features at 1/32 -> SE -> 1/16 -> 1/8 features (to D and F) -> the 1/16 semantic map."""

    def __init__(self, enc: list[int]) -> None:
        super().__init__()
        self.se_block = SEBlock(enc[4], 4)
        self.conv_lr16x = ConvIBNormReLU(enc[4], enc[3], 5, padding=2)
        self.conv_lr8x = ConvIBNormReLU(enc[3], enc[2], 5, padding=2)
        self.conv_lr = ConvIBNormReLU(enc[2], 1, 3, stride=2, padding=1, ibn=False, relu=False)

    def forward(self, enc32x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lr8x = self.conv_lr8x(_up(self.conv_lr16x(_up(self.se_block(enc32x), 2)), 2))
        return torch.sigmoid(self.conv_lr(lr8x)), lr8x


class HRBranch(nn.Module):
    """D: image and encoder features at 1/2 and 1/4, S's 1/8 features -> 1/2 features (to F) -> the detail matte."""

    def __init__(self, hr: int, enc: list[int]) -> None:
        super().__init__()
        self.tohr_enc2x = ConvIBNormReLU(enc[0], hr, 1)
        self.conv_enc2x = ConvIBNormReLU(hr + 3, hr, 3, stride=2, padding=1)
        self.tohr_enc4x = ConvIBNormReLU(enc[1], hr, 1)
        self.conv_enc4x = ConvIBNormReLU(2 * hr, 2 * hr, 3, padding=1)
        # the released code writes 3 * hr + 3: S's 1/8 features have hr (= 32) channels there
        self.conv_hr4x = nn.Sequential(ConvIBNormReLU(2 * hr + enc[2] + 3, 2 * hr, 3, padding=1),
                                       ConvIBNormReLU(2 * hr, 2 * hr, 3, padding=1),
                                       ConvIBNormReLU(2 * hr, hr, 3, padding=1))
        self.conv_hr2x = nn.Sequential(ConvIBNormReLU(2 * hr, 2 * hr, 3, padding=1),
                                       ConvIBNormReLU(2 * hr, hr, 3, padding=1),
                                       ConvIBNormReLU(hr, hr, 3, padding=1), ConvIBNormReLU(hr, hr, 3, padding=1))
        self.conv_hr = nn.Sequential(ConvIBNormReLU(hr + 3, hr, 3, padding=1),
                                     ConvIBNormReLU(hr, 1, 1, ibn=False, relu=False))

    def forward(self, img: torch.Tensor, enc2x: torch.Tensor, enc4x: torch.Tensor,
                lr8x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        img2x, img4x = _up(img, 1 / 2), _up(img, 1 / 4)
        enc2x = self.tohr_enc2x(enc2x)
        hr4x = self.conv_enc2x(torch.cat([img2x, enc2x], 1))
        hr4x = self.conv_enc4x(torch.cat([hr4x, self.tohr_enc4x(enc4x)], 1))
        hr4x = self.conv_hr4x(torch.cat([hr4x, _up(lr8x, 2), img4x], 1))
        hr2x = self.conv_hr2x(torch.cat([_up(hr4x, 2), enc2x], 1))
        detail = torch.sigmoid(self.conv_hr(torch.cat([_up(hr2x, 2), img], 1)))
        return detail, hr2x


class FusionBranch(nn.Module):
    """F: S's 1/8 features up to 1/2, joined with D's, then with the image at full size -> the alpha matte."""

    def __init__(self, hr: int, enc: list[int]) -> None:
        super().__init__()
        self.conv_lr4x = ConvIBNormReLU(enc[2], hr, 5, padding=2)
        self.conv_f2x = ConvIBNormReLU(2 * hr, hr, 3, padding=1)
        self.conv_f = nn.Sequential(ConvIBNormReLU(hr + 3, hr // 2, 3, padding=1),
                                    ConvIBNormReLU(hr // 2, 1, 1, ibn=False, relu=False))

    def forward(self, img: torch.Tensor, lr8x: torch.Tensor, hr2x: torch.Tensor) -> torch.Tensor:
        lr2x = _up(self.conv_lr4x(_up(lr8x, 2)), 2)
        f = _up(self.conv_f2x(torch.cat([lr2x, hr2x], 1)), 2)
        return torch.sigmoid(self.conv_f(torch.cat([f, img], 1)))


class MODNet(nn.Module):
    """``model(images)`` -> ``{"matte", "semantic", "detail"}`` (the semantic map at 1/16). Inputs are normalised
    images whose sides are multiples of 32. ``width`` scales the MobileNetV2 encoder, ``hr_channels`` the
    high-resolution and fusion branches (32 in the released model)."""

    def __init__(self, in_chans: int = 3, hr_channels: int = 32, width: float = 1.0) -> None:
        super().__init__()
        self.backbone = MobileNetV2(width=width, num_classes=0, in_chans=in_chans)
        b = self.backbone
        enc = [b.blocks[0][-1].conv_pw.out_channels, b.blocks[1][-1].conv_pwl.out_channels,
               b.blocks[2][-1].conv_pwl.out_channels, b.blocks[4][-1].conv_pwl.out_channels, b.num_features]
        self.enc_channels = enc
        self.lr_branch = LRBranch(enc)
        self.hr_branch = HRBranch(hr_channels, enc)
        self.f_branch = FusionBranch(hr_channels, enc)
        for m in [*self.lr_branch.modules(), *self.hr_branch.modules(), *self.f_branch.modules()]:
            if isinstance(m, nn.Conv2d):  # the released code's init: He-uniform (fan in), zero bias
                nn.init.kaiming_uniform_(m.weight, a=0, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder's 1/2, 1/4 and 1/32 features."""
        b = self.backbone
        enc2x = b.blocks[0](b.act1(b.bn1(b.conv_stem(x))))
        enc4x = b.blocks[1](enc2x)
        enc32x = b.act2(b.bn2(b.conv_head(b.blocks[2:](enc4x))))
        return enc2x, enc4x, enc32x

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.shape[-1] % 32 or x.shape[-2] % 32:
            raise PaperzooError(f"MODNet: image sides must be multiples of 32, got {tuple(x.shape[-2:])}")
        enc2x, enc4x, enc32x = self.encode(x)
        semantic, lr8x = self.lr_branch(enc32x)
        detail, hr2x = self.hr_branch(x, enc2x, enc4x, lr8x)
        return {"matte": self.f_branch(x, lr8x, hr2x), "semantic": semantic, "detail": detail}

    def freeze_norm(self) -> None:
        """Norm layers to eval mode (SOC adapts with the statistics of the trained model)."""
        for m in self.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)):
                m.eval()


# ---------------------------------------------------------------------------------------------- losses
def _gaussian_kernel(size: int = 3) -> torch.Tensor:
    """The released trainer's blur: a normalised Gaussian of sigma = 0.3 ((size - 1) / 2 - 1) + 0.8 (0.8 for 3x3),
    as scipy.ndimage's gaussian_filter of a unit impulse."""
    from scipy.ndimage import gaussian_filter

    sigma = 0.3 * ((size - 1) * 0.5 - 1) + 0.8
    impulse = np.zeros((size, size))
    impulse[size // 2, size // 2] = 1
    return torch.from_numpy(gaussian_filter(impulse, sigma)).float()


def gaussian_blur(x: torch.Tensor, size: int = 3) -> torch.Tensor:
    """G(.) of eq. 1 on (B, 1, H, W), reflection-padded."""
    k = _gaussian_kernel(size).to(x)
    return F.conv2d(F.pad(x, (size // 2,) * 4, mode="reflect"), k[None, None])


def transition_region(alpha: torch.Tensor, size: int) -> torch.Tensor:
    """The trimap's unknown band (B, 1, H, W) bool: pixels where the ``size`` x ``size`` dilation and erosion of
    the foreground (alpha > 0) differ, plus every fractional pixel."""
    fg = (alpha > 0).float()
    pad = size // 2
    dil = F.max_pool2d(fg, size, 1, pad)[..., :fg.shape[-2], :fg.shape[-1]]
    ero = -F.max_pool2d(-fg, size, 1, pad)[..., :fg.shape[-2], :fg.shape[-1]]
    return (dil != ero) | ((alpha > 0) & (alpha < 1))


def trimap_from_alpha(alpha: torch.Tensor, size: int) -> torch.Tensor:
    """A trimap (0 background, 0.5 unknown, 1 foreground) with the transition region as unknown."""
    unknown = transition_region(alpha, size)
    return torch.where(unknown, torch.full_like(alpha, 0.5), (alpha > 0.5).float())


def supervised_losses(out: dict[str, torch.Tensor], image: torch.Tensor, trimap: torch.Tensor, alpha: torch.Tensor,
                      semantic_scale: float = 10.0, detail_scale: float = 10.0,
                      matte_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Eqs. 1-3 as the released trainer computes them: L_s on the blurred 1/16 matte (MSE), L_d in the trimap's
    unknown band (L1; outside it the prediction is replaced by the trimap, so it counts zero), L_alpha = L1 +
    compositional L1 of the image times the matte, each over the whole image plus 4x over the unknown band."""
    known = (trimap < 0.5) | (trimap > 0.5)
    gt_semantic = gaussian_blur(F.interpolate(alpha, scale_factor=1 / 16, mode="bilinear"))
    loss_s = semantic_scale * F.mse_loss(out["semantic"], gt_semantic)
    pred_d = torch.where(known, trimap, out["detail"])
    loss_d = detail_scale * F.l1_loss(pred_d, torch.where(known, trimap, alpha))
    matte = out["matte"]
    band = torch.where(known, trimap, matte)
    l1 = F.l1_loss(matte, alpha) + 4.0 * F.l1_loss(band, alpha)
    comp = F.l1_loss(image * matte, image * alpha) + 4.0 * F.l1_loss(image * band, image * alpha)
    return {"loss_semantic": loss_s, "loss_detail": loss_d, "loss_matte": matte_scale * (l1 + comp)}


def soc_losses(out: dict[str, torch.Tensor], backup: dict[str, torch.Tensor], semantic_scale: float = 100.0,
               detail_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """SOC (sec. 3.4) as released: the matte's blurred 1/16 version and S's map are each other's pseudo ground truth
    (values under 0.01 zeroed, MSE), and inside the predicted boundary band (dilation - erosion of the predicted
    foreground with a window of 5% of the side) the detail and the matte stay close (L1) to a frozen copy's."""
    matte, semantic = out["matte"], out["semantic"]
    fg = (matte.detach() > 0.1).float() * F.interpolate((semantic.detach() > 0.1).float(), scale_factor=16,
                                                        mode="bilinear")
    h, w = matte.shape[-2:]
    side = int((h + w) / 2 * 0.05)
    boundary = _grey_band(fg, side)
    down = gaussian_blur(F.interpolate(matte, scale_factor=1 / 16, mode="bilinear"))
    pseudo_s = down.detach() * (down.detach() > 0.01).float()
    pseudo_m = semantic.detach() * (semantic.detach() > 0.01).float()
    loss_s = semantic_scale * (F.mse_loss(semantic, pseudo_s) + F.mse_loss(down, pseudo_m))
    count = boundary.sum((1, 2, 3)).clamp_min(1)  # an image with no predicted boundary adds 0 (NaN in the release)

    def consistency(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return ((boundary * (a - b).abs()).sum((1, 2, 3)) / count).mean()

    loss_d = detail_scale * (consistency(out["detail"], backup["detail"]) + consistency(matte, backup["matte"]))
    return {"loss_soc_semantic": loss_s, "loss_soc_detail": loss_d}


def _grey_band(fg: torch.Tensor, side: int) -> torch.Tensor:
    """Where scipy's grey dilation and erosion of ``fg`` (B, 1, H, W) with a ``side`` x ``side`` window differ, for
    the whole batch in one call (a window of size 1 along batch and channel)."""
    from scipy.ndimage import grey_dilation, grey_erosion

    if side < 1:
        return torch.zeros_like(fg)
    a = fg.detach().cpu().numpy()
    band = grey_dilation(a, size=(1, 1, side, side)) - grey_erosion(a, size=(1, 1, side, side)) != 0
    return torch.from_numpy(band).to(fg)


# ---------------------------------------------------------------------------------------------- weights
def _official_names(model: MODNet) -> dict[str, str]:
    """The released checkpoint's backbone names (``backbone.model.features.N...``, torchvision's early layout of
    MobileNetV2) -> ours."""
    names = {"features.0.0": "conv_stem", "features.0.1": "bn1", "features.18.0": "conv_head", "features.18.1": "bn2"}
    idx = 1
    for s, stage in enumerate(model.backbone.blocks):
        for b in range(len(stage)):
            parts = ("conv_dw", "bn1", "conv_pw", "bn2") if s == 0 else ("conv_pw", "bn1", "conv_dw", "bn2", "conv_pwl", "bn3")
            slots = (0, 1, 3, 4) if s == 0 else (0, 1, 3, 4, 6, 7)
            for slot, part in zip(slots, parts):
                names[f"features.{idx}.conv.{slot}"] = f"blocks.{s}.{b}.{part}"
            idx += 1
    return names


@register_converter("modnet", "official")
def _from_official(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """ZHKKKe/MODNet checkpoints: drop the ``module.`` of DataParallel, rename the encoder's tensors. The released
    LRBranch holds the same encoder, so every encoder tensor is listed twice (``backbone.`` and
    ``lr_branch.backbone.``); as ``load_state_dict`` does there, the later entry is the one that counts."""
    names = _official_names(model)
    out = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        key = key.removeprefix("lr_branch.") if key.startswith("lr_branch.backbone.") else key
        m = re.match(r"backbone\.model\.(features\.\d+(?:\.conv)?\.\d+)\.(\w+)$", key)
        if m:
            if m.group(1) not in names:
                raise PaperzooError(f"MODNet: unexpected encoder tensor '{key}' in the official checkpoint")
            key = f"backbone.{names[m.group(1)]}.{m.group(2)}"
        out[key] = value
    return out


@register_model(paper="modnet", task="matting", num_classes=1, input_size=(3, 512, 512), mean=(0.5, 0.5, 0.5),
                std=(0.5, 0.5, 0.5),
                notes="the released architecture (SE block; the paper's later e-ASPP is not in it); num_classes is "
                      "accepted for the common interface and ignored (one alpha matte)")
def modnet(in_chans: int = 3, hr_channels: int = 32, width: float = 1.0, num_classes: int = 1, **kwargs: Any) -> MODNet:
    """MODNet on MobileNetV2 (the released configuration: width 1.0, 32 high-resolution channels)."""
    if kwargs:
        raise PaperzooError(f"model 'modnet' does not take the argument '{next(iter(kwargs))}'")
    return MODNet(in_chans, hr_channels, width)

