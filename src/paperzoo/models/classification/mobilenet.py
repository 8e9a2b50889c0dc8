"""MobileNets: Efficient CNNs for Mobile Vision Applications (Howard et al., 2017, arXiv:1704.04861).

The paper factorises a standard kxk convolution into a depthwise kxk conv (one filter per input channel)
and a 1x1 pointwise conv, which costs D_K^2 M D_F^2 + M N D_F^2 instead of D_K^2 M N D_F^2 multiply-adds
(eq. 5 vs eq. 2), 8-9x less for 3x3 kernels. The network of Table 1 is a 3x3 stem conv followed by 13
depthwise-separable layers, each conv followed by BN and a ReLU (Fig. 3), average pooling and one
fully-connected layer. Two global hyper-parameters trade accuracy for cost (sec. 3.3-3.4): the width
multiplier alpha thins every layer (cost ~ alpha^2), and the resolution multiplier rho is simply the input
size (cost ~ rho^2). ``mobilenetv1_{100,075,050,025}`` are alpha = 1, 0.75, 0.5, 0.25; any input size works.

The activation is ReLU6, as in the paper's TF-slim release and timm (``act_layer="relu"`` gives the text's
ReLU); ``MobileNetV1(full_conv=True)`` replaces each depthwise-separable pair with one full 3x3 conv, the
baseline of the paper's Table 4.
"""
from __future__ import annotations

from ...registry import register_model
from ...weights import register_converter
from ._efficient_blocks import BlockSpec, MobileNetBase, timm_converter

__all__ = ["MobileNetV1"]


def _ds(out_chs: int, stride: int = 1, repeats: int = 1, full_conv: bool = False) -> BlockSpec:
    if full_conv:
        return BlockSpec("cn", out_chs, repeats, 3, stride, skip=False)
    return BlockSpec("ds", out_chs, repeats, 3, stride, pw_act=True, skip=False)


class MobileNetV1(MobileNetBase):
    """Table 1: conv 3x3/2 (32) and 13 depthwise-separable layers (64 ... 1024), avg pool, FC."""

    def __init__(self, width: float = 1.0, full_conv: bool = False, act_layer: str = "relu6", **kwargs) -> None:
        fc = full_conv
        stages = [
            [_ds(64, 1, full_conv=fc)],
            [_ds(128, 2, 2, fc)],
            [_ds(256, 2, 2, fc)],
            [_ds(512, 2, 6, fc)],
            [_ds(1024, 2, 2, fc)],
        ]
        super().__init__(stages, stem_chs=32, num_features=0, width=width, act_layer=act_layer, **kwargs)


register_converter("mobilenet", "timm")(timm_converter)

# Table 6 (width multiplier) at 224x224: parameters (M) and mult-adds (M).
_PAPER = {100: (4.2, 569), 75: (2.6, 325), 50: (1.3, 149), 25: (0.5, 41)}
_HF = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"


def _meta(pct: int) -> dict:
    """Registered metadata: Table 6's params and mult-adds; timm has weights for width 1.0 alone."""
    params, madds = _PAPER[pct]
    meta = dict(paper_params_m=params, paper_gflops=madds / 1000)
    if pct == 100:
        meta.update(reference={"timm": "mobilenetv1_100"}, weights={"timm": _HF.format("mobilenetv1_100.ra4_e3600_r224_in1k")})
    return meta


@register_model(paper="mobilenet", **_meta(100))
def mobilenetv1_100(**kwargs) -> MobileNetV1:
    """MobileNet v1 with width multiplier 1."""
    return MobileNetV1(width=1.0, **kwargs)


@register_model(paper="mobilenet", **_meta(75))
def mobilenetv1_075(**kwargs) -> MobileNetV1:
    """MobileNet v1 with width multiplier 0.75."""
    return MobileNetV1(width=0.75, **kwargs)


@register_model(paper="mobilenet", **_meta(50))
def mobilenetv1_050(**kwargs) -> MobileNetV1:
    """MobileNet v1 with width multiplier 0.5."""
    return MobileNetV1(width=0.5, **kwargs)


@register_model(paper="mobilenet", **_meta(25))
def mobilenetv1_025(**kwargs) -> MobileNetV1:
    """MobileNet v1 with width multiplier 0.25."""
    return MobileNetV1(width=0.25, **kwargs)
