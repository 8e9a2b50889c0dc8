"""PPT: token-Pruned Pose Transformer (Ma et al., 2022), single-view part.

PPT builds on TokenPose (Li et al., 2021): a CNN stem turns the person crop into a 1/4-resolution feature map, which is
cut into patches and embedded as *visual tokens*; ``J`` learnable *keypoint tokens* are prepended, a Transformer
encoder runs on all of them, and each keypoint token is mapped by an MLP to that keypoint's heatmap. PPT's
contribution (Sec. 3.2, Eq. 1-2) is **human token identification**: the attention the keypoint tokens pay to the
visual tokens, averaged over heads and summed over keypoints, scores each visual token, and at a few layers
(``prune_at``: 4, 7 and 10 of 12) only the ``ceil(r N)`` highest-scoring visual tokens are kept (keep ratio ``r``,
0.7 for PPT-S); the background tokens are dropped for the rest of the network (with their position embeddings),
which saves computation while the keypoint tokens keep attending to the person.

``ppt_small`` is PPT-S (TokenPose-S-v1 with pruning): the HRNet/ResNet stem with four bottlenecks (256 channels at
1/4), 4x3 patches (256 = 16 x 16 visual tokens at 256x192), dimension 192, 12 layers, 8 heads, MLP ratio 3, the
fixed 2-D sine position embedding added to the visual tokens before every layer, and the two-layer heatmap head.
The multi-view part of the paper (human-area fusion across views) is not implemented here.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import register_model
from ._heatmap import TopDownPose
from .hrnet import Bottleneck, _bn, residual_layer


def sine_position_embedding(h: int, w: int, dim: int, temperature: float = 10000.0) -> torch.Tensor:
    """The fixed 2-D sine embedding (y features then x features, each half of ``dim``) of an h x w grid: (h w, dim)."""
    half = dim // 2
    ys = torch.arange(1, h + 1, dtype=torch.float32)[:, None].expand(h, w) / (h + 1e-6) * 2 * math.pi
    xs = torch.arange(1, w + 1, dtype=torch.float32)[None, :].expand(h, w) / (w + 1e-6) * 2 * math.pi
    freq = temperature ** (2 * (torch.arange(half) // 2) / half)

    def enc(t: torch.Tensor) -> torch.Tensor:
        a = t[..., None] / freq
        return torch.stack([a[..., 0::2].sin(), a[..., 1::2].cos()], -1).flatten(-2)

    return torch.cat([enc(ys), enc(xs)], -1).reshape(h * w, dim)


class Attention(nn.Module):
    """Multi-head self-attention (TokenPose's: no qkv bias, logits scaled by ``dim ** -0.5``) that can also return
    the keypoint tokens' attention to the visual tokens, averaged over heads: (B, J, N)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, dim ** -0.5
        self.to_qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, keypoints: int = 0) -> tuple[torch.Tensor, torch.Tensor | None]:
        b, n, c = x.shape
        q, k, v = self.to_qkv(x).view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        out = self.to_out(out.transpose(1, 2).reshape(b, n, c))
        if not keypoints:
            return out, None
        logits = q[:, :, :keypoints] @ k.transpose(-2, -1) * self.scale  # the J keypoint queries only
        return out, logits.softmax(-1)[..., keypoints:].mean(1)  # (B, J, N): to the visual tokens, mean over heads


class Layer(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))


def keep_human_tokens(x: torch.Tensor, pos: torch.Tensor, attn: torch.Tensor, keypoints: int, ratio: float):
    """Human token identification and pruning (Eq. 1-2): score each visual token by the keypoint tokens' attention to it
    (summed over keypoints), keep the ``ceil(ratio N)`` highest, in the order of their scores, with their position
    embeddings. (B, J + N, C), (B, N, C), (B, J, N) -> (B, J + K, C), (B, K, C), kept indices (B, K)."""
    n = attn.shape[-1]
    k = math.ceil(n * ratio)
    idx = attn.sum(1).topk(k, dim=1).indices  # (B, K)
    gather = idx[..., None].expand(-1, -1, x.shape[-1])
    visual = x[:, keypoints:].gather(1, gather)
    return torch.cat([x[:, :keypoints], visual], 1), pos.gather(1, gather), idx


