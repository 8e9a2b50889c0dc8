"""Swin Transformer V2: Scaling Up Capacity and Resolution (Liu et al., 2021, arXiv:2111.09883).

V2 keeps Swin's hierarchy and shifted windows (``swin.py``) and changes three things (section 3.2-3.3):

* **Res-post-norm.** Each residual branch is normalised at its *output*, x = x + LN(F(x)), instead of at its
  input, which keeps activations from growing with depth (Fig. 3). Its LayerNorms start at zero so that
  every block starts as the identity, as in the official code.
* **Scaled cosine attention (eq. 2).** Sim(q_i, k_j) = cos(q_i, k_j) / tau + B_ij, with a learnable
  per-head temperature; stored as log(1/tau), initialised to log 10 and clamped at log 100 (tau >= 0.01).
  The temperature multiplies the normalised queries, and SDPA runs with scale 1.
* **Log-spaced continuous position bias (eq. 3-4).** B comes from a small MLP (2 -> 512 -> ReLU -> heads)
  applied to log-spaced relative coordinates sign(x) log(1 + |x|), so that a model can be evaluated at
  window sizes it was not trained on by re-evaluating the MLP on the new coordinates. As in the official
  code the offsets are first scaled to [-8, 8] by the (pre-training) window size, the log is base 2
  divided by log2(8), and the MLP output goes through 16 * sigmoid.

Patch merging in V2 applies the linear reduction before its LayerNorm. ``pretrained_window_sizes`` gives
the window each stage was trained with, for the transfer to larger windows the paper evaluates (Table 6).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import register_model
from ...weights import register_converter
from .swin import (PatchMerging, SwinTransformer, SwinTransformerBlock, adapt_bias_tables, from_official,
                   relative_position_index, torchvision_keys, window_attention)

__all__ = ["SwinTransformerV2", "WindowAttentionV2", "log_spaced_coords"]

LOGIT_SCALE_MAX = math.log(1.0 / 0.01)  # tau >= 0.01


def log_spaced_coords(window: tuple[int, int], pretrained_window: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """(2Mh-1, 2Mw-1, 2) table of log-spaced relative coordinates (eq. 4) for every offset in a window."""
    ref = pretrained_window if pretrained_window[0] > 0 else window
    dh = torch.arange(-(window[0] - 1), window[0], dtype=torch.float32) / max(ref[0] - 1, 1)
    dw = torch.arange(-(window[1] - 1), window[1], dtype=torch.float32) / max(ref[1] - 1, 1)
    coords = torch.stack(torch.meshgrid(dh, dw, indexing="ij"), dim=-1) * 8
    return torch.sign(coords) * torch.log2(coords.abs() + 1.0) / math.log2(8)


class WindowAttentionV2(nn.Module):
    """Window attention with scaled cosine similarity and the log-CPB relative position bias."""

    def __init__(self, dim: int, num_heads: int, window_size: tuple[int, int], qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, pretrained_window_size: int = 0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.attn_drop = attn_drop
        self.logit_scale = nn.Parameter(torch.full((num_heads, 1, 1), math.log(10.0)))
        self.cpb_mlp = nn.Sequential(nn.Linear(2, 512), nn.ReLU(inplace=True), nn.Linear(512, num_heads, bias=False))
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.v_bias = nn.Parameter(torch.zeros(dim)) if qkv_bias else None
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        pretrained = (pretrained_window_size, pretrained_window_size)
        self.register_buffer("relative_coords_table", log_spaced_coords(window_size, pretrained), persistent=False)
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)

    def position_bias(self) -> torch.Tensor:
        """B = 16 * sigmoid(MLP(log-spaced coords)) gathered per token pair: (heads, N, N)."""
        n = self.relative_position_index.shape[0]
        table = self.cpb_mlp(self.relative_coords_table).view(-1, self.num_heads)
        bias = table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)
        return 16 * torch.sigmoid(bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        bias = None
        if self.q_bias is not None:  # keys get no bias
            bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias), self.v_bias])
        q, k, v = F.linear(x, self.qkv.weight, bias).view(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        q = F.normalize(q, dim=-1) * self.logit_scale.clamp(max=LOGIT_SCALE_MAX).exp()
        k = F.normalize(k, dim=-1)
        x = window_attention(q, k, v, self.position_bias().to(q.dtype), mask, self.attn_drop if self.training else 0.0, scale=1.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


class SwinTransformerV2Block(SwinTransformerBlock):
    """Res-post-norm block: x = x + LN(SW-MSA(x)); x = x + LN(MLP(x))."""

    attention_cls = WindowAttentionV2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self.norm1(self._shifted_window_attention(x)))
        return x + self.drop_path2(self.norm2(self.mlp(x)))


class PatchMergingV2(PatchMerging):
    """2x2 patch merging with the reduction before the norm: LN(Linear(4C -> 2C))."""

    def __init__(self, dim: int, out_dim: int | None = None, norm_layer=nn.LayerNorm) -> None:
        nn.Module.__init__(self)
        out_dim = out_dim or 2 * dim
        self.reduction = nn.Linear(4 * dim, out_dim, bias=False)
        self.norm = norm_layer(out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(self.merge(x)))


class SwinTransformerV2(SwinTransformer):
    """Swin V2: the V1 network with res-post-norm blocks, cosine attention and log-CPB (see module doc)."""

    block_cls = SwinTransformerV2Block
    merge_cls = PatchMergingV2

    def __init__(self, *args, pretrained_window_sizes: Sequence[int] = (0, 0, 0, 0), **kwargs) -> None:
        super().__init__(*args, stage_block_args={"pretrained_window_size": tuple(pretrained_window_sizes)}, **kwargs)
        for stage in self.layers:
            for block in stage.blocks:
                for norm in (block.norm1, block.norm2):
                    nn.init.zeros_(norm.weight)
                    nn.init.zeros_(norm.bias)


# Derived buffers are dropped (recomputed); the continuous bias needs no resizing across window sizes.
register_converter("swinv2", "timm")(adapt_bias_tables)
register_converter("swinv2", "official")(from_official)


@register_converter("swinv2", "torchvision")
def _from_torchvision(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision's V2 keeps one qkv bias whose key third it zeroes at every call: split it into q/v biases."""
    out = {}
    for key, value in torchvision_keys(state).items():
        if key.endswith("attn.qkv.bias"):
            q, _, v = value.chunk(3)
            out[key.replace("qkv.bias", "q_bias")], out[key.replace("qkv.bias", "v_bias")] = q, v
        else:
            out[key] = value
    return adapt_bias_tables(out, model)


