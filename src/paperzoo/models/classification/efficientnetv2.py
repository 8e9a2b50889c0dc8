"""EfficientNetV2: Smaller Models and Faster Training (Tan & Le, 2021, arXiv:2104.00298).

Two contributions. The architecture (sec. 3.2-4, Table 4): depthwise convs are slow to train in early
layers, so the first stages use *Fused-MBConv* (the 1x1 expansion and the depthwise 3x3 fused into one
regular 3x3 conv, Fig. 2), smaller expansion ratios and 3x3 kernels only, found by a search that rewards
training speed. And *progressive learning* (sec. 5, Algorithm 1): training starts with small images and
weak regularisation (dropout, RandAugment, mixup) and raises both together stage by stage, since small
images need little regularisation; that schedule lives in the reproduction, not the model.

``efficientnetv2_s`` is Table 4; M and L are the released configurations of the official code (the paper
gives their cost only, Table 7). Fused-MBConv1 without expansion is a plain conv-BN-SiLU with a skip. BN
epsilon is 1e-3 as in the paper's code and torchvision, whose checkpoints load as they are; timm's
``efficientnetv2_*`` are the same networks with eps 1e-5 (``bn_eps=1e-5``).
"""
from __future__ import annotations

from torch import nn

from ...layers import SqueezeExcite
from ...registry import register_model
from ...weights import register_converter
from ._efficient_blocks import BlockSpec, MobileNetBase, timm_converter, torchvision_converter

__all__ = ["EfficientNetV2"]

# Rows: block ("fused" or "mbconv"), expansion, stride, output channels, layers; SE 0.25 on MBConv rows.
S = [("fused", 1, 1, 24, 2), ("fused", 4, 2, 48, 4), ("fused", 4, 2, 64, 4), ("mbconv", 4, 2, 128, 6),
     ("mbconv", 6, 1, 160, 9), ("mbconv", 6, 2, 256, 15)]
M = [("fused", 1, 1, 24, 3), ("fused", 4, 2, 48, 5), ("fused", 4, 2, 80, 5), ("mbconv", 4, 2, 160, 7),
     ("mbconv", 6, 1, 176, 14), ("mbconv", 6, 2, 304, 18), ("mbconv", 6, 1, 512, 5)]
L = [("fused", 1, 1, 32, 4), ("fused", 4, 2, 64, 7), ("fused", 4, 2, 96, 7), ("mbconv", 4, 2, 192, 10),
     ("mbconv", 6, 1, 224, 19), ("mbconv", 6, 2, 384, 25), ("mbconv", 6, 1, 640, 7)]


def _spec(kind: str, t: int, s: int, c: int, n: int) -> BlockSpec:
    if kind == "fused":
        return BlockSpec("cn" if t == 1 else "er", c, n, 3, s, float(t), skip=True)
    return BlockSpec("ir", c, n, 3, s, float(t), 0.25)


def _se(width: int, in_chs: int, ratio: float) -> nn.Module:
    return SqueezeExcite(width, rd_channels=max(1, int(in_chs * ratio)), act_layer="silu", gate_layer="sigmoid")


class EfficientNetV2(MobileNetBase):
    def __init__(self, rows: list[tuple], stem_chs: int, bn_eps: float = 1e-3, act_layer: str = "silu", **kwargs) -> None:
        super().__init__([[_spec(*r)] for r in rows], stem_chs=stem_chs, num_features=1280, act_layer=act_layer,
                         bn_eps=bn_eps, se_layer=_se, **kwargs)


register_converter("efficientnetv2", "timm")(timm_converter)
register_converter("efficientnetv2", "torchvision")(torchvision_converter(nested=True))

_TV = "https://download.pytorch.org/models/"
_NOTE = "BN eps 1e-3 (paper code, torchvision); timm's {} is the same network with eps 1e-5"


# Table 7: parameters (M) and FLOPs (B) at the inference sizes 384 (S) and 480 (M, L); dropout from the code.
@register_model(paper="efficientnetv2", input_size=(3, 384, 384), paper_params_m=22, paper_gflops=8.8,
                reference={"timm": "efficientnetv2_s", "torchvision": "efficientnet_v2_s"},
                weights={"torchvision": _TV + "efficientnet_v2_s-dd5fe13b.pth"}, notes=_NOTE.format("efficientnetv2_s"))
def efficientnetv2_s(**kwargs) -> EfficientNetV2:
    """EfficientNetV2-S (Table 4)."""
    kwargs.setdefault("drop_rate", 0.2)
    return EfficientNetV2(S, 24, **kwargs)


@register_model(paper="efficientnetv2", input_size=(3, 480, 480), paper_params_m=54, paper_gflops=24,
                reference={"timm": "efficientnetv2_m", "torchvision": "efficientnet_v2_m"},
                weights={"torchvision": _TV + "efficientnet_v2_m-dc08266a.pth"}, notes=_NOTE.format("efficientnetv2_m"))
def efficientnetv2_m(**kwargs) -> EfficientNetV2:
    """EfficientNetV2-M."""
    kwargs.setdefault("drop_rate", 0.3)
    return EfficientNetV2(M, 24, **kwargs)


@register_model(paper="efficientnetv2", input_size=(3, 480, 480), paper_params_m=120, paper_gflops=53,
                reference={"timm": "efficientnetv2_l", "torchvision": "efficientnet_v2_l"},
                weights={"torchvision": _TV + "efficientnet_v2_l-59c71312.pth"}, notes=_NOTE.format("efficientnetv2_l"))
def efficientnetv2_l(**kwargs) -> EfficientNetV2:
    """EfficientNetV2-L."""
    kwargs.setdefault("drop_rate", 0.4)
    return EfficientNetV2(L, 32, **kwargs)
