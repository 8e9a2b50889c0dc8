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
``ppt_base`` is PPT-B (TokenPose-B with pruning): the first three stages of HRNet-W32 (the 32-channel 1/4 branch, the
last module fused into it) as the stem, the same transformer but with attention logits scaled by the head
dimension ** -0.5 (TokenPose-B's ``scale_with_head``).

**Multi-view PPT** (§3.3, human area fusion): ``forward_views`` runs each view alone through the first ``fuse_from``
layers (10 of 12; pruning included), then concatenates every view's keypoint tokens and kept human tokens and runs the
last layers on all of them, so each view's keypoint tokens attend to the human tokens of the other views; every view's
keypoint tokens then give its heatmaps through the shared head. The position embedding of the fused layers adds, to
each kept token's 2-D sine embedding, a learned linear map of its camera ray direction (the 3-D position embedding;
``multiview=True`` builds it, and it is used where ``directions`` are given).

The key names of the official code (HowieMa/PPT: ``pose_tokenpose_s``, ``pose_tokenpose_b`` and the multi-view
``TokenPose_S``) load with ``source="official"``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import ConfigError
from ...registry import register_model
from ...weights import register_converter
from ._heatmap import TopDownPose
from .hrnet import Bottleneck, HRNetBody, _bn, residual_layer


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
    """Multi-head self-attention (TokenPose's: no qkv bias, logits scaled by ``dim ** -0.5``, or by the head
    dimension ** -0.5 with ``head_scale``) that can also return the keypoint tokens' attention to the visual tokens,
    averaged over heads: (B, J, N)."""

    def __init__(self, dim: int, heads: int, head_scale: bool = False) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads if head_scale else dim) ** -0.5
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
    def __init__(self, dim: int, heads: int, mlp_dim: int, head_scale: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, head_scale)
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


