"""EfficientNet: Rethinking Model Scaling for CNNs (Tan & Le, 2019, arXiv:1905.11946).

The paper's contribution is *compound scaling* (sec. 3.3, eq. 3): depth d = alpha^phi, width
w = beta^phi and resolution r = gamma^phi grow together under alpha * beta^2 * gamma^2 ~ 2, so that
FLOPs grow by ~2^phi, with alpha = 1.2, beta = 1.1, gamma = 1.15 found by a grid search on the baseline.
The baseline EfficientNet-B0 (Table 1) was found by multi-objective NAS: a 3x3 stem, seven stages of
MBConv blocks (MobileNetV2's inverted residual with squeeze-and-excite of ratio 1/4 of the block input
and swish activations), a 1x1 conv to 1280 channels, pooling, dropout and a classifier. B1-B7 apply the
released (width, depth, resolution, dropout) coefficients; channels are rounded to multiples of 8 and
repeats rounded up. ``EfficientNet(width, depth)`` builds any point of the scaling space, which is what
the reproduction compares.

References: timm ``efficientnet_b*`` (BN eps 1e-5) and torchvision ``efficientnet_b*``, which equals timm
for B0-B4 and uses BN eps 1e-3 for B5-B7, whose weights were ported from the paper's TF checkpoints. Our
defaults follow torchvision, so that each variant's published torchvision weights load as they are.
"""
from __future__ import annotations

from torch import nn

from ...layers import SqueezeExcite, make_divisible
from ...registry import register_model
from ...weights import register_converter
from ._efficient_blocks import BlockSpec, MobileNetBase, timm_converter, torchvision_converter

__all__ = ["EfficientNet"]

# Table 1 (stages 2-8): MBConv expansion, kernel, stride, output channels, layers.
B0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4),
      (6, 3, 1, 320, 1)]


def _se(width: int, in_chs: int, ratio: float) -> nn.Module:
    return SqueezeExcite(width, rd_channels=max(1, int(in_chs * ratio)), act_layer="silu", gate_layer="sigmoid")


class EfficientNet(MobileNetBase):
    """B0's stages scaled by ``width`` (channels) and ``depth`` (layers); resolution is the input size."""

    def __init__(self, width: float = 1.0, depth: float = 1.0, act_layer: str = "silu", se: bool = True,
                 **kwargs) -> None:
        stages = [[BlockSpec("ds" if t == 1 else "ir", c, n, k, s, float(t), 0.25 if se else 0.0)] for t, k, s, c, n in B0]
        super().__init__(stages, stem_chs=32, num_features=make_divisible(1280 * width), width=width, depth=depth, act_layer=act_layer,
                         se_layer=_se, **kwargs)


register_converter("efficientnet", "timm")(timm_converter)
register_converter("efficientnet", "torchvision")(torchvision_converter(nested=True))

_TV = "https://download.pytorch.org/models/"
_HF = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"
# name: width, depth, resolution, dropout; paper Table 2 params (M) and FLOPs (B); torchvision and timm weights.
_VARIANTS = {
    "b0": (1.0, 1.0, 224, 0.2, 5.3, 0.39, "efficientnet_b0_rwightman-7f5810bc.pth", "efficientnet_b0.ra_in1k"),
    "b1": (1.0, 1.1, 240, 0.2, 7.8, 0.70, "efficientnet_b1_rwightman-bac287d4.pth", "efficientnet_b1.ft_in1k"),
    "b2": (1.1, 1.2, 260, 0.3, 9.2, 1.0, "efficientnet_b2_rwightman-c35c1473.pth", "efficientnet_b2.ra_in1k"),
    "b3": (1.2, 1.4, 300, 0.3, 12, 1.8, "efficientnet_b3_rwightman-b3899882.pth", "efficientnet_b3.ra2_in1k"),
    "b4": (1.4, 1.8, 380, 0.4, 19, 4.2, "efficientnet_b4_rwightman-23ab8bcd.pth", "efficientnet_b4.ra2_in1k"),
    "b5": (1.6, 2.2, 456, 0.4, 30, 9.9, "efficientnet_b5_lukemelas-1a07897c.pth", None),
    "b6": (1.8, 2.6, 528, 0.5, 43, 19, "efficientnet_b6_lukemelas-24a108a5.pth", None),
    "b7": (2.0, 3.1, 600, 0.5, 66, 37, "efficientnet_b7_lukemelas-c5b4e57e.pth", None),
}


