"""Feature Pyramid Networks for Object Detection (Lin et al., 2016, arXiv:1612.03144).

The paper's contribution is a pyramid with strong semantics at every scale, built from a backbone's own
multi-scale maps C_2..C_5 (Sec. 3, Fig. 3):

* a **lateral** 1x1 conv brings each C_i to d = 256 channels;
* a **top-down pathway** upsamples the coarser merged map by 2 (nearest neighbour) and adds the lateral map;
* a 3x3 conv on each merged map (to reduce the aliasing of upsampling) gives P_i; no non-linearities.

For Faster R-CNN (Sec. 4.1) the RPN also uses P_6, a stride-2 subsampling of P_5, returned as the extra level
``"pool"`` (torchvision's name). The RoI head pools a region of width w and height h from P_k with

    k = floor(k_0 + log2(sqrt(w h) / 224)),   k_0 = 4                                              (eq. 1)

clamped to the levels that exist (``fpn_level``). ``norm_layer`` adds a norm after every conv (the
``fasterrcnn_resnet50_fpn_v2`` recipe uses BatchNorm; the paper has none).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ....layers import ConvNormAct

__all__ = ["FeaturePyramid", "fpn_level"]


def fpn_level(boxes: Tensor, k_min: int, k_max: int, canonical_size: float = 224.0, canonical_level: int = 4,
              eps: float = 1e-6) -> Tensor:
    """Eq. (1): the pyramid level k (int64) of each XYXY box, clamped to [k_min, k_max]. ``eps`` keeps a box
    of exactly 224 * 2^j pixels on level 4 + j against rounding in log2 (torchvision adds the same 1e-6)."""
    scale = torch.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    k = torch.floor(canonical_level + torch.log2(scale / canonical_size) + torch.tensor(eps, dtype=scale.dtype))
    return torch.clamp(k, min=k_min, max=k_max).to(torch.int64)


class FeaturePyramid(nn.Module):
    """FPN neck: takes a backbone's ordered dict of maps (finest first, e.g. ``features_only=True, as_dict=True``)
    and returns an ordered dict with the same keys holding P_i (``out_channels`` each), plus ``"pool"`` (P_6)
    when ``extra_pool``.

    Module names: ``lateral.i`` (1x1) and ``output.i`` (3x3), each a ``ConvNormAct`` without activation.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256,
                 norm_layer: Callable[[int], nn.Module] | None = None, extra_pool: bool = True) -> None:
        super().__init__()
        if not in_channels or any(c <= 0 for c in in_channels):
            raise ValueError(f"FPN needs positive input channels, got {list(in_channels)}")
        bias = norm_layer is None
        conv = dict(bias=bias, norm_layer=norm_layer, act_layer=None)
        self.lateral = nn.ModuleList(ConvNormAct(c, out_channels, 1, padding=0, **conv) for c in in_channels)
        self.output = nn.ModuleList(ConvNormAct(out_channels, out_channels, 3, **conv) for _ in in_channels)
        self.out_channels = out_channels
        self.extra_pool = extra_pool
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: OrderedDict[str, Tensor]) -> OrderedDict[str, Tensor]:
        names, maps = list(features.keys()), list(features.values())
        if len(maps) != len(self.lateral):
            raise ValueError(f"FPN built for {len(self.lateral)} levels, got {len(maps)}")
        merged = self.lateral[-1](maps[-1])
        out = [self.output[-1](merged)]
        for i in range(len(maps) - 2, -1, -1):  # top-down: coarse to fine
            lateral = self.lateral[i](maps[i])
            merged = lateral + F.interpolate(merged, size=lateral.shape[-2:], mode="nearest")
            out.insert(0, self.output[i](merged))
        if self.extra_pool:
            names.append("pool")
            out.append(F.max_pool2d(out[-1], kernel_size=1, stride=2, padding=0))
        return OrderedDict(zip(names, out))


def level_of_scale(scale: float) -> int:
    """The pyramid level of a feature map at ``scale`` = 1 / stride (stride 2^k -> k)."""
    return int(-math.log2(scale))
