"""Anchors (Faster R-CNN, Sec. 3.1.1): at every position of a feature map, k reference boxes centred on that
position, one per combination of scale and aspect ratio.

The paper uses k = 9 (Sec. 3.3): three scales, box areas 128^2, 256^2 and 512^2, times three aspect ratios,
1:1, 1:2 and 2:1, on one stride-16 map. With FPN (FPN paper, Sec. 4.1) each pyramid level gets one scale,
32^2 on P2 up to 512^2 on P6, and the same three ratios: 3 anchors per position. A scale s and ratio r = h/w give
w = s / sqrt(r) and h = s * sqrt(r) (area s^2), rounded to whole pixels; the anchor at grid cell (i, j) of a
map with stride (s_y, s_x) is that box shifted to (j * s_x, i * s_y). Anchors are ordered (row, column, anchor)
per level and levels are concatenated, the order in which the RPN head's outputs are flattened.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["AnchorGenerator", "cell_anchors"]


def cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float], dtype: torch.dtype = torch.float32,
                 device: torch.device | None = None) -> Tensor:
    """The zero-centred anchors (XYXY) of one position: ratio-major, ``len(aspect_ratios) * len(sizes)`` rows."""
    scales = torch.as_tensor(sizes, dtype=dtype, device=device)
    ratios = torch.as_tensor(aspect_ratios, dtype=dtype, device=device)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (h_ratios[:, None] * scales[None, :]).view(-1)
    return (torch.stack([-ws, -hs, ws, hs], dim=1) / 2).round()


class AnchorGenerator(nn.Module):
    """Anchors for a list of feature maps: level i gets every combination of ``sizes[i]`` (square roots of the
    areas) and ``aspect_ratios[i]`` (h / w). The anchors depend on the padded batch size only, so one set serves
    every image of a batch."""

    def __init__(self, sizes: Sequence[Sequence[float]] = ((128, 256, 512),),
                 aspect_ratios: Sequence[Sequence[float]] = ((0.5, 1.0, 2.0),)) -> None:
        super().__init__()
        if len(sizes) != len(aspect_ratios):
            raise ValueError(f"one tuple of sizes and of aspect ratios per level: got {len(sizes)} and {len(aspect_ratios)}")
        self.sizes = tuple(tuple(s) for s in sizes)
        self.aspect_ratios = tuple(tuple(r) for r in aspect_ratios)
        self.cell_anchors = [cell_anchors(s, r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def num_anchors_per_location(self) -> list[int]:
        return [len(s) * len(r) for s, r in zip(self.sizes, self.aspect_ratios)]

    def forward(self, image_size: Sequence[int], feature_maps: Sequence[Tensor]) -> Tensor:
        """All anchors (sum over levels of H_l * W_l * k_l, 4) for a padded batch of size ``image_size`` (H, W)."""
        if len(feature_maps) != len(self.cell_anchors):
            raise ValueError(f"{len(feature_maps)} feature maps but anchors for {len(self.cell_anchors)} levels")
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        out = []
        for fmap, base in zip(feature_maps, self.cell_anchors):
            gh, gw = fmap.shape[-2:]
            stride_h, stride_w = image_size[0] // gh, image_size[1] // gw
            shift_y, shift_x = torch.meshgrid(torch.arange(gh, dtype=torch.int32, device=device) * stride_h,
                                              torch.arange(gw, dtype=torch.int32, device=device) * stride_w, indexing="ij")
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=-1).reshape(-1, 1, 4)
            out.append((shifts + base.to(dtype=dtype, device=device).view(1, -1, 4)).reshape(-1, 4))
        return torch.cat(out)
