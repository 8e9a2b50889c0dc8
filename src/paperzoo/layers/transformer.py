"""Transformer building blocks shared by the vision transformers (ViT, DeiT, Swin) and later by DETR, SAM,
CLIP and the pose transformers.

* ``PatchEmbed`` — ViT's eq. 1 linear projection of flattened P x P patches, written as a convolution with
  kernel = stride = P (the same map, computed without unfolding), optionally followed by a norm.
* ``Mlp`` — the two-layer feed-forward network of a Transformer block (Linear, GELU, Linear).
* ``Attention`` — multi-head self-attention (Vaswani et al., 2017) through ``F.scaled_dot_product_attention``.
* ``TransformerBlock`` — the pre-norm encoder block of ViT eq. 2-3: x + MSA(LN(x)), then x + MLP(LN(x)).
* ``resample_abs_pos_embed`` — ViT section 3.2's 2-D interpolation of learned position embeddings when the
  patch grid changes (fine-tuning or inference at another resolution).
* ``resize_rel_pos_bias_table`` — Swin section 3.2's bi-cubic interpolation of a relative position bias
  table when the window size changes.
* ``trunc_normal_init`` — the truncated-normal (std 0.02) initialisation these models share.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .drop import DropPath

ModuleFactory = Callable[..., nn.Module]


class PatchEmbed(nn.Module):
    """Split an image into non-overlapping ``patch_size`` patches and embed each as a ``embed_dim`` token.

    ``output="tokens"`` gives (B, H/P * W/P, D) as ViT consumes them; ``output="nhwc"`` keeps the grid,
    (B, H/P, W/P, D), as Swin does. Any input whose sides are multiples of ``patch_size`` is accepted.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        norm_layer: ModuleFactory | None = None,
        output: str = "tokens",
        bias: bool = True,
    ) -> None:
        super().__init__()
        if output not in ("tokens", "nhwc"):
            raise ValueError(f"output must be 'tokens' or 'nhwc', got '{output}'")
        self.img_size = _pair(img_size)
        self.patch_size = patch_size
        self.grid_size = (self.img_size[0] // patch_size, self.img_size[1] // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.output = output
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size, bias=bias)
        self.norm = norm_layer(embed_dim) if norm_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj(x)
        x = x.flatten(2).transpose(1, 2) if self.output == "tokens" else x.permute(0, 2, 3, 1)
        return self.norm(x)


class Mlp(nn.Module):
    """Linear -> activation -> dropout -> Linear -> dropout (the Transformer's position-wise FFN)."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: ModuleFactory = nn.GELU,
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Attention(nn.Module):
    """Multi-head self-attention: softmax(Q K^T / sqrt(d) + mask) V per head, heads concatenated and projected.

    Q, K and V come from one ``qkv`` projection (keys laid out as timm's). ``attn_mask`` is passed to
    ``F.scaled_dot_product_attention`` (boolean keep-mask or additive float bias, broadcastable to
    (B, heads, N, N)).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


class TransformerBlock(nn.Module):
    """Pre-norm Transformer encoder block: z' = z + MSA(LN(z)); z = z' + MLP(LN(z')) (ViT eq. 2-3)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        act_layer: ModuleFactory = nn.GELU,
        norm_layer: ModuleFactory = nn.LayerNorm,
    ) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias, attn_drop, proj_drop)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=act_layer, drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), attn_mask))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


def resample_abs_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
    mode: str = "bicubic",
    antialias: bool = True,
) -> torch.Tensor:
    """Resample learned position embeddings (1, prefix + H*W, D) to a new patch grid.

    The prefix tokens' embeddings (class, distillation) are kept; the grid part is interpolated in 2-D as
    ViT section 3.2 prescribes (``old_grid`` defaults to a square grid).
    """
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    if old_grid is None:
        side = int(round(grid.shape[1] ** 0.5))
        old_grid = (side, side)
    if tuple(old_grid) == tuple(new_grid):
        return pos_embed
    dim = grid.shape[-1]
    grid = grid.float().reshape(1, *old_grid, dim).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=new_grid, mode=mode, antialias=antialias and mode in ("bilinear", "bicubic"))
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, dim).to(pos_embed.dtype)
    return torch.cat([prefix, grid], dim=1)


def resize_rel_pos_bias_table(table: torch.Tensor, new_window: tuple[int, int], old_window: tuple[int, int] | None = None) -> torch.Tensor:
    """Bi-cubically resize a ((2Wh-1)*(2Ww-1), heads) relative position bias table to another window
    (Swin section 3.2: how a bias learned at one window size initialises another)."""
    if old_window is None:
        side = int(round(table.shape[0] ** 0.5))
        old_window = ((side + 1) // 2, (side + 1) // 2)
    if tuple(old_window) == tuple(new_window):
        return table
    old = (2 * old_window[0] - 1, 2 * old_window[1] - 1)
    new = (2 * new_window[0] - 1, 2 * new_window[1] - 1)
    heads = table.shape[1]
    grid = table.float().T.reshape(1, heads, *old)
    grid = F.interpolate(grid, size=new, mode="bicubic", align_corners=False)
    return grid.reshape(heads, -1).T.contiguous().to(table.dtype)


def trunc_normal_init(module: nn.Module, std: float = 0.02, types: tuple[type[nn.Module], ...] = (nn.Linear,)) -> None:
    """Truncated-normal weights and zero biases for ``types`` (the init of ViT/DeiT/Swin/ConvNeXt);
    use with ``model.apply``."""
    if isinstance(module, types):
        nn.init.trunc_normal_(module.weight, std=std)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


def _pair(v: int | tuple[int, int]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))
