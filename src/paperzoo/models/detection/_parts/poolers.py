"""RoI pooling: a fixed-size feature for each region, from one feature map or from an FPN pyramid.

Fast R-CNN's RoI max pooling (Sec. 2.1) divides the region's window on the stride-16 map into a 7x7 grid and
max-pools each cell (``torchvision.ops.roi_pool``); Mask R-CNN's RoIAlign samples the map bilinearly instead of
quantising (``roi_align``, sampling ratio 2 as torchvision's detectors). With several levels each region is
pooled from the level that eq. (1) of the FPN paper assigns to it (``fpn_level``). The scale of each map is
inferred from its size against the largest image of the batch (the nearest power of two), as torchvision does.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align, roi_pool

from .fpn import fpn_level, level_of_scale

__all__ = ["RoIPooler"]


def _map_scale(feature: Tensor, image_size: Sequence[int]) -> float:
    return 2.0 ** round(math.log2(feature.shape[-2] / image_size[0]))


class RoIPooler(nn.Module):
    """Pool ``output_size`` features for each RoI from the maps named ``featmap_names``.

    ``mode="align"`` uses RoIAlign (``sampling_ratio`` points per bin side), ``mode="pool"`` Fast R-CNN's RoI max
    pooling. RoIs are a (K, 5) tensor of (image index, x1, y1, x2, y2) in the padded batch's pixels.
    """

    def __init__(self, featmap_names: Sequence[str], output_size: int | Sequence[int] = 7, sampling_ratio: int = 2,
                 mode: str = "align", canonical_size: float = 224.0, canonical_level: int = 4) -> None:
        super().__init__()
        if mode not in ("align", "pool"):
            raise ValueError(f"mode must be 'align' or 'pool', got '{mode}'")
        self.featmap_names = list(featmap_names)
        self.output_size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
        self.sampling_ratio = sampling_ratio
        self.mode = mode
        self.canonical_size, self.canonical_level = canonical_size, canonical_level

    def extra_repr(self) -> str:
        return f"featmap_names={self.featmap_names}, output_size={self.output_size}, mode={self.mode!r}"

    def _pool(self, feature: Tensor, rois: Tensor, scale: float) -> Tensor:
        if self.mode == "pool":
            return roi_pool(feature, rois, self.output_size, scale)
        return roi_align(feature, rois, self.output_size, scale, self.sampling_ratio)

    def forward(self, features: Mapping[str, Tensor], rois: Tensor, image_sizes: Sequence[tuple[int, int]]) -> Tensor:
        maps = [v for k, v in features.items() if k in self.featmap_names]
        largest = (max(s[0] for s in image_sizes), max(s[1] for s in image_sizes))
        scales = [_map_scale(m, largest) for m in maps]
        if len(maps) == 1:
            return self._pool(maps[0], rois, scales[0])
        k_min, k_max = level_of_scale(scales[0]), level_of_scale(scales[-1])
        levels = fpn_level(rois[:, 1:], k_min, k_max, self.canonical_size, self.canonical_level) - k_min
        out = maps[0].new_zeros((rois.shape[0], maps[0].shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(maps, scales)):
            idx = torch.where(levels == level)[0]
            out[idx] = self._pool(feature, rois[idx], scale).to(out.dtype)
        return out
