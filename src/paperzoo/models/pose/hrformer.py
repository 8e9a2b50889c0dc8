"""HRFormer (Yuan et al., 2021, "HRFormer: High-Resolution Transformer for Dense Prediction").

HRNet's layout (``hrnet.py``: the stem, a first stage of bottlenecks, then stages that add a half-resolution branch
and fuse all branches repeatedly) with every residual unit of the multi-resolution stages replaced by a
transformer block (Sec. 3, Fig. 1-2):

* **Local-window self-attention** (Eq. 1-2): each branch's map is cut into non-overlapping 7x7 windows (centre
  zero-padded to a multiple of 7) and multi-head self-attention runs inside each window, the windows in one batch
  (``F.scaled_dot_product_attention``). The official pose code builds a relative position bias table but does not add
  it to the logits (the line is commented out); we follow the released code (``relative_bias=True`` adds it).
* **FFN with a depthwise convolution** (Eq. 3): 1x1 conv (x4) - BN - GELU - 3x3 depthwise conv - BN - GELU - 1x1
  conv - BN - GELU, which exchanges information between the disconnected windows.
* Pre-norm residuals with LayerNorm: ``x + MSA(LN(x))``, then ``x + FFN(LN(x))``.
* **Fusion** as HRNet's, except that a higher-resolution branch is brought down by depthwise-separable stride-2
  convolutions (3x3 depthwise - BN - 1x1 - BN) and a lower one up by bilinear interpolation (the official pose
  code: ``align_corners=False``).

``hrformer_tiny``, ``hrformer_small``, ``hrformer_base`` are the pose networks (heatmaps from the 1/4 branch by a 1x1
convolution, as HRNet's) with widths 18/32/78, 1/1/2 heads on the first branch, and 1-4-2 modules in stages 2-4
(tiny: 1-3-2), two blocks per branch.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import register_model
from ...weights import register_converter
from ._heatmap import TopDownPose, check_input_size
from .hrnet import Bottleneck, _bn, _transition, residual_layer


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping ``window`` x ``window`` windows. The relative position bias
    table is built as in the official code, which leaves its addition to the logits commented out; ``relative_bias``
    True adds it (Swin's ``softmax(q k^T / sqrt(d) + B)``), False (the default) follows the released code."""

    def __init__(self, dim: int, heads: int, window: int = 7, relative_bias: bool = False) -> None:
        super().__init__()
        self.heads, self.window, self.relative_bias = heads, window, relative_bias
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
        self.register_buffer("relative_position_index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        b, h, w, c = x.shape
        s = self.window
        ph, pw = math.ceil(h / s) * s - h, math.ceil(w / s) * s - w
        x = F.pad(x, (0, 0, pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))  # centre zero-padding
        hh, ww = h + ph, w + pw
        win = x.view(b, hh // s, s, ww // s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, s * s, c)
        q, k, v = self.qkv(win).view(len(win), s * s, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = None
        if self.relative_bias:
            bias = self.relative_position_bias_table[self.relative_position_index].permute(2, 0, 1).to(q.dtype)  # (heads, s*s, s*s)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = self.proj(out.transpose(1, 2).reshape(len(win), s * s, c))
        out = out.view(b, hh // s, ww // s, s, s, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hh, ww, c)
        return out[:, ph // 2: ph // 2 + h, pw // 2: pw // 2 + w]


class DWFFN(nn.Module):
    """The FFN with a 3x3 depthwise convolution between its two pointwise ones (Eq. 3)."""

    def __init__(self, dim: int, ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1, self.norm1 = nn.Conv2d(dim, hidden, 1), _bn(hidden)
        self.dw3x3, self.norm2 = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden), _bn(hidden)
        self.fc2, self.norm3 = nn.Conv2d(hidden, dim, 1), _bn(dim)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.fc1(x)))
        x = self.act(self.norm2(self.dw3x3(x)))
        return self.act(self.norm3(self.fc2(x)))


class TransformerBlock(nn.Module):
    """``x + MSA(LN(x))`` then ``x + FFN(LN(x))`` on a (B, C, H, W) map."""

    def __init__(self, dim: int, heads: int, window: int = 7, mlp_ratio: float = 4.0, relative_bias: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = WindowAttention(dim, heads, window, relative_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = DWFFN(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        t = t + self.attn(self.norm1(t))
        y = self.norm2(t).permute(0, 3, 1, 2)
        return t.permute(0, 3, 1, 2) + self.mlp(y)


class HRFormerUnit(nn.Module):
    """One module: ``blocks`` transformer blocks per branch, then HRNet's fusion with depthwise-separable downsampling
    and bilinear upsampling into ``outputs`` branches."""

    def __init__(self, widths: Sequence[int], heads: Sequence[int], blocks: int, outputs: int, window: int = 7,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        n = len(widths)
        self.branches = nn.ModuleList(nn.Sequential(*[TransformerBlock(w, h, window, mlp_ratio) for _ in range(blocks)])
                                      for w, h in zip(widths, heads))
        self.fuse_layers = nn.ModuleList()
        for r in range(outputs if n > 1 else 0):
            row = nn.ModuleList()
            for i in range(n):
                if i > r:
                    row.append(nn.Sequential(nn.Conv2d(widths[i], widths[r], 1, bias=False), _bn(widths[r])))
                elif i == r:
                    row.append(nn.Identity())
                else:
                    steps = []
                    for k in range(r - i):
                        last = k == r - i - 1
                        cout = widths[r] if last else widths[i]
                        step = [nn.Conv2d(widths[i], widths[i], 3, 2, 1, groups=widths[i], bias=False), _bn(widths[i]),
                                nn.Conv2d(widths[i], cout, 1, bias=False), _bn(cout)]
                        steps.append(nn.Sequential(*step) if last else nn.Sequential(*step, nn.ReLU(inplace=False)))
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)
        self.relu = nn.ReLU()

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if len(xs) == 1:
            return xs
        out = []
        for r, row in enumerate(self.fuse_layers):
            y = row[0](xs[0])
            for i in range(1, len(xs)):
                z = row[i](xs[i])
                if i > r:  # as the official code: upsample by 2^(i - r), then resize where odd sizes leave a mismatch
                    z = F.interpolate(z, scale_factor=2.0 ** (i - r), mode="bilinear", align_corners=False)
                    if z.shape[-2:] != xs[r].shape[-2:]:
                        z = F.interpolate(z, size=xs[r].shape[-2:], mode="bilinear", align_corners=False)
                y = y + z
            out.append(self.relu(y))
        return out


class HRFormer(TopDownPose, nn.Module):
    """The HRFormer pose network: heatmaps (B, K, H/4, W/4) from the highest-resolution branch."""

    def __init__(self, width: int, heads: Sequence[int], modules: Sequence[int] = (1, 4, 2), blocks: int = 2,
                 num_keypoints: int = 17, in_chans: int = 3, window: int = 7, mlp_ratio: float = 4.0,
                 stage1: tuple[int, int] = (2, 64), input_size: tuple[int, int] = (256, 192)) -> None:
        super().__init__()
        input_size = check_input_size("HRFormer", input_size, 32)
        self.conv1 = nn.Conv2d(in_chans, 64, 3, 2, 1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = _bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = residual_layer(Bottleneck, 64, stage1[1], stage1[0])
        widths = [width * 2 ** k for k in range(4)]
        prev = [stage1[1] * 4]
        for s, n_mod in zip((2, 3, 4), modules):
            cur = widths[:s]
            setattr(self, f"transition{s - 1}", _transition(prev, cur))
            units = [HRFormerUnit(cur, heads[:s], blocks, 1 if (s == 4 and m == n_mod - 1) else len(cur), window, mlp_ratio)
                     for m in range(n_mod)]
            setattr(self, f"stage{s}", nn.Sequential(*units))
            prev = cur
        self.final_layer = nn.Conv2d(width, num_keypoints, 1)
        self.num_keypoints = num_keypoints
        self.pose_input_size = tuple(input_size)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        xs = [t(x) for t in self.transition1]
        xs = self.stage2(xs)
        for s in (3, 4):
            trans = getattr(self, f"transition{s - 1}")
            xs = [xs[i] if isinstance(t, nn.Identity) else t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(trans)]
            xs = getattr(self, f"stage{s}")(xs)
        return self.final_layer(xs[0])


def _from_official(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The official pose code (HRNet/HRFormer, ``pose/mmpose/models/backbones/hrt.py``): its attention keeps separate
    ``q_proj``/``k_proj``/``v_proj`` inside ``attn.attn`` (stacked here into ``attn.qkv``), ``out_proj`` is ``attn.proj``,
    its relative position index is a stored buffer (derived here); mmpose's ``keypoint_head.final_layer`` is
    ``final_layer``; a ``backbone.`` prefix (a whole TopDown checkpoint) is removed. Every other name is the same."""
    out: dict[str, torch.Tensor] = {}
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in state_dict.items():
        k = k.removeprefix("backbone.").replace("keypoint_head.final_layer.", "final_layer.")
        if k.endswith("relative_position_index") or k.endswith("num_batches_tracked"):
            continue
        k = k.replace(".attn.attn.", ".attn.")
        for name in ("q_proj", "k_proj", "v_proj"):
            if f".attn.{name}." in k:
                base, leaf = k.split(f".attn.{name}.")
                parts.setdefault(f"{base}.attn.qkv.{leaf}", {})[name] = v
                break
        else:
            out[k.replace(".attn.out_proj.", ".attn.proj.")] = v
    for k, d in parts.items():
        out[k] = torch.cat([d["q_proj"], d["k_proj"], d["v_proj"]])
    return out


register_converter("hrformer", "official")(_from_official)

_META = dict(task="pose", input_size=(3, 256, 192), num_classes=17)


def _build(width: int, heads: Sequence[int], modules: Sequence[int], num_keypoints: int, in_chans: int,
           input_size: tuple[int, int]) -> HRFormer:
    return HRFormer(width, heads, modules, 2, num_keypoints, in_chans, input_size=input_size)


@register_model(paper="hrformer", paper_params_m=2.5, paper_gflops=1.3, **_META)
def hrformer_tiny(num_keypoints: int = 17, in_chans: int = 3, input_size: tuple[int, int] = (256, 192),
                  num_classes: int | None = None) -> HRFormer:
    """Widths 18-144, heads 1-8, modules 1-3-2. ``num_classes`` is accepted and ignored."""
    return _build(18, (1, 2, 4, 8), (1, 3, 2), num_keypoints, in_chans, input_size)


@register_model(paper="hrformer", paper_params_m=7.8, paper_gflops=2.8, **_META)
def hrformer_small(num_keypoints: int = 17, in_chans: int = 3, input_size: tuple[int, int] = (256, 192),
                   num_classes: int | None = None) -> HRFormer:
    """Widths 32-256, heads 1-8, modules 1-4-2. ``num_classes`` is accepted and ignored."""
    return _build(32, (1, 2, 4, 8), (1, 4, 2), num_keypoints, in_chans, input_size)


@register_model(paper="hrformer", paper_params_m=43.2, paper_gflops=12.2, **_META)
def hrformer_base(num_keypoints: int = 17, in_chans: int = 3, input_size: tuple[int, int] = (256, 192),
                  num_classes: int | None = None) -> HRFormer:
    """Widths 78-624, heads 2-16, modules 1-4-2. ``num_classes`` is accepted and ignored."""
    return _build(78, (2, 4, 8, 16), (1, 4, 2), num_keypoints, in_chans, input_size)