def _gather(t: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Rows ``idx`` (B, K) of t (B, N, C)."""
    return t.gather(1, idx[..., None].expand(-1, -1, t.shape[-1]))


class TokenPrunedPoseTransformer(TopDownPose, nn.Module):
    """PPT (single view): ``forward(x)`` gives (B, J, H/4, W/4) heatmaps; ``keep_ratio`` (default the model's) < 1
    prunes at ``prune_at``; ``self.kept`` holds the indices of the visual tokens kept at each pruning layer.
    ``stem``: ``"resnet"`` (conv, conv, four bottlenecks: 256 channels at 1/4, PPT-S) or ``"hrnet"`` (HRNet stages
    1-3 of width ``hrnet_width``, PPT-B). ``forward_views`` is the multi-view PPT."""

    def __init__(self, num_keypoints: int = 17, input_size: tuple[int, int] = (256, 192), patch: tuple[int, int] = (4, 3),
                 dim: int = 192, depth: int = 12, heads: int = 8, mlp_ratio: int = 3, keep_ratio: float = 0.7,
                 prune_at: tuple[int, ...] = (3, 6, 9), in_chans: int = 3, stem_blocks: int = 4, stem: str = "resnet",
                 hrnet_width: int = 32, head_scale: bool = False, multiview: bool = False) -> None:
        super().__init__()
        if stem == "resnet":
            self.conv1 = nn.Conv2d(in_chans, 64, 3, 2, 1, bias=False)
            self.bn1 = _bn(64)
            self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
            self.bn2 = _bn(64)
            self.relu = nn.ReLU(inplace=True)
            self.layer1 = residual_layer(Bottleneck, 64, 64, stem_blocks)
            channels = 256
        elif stem == "hrnet":
            self.pre_feature = HRNetBody(hrnet_width, in_chans, modules=(1, 4), last_single=True)
            channels = hrnet_width
        else:
            raise ConfigError(f"unknown PPT stem '{stem}' (known: resnet, hrnet)")
        self.stem = stem
        fh, fw = input_size[0] // 4, input_size[1] // 4
        if fh % patch[0] or fw % patch[1]:
            raise ConfigError(f"PPT's 1/4 feature map {fh}x{fw} of a {input_size[0]}x{input_size[1]} input is not "
                              f"divisible into {patch[0]}x{patch[1]} patches")
        self.patch, self.grid = tuple(patch), (fh // patch[0], fw // patch[1])
        self.patch_to_embedding = nn.Linear(channels * patch[0] * patch[1], dim)
        self.keypoint_token = nn.Parameter(torch.zeros(1, num_keypoints, dim))
        nn.init.trunc_normal_(self.keypoint_token, std=0.02)
        self.register_buffer("pos_embedding", sine_position_embedding(*self.grid, dim)[None], persistent=False)
        self.layers = nn.ModuleList(Layer(dim, heads, dim * mlp_ratio, head_scale) for _ in range(depth))
        hidden = fh * fw // 8
        if dim <= hidden / 2:  # TokenPose's two-layer head; a single layer where the hidden size would be too small
            self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.LayerNorm(hidden), nn.Linear(hidden, fh * fw))
        else:
            self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, fh * fw))
        self.pos_3d_linear = nn.Linear(3, dim) if multiview else None
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
        """The visual tokens (B, N, dim) of a crop: stem, patches of the 1/4 map, linear embedding."""
        if self.stem == "hrnet":
            x = self.pre_feature(x)[0]
        else:
            x = self.relu(self.bn1(self.conv1(x)))
            x = self.layer1(self.relu(self.bn2(self.conv2(x))))
        b, c, h, w = x.shape
        p1, p2 = self.patch
        x = x.view(b, c, h // p1, p1, w // p2, p2).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p1) * (w // p2), p1 * p2 * c)
        return self.patch_to_embedding(x)

    def run_layers(self, x: torch.Tensor, pos: torch.Tensor, layers: range, front: int, ratio: float | None,
                   extra: torch.Tensor | None = None):
        """Layers ``layers`` on tokens x (B, front + N, C) whose first ``front`` are keypoint tokens; ``pos`` (B, N, C)
        is added to the visual tokens before every layer but the first; at ``prune_at`` (when ``ratio`` < 1) only the
        human tokens are kept, with their ``pos`` (and rows of ``extra``). Returns x, pos, extra."""
        for i in layers:
            layer = self.layers[i]
            if i > 0:  # the sine embedding is added to the visual tokens before every layer (TokenPose's "sine-full")
                x = torch.cat([x[:, :front], x[:, front:] + pos], 1)
            prune = ratio is not None and ratio < 1 and i in self.prune_at
            out, attn = layer.attn(layer.norm1(x), keypoints=front if prune else 0)
            x = x + out
            if prune:
                x, pos, idx = keep_human_tokens(x, pos, attn, front, ratio)
                extra = None if extra is None else _gather(extra, idx)
                self.kept.append(idx)
            x = x + layer.mlp(layer.norm2(x))
        return x, pos, extra

    def heatmaps(self, keypoint_tokens: torch.Tensor) -> torch.Tensor:
        return self.mlp_head(keypoint_tokens).view(*keypoint_tokens.shape[:2], *self.heatmap_size)

    def forward(self, x: torch.Tensor, keep_ratio: float | None = None) -> torch.Tensor:
        r = self.keep_ratio if keep_ratio is None else keep_ratio
        visual = self.tokens(x)
        b, j = len(visual), self.num_keypoints
        pos = self.pos_embedding.expand(b, -1, -1)
        self.kept = []
        x, _, _ = self.run_layers(torch.cat([self.keypoint_token.expand(b, -1, -1), visual + pos], 1), pos,
                                  range(len(self.layers)), j, r)
        return self.heatmaps(x[:, :j])

    def forward_views(self, views: torch.Tensor | list[torch.Tensor], keep_ratio: float | None = None,
                      directions: list[torch.Tensor] | None = None, fuse_from: int | None = None) -> torch.Tensor:
        """Multi-view PPT: views (B, V, 3, H, W) (or a list of V (B, 3, H, W)) -> heatmaps (B, V, J, H/4, W/4).

        Each view runs alone (with pruning) through layers ``[0, fuse_from)`` (default: all but the last two); the last
        layers see the keypoint tokens of all views, then their kept visual tokens (``[J x V, K x V]``). ``directions``
        (V tensors (B, N, 3), a camera ray per visual token) add the 3-D position embedding in the fused layers."""
        views = list(views.unbind(1)) if torch.is_tensor(views) else list(views)
        r = self.keep_ratio if keep_ratio is None else keep_ratio
        fuse_from = len(self.layers) - 2 if fuse_from is None else fuse_from
        if not 0 <= fuse_from <= len(self.layers):
            raise ConfigError(f"fuse_from must be within 0..{len(self.layers)}, got {fuse_from}")
        if directions is not None:
            if self.pos_3d_linear is None:
                raise ConfigError("camera ray directions need the 3-D position embedding: build the model with multiview=True")
            if len(directions) != len(views):
                raise ConfigError(f"got {len(directions)} ray-direction tensors for {len(views)} views")
        j = self.num_keypoints
        self.kept = []
        tokens, poses, extras = [], [], []
        for v, img in enumerate(views):
            visual = self.tokens(img)
            b = len(visual)
            pos = self.pos_embedding.expand(b, -1, -1)
            p3d = None if directions is None else self.pos_3d_linear(F.normalize(directions[v], dim=-1))
            x, pos, p3d = self.run_layers(torch.cat([self.keypoint_token.expand(b, -1, -1), visual + pos], 1), pos,
                                          range(fuse_from), j, r, p3d)
            tokens.append(x)
            poses.append(pos if p3d is None else pos + p3d)
            extras.append(x[:, j:])
        n_views = len(views)
        x = torch.cat([t[:, :j] for t in tokens] + extras, 1)
        x, _, _ = self.run_layers(x, torch.cat(poses, 1), range(fuse_from, len(self.layers)), j * n_views, None)
        out = self.heatmaps(x[:, : j * n_views])  # (B, V J, h, w)
        return out.view(len(out), n_views, j, *self.heatmap_size)


@register_model(paper="ppt", task="pose", input_size=(3, 256, 192), num_classes=17, paper_params_m=6.6, paper_gflops=2.0,
                notes="PPT-S (TokenPose-S-v1 with human token pruning at keep ratio 0.7); forward_views: multi-view PPT")
def ppt_small(num_keypoints: int = 17, in_chans: int = 3, input_size: tuple[int, int] = (256, 192), keep_ratio: float = 0.7,
              num_classes: int | None = None, **kwargs) -> TokenPrunedPoseTransformer:
    """``num_classes`` is accepted and ignored (keypoints, not classes); ``multiview=True`` adds the 3-D position
    embedding of the multi-view PPT."""
    return TokenPrunedPoseTransformer(num_keypoints, tuple(input_size), keep_ratio=keep_ratio, in_chans=in_chans, **kwargs)


@register_model(paper="ppt", task="pose", input_size=(3, 256, 192), num_classes=17, paper_params_m=13.5, paper_gflops=5.6,
                notes="PPT-B (TokenPose-B: HRNet-W32 stages 1-3 as the stem, with human token pruning at keep ratio 0.7)")
def ppt_base(num_keypoints: int = 17, in_chans: int = 3, input_size: tuple[int, int] = (256, 192), keep_ratio: float = 0.7,
             num_classes: int | None = None, **kwargs) -> TokenPrunedPoseTransformer:
    """``num_classes`` is accepted and ignored (keypoints, not classes)."""
    kwargs = {"stem": "hrnet", "hrnet_width": 32, "head_scale": True, **kwargs}
    return TokenPrunedPoseTransformer(num_keypoints, tuple(input_size), keep_ratio=keep_ratio, in_chans=in_chans, **kwargs)


# ------------------------------------------------------------------------------------------- official weights
_LAYER = {"0.norm": "norm1", "0.fn.to_qkv": "attn.to_qkv", "0.fn.to_out.0": "attn.to_out", "1.fn.norm": "norm2",
          "1.fn.fn.net.0": "mlp.0", "1.fn.fn.net.3": "mlp.2"}


@register_converter("ppt", "official")
def from_official(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """HowieMa/PPT's names to ours: PPT-S and the multi-view model (``features.``: the ResNet stem, ``transformer.
    layers.i.{0.norm, 0.fn.to_qkv, 0.fn.to_out.0, 1.fn.norm, 1.fn.fn.net.0/3}``, ``mlp_head``, ``pos_3d_linear``) and
    PPT-B (``pre_feature.``: HRNet, named as ours; ``transformer.``: the rest). The fixed sine ``pos_embedding`` (a
    frozen parameter there, a buffer here) is dropped."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        k = key.removeprefix("module.")
        if k.startswith("features."):
            k = k[len("features."):]
        elif k.startswith("transformer.") and not k.startswith("transformer.layers."):
            k = k[len("transformer."):]
        if k == "pos_embedding":
            continue
        if k.startswith("transformer.layers."):
            i, rest = k[len("transformer.layers."):].split(".", 1)
            part, leaf = rest.rsplit(".", 1)
            k = f"layers.{i}.{_LAYER[part]}.{leaf}"
        out[k] = value
    return out