# --------------------------------------------------------------------------------------- variants
_CONFIGS = {"tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24)), "small": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
            "base": (128, (2, 2, 18, 2), (4, 8, 16, 32))}
# Params (M) and FLOPs (G) at 256x256 as the official model hub reports them, per (size, window).
_PAPER = {("tiny", 8): (28, 5.9), ("small", 8): (50, 11.5), ("base", 8): (88, 20.3),
          ("tiny", 16): (28, 6.6), ("small", 16): (50, 12.6), ("base", 16): (88, 21.8)}
_TV = {"tiny": ("swin_v2_t", "swin_v2_t-b137f0e2.pth"), "small": ("swin_v2_s", "swin_v2_s-637d8ceb.pth"),
       "base": ("swin_v2_b", "swin_v2_b-781e5279.pth")}


def _swinv2(size: str, window: int, **kwargs) -> SwinTransformerV2:
    """SwinV2-{T,S,B} at 256x256 with patch 4 and the given window."""
    dim, depths, heads = _CONFIGS[size]
    args = dict(img_size=256, window_size=window, patch_size=4, embed_dim=dim, depths=depths, num_heads=heads)
    return SwinTransformerV2(**{**args, **kwargs})


def _meta(size: str, window: int) -> dict:
    """Registered metadata: the hub's params/FLOPs, timm/official weights, torchvision's for window 8."""
    params, flops = _PAPER[(size, window)]
    name = f"swinv2_{size}_window{window}_256"
    reference = {"timm": name}
    weights = {"official": f"https://github.com/SwinTransformer/storage/releases/download/v2.0.0/swinv2_{size}_patch4_window{window}_256.pth",
               "timm": f"https://huggingface.co/timm/{name}.ms_in1k/resolve/main/model.safetensors"}
    if window == 8:
        reference["torchvision"] = _TV[size][0]
        weights["torchvision"] = "https://download.pytorch.org/models/" + _TV[size][1]
    return dict(input_size=(3, 256, 256), paper_params_m=params, paper_gflops=flops, reference=reference, weights=weights)


@register_model(paper="swinv2", **_meta("tiny", 8))
def swinv2_tiny_window8_256(**kwargs) -> SwinTransformerV2:
    """SwinV2-T at 256x256, window 8: C=96, depths (2, 2, 6, 2)."""
    return _swinv2("tiny", 8, **kwargs)


@register_model(paper="swinv2", **_meta("small", 8))
def swinv2_small_window8_256(**kwargs) -> SwinTransformerV2:
    """SwinV2-S at 256x256, window 8: C=96, depths (2, 2, 18, 2)."""
    return _swinv2("small", 8, **kwargs)


@register_model(paper="swinv2", **_meta("base", 8))
def swinv2_base_window8_256(**kwargs) -> SwinTransformerV2:
    """SwinV2-B at 256x256, window 8: C=128, depths (2, 2, 18, 2)."""
    return _swinv2("base", 8, **kwargs)


@register_model(paper="swinv2", **_meta("tiny", 16))
def swinv2_tiny_window16_256(**kwargs) -> SwinTransformerV2:
    """SwinV2-T at 256x256, window 16: C=96, depths (2, 2, 6, 2)."""
    return _swinv2("tiny", 16, **kwargs)


@register_model(paper="swinv2", **_meta("small", 16))
def swinv2_small_window16_256(**kwargs) -> SwinTransformerV2:
    """SwinV2-S at 256x256, window 16: C=96, depths (2, 2, 18, 2)."""
    return _swinv2("small", 16, **kwargs)


@register_model(paper="swinv2", **_meta("base", 16))
def swinv2_base_window16_256(**kwargs) -> SwinTransformerV2:
    """SwinV2-B at 256x256, window 16: C=128, depths (2, 2, 18, 2)."""
    return _swinv2("base", 16, **kwargs)
