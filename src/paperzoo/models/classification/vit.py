"""An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale (Dosovitskiy et al., 2020,
arXiv:2010.11929).

The paper's contribution is to apply a standard Transformer encoder to images with as little image-specific
structure as possible (section 3.1):

* eq. 1: cut the image into P x P patches, flatten and linearly project each to D dimensions, prepend a
  learnable class token, and add learnable 1-D position embeddings (``PatchEmbed``, ``cls_token``,
  ``pos_embed``);
* eq. 2-3: L pre-norm blocks of multi-head self-attention and a GELU MLP with residual connections
  (``layers.TransformerBlock``);
* eq. 4: the class token's final state, layer-normed, feeds the classification head.

Section 3.2: to use another resolution, keep the patch size (longer sequence) and 2-D interpolate the
pre-trained position embeddings; ``img_size=`` at construction, the weight converters (when loading weights
of another resolution) and ``forward`` (on inputs of another size) all do this.

Table 1 sizes: Ti(ny, from DeiT)/S/B/L/H = width 192/384/768/1024/1280, depth 12/12/12/24/32, heads
3/6/12/16/16, MLP 4x. ``features_only`` returns chosen blocks' patch tokens reshaped to (B, D, H/P, W/P)
maps, the form dense-prediction heads (SAM, DPT, ViTDet) consume.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import PatchEmbed, TransformerBlock, linear_drop_rates, resample_abs_pos_embed, trunc_normal_init
from ...registry import register_model
from ...weights import register_converter

__all__ = ["VisionTransformer"]


class VisionTransformer(nn.Module):
    """ViT: patch embedding, class token + position embeddings, ``depth`` Transformer blocks, LN, head."""

    num_prefix_tokens = 1

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        pos_drop_rate: float = 0.0,
        proj_drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        norm_eps: float = 1e-6,
    ) -> None:
        super().__init__()
        norm = partial(nn.LayerNorm, eps=norm_eps)
        self.num_classes = num_classes
        self.num_features = self.embed_dim = embed_dim
        self.patch_size = patch_size
        self.drop_rate = drop_rate
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix_tokens + self.patch_embed.num_patches, embed_dim))
        self.pos_drop = nn.Dropout(pos_drop_rate)
        dprs = linear_drop_rates(drop_path_rate, depth)
        self.blocks = nn.Sequential(*[
            TransformerBlock(embed_dim, num_heads, mlp_ratio, qkv_bias, proj_drop_rate, attn_drop_rate, dprs[i], norm_layer=norm)
            for i in range(depth)
        ])
        self.norm = norm(embed_dim)
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [dict(num_chs=embed_dim, reduction=patch_size, module=f"blocks.{i}") for i in range(depth)]
        self._init_weights()

    def _init_weights(self) -> None:
        # Truncated-normal(0.02) Linear weights, zero biases, position embeddings as DeiT/timm initialise them.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        self.apply(trunc_normal_init)

    def prefix_tokens(self) -> list[nn.Parameter]:
        """Learned tokens prepended to the patch sequence (the class token; DeiT adds a distillation token)."""
        return [self.cls_token]

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.head.apply(trunc_normal_init)

    def _embed(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Eq. 1: patch tokens, prefix tokens, position embeddings (interpolated if the grid changed)."""
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        x = self.patch_embed(x)
        pos = self.pos_embed
        if grid != self.patch_embed.grid_size:
            pos = resample_abs_pos_embed(pos, grid, self.patch_embed.grid_size, self.num_prefix_tokens)
        x = torch.cat([t.expand(x.shape[0], -1, -1) for t in self.prefix_tokens()] + [x], dim=1)
        return self.pos_drop(x + pos), grid

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self._embed(x)
        return self.norm(self.blocks(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 0]
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """Patch tokens after the blocks at ``indices``, as (B, D, H/P, W/P) maps (no final norm, like timm)."""
        x, (h, w) = self._embed(x)
        out = []
        for i, block in enumerate(self.blocks):
            if i > max(indices):
                break
            x = block(x)
            if i in indices:
                out.append(x[:, self.num_prefix_tokens:].reshape(x.shape[0], h, w, -1).permute(0, 3, 1, 2))
        return out

    def prune_for_features(self, max_index: int) -> list[str]:
        """Drop the blocks after ``max_index``, the final norm and the head; return the removed prefixes."""
        removed = [f"blocks.{i}" for i in range(max_index + 1, len(self.blocks))] + ["norm", "head"]
        self.blocks = self.blocks[: max_index + 1]
        self.norm, self.head = nn.Identity(), nn.Identity()
        return removed


# --------------------------------------------------------------------------------------- weight maps
def adapt_pos_embed(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Interpolate a checkpoint's position embeddings to ``model``'s patch grid (section 3.2)."""
    pos = state.get("pos_embed")
    if pos is not None and pos.shape != model.pos_embed.shape:
        state["pos_embed"] = resample_abs_pos_embed(pos, model.patch_embed.grid_size, None, model.num_prefix_tokens)
    return state


register_converter("vit", "timm")(adapt_pos_embed)


@register_converter("vit", "torchvision")
def _from_torchvision(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision's VisionTransformer: conv_proj, encoder.layers.encoder_layer_i.{ln_1, self_attention, ln_2,
    mlp.0/3}, encoder.ln, heads.head; its attention packs q, k, v as ``in_proj`` in the same order as ``qkv``."""
    names = {"class_token": "cls_token", "encoder.pos_embedding": "pos_embed", "conv_proj.": "patch_embed.proj.",
             "encoder.ln.": "norm.", "heads.head.": "head.", "encoder.layers.encoder_layer_": "blocks.",
             ".ln_1.": ".norm1.", ".ln_2.": ".norm2.", ".self_attention.in_proj_weight": ".attn.qkv.weight",
             ".self_attention.in_proj_bias": ".attn.qkv.bias", ".self_attention.out_proj.": ".attn.proj.",
             ".mlp.0.": ".mlp.fc1.", ".mlp.3.": ".mlp.fc2."}
    out = {}
    for key, value in state.items():
        for old, new in names.items():
            key = key.replace(old, new)
        out[key] = value
    return adapt_pos_embed(out, model)


# --------------------------------------------------------------------------------------- variants
_SIZES = {  # name: (embed_dim, depth, num_heads)
    "tiny": (192, 12, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
    "huge": (1280, 32, 16),
}
# Table 1's parameter counts, for the patch sizes its models use (ViT-B/16, ViT-L/16, ViT-H/14).
_PAPER_PARAMS_M = {("base", 16): 86, ("large", 16): 307, ("huge", 14): 632}
_TV = {"base_patch16": ("vit_b_16", "vit_b_16-c867db91.pth"), "base_patch32": ("vit_b_32", "vit_b_32-d86f8d99.pth"),
       "large_patch16": ("vit_l_16", "vit_l_16-852ce7e3.pth"), "large_patch32": ("vit_l_32", "vit_l_32-c7638314.pth"),
       "huge_patch14": ("vit_h_14", "vit_h_14_lc_swag-c1eb923e.pth")}
_TIMM_HUB = {  # timm's default pretrained tag for each name that has 1000-class weights
    "vit_tiny_patch16_224": "augreg_in21k_ft_in1k", "vit_tiny_patch16_384": "augreg_in21k_ft_in1k",
    "vit_small_patch32_224": "augreg_in21k_ft_in1k", "vit_small_patch32_384": "augreg_in21k_ft_in1k",
    "vit_small_patch16_224": "augreg_in21k_ft_in1k", "vit_small_patch16_384": "augreg_in21k_ft_in1k",
    "vit_base_patch32_224": "augreg_in21k_ft_in1k", "vit_base_patch32_384": "augreg_in21k_ft_in1k",
    "vit_base_patch16_224": "augreg2_in21k_ft_in1k", "vit_base_patch16_384": "augreg_in21k_ft_in1k",
    "vit_large_patch32_384": "orig_in21k_ft_in1k", "vit_large_patch16_224": "augreg_in21k_ft_in1k",
    "vit_large_patch16_384": "augreg_in21k_ft_in1k",
}


def timm_hub_url(name: str, tag: str) -> str:
    """Download URL of timm's safetensors weights on the Hugging Face hub."""
    return f"https://huggingface.co/timm/{name}.{tag}/resolve/main/model.safetensors"


def _vit(size: str, patch: int, res: int, **kwargs) -> VisionTransformer:
    """ViT-<size>/<patch> at res x res with Table 1's width, depth and heads."""
    dim, depth, heads = _SIZES[size]
    args = dict(img_size=res, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads)
    return VisionTransformer(**{**args, **kwargs})


def _meta(size: str, patch: int, res: int) -> dict:
    """Registered metadata: [-1, 1] normalisation, Table 1's params, timm's and (at 224) torchvision's weights."""
    name = f"vit_{size}_patch{patch}_{res}"
    reference = {"timm": name}
    weights = {}
    if name in _TIMM_HUB:
        weights["timm"] = timm_hub_url(name, _TIMM_HUB[name])
    tv = _TV.get(f"{size}_patch{patch}")
    if tv and res == 224:
        reference["torchvision"] = tv[0]
        weights["torchvision"] = "https://download.pytorch.org/models/" + tv[1]
    return dict(input_size=(3, res, res), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                paper_params_m=_PAPER_PARAMS_M.get((size, patch)), reference=reference, weights=weights)


@register_model(paper="vit", **_meta("tiny", 16, 224))
def vit_tiny_patch16_224(**kwargs) -> VisionTransformer:
    """ViT-T/16 at 224x224: width 192, depth 12, 3 heads."""
    return _vit("tiny", 16, 224, **kwargs)


@register_model(paper="vit", **_meta("tiny", 16, 384))
def vit_tiny_patch16_384(**kwargs) -> VisionTransformer:
    """ViT-T/16 at 384x384: width 192, depth 12, 3 heads."""
    return _vit("tiny", 16, 384, **kwargs)


@register_model(paper="vit", **_meta("small", 32, 224))
def vit_small_patch32_224(**kwargs) -> VisionTransformer:
    """ViT-S/32 at 224x224: width 384, depth 12, 6 heads."""
    return _vit("small", 32, 224, **kwargs)


@register_model(paper="vit", **_meta("small", 32, 384))
def vit_small_patch32_384(**kwargs) -> VisionTransformer:
    """ViT-S/32 at 384x384: width 384, depth 12, 6 heads."""
    return _vit("small", 32, 384, **kwargs)


@register_model(paper="vit", **_meta("small", 16, 224))
def vit_small_patch16_224(**kwargs) -> VisionTransformer:
    """ViT-S/16 at 224x224: width 384, depth 12, 6 heads."""
    return _vit("small", 16, 224, **kwargs)


@register_model(paper="vit", **_meta("small", 16, 384))
def vit_small_patch16_384(**kwargs) -> VisionTransformer:
    """ViT-S/16 at 384x384: width 384, depth 12, 6 heads."""
    return _vit("small", 16, 384, **kwargs)


@register_model(paper="vit", **_meta("base", 32, 224))
def vit_base_patch32_224(**kwargs) -> VisionTransformer:
    """ViT-B/32 at 224x224: width 768, depth 12, 12 heads."""
    return _vit("base", 32, 224, **kwargs)


@register_model(paper="vit", **_meta("base", 32, 384))
def vit_base_patch32_384(**kwargs) -> VisionTransformer:
    """ViT-B/32 at 384x384: width 768, depth 12, 12 heads."""
    return _vit("base", 32, 384, **kwargs)


@register_model(paper="vit", **_meta("base", 16, 224))
def vit_base_patch16_224(**kwargs) -> VisionTransformer:
    """ViT-B/16 at 224x224: width 768, depth 12, 12 heads."""
    return _vit("base", 16, 224, **kwargs)


@register_model(paper="vit", **_meta("base", 16, 384))
def vit_base_patch16_384(**kwargs) -> VisionTransformer:
    """ViT-B/16 at 384x384: width 768, depth 12, 12 heads."""
    return _vit("base", 16, 384, **kwargs)


@register_model(paper="vit", **_meta("large", 32, 224))
def vit_large_patch32_224(**kwargs) -> VisionTransformer:
    """ViT-L/32 at 224x224: width 1024, depth 24, 16 heads."""
    return _vit("large", 32, 224, **kwargs)


@register_model(paper="vit", **_meta("large", 32, 384))
def vit_large_patch32_384(**kwargs) -> VisionTransformer:
    """ViT-L/32 at 384x384: width 1024, depth 24, 16 heads."""
    return _vit("large", 32, 384, **kwargs)


@register_model(paper="vit", **_meta("large", 16, 224))
def vit_large_patch16_224(**kwargs) -> VisionTransformer:
    """ViT-L/16 at 224x224: width 1024, depth 24, 16 heads."""
    return _vit("large", 16, 224, **kwargs)


@register_model(paper="vit", **_meta("large", 16, 384))
def vit_large_patch16_384(**kwargs) -> VisionTransformer:
    """ViT-L/16 at 384x384: width 1024, depth 24, 16 heads."""
    return _vit("large", 16, 384, **kwargs)


@register_model(paper="vit", **_meta("large", 14, 224))
def vit_large_patch14_224(**kwargs) -> VisionTransformer:
    """ViT-L/14 at 224x224: width 1024, depth 24, 16 heads."""
    return _vit("large", 14, 224, **kwargs)


@register_model(paper="vit", **_meta("huge", 14, 224))
def vit_huge_patch14_224(**kwargs) -> VisionTransformer:
    """ViT-H/14 at 224x224: width 1280, depth 32, 16 heads."""
    return _vit("huge", 14, 224, **kwargs)
