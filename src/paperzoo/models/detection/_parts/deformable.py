"""Multi-scale deformable attention (Deformable DETR, Zhu et al. 2020, arXiv:2010.04159, Sec. 4.1, eqs. 2-3).

Each query attends to a handful of sampled points instead of to every key: from the query feature z_q a linear
layer predicts, per head m, level l and point k, a 2-D **sampling offset** Delta p_mlqk and an **attention weight**
A_mlqk (a softmax over the L x K points of the head). The sampled locations are the query's **reference point**
p^_q (normalised to [0, 1], the same point on every level) plus the offset divided by the level's (width, height),
so that offsets count in that level's pixels; the values W'_m x of each level are read there by bilinear
interpolation, and the head's output is their weighted sum (eq. 3):

    MSDeformAttn(z_q, p^_q, {x^l}) = sum_m W_m [ sum_l sum_k A_mlqk W'_m x^l(phi_l(p^_q) + Delta p_mlqk) ].

The sampling is ``F.grid_sample`` (bilinear, zero padding, ``align_corners=False``: a location u in [0, 1] maps to
pixel coordinate u x W - 0.5, pixel centres at (i + 0.5) / W), as the official pure-PyTorch
``ms_deform_attn_core_pytorch``; no custom kernel. The initialisation is the official one: offsets' weights zero and
their biases pointing, per head, in one of ``heads`` directions at distances 1..K; attention weights uniform.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ....errors import ConfigError

__all__ = ["MSDeformAttn", "encoder_reference_points", "ms_deform_attn", "valid_ratios"]


def ms_deform_attn(value: Tensor, shapes: Sequence[tuple[int, int]], locations: Tensor, weights: Tensor) -> Tensor:
    """Eq. 3's inner sums. ``value`` (N, S, M, D): per head the values of all levels flattened and concatenated in
    ``shapes`` ((H_l, W_l) each); ``locations`` (N, Lq, M, L, K, 2) as (x, y) in [0, 1]; ``weights`` (N, Lq, M, L, K).
    Returns (N, Lq, M x D). One ``grid_sample`` per level (levels are few; batch, heads and queries are batched),
    each level's weighted sum accumulated at once (no stack of all levels' samples)."""
    n, _, m, d = value.shape
    _, lq, _, levels, points, _ = locations.shape
    grids = 2 * locations - 1  # grid_sample's [-1, 1]
    w = weights.transpose(1, 2).reshape(n * m, 1, lq, levels, points)
    out = None
    for level, (v, (h, wd)) in enumerate(zip(value.split([h * wd for h, wd in shapes], 1), shapes)):
        v = v.flatten(2).transpose(1, 2).reshape(n * m, d, h, wd)
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (N M, Lq, K, 2)
        sampled = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (N M, D, Lq, K)
        part = (sampled * w[..., level, :]).sum(-1)  # (N M, D, Lq)
        out = part if out is None else out + part
    return out.view(n, m * d, lq).transpose(1, 2)


def valid_ratios(mask: Tensor) -> Tensor:
    """The share of a padded map (N, H, W; True on real pixels) that is image: (N, 2) as (width, height) ratios."""
    h, w = mask.shape[-2:]
    return torch.stack((mask[:, 0, :].sum(1) / w, mask[:, :, 0].sum(1) / h), -1).to(torch.float32)


def encoder_reference_points(shapes: Sequence[tuple[int, int]], ratios: Tensor) -> Tensor:
    """The encoder's reference points: every pixel centre of every level, normalised by the image's part of that level
    and then mapped into each level's padded frame by its valid ratios. ``ratios`` (N, L, 2); returns (N, S, L, 2)."""
    points = []
    for level, (h, w) in enumerate(shapes):
        y, x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=ratios.dtype, device=ratios.device),
                              torch.linspace(0.5, w - 0.5, w, dtype=ratios.dtype, device=ratios.device), indexing="ij")
        points.append(torch.stack((x.reshape(-1)[None] / (ratios[:, None, level, 0] * w),
                                   y.reshape(-1)[None] / (ratios[:, None, level, 1] * h)), -1))
    return torch.cat(points, 1)[:, :, None] * ratios[:, None]


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention (eq. 3): ``heads`` heads, ``levels`` levels, ``points`` sampling points per
    head and level. Names as the official module: ``sampling_offsets``, ``attention_weights``, ``value_proj``,
    ``output_proj``."""

    def __init__(self, d: int = 256, heads: int = 8, levels: int = 4, points: int = 4) -> None:
        super().__init__()
        if d % heads:
            raise ConfigError(f"d_model ({d}) must be divisible by the number of heads ({heads})")
        self.d, self.heads, self.levels, self.points = d, heads, levels, points
        self.sampling_offsets = nn.Linear(d, heads * levels * points * 2)
        self.attention_weights = nn.Linear(d, heads * levels * points)
        self.value_proj = nn.Linear(d, d)
        self.output_proj = nn.Linear(d, d)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        dev = self.sampling_offsets.bias.device
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(self.heads, dtype=torch.float32, device=dev) * (2 * math.pi / self.heads)
        grid = torch.stack((theta.cos(), theta.sin()), -1)
        grid = (grid / grid.abs().max(-1, keepdim=True).values)[:, None, None, :].repeat(1, self.levels, self.points, 1)
        grid *= torch.arange(1, self.points + 1, dtype=torch.float32, device=dev)[None, None, :, None]
        self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def offset_normalizer(self, shapes: Sequence[tuple[int, int]], like: Tensor) -> Tensor:
        """Each level's (width, height) (L, 2): an offset of 1 moves a sampling point by one pixel of its level."""
        return torch.tensor([[w, h] for h, w in shapes], dtype=like.dtype, device=like.device)

    def forward(self, query: Tensor, reference: Tensor, value: Tensor, shapes: Sequence[tuple[int, int]],
                value_valid: Tensor | None = None) -> Tensor:
        """``query`` (N, Lq, d) (position embedding already added), ``reference`` (N, Lq, L, 2) in [0, 1] of each
        level's padded frame, ``value`` (N, S, d) the levels flattened, ``value_valid`` (N, S) True on real pixels
        (padding contributes zeros). Returns (N, Lq, d)."""
        n, lq, _ = query.shape
        m, lv, k = self.heads, self.levels, self.points
        v = self.value_proj(value)
        if value_valid is not None:
            v = v.masked_fill(~value_valid[..., None], 0.0)
        v = v.view(n, v.shape[1], m, self.d // m)
        offsets = self.sampling_offsets(query).view(n, lq, m, lv, k, 2)
        weights = self.attention_weights(query).view(n, lq, m, lv * k).softmax(-1).view(n, lq, m, lv, k)
        norm = self.offset_normalizer(shapes, offsets)
        locations = reference[:, :, None, :, None, :] + offsets / norm[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn(v, shapes, locations, weights))
