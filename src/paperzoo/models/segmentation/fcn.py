"""Fully Convolutional Networks for Semantic Segmentation (Long, Shelhamer & Darrell, 2014, arXiv:1411.4038).

The paper's contributions, as implemented here:

* **Convolutionalization** (sec. 3.1): a classifier's fully connected layers are convolutions whose kernels cover
  their whole input; VGG-16's fc6 becomes a 7x7 convolution over pool5 and fc7 a 1x1 one, so the net takes any
  input size and outputs a coarse map of class scores. ``convolutionalize`` reshapes a VGG-16 classifier's weights
  into this layout (at 224 px the map is 1x1 and equals the classifier's scores).
* **Learned upsampling** (sec. 3.3): "deconvolution" (a transposed convolution with stride f) upsamples the score
  map; it is initialised to bilinear interpolation (``bilinear_kernel``). The 2x layers inside the skip
  architecture are learned; the final upsampling is fixed to bilinear, as in the paper's released nets.
* **Skip fusion** (sec. 4.2, Fig. 3): FCN-32s upsamples the stride-32 scores in one step; FCN-16s adds scores from
  pool4 (a 1x1 conv, zero-initialised) to the 2x-upsampled stride-32 scores before a 16x upsampling; FCN-8s adds
  pool3's scores as well and upsamples by 8. Scoring layers start at zero (sec. 4.1).
* The released nets pad conv1_1 by 100 pixels so that fc6's 7x7 window fits any input, and crop each fused map by
  the offset its layers' coordinate maps give (``crop_offsets``: 5 for pool4, 9 for pool3; 19, 27, 31 for the
  final crops); max pooling rounds up (Caffe's ceil mode). Miniatures may use a smaller fc6 window and padding.

``fcn_resnet50`` / ``fcn_resnet101`` are torchvision's later FCNs: a dilated ResNet (output stride 8), a
3x3-conv "FCN head" and bilinear upsampling, with an optional auxiliary head on layer3 (``{"out", "aux"}``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PaperzooError
from ...registry import register_model
from ...weights import identity, register_converter
from ..classification.resnet import Bottleneck, ResNet

__all__ = ["FCN", "FCNVGG", "bilinear_kernel", "convolutionalize"]

# VGG-16 (configuration D) as torchvision indexes its ``features``: convs and their ReLUs, "M" max pooling.
_VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def crop_offsets(stride: int, pad: int = 100, fc6_kernel: int = 7) -> tuple[int, int, int]:
    """(crop of the pool4 scores, of the pool3 scores, of the final map) that align each map with the one it is
    added to, from the layers' coordinate maps (input = a * output + b per layer, as Caffe's ``crop`` computes):
    a 3x3 convolution padded by p shifts by 1 - p, a 2x2/2 pooling maps y to 2y + 0.5, fc6 (k x k) to y + (k-1)/2,
    a deconvolution (2f x 2f, stride f) y to (y - f + 0.5) / f. Pool5's scores sit at 32y + 16.5 + 16(k-1) - p in
    the image; pool4's at 16y + 8.5 - p, pool3's at 8y + 4.5 - p. Unused offsets are 0."""
    base = 16.5 + 16 * (fc6_kernel - 1) - pad  # image coordinate of score_fr's y = 0
    if stride == 32:
        return 0, 0, int(31.5 - base)
    up2 = base - 24  # after upscore2: 16y + base - 24
    pool4 = int((up2 - 8.5 + pad) / 16)
    if stride == 16:
        return pool4, 0, int(15.5 - up2)
    up4 = up2 - 12  # after upscore_pool4: 8y + up2 - 12
    return pool4, int((up4 - 4.5 + pad) / 8), int(7.5 - up4)



def bilinear_kernel(channels: int, size: int) -> torch.Tensor:
    """A (channels, channels, size, size) transposed-convolution weight that upsamples each channel by bilinear
    interpolation with factor ``size // 2`` (channel c to channel c only): the outer product of the 1-D tent
    ``1 - |x - center| / factor``."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    tent = 1 - (torch.arange(size, dtype=torch.float32) - center).abs() / factor
    weight = torch.zeros(channels, channels, size, size)
    weight[range(channels), range(channels)] = tent[:, None] * tent[None, :]
    return weight


class Upsample(nn.ConvTranspose2d):
    """Learned 2x "deconvolution" (kernel 4, stride 2, no bias), initialised to bilinear interpolation."""

    def __init__(self, channels: int, factor: int = 2) -> None:
        super().__init__(channels, channels, 2 * factor, stride=factor, bias=False)
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(channels, 2 * factor))


class FixedUpsample(nn.Module):
    """The final upsampling, fixed to bilinear interpolation (the paper's "final layer deconvolutional filters are
    fixed to bilinear interpolation"): a per-channel transposed convolution with a constant kernel, no weights."""

    def __init__(self, channels: int, factor: int) -> None:
        super().__init__()
        self.factor = factor
        kernel = bilinear_kernel(1, 2 * factor).expand(channels, 1, -1, -1).clone()
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(x, self.kernel.to(x.dtype), stride=self.factor, groups=x.shape[1])


