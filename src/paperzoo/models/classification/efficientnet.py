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


def _variant(tag: str):
    width, depth, res, dropout, params, flops, tv_file, hf = _VARIANTS[tag]
    eps = 1e-3 if tag in ("b5", "b6", "b7") else 1e-5

    def builder(**kwargs) -> EfficientNet:
        kwargs.setdefault("drop_rate", dropout)
        kwargs.setdefault("bn_eps", eps)
        return EfficientNet(width, depth, **kwargs)

    name = f"efficientnet_{tag}"
    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"EfficientNet-{tag.upper()}: width x{width:g}, depth x{depth:g}, {res}x{res} input, dropout {dropout:g}."
    builder.__module__ = __name__
    weights = {"torchvision": _TV + tv_file} | ({"timm": _HF.format(hf)} if hf else {})
    notes = "" if eps == 1e-5 else "BN eps 1e-3 as torchvision (TF-ported weights); timm's efficientnet_%s uses 1e-5" % tag
    return register_model(builder, paper="efficientnet", input_size=(3, res, res), paper_params_m=params,
                          paper_gflops=flops, reference={"timm": name, "torchvision": name}, weights=weights, notes=notes)


for _tag in _VARIANTS:
    globals()[f"efficientnet_{_tag}"] = _variant(_tag)
