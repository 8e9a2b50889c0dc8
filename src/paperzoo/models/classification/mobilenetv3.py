"""Searching for MobileNetV3 (Howard et al., 2019, arXiv:1905.02244).

The networks were found by platform-aware NAS and NetAdapt and then edited by hand; what this file
implements is the result, Tables 1 (Large) and 2 (Small), built from MobileNetV2's inverted residual
block with three changes:

* **h-swish** (sec. 5.2): x * ReLU6(x + 3) / 6, a cheap stand-in for swish, used only in the deeper half
  (rows marked HS; the others use ReLU, RE).
* **Squeeze-and-excite** in some blocks (sec. 5.3): the bottleneck is 1/4 of the expanded width (rounded to
  multiples of 8), with ReLU and a hard-sigmoid gate, placed after the depthwise conv.
* **An efficient last stage** (sec. 5.1): the 1x1 conv to 960 (576) channels is followed by pooling, and
  only then by a 1x1 conv to 1280 (1024) features, without BN; the stem has only 16 filters.

``act_layer`` and ``se_layer`` replace the paper's choices everywhere (``act_layer="relu"`` with
``se=False`` is the ablation of the reproduction). BN epsilon is timm's 1e-5; torchvision's checkpoints
were trained with 1e-3 (``bn_eps=1e-3``).
"""
from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ...layers import SqueezeExcite, make_divisible
from ...registry import register_model
from ...weights import register_converter
from ._efficient_blocks import BlockSpec, ConvBnAct, MobileNetBase, timm_converter, torchvision_converter

__all__ = ["MobileNetV3"]

# Tables 1 and 2, one row per bottleneck: kernel, expansion size, output channels, SE, NL, stride.
LARGE = [
    (3, 16, 16, False, "RE", 1),
    (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
    (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1),
]
SMALL = [
    (3, 16, 16, True, "RE", 2),
    (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1),
    (5, 288, 96, True, "HS", 2), (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1),
]


def _stages(rows: Sequence[tuple], last_conv: int, stem: int, act: str | None, se: bool) -> list[list[BlockSpec]]:
    """Group the table's rows into stages of equal output width; expansion sizes become ratios of the
    block input. The body ends with the 1x1 conv (960 or 576 channels) as its own stage."""
    stages: list[list[BlockSpec]] = []
    in_chs = stem
    for k, exp, out, use_se, nl, s in rows:
        spec = BlockSpec("ds" if exp == in_chs else "ir", out, 1, k, s, exp / in_chs, 0.25 if use_se and se else 0.0,
                         act or ("relu" if nl == "RE" else "hard_swish"))
        if stages and stages[-1][-1].out_chs == out:
            stages[-1].append(spec)
        else:
            stages.append([spec])
        in_chs = out
    stages.append([BlockSpec("cn", last_conv, 1, 1, act=act or "hard_swish", skip=False)])
    return stages


def _se(width: int, in_chs: int, ratio: float) -> nn.Module:
    return SqueezeExcite(width, rd_channels=make_divisible(width * ratio, 8), act_layer="relu", gate_layer="hard_sigmoid")


class MobileNetV3(MobileNetBase):
    def __init__(self, small: bool = False, width: float = 1.0, act_layer: str | None = None, se: bool = True,
                 **kwargs) -> None:
        rows, last_conv, num_features = (SMALL, 576, 1024) if small else (LARGE, 960, 1280)
        super().__init__(_stages(rows, last_conv, 16, act_layer, se), stem_chs=16, num_features=num_features,
                         width=width, fix_stem=width < 0.75, act_layer=act_layer or "hard_swish", se_layer=_se,
                         head_after_pool=True, **kwargs)


def _tv_container(block: nn.Module) -> str:
    return "" if isinstance(block, ConvBnAct) else "block"


register_converter("mobilenetv3", "timm")(timm_converter)
register_converter("mobilenetv3", "torchvision")(
    torchvision_converter(nested=False, container=_tv_container, head="linear", classifier="classifier.3"))

_HF = "https://huggingface.co/timm/{}/resolve/main/model.safetensors"
_NOTE = "torchvision's weights were trained with BN eps 1e-3: create_model(..., bn_eps=1e-3) to load them"


def _meta(name: str, tv: str | None, hf: str | None, params: float, madds: float) -> dict:
    ref = {"timm": name} | ({"torchvision": tv} if tv else {})
    return dict(paper="mobilenetv3", paper_params_m=params, paper_gflops=madds / 1000, reference=ref,
                weights={"timm": _HF.format(hf)} if hf else {}, notes=_NOTE if tv else "")


# Table 3: parameters (M) and multiply-adds (M) at 224x224.
@register_model(**_meta("mobilenetv3_large_100", "mobilenet_v3_large", "mobilenetv3_large_100.ra_in1k", 5.4, 219))
def mobilenetv3_large_100(**kwargs) -> MobileNetV3:
    """MobileNetV3-Large 1.0."""
    return MobileNetV3(small=False, width=1.0, **kwargs)


@register_model(**_meta("mobilenetv3_large_075", None, None, 4.0, 155))
def mobilenetv3_large_075(**kwargs) -> MobileNetV3:
    """MobileNetV3-Large 0.75."""
    return MobileNetV3(small=False, width=0.75, **kwargs)


@register_model(**_meta("mobilenetv3_small_100", "mobilenet_v3_small", "mobilenetv3_small_100.lamb_in1k", 2.5, 56))
def mobilenetv3_small_100(**kwargs) -> MobileNetV3:
    """MobileNetV3-Small 1.0."""
    return MobileNetV3(small=True, width=1.0, **kwargs)


@register_model(**_meta("mobilenetv3_small_075", None, "mobilenetv3_small_075.lamb_in1k", 2.0, 44))
def mobilenetv3_small_075(**kwargs) -> MobileNetV3:
    """MobileNetV3-Small 0.75."""
    return MobileNetV3(small=True, width=0.75, **kwargs)
