"""Swin Transformer: Hierarchical Vision Transformer using Shifted Windows (Liu et al., 2021,
arXiv:2103.14030).

The paper's contributions, as implemented here:

* **Window attention (W-MSA, section 3.2).** Self-attention is computed inside non-overlapping M x M
  windows (``window_partition``), so its cost is linear in the image area instead of quadratic.
* **Shifted windows (SW-MSA, Fig. 2).** Every second block shifts the window grid by (M/2, M/2). The shift
  is a cyclic roll of the feature map (Fig. 4); tokens that the roll brings together from opposite image
  borders are kept from attending to each other by a mask of -100 (the official value) added to their
  logits (``shifted_window_mask``).
* **Relative position bias (eq. 4).** Attention(Q, K, V) = SoftMax(Q K^T / sqrt(d) + B) V with B taken from
  a learned ((2M-1) x (2M-1), heads) table indexed by the relative offset of each token pair. The bias and
  the shift mask are added into one ``attn_mask`` for ``F.scaled_dot_product_attention``.
* **Hierarchy (section 3.1, Fig. 3).** 4x4 patch embedding, then four stages; stages 2-4 begin with patch
  merging (concatenate 2x2 neighbours, LayerNorm, linear 4C -> 2C), halving the resolution and doubling
  the width, so ``features_only`` yields the stride 4/8/16/32 NCHW maps dense heads expect.

Table 7's architectures: Swin-T C=96, depths (2,2,6,2); S: C=96, (2,2,18,2); B: C=128, (2,2,18,2);
L: C=192, (2,2,18,2); heads = C/32 per stage x (1,2,4,8); window M=7 (12 at 384x384). As in the official
code, a stage whose map is no larger than the window uses one window covering it and no shift. Another
resolution is an ``img_size`` (and ``window_size``) argument; loading weights learned with another window
size bi-cubically interpolates the bias tables (section 3.2, "fine-tuning with a different window size").
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
import torch
import torch.nn.functional as F
from torch import nn

from ...layers import DropPath, Mlp, PatchEmbed, linear_drop_rates, resize_rel_pos_bias_table, trunc_normal_init
from ...registry import register_model
from ...weights import register_converter

__all__ = ["SwinTransformer", "SwinTransformerBlock", "WindowAttention", "PatchMerging"]

ModuleFactory = Callable[..., nn.Module]
MASKED = -100.0  # logit added between tokens of different regions in a shifted window (official value)


# --------------------------------------------------------------------------------------- window helpers
def window_partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """(B, H, W, C) -> (B * num_windows, Mh * Mw, C), windows in row-major order."""
    B, H, W, C = x.shape
    x = x.view(B, H // window[0], window[0], W // window[1], window[1], C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window[0] * window[1], C)


def window_reverse(windows: torch.Tensor, window: tuple[int, int], H: int, W: int) -> torch.Tensor:
    """Inverse of ``window_partition``: (B * num_windows, Mh * Mw, C) -> (B, H, W, C)."""
    C = windows.shape[-1]
    x = windows.view(-1, H // window[0], W // window[1], window[0], window[1], C)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, H, W, C)


def relative_position_index(window: tuple[int, int]) -> torch.Tensor:
    """(N, N) index into the ((2Mh-1) * (2Mw-1))-entry bias table for each pair of tokens in a window."""
    coords = torch.stack(torch.meshgrid(torch.arange(window[0]), torch.arange(window[1]), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)  # (N, N, 2), offsets in [-(M-1), M-1]
    return (rel[..., 0] + window[0] - 1) * (2 * window[1] - 1) + (rel[..., 1] + window[1] - 1)


def shifted_window_mask(H: int, W: int, window: tuple[int, int], shift: tuple[int, int]) -> torch.Tensor:
    """(num_windows, N, N) additive mask for SW-MSA on an (H, W) map already padded to whole windows.

    After the cyclic shift, the map splits into 3 x 3 regions (Fig. 4); tokens attend only within their region.
    """
    region = torch.zeros(1, H, W, 1)
    bounds_h = ((0, H - window[0]), (H - window[0], H - shift[0]), (H - shift[0], H))
    bounds_w = ((0, W - window[1]), (W - window[1], W - shift[1]), (W - shift[1], W))
    label = 0
    for h0, h1 in bounds_h:
        for w0, w1 in bounds_w:
            region[:, h0:h1, w0:w1] = label
            label += 1
    ids = window_partition(region, window).squeeze(-1)  # (num_windows, N)
    return (ids[:, None, :] != ids[:, :, None]).float() * MASKED


def window_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor, mask: torch.Tensor | None,
    dropout_p: float = 0.0, scale: float | None = None,
) -> torch.Tensor:
    """SDPA over windows with the per-head ``bias`` (heads, N, N) and the shift ``mask`` (num_windows, N, N)
    folded into one additive ``attn_mask``. q, k, v: (B * num_windows, heads, N, d)."""
    if mask is None:
        attn_mask = bias.unsqueeze(0)  # 4-D, so that the fused CPU kernel takes it
    else:
        attn_mask = (bias.unsqueeze(0) + mask.unsqueeze(1)).repeat(q.shape[0] // mask.shape[0], 1, 1, 1)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, scale=scale)


# --------------------------------------------------------------------------------------- modules
class WindowAttention(nn.Module):
    """W-MSA with a learned relative position bias table (eq. 4)."""

    def __init__(self, dim: int, num_heads: int, window_size: tuple[int, int], qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.window_size = window_size
        self.attn_drop = attn_drop
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def position_bias(self) -> torch.Tensor:
        """B of eq. 4: (heads, N, N)."""
        n = self.relative_position_index.shape[0]
        return self.relative_position_bias_table[self.relative_position_index.view(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, C = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        x = window_attention(q, k, v, self.position_bias(), mask, self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(B, N, C)))


def fit_window(resolution: tuple[int, int], window: int, shift: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """A map no larger than the window along a side gets one window of its size there and no shift."""
    win = tuple(r if r <= window else window for r in resolution)
    sh = tuple(0 if r <= window else shift for r in resolution)
    return win, sh


class SwinTransformerBlock(nn.Module):
    """x = x + W-MSA/SW-MSA(LN(x)); x = x + MLP(LN(x)) on (B, H, W, C) maps (eq. 3)."""

    attention_cls: type[nn.Module] = WindowAttention

    def __init__(
        self,
        dim: int,
        input_resolution: tuple[int, int],
        num_heads: int,
        window_size: int = 7,
        shift_size: int = 0,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        proj_drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        norm_layer: ModuleFactory = nn.LayerNorm,
        **attn_kwargs,
    ) -> None:
        super().__init__()
        self.input_resolution = input_resolution
        self.window_size, self.shift_size = fit_window(input_resolution, window_size, shift_size)
        self.norm1 = norm_layer(dim)
        self.attn = self.attention_cls(dim, num_heads, self.window_size, qkv_bias, attn_drop, proj_drop, **attn_kwargs)
        self.drop_path1 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=proj_drop)
        self.drop_path2 = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.register_buffer("attn_mask", self._mask(*input_resolution), persistent=False)

    def _mask(self, H: int, W: int) -> torch.Tensor | None:
        if not any(self.shift_size):
            return None
        Hp, Wp = (-(-H // self.window_size[0]) * self.window_size[0], -(-W // self.window_size[1]) * self.window_size[1])
        return shifted_window_mask(Hp, Wp, self.window_size, self.shift_size)

    def _shifted_window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Cyclic shift, pad to whole windows, attend within windows, and undo both (Fig. 4)."""
        B, H, W, C = x.shape
        shift = self.shift_size
        if any(shift):
            x = torch.roll(x, (-shift[0], -shift[1]), dims=(1, 2))
        pad_h, pad_w = (-H) % self.window_size[0], (-W) % self.window_size[1]
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        mask = self.attn_mask if (H, W) == self.input_resolution else self._mask(H, W)
        if mask is not None:
            mask = mask.to(x.dtype)
        windows = self.attn(window_partition(x, self.window_size), mask)
        x = window_reverse(windows, self.window_size, H + pad_h, W + pad_w)[:, :H, :W]
        if any(shift):
            x = torch.roll(x, shift, dims=(1, 2))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path1(self._shifted_window_attention(self.norm1(x)))
        return x + self.drop_path2(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """Concatenate each 2x2 neighbourhood (C -> 4C), LayerNorm, linear 4C -> 2C (section 3.1)."""

    def __init__(self, dim: int, out_dim: int | None = None, norm_layer: ModuleFactory = nn.LayerNorm) -> None:
        super().__init__()
        self.norm = norm_layer(4 * dim)
        self.reduction = nn.Linear(4 * dim, out_dim or 2 * dim, bias=False)

    def merge(self, x: torch.Tensor) -> torch.Tensor:
        B, H, W, C = x.shape
        x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
        # (x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]) concatenated, as the official code orders them
        return x.view(B, (H + 1) // 2, 2, (W + 1) // 2, 2, C).permute(0, 1, 3, 4, 2, 5).flatten(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.reduction(self.norm(self.merge(x)))


class SwinStage(nn.Module):
    """Patch merging (stages 2-4), then blocks alternating regular and shifted windows."""

    def __init__(self, dim: int, out_dim: int, input_resolution: tuple[int, int], depth: int, downsample: bool,
                 block: type[SwinTransformerBlock], merge: type[PatchMerging], window_size: int, drop_path: Sequence[float],
                 shifted: bool = True, norm_layer: ModuleFactory = nn.LayerNorm, **block_kwargs) -> None:
        super().__init__()
        self.downsample = merge(dim, out_dim, norm_layer) if downsample else nn.Identity()
        self.output_resolution = tuple((r + 1) // 2 for r in input_resolution) if downsample else input_resolution
        self.blocks = nn.Sequential(*[
            block(out_dim, self.output_resolution, window_size=window_size,
                  shift_size=window_size // 2 if (shifted and i % 2 == 1) else 0,
                  drop_path=drop_path[i], norm_layer=norm_layer, **block_kwargs)
            for i in range(depth)
        ])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class PoolHead(nn.Module):
    """Global average pool over an NHWC map, dropout, linear classifier (keys ``head.fc``)."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.drop = nn.Dropout(drop_rate)
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.drop(x.mean((1, 2)))
        return x if pre_logits else self.fc(x)


class SwinTransformer(nn.Module):
    """Swin: 4x4 patch embedding + LN, four stages of (shifted-)window blocks, LN, pooled linear head.

    ``shifted=False`` keeps every block on the regular window grid (the paper's Table 4 ablation).
    ``stage_block_args`` maps extra block arguments to one value per stage (used by Swin V2).
    """

    block_cls: type[SwinTransformerBlock] = SwinTransformerBlock
    merge_cls: type[PatchMerging] = PatchMerging

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int | Sequence[int] = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        shifted: bool = True,
        drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_layer: ModuleFactory = nn.LayerNorm,
        stage_block_args: dict[str, Sequence] | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        n = len(depths)
        dims = [embed_dim * 2**i for i in range(n)]
        windows = [window_size] * n if isinstance(window_size, int) else list(window_size)
        self.num_features = dims[-1]
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, norm_layer, output="nhwc")
        resolution = self.patch_embed.grid_size
        dprs = linear_drop_rates(drop_path_rate, sum(depths))
        stages, self.feature_info = [], []
        for i in range(n):
            stage = SwinStage(
                dims[max(i - 1, 0)], dims[i], resolution, depths[i], downsample=i > 0, block=self.block_cls,
                merge=self.merge_cls, window_size=windows[i], drop_path=dprs[sum(depths[:i]):sum(depths[:i + 1])],
                shifted=shifted, norm_layer=norm_layer, num_heads=num_heads[i], mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                proj_drop=proj_drop_rate, attn_drop=attn_drop_rate, **{k: v[i] for k, v in (stage_block_args or {}).items()},
            )
            resolution = stage.output_resolution
            stages.append(stage)
            self.feature_info.append(dict(num_chs=dims[i], reduction=patch_size * 2**i, module=f"layers.{i}"))
        self.layers = nn.Sequential(*stages)
        self.norm = norm_layer(self.num_features)
        self.head = PoolHead(self.num_features, num_classes, drop_rate)
        self.apply(trunc_normal_init)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.head.fc.apply(trunc_normal_init)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) image -> (B, H/32, W/32, C_4) normalised NHWC features."""
        return self.norm(self.layers(self.patch_embed(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """Stage outputs at ``indices`` (0-3, strides 4-32) as NCHW maps."""
        out = []
        x = self.patch_embed(x)
        for i, stage in enumerate(self.layers):
            if i > max(indices):
                break
            x = stage(x)
            if i in indices:
                out.append(x.permute(0, 3, 1, 2))
        return out

    def prune_for_features(self, max_index: int) -> list[str]:
        removed = [f"layers.{i}" for i in range(max_index + 1, len(self.layers))] + ["norm", "head"]
        self.layers = self.layers[: max_index + 1]
        self.norm, self.head = nn.Identity(), nn.Identity()
        return removed


# --------------------------------------------------------------------------------------- weight maps
_BUFFERS = ("relative_position_index", "relative_coords_table", "attn_mask")


def adapt_bias_tables(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Drop derived buffers and bi-cubically resize bias tables learned with another window size."""
    own = model.state_dict()
    out = {}
    for key, value in state.items():
        if key.rsplit(".", 1)[-1] in _BUFFERS:
            continue
        if key.endswith("relative_position_bias_table") and key in own and value.shape != own[key].shape:
            window = model.get_submodule(key.rsplit(".", 1)[0]).window_size
            value = resize_rel_pos_bias_table(value, window)
        out[key] = value
    return out


register_converter("swin", "timm")(adapt_bias_tables)


@register_converter("swin", "official")
def from_official(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The official repository merges patches at the *end* of stages 1-3 (``layers.i.downsample``); we (and
    timm) merge at the start of stages 2-4. Its classifier is ``head``; ours ``head.fc``."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) + 1)
        elif parts[0] == "head":
            parts.insert(1, "fc")
        out[".".join(parts)] = value
    return adapt_bias_tables(out, model)


def torchvision_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's Swin: ``features`` = [patch embed, stage 1, merge, stage 2, merge, ...], MLP as mlp.0/3."""
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "features":
            idx = int(parts[1])
            if idx == 0:
                parts = ["patch_embed", {"0": "proj", "2": "norm"}[parts[2]], *parts[3:]]
            elif idx % 2 == 1:
                parts = ["layers", str(idx // 2), "blocks", *parts[2:]]
            else:
                parts = ["layers", str(idx // 2), "downsample", *parts[2:]]
        elif parts[0] == "head":
            parts.insert(1, "fc")
        key = ".".join(parts).replace(".mlp.0.", ".mlp.fc1.").replace(".mlp.3.", ".mlp.fc2.")
        out[key] = value
    return out


register_converter("swin", "torchvision")(lambda state, model: adapt_bias_tables(torchvision_keys(state), model))

# --------------------------------------------------------------------------------------- variants
_RELEASE = "https://github.com/SwinTransformer/storage/releases/download/v1.0.0/"
_TV = {"tiny": ("swin_t", "swin_t-704ceda3.pth"), "small": ("swin_s", "swin_s-5e29d889.pth"),
       "base": ("swin_b", "swin_b-68c6b09e.pth")}
_CONFIGS = {  # size: (C, depths, heads)
    "tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "small": (96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "base": (128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "large": (192, (2, 2, 18, 2), (6, 12, 24, 48)),
}
# (size, window, resolution): Table 1's params (M) and FLOPs (G), and the official ImageNet weights file
_PAPER = {
    ("tiny", 7, 224): (28, 4.5, "swin_tiny_patch4_window7_224.pth"),
    ("small", 7, 224): (50, 8.7, "swin_small_patch4_window7_224.pth"),
    ("base", 7, 224): (88, 15.4, "swin_base_patch4_window7_224.pth"),
    ("large", 7, 224): (197, 34.5, "swin_large_patch4_window7_224_22kto1k.pth"),
    ("base", 12, 384): (88, 47.0, "swin_base_patch4_window12_384_22kto1k.pth"),
    ("large", 12, 384): (197, 103.9, "swin_large_patch4_window12_384_22kto1k.pth"),
}
_TIMM_TAG = {"tiny": "ms_in1k", "small": "ms_in22k_ft_in1k", "base": "ms_in22k_ft_in1k", "large": "ms_in22k_ft_in1k"}


def _swin(size: str, window: int, res: int, **kwargs) -> SwinTransformer:
    """Swin-<size> at res x res with patch 4 and the given window."""
    dim, depths, heads = _CONFIGS[size]
    args = dict(img_size=res, window_size=window, patch_size=4, embed_dim=dim, depths=depths, num_heads=heads)
    return SwinTransformer(**{**args, **kwargs})


def _meta(size: str, window: int, res: int) -> dict:
    """Registered metadata: Table 1's params and FLOPs, official and timm weights, torchvision's at 224."""
    params, flops, official = _PAPER[(size, window, res)]
    name = f"swin_{size}_patch4_window{window}_{res}"
    reference = {"timm": name}
    weights = {"official": _RELEASE + official,
               "timm": f"https://huggingface.co/timm/{name}.{_TIMM_TAG[size]}/resolve/main/model.safetensors"}
    if size in _TV and res == 224:
        reference["torchvision"] = _TV[size][0]
        weights["torchvision"] = "https://download.pytorch.org/models/" + _TV[size][1]
    return dict(input_size=(3, res, res), paper_params_m=params, paper_gflops=flops, reference=reference, weights=weights)


@register_model(paper="swin", **_meta("tiny", 7, 224))
def swin_tiny_patch4_window7_224(**kwargs) -> SwinTransformer:
    """Swin-T at 224x224, window 7: C=96, depths (2, 2, 6, 2)."""
    return _swin("tiny", 7, 224, **kwargs)


@register_model(paper="swin", **_meta("small", 7, 224))
def swin_small_patch4_window7_224(**kwargs) -> SwinTransformer:
    """Swin-S at 224x224, window 7: C=96, depths (2, 2, 18, 2)."""
    return _swin("small", 7, 224, **kwargs)


@register_model(paper="swin", **_meta("base", 7, 224))
def swin_base_patch4_window7_224(**kwargs) -> SwinTransformer:
    """Swin-B at 224x224, window 7: C=128, depths (2, 2, 18, 2)."""
    return _swin("base", 7, 224, **kwargs)


@register_model(paper="swin", **_meta("large", 7, 224))
def swin_large_patch4_window7_224(**kwargs) -> SwinTransformer:
    """Swin-L at 224x224, window 7: C=192, depths (2, 2, 18, 2)."""
    return _swin("large", 7, 224, **kwargs)


@register_model(paper="swin", **_meta("base", 12, 384))
def swin_base_patch4_window12_384(**kwargs) -> SwinTransformer:
    """Swin-B at 384x384, window 12: C=128, depths (2, 2, 18, 2)."""
    return _swin("base", 12, 384, **kwargs)


@register_model(paper="swin", **_meta("large", 12, 384))
def swin_large_patch4_window12_384(**kwargs) -> SwinTransformer:
    """Swin-L at 384x384, window 12: C=192, depths (2, 2, 18, 2)."""
    return _swin("large", 12, 384, **kwargs)