def _crop(x: torch.Tensor, offset: int, like: torch.Tensor) -> torch.Tensor:
    h, w = like.shape[-2:]
    return x[:, :, offset:offset + h, offset:offset + w]


class FCNVGG(nn.Module):
    """FCN-32s/16s/8s on VGG-16 (the paper's Fig. 3). ``stride`` 32, 16 or 8 picks the skip architecture;
    ``width`` scales the convolutions and ``fc_dim`` fc6/fc7 (4096), for miniature versions of the same layout;
    ``pad`` is conv1_1's padding (100 in the released nets, so that any input of at least 1 px works)."""

    def __init__(self, stride: int = 8, num_classes: int = 21, in_chans: int = 3, width: float = 1.0,
                 fc_dim: int = 4096, pad: int = 100, fc6_kernel: int = 7, drop_rate: float = 0.5) -> None:
        super().__init__()
        if stride not in (32, 16, 8):
            raise PaperzooError(f"FCN-VGG16: stride must be 32, 16 or 8, got {stride}")
        self.stride, self.pad, self.num_classes = stride, pad, num_classes
        self.crops = crop_offsets(stride, pad, fc6_kernel)
        layers: list[nn.Module] = []
        c = in_chans
        self._pools: list[int] = []  # indices of pool3, pool4, pool5 in ``features``
        for item in _VGG16:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
                self._pools.append(len(layers))
                continue
            out = max(1, round(item * width))
            layers += [nn.Conv2d(c, out, 3, padding=pad if not layers else 1), nn.ReLU(inplace=True)]
            c = out
        self.features = nn.Sequential(*layers)
        c3, c4 = max(1, round(256 * width)), max(1, round(512 * width))
        self.fc6 = nn.Conv2d(c, fc_dim, fc6_kernel)
        self.fc7 = nn.Conv2d(fc_dim, fc_dim, 1)
        self.drop = nn.Dropout2d(drop_rate)
        self.score_fr = nn.Conv2d(fc_dim, num_classes, 1)
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(c4, num_classes, 1)
            self.upscore2 = Upsample(num_classes)
        if stride == 8:
            self.score_pool3 = nn.Conv2d(c3, num_classes, 1)
            self.upscore_pool4 = Upsample(num_classes)
        self.upscore = FixedUpsample(num_classes, stride)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        for name in ("score_fr", "score_pool4", "score_pool3"):  # sec. 4.1: scoring layers start at zero
            if hasattr(self, name):
                nn.init.zeros_(getattr(self, name).weight)

    def forward_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pool3, pool4, the fc7 output at stride 32)."""
        p3_end, p4_end = self._pools[2], self._pools[3]
        pool3 = self.features[:p3_end](x)
        pool4 = self.features[p3_end:p4_end](pool3)
        h = self.features[p4_end:](pool4)
        if min(h.shape[-2:]) < self.fc6.kernel_size[0]:
            raise PaperzooError(f"FCN-VGG16: an input of {tuple(x.shape[-2:])} px is too small for conv1 padding "
                                f"{self.pad} and a {self.fc6.kernel_size[0]}x{self.fc6.kernel_size[0]} fc6")
        h = self.drop(F.relu(self.fc6(h)))
        h = self.drop(F.relu(self.fc7(h)))
        return pool3, pool4, h

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if min(self.crops) < 0:
            k = self.fc6.kernel_size[0]
            raise PaperzooError(f"FCN-VGG16: fc6 kernel {k} and conv1 padding {self.pad} misalign the skip maps "
                                f"(crop offsets {self.crops}); use a larger padding or fc6 kernel")
        pool3, pool4, h = self.forward_features(x)
        crop4, crop3, crop_out = self.crops
        score = self.score_fr(h)
        if self.stride <= 16:
            up = self.upscore2(score)
            score = up + _crop(self.score_pool4(pool4), crop4, up)
        if self.stride == 8:
            up = self.upscore_pool4(score)
            score = up + _crop(self.score_pool3(pool3), crop3, up)
        out = _crop(self.upscore(score), crop_out, x)
        if out.shape[-2:] != x.shape[-2:]:
            raise PaperzooError(f"FCN-VGG16: an input of {tuple(x.shape[-2:])} px is too small for conv1 padding "
                                f"{self.pad} (the score map covers only {tuple(out.shape[-2:])})")
        return out


def convolutionalize(vgg_state: dict[str, torch.Tensor], prefix: str = "classifier") -> dict[str, torch.Tensor]:
    """VGG-16 classifier weights (torchvision's layout: ``features.*``, ``classifier.0/3/6``) as the fully
    convolutional net's: fc6's (4096, 512*7*7) matrix becomes a (4096, 512, 7, 7) kernel, fc7 and fc8 1x1 kernels
    (fc8 as ``score_fr``, the 1000 ImageNet classes). The reshape follows PyTorch's flattening order (channel, row,
    column), so the convolution over a 7x7 pool5 computes exactly the classifier's dot products (sec. 3.1)."""
    out = {k: v for k, v in vgg_state.items() if k.startswith("features.")}
    for src, dst in ((f"{prefix}.0", "fc6"), (f"{prefix}.3", "fc7"), (f"{prefix}.6", "score_fr")):
        w = vgg_state[f"{src}.weight"]
        k = 7 if dst == "fc6" else 1
        out[f"{dst}.weight"] = w.reshape(w.shape[0], -1, k, k)
        out[f"{dst}.bias"] = vgg_state[f"{src}.bias"]
    return out