def _efficientnet(tag: str, **kwargs) -> EfficientNet:
    """EfficientNet-B<tag>: B0 scaled by Table 2's width and depth coefficients, with its dropout; BN eps 1e-3
    for B5-B7, whose only weights (torchvision's) are ported from TensorFlow."""
    width, depth, _, dropout, *_ = _VARIANTS[tag]
    kwargs.setdefault("drop_rate", dropout)
    kwargs.setdefault("bn_eps", _eps(tag))
    return EfficientNet(width, depth, **kwargs)


def _eps(tag: str) -> float:
    return 1e-3 if tag in ("b5", "b6", "b7") else 1e-5


def _meta(tag: str) -> dict:
    """Registered metadata: resolution, Table 2's params and FLOPs, torchvision and timm weights."""
    _, _, res, _, params, flops, tv_file, hf = _VARIANTS[tag]
    name = f"efficientnet_{tag}"
    weights = {"torchvision": _TV + tv_file} | ({"timm": _HF.format(hf)} if hf else {})
    notes = "" if _eps(tag) == 1e-5 else "BN eps 1e-3 as torchvision (TF-ported weights); timm's efficientnet_%s uses 1e-5" % tag
    return dict(input_size=(3, res, res), paper_params_m=params, paper_gflops=flops,
                reference={"timm": name, "torchvision": name}, weights=weights, notes=notes)


@register_model(paper="efficientnet", **_meta("b0"))
def efficientnet_b0(**kwargs) -> EfficientNet:
    """EfficientNet-B0: width x1, depth x1, 224x224 input, dropout 0.2."""
    return _efficientnet("b0", **kwargs)


@register_model(paper="efficientnet", **_meta("b1"))
def efficientnet_b1(**kwargs) -> EfficientNet:
    """EfficientNet-B1: width x1, depth x1.1, 240x240 input, dropout 0.2."""
    return _efficientnet("b1", **kwargs)


@register_model(paper="efficientnet", **_meta("b2"))
def efficientnet_b2(**kwargs) -> EfficientNet:
    """EfficientNet-B2: width x1.1, depth x1.2, 260x260 input, dropout 0.3."""
    return _efficientnet("b2", **kwargs)


@register_model(paper="efficientnet", **_meta("b3"))
def efficientnet_b3(**kwargs) -> EfficientNet:
    """EfficientNet-B3: width x1.2, depth x1.4, 300x300 input, dropout 0.3."""
    return _efficientnet("b3", **kwargs)


@register_model(paper="efficientnet", **_meta("b4"))
def efficientnet_b4(**kwargs) -> EfficientNet:
    """EfficientNet-B4: width x1.4, depth x1.8, 380x380 input, dropout 0.4."""
    return _efficientnet("b4", **kwargs)


@register_model(paper="efficientnet", **_meta("b5"))
def efficientnet_b5(**kwargs) -> EfficientNet:
    """EfficientNet-B5: width x1.6, depth x2.2, 456x456 input, dropout 0.4."""
    return _efficientnet("b5", **kwargs)


@register_model(paper="efficientnet", **_meta("b6"))
def efficientnet_b6(**kwargs) -> EfficientNet:
    """EfficientNet-B6: width x1.8, depth x2.6, 528x528 input, dropout 0.5."""
    return _efficientnet("b6", **kwargs)


@register_model(paper="efficientnet", **_meta("b7"))
def efficientnet_b7(**kwargs) -> EfficientNet:
    """EfficientNet-B7: width x2, depth x3.1, 600x600 input, dropout 0.5."""
    return _efficientnet("b7", **kwargs)
