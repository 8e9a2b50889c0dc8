"""MobileNetV2: Inverted Residuals and Linear Bottlenecks (Sandler et al., 2018, arXiv:1801.04381).

The paper's block (sec. 3.3, Table 1) keeps the representation thin between blocks and expands it by a
factor t only inside: 1x1 conv to t*k channels + ReLU6, depthwise 3x3 + ReLU6, then a 1x1 projection back
to k' channels with *no* nonlinearity (the linear bottleneck, sec. 3.2: ReLU on a low-dimensional
manifold loses information). The shortcut connects the thin bottlenecks ("inverted" residual). The
network is Table 2: a 32-filter stem, 17 bottleneck blocks (t, c, n, s rows), a 1x1 conv to 1280 and a
classifier. The width multiplier scales every layer but the last conv, which stays at 1280 for
multipliers below one (sec. 6.1). ``linear_bottleneck=False`` adds the ReLU6 after the projection, the
ablation of Fig. 6a.
"""
from __future__ import annotations

from ...layers import make_divisible
from ...registry import register_model
from ...weights import register_converter
from ._efficient_blocks import BlockSpec, MobileNetBase, timm_converter, torchvision_converter

__all__ = ["MobileNetV2"]

# Table 2: expansion t, output channels c, repeats n, first stride s (t=1 is a block without expansion).
_TABLE = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


class MobileNetV2(MobileNetBase):
    def __init__(self, width: float = 1.0, act_layer: str = "relu6", **kwargs) -> None:
        stages = [[BlockSpec("ds" if t == 1 else "ir", c, n, 3, s, float(t))] for t, c, n, s in _TABLE]
        num_features = max(1280, make_divisible(1280 * width))
        super().__init__(stages, stem_chs=32, num_features=num_features, width=width, act_layer=act_layer, **kwargs)


register_converter("mobilenetv2", "timm")(timm_converter)
register_converter("mobilenetv2", "torchvision")(torchvision_converter(nested=False, container=lambda b: "conv", split_last=True))

_HF = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"


@register_model(paper="mobilenetv2", paper_params_m=3.4, paper_gflops=0.300,
                reference={"timm": "mobilenetv2_100", "torchvision": "mobilenet_v2"},
                weights={"torchvision": "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
                         "timm": _HF.format("mobilenetv2_100.ra_in1k")})
def mobilenetv2_100(**kwargs) -> MobileNetV2:
    """MobileNetV2 1.0 (Table 4: 3.4M parameters, 300M multiply-adds)."""
    return MobileNetV2(1.0, **kwargs)


@register_model(paper="mobilenetv2", reference={"timm": "mobilenetv2_050"},
                weights={"timm": _HF.format("mobilenetv2_050.lamb_in1k")})
def mobilenetv2_050(**kwargs) -> MobileNetV2:
    """MobileNetV2 with width multiplier 0.5 (the last conv keeps 1280 channels)."""
    return MobileNetV2(0.5, **kwargs)


@register_model(paper="mobilenetv2", paper_params_m=6.9, paper_gflops=0.585, reference={"timm": "mobilenetv2_140"},
                weights={"timm": _HF.format("mobilenetv2_140.ra_in1k")})
def mobilenetv2_140(**kwargs) -> MobileNetV2:
    """MobileNetV2 1.4 (Table 4: 6.9M parameters, 585M multiply-adds)."""
    return MobileNetV2(1.4, **kwargs)
