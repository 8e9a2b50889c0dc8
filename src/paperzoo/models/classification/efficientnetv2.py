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

``tf_efficientnetv2_{s,m,l}`` (timm's names) are the same networks with TensorFlow's "SAME" padding
(``pad_type="same"``, ``layers.padding``): a strided 3x3 conv pads 0 before and 1 after an even-sized input
where PyTorch pads 1 and 1. The weights of the paper's own release (ImageNet-1k and ImageNet-21k, ported by
timm) were trained so; they give wrong outputs with symmetric padding.
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


# The paper's released weights, as timm ported them: its pretrained_cfg input sizes (train 300 / 384; timm
# evaluates at 384 / 480, Table 7's sizes), [-1, 1] normalisation and its default tag (ImageNet-21k pretraining,
# ImageNet-1k fine-tuning).
_EFFV2 = "https://github.com/rwightman/pytorch-image-models/releases/download/v0.1-effv2-weights/"
_TF_NOTE = ("TF 'SAME' padding and BN eps 1e-3, for the weights of the paper's release; timm evaluates at {}px; "
            "ImageNet-1k-only weights: pretrained='timm::" + _EFFV2 + "{}'")


@register_model(paper="efficientnetv2", input_size=(3, 300, 300), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                paper_params_m=22, paper_gflops=8.8, reference={"timm": "tf_efficientnetv2_s"},
                weights={"timm": _EFFV2 + "tf_efficientnetv2_s_21ft1k-d7dafa41.pth"},
                notes=_TF_NOTE.format(384, "tf_efficientnetv2_s-eb54923e.pth"))
def tf_efficientnetv2_s(**kwargs) -> EfficientNetV2:
    """EfficientNetV2-S (Table 4) with TensorFlow's "SAME" padding."""
    kwargs.setdefault("pad_type", "same")
    kwargs.setdefault("drop_rate", 0.2)
    return EfficientNetV2(S, 24, **kwargs)


@register_model(paper="efficientnetv2", input_size=(3, 384, 384), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                paper_params_m=54, paper_gflops=24, reference={"timm": "tf_efficientnetv2_m"},
                weights={"timm": _EFFV2 + "tf_efficientnetv2_m_21ft1k-bf41664a.pth"},
                notes=_TF_NOTE.format(480, "tf_efficientnetv2_m-cc09e0cd.pth"))
def tf_efficientnetv2_m(**kwargs) -> EfficientNetV2:
    """EfficientNetV2-M with TensorFlow's "SAME" padding."""
    kwargs.setdefault("pad_type", "same")
    kwargs.setdefault("drop_rate", 0.3)
    return EfficientNetV2(M, 24, **kwargs)


@register_model(paper="efficientnetv2", input_size=(3, 384, 384), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                paper_params_m=120, paper_gflops=53, reference={"timm": "tf_efficientnetv2_l"},
                weights={"timm": _EFFV2 + "tf_efficientnetv2_l_21ft1k-60127a9d.pth"},
                notes=_TF_NOTE.format(480, "tf_efficientnetv2_l-d664b728.pth"))
def tf_efficientnetv2_l(**kwargs) -> EfficientNetV2:
    """EfficientNetV2-L with TensorFlow's "SAME" padding."""
    kwargs.setdefault("pad_type", "same")
    kwargs.setdefault("drop_rate", 0.4)
    return EfficientNetV2(L, 32, **kwargs)