class FCNHead(nn.Sequential):
    """torchvision's FCN head: 3x3 conv to in/4 channels, BN, ReLU, dropout 0.1, 1x1 conv to the classes."""

    def __init__(self, in_channels: int, num_classes: int) -> None:
        mid = in_channels // 4
        super().__init__(nn.Conv2d(in_channels, mid, 3, padding=1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
                         nn.Dropout(0.1), nn.Conv2d(mid, num_classes, 1))


class FCN(nn.Module):
    """A dilated ResNet (output stride 8) with an FCN head on layer4 and, optionally, an auxiliary head on layer3;
    both are upsampled bilinearly to the input size. ``model(x)`` -> ``{"out": logits}`` (+ ``"aux"``)."""

    def __init__(self, layers: tuple[int, ...], num_classes: int = 21, aux_loss: bool = False, in_chans: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = ResNet(Bottleneck, layers, num_classes=0, in_chans=in_chans, output_stride=8)
        del self.backbone.fc, self.backbone.global_pool
        self.classifier = FCNHead(2048, num_classes)
        self.aux_classifier = FCNHead(1024, num_classes) if aux_loss else None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b = self.backbone
        h = b.maxpool(b.act1(b.bn1(b.conv1(x))))
        c3 = b.layer3(b.layer2(b.layer1(h)))
        c4 = b.layer4(c3)
        size = x.shape[-2:]
        out = OrderedDict(out=F.interpolate(self.classifier(c4), size=size, mode="bilinear", align_corners=False))
        if self.aux_classifier is not None:
            out["aux"] = F.interpolate(self.aux_classifier(c3), size=size, mode="bilinear", align_corners=False)
        return out


# torchvision names every tensor as we do (backbone.*, classifier.N.*, aux_classifier.N.*).
register_converter("fcn", "torchvision")(identity)

_PAPER = dict(paper="fcn", task="segmentation", num_classes=21, input_size=(3, 500, 500))
_TV = "https://download.pytorch.org/models/"
_VGG_NOTE = ("conv1_1 padded by 100 px and crops as in the released Caffe nets; the final upsampling is a fixed "
             "bilinear kernel (not a parameter), the 2x skip upsamplings are learned")


@register_model(**_PAPER, paper_params_m=134.0, notes=_VGG_NOTE)
def fcn32s_vgg16(**kwargs: Any) -> FCNVGG:
    """FCN-32s: VGG-16 convolutionalized, stride-32 scores upsampled 32x in one step."""
    return FCNVGG(stride=32, **kwargs)


@register_model(**_PAPER, paper_params_m=134.0, notes=_VGG_NOTE)
def fcn16s_vgg16(**kwargs: Any) -> FCNVGG:
    """FCN-16s: adds pool4's scores to the 2x-upsampled stride-32 scores, then upsamples 16x."""
    return FCNVGG(stride=16, **kwargs)


@register_model(**_PAPER, paper_params_m=134.0, notes=_VGG_NOTE)
def fcn8s_vgg16(**kwargs: Any) -> FCNVGG:
    """FCN-8s: fuses pool4's and pool3's scores, then upsamples 8x."""
    return FCNVGG(stride=8, **kwargs)


def _resnet_fcn(layers: tuple[int, ...], num_classes: int, aux_loss: bool | None, pretrained: bool,
                **kwargs: Any) -> FCN:
    return FCN(layers, num_classes=num_classes, aux_loss=pretrained if aux_loss is None else aux_loss, **kwargs)


_TV_META = dict(paper="fcn", task="segmentation", num_classes=21, input_size=(3, 520, 520),
                notes="torchvision's FCN; aux_loss defaults to True with pretrained weights (they hold the aux head)")


@register_model(**_TV_META, reference={"torchvision": "fcn_resnet50"},
                weights={"torchvision": _TV + "fcn_resnet50_coco-1167a1af.pth"})
def fcn_resnet50(num_classes: int = 21, aux_loss: bool | None = None, pretrained: bool = False, **kwargs: Any) -> FCN:
    """torchvision's FCN-ResNet50 (dilated, output stride 8)."""
    return _resnet_fcn((3, 4, 6, 3), num_classes, aux_loss, pretrained, **kwargs)


@register_model(**_TV_META, reference={"torchvision": "fcn_resnet101"},
                weights={"torchvision": _TV + "fcn_resnet101_coco-7ecb50ca.pth"})
def fcn_resnet101(num_classes: int = 21, aux_loss: bool | None = None, pretrained: bool = False, **kwargs: Any) -> FCN:
    """torchvision's FCN-ResNet101 (dilated, output stride 8)."""
    return _resnet_fcn((3, 4, 23, 3), num_classes, aux_loss, pretrained, **kwargs)