class TokenPrunedPoseTransformer(TopDownPose, nn.Module):
    """PPT (single view): ``forward(x)`` gives (B, J, H/4, W/4) heatmaps; ``keep_ratio`` (default the model's) < 1
    prunes at ``prune_at``; ``self.kept`` holds the indices of the visual tokens kept at each pruning layer."""

    def __init__(self, num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192), patch: tuple[int, int] = (4, 3),
                 dim: int = 192, depth: int = 12, heads: int = 8, mlp_ratio: int = 3, keep_ratio: float = 0.7,
                 prune_at: tuple[int, ...] = (3, 6, 9), in_chans: int = 3, stem_blocks: int = 4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 64, 3, 2, 1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = _bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = residual_layer(Bottleneck, 64, 64, stem_blocks)
        fh, fw = input_size[0] // 4, input_size[1] // 4
        self.patch, self.grid = tuple(patch), (fh // patch[0], fw // patch[1])
        self.patch_to_embedding = nn.Linear(256 * patch[0] * patch[1], dim)
        self.keypoint_token = nn.Parameter(torch.zeros(1, num_keypoints, dim))
        nn.init.trunc_normal_(self.keypoint_token, std=0.02)
        self.register_buffer("pos_embedding", sine_position_embedding(*self.grid, dim)[None], persistent=False)
        self.layers = nn.ModuleList(Layer(dim, heads, dim * mlp_ratio) for _ in range(depth))
        hidden = fh * fw // 8
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.Linear(hidden, fh * fw))
        self.num_keypoints, self.keep_ratio, self.prune_at = num_keypoints, keep_ratio, tuple(prune_at)
        self.heatmap_size = (fh, fw)
        self.pose_input_size = tuple(input_size)
        self.kept: list[torch.Tensor] = []
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """The visual tokens (B, N, dim) of a crop: stem, 4x3 patches of the 1/4 map, linear embedding."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(self.relu(self.bn2(self.conv2(x))))
        b, c, h, w = x.shape
        p1, p2 = self.patch
        x = x.view(b, c, h // p1, p1, w // p2, p2).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p1) * (w // p2), p1 * p2 * c)
        return self.patch_to_embedding(x)

    def forward(self, x: torch.Tensor, keep_ratio: float | None = None) -> torch.Tensor:
        r = self.keep_ratio if keep_ratio is None else keep_ratio
        visual = self.tokens(x)
        b, j = len(visual), self.num_keypoints
        pos = self.pos_embedding.expand(b, -1, -1)
        x = torch.cat([self.keypoint_token.expand(b, -1, -1), visual + pos], 1)
        self.kept = []
        for i, layer in enumerate(self.layers):
            if i > 0:  # the sine embedding is added to the visual tokens before every layer (TokenPose's "sine-full")
                x = torch.cat([x[:, :j], x[:, j:] + pos], 1)
            prune = i in self.prune_at and r < 1
            out, attn = layer.attn(layer.norm1(x), keypoints=j if prune else 0)
            x = x + out
            if prune:
                x, pos, idx = keep_human_tokens(x, pos, attn, j, r)
                self.kept.append(idx)
            x = x + layer.mlp(layer.norm2(x))
        heat = self.mlp_head(x[:, :j])
        return heat.view(b, j, *self.heatmap_size)


@register_model(paper="ppt", task="pose", input_size=(3, 256, 192), num_classes=17, paper_params_m=6.6, paper_gflops=2.0,
                notes="PPT-S, single view (TokenPose-S-v1 with human token pruning at keep ratio 0.7)")
def ppt_small(num_keypoints: int = 17, in_chans: int = 3, input_size: tuple[int, int] = (256, 192), keep_ratio: float = 0.7,
              num_classes: int | None = None) -> TokenPrunedPoseTransformer:
    """``num_classes`` is accepted and ignored (keypoints, not classes)."""
    return TokenPrunedPoseTransformer(num_keypoints, tuple(input_size), keep_ratio=keep_ratio, in_chans=in_chans)
