"""Training data-efficient image transformers & distillation through attention (Touvron et al., 2020,
arXiv:2012.12877).

DeiT keeps ViT's architecture (``vit.VisionTransformer``; DeiT-Ti/S/B = ViT-Ti/S/B with ImageNet's
normalisation) and contributes a training recipe plus one architectural addition, the *distillation token*
(section 4, Fig. 2): a second learned token, appended beside the class token, that attends to the patches
and the class token through every layer and whose output feeds its own linear head. During training the
class head learns from the true label and the distillation head from the teacher's hard decision
y_t = argmax Z_t (eq. "hard-label distillation"; the loss lives in ``paperzoo.train.distill``); at test time
the two heads' outputs are averaged ("late fusion", section 5.2 "DeiT⚗").

``DistilledVisionTransformer.forward`` returns that average; with ``distilled_training`` switched on and
the model in training mode it returns the two heads' logits (class, distillation) for the loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import trunc_normal_init
from ...registry import register_model
from ...weights import register_converter
from .vit import VisionTransformer, adapt_pos_embed, timm_hub_url

__all__ = ["DistilledVisionTransformer"]


class DistilledVisionTransformer(VisionTransformer):
    """ViT with a distillation token after the class token and a second head ``head_dist`` on it."""

    num_prefix_tokens = 2

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.distilled_training = False
        self.dist_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        nn.init.trunc_normal_(self.dist_token, std=0.02)
        self.head_dist = nn.Identity()
        self.reset_classifier(self.num_classes)

    def prefix_tokens(self) -> list[nn.Parameter]:
        return [self.cls_token, self.dist_token]

    def set_distilled_training(self, enable: bool = True) -> None:
        """In training mode, return (class logits, distillation logits) instead of their average."""
        self.distilled_training = enable

    def reset_classifier(self, num_classes: int) -> None:
        super().reset_classifier(num_classes)
        self.head_dist = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.head_dist.apply(trunc_normal_init)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        x_cls, x_dist = x[:, 0], x[:, 1]
        if self.drop_rate > 0:
            x_cls, x_dist = F.dropout(x_cls, self.drop_rate, self.training), F.dropout(x_dist, self.drop_rate, self.training)
        if pre_logits:
            return (x_cls + x_dist) / 2
        x_cls, x_dist = self.head(x_cls), self.head_dist(x_dist)
        if self.distilled_training and self.training:
            return x_cls, x_dist
        return (x_cls + x_dist) / 2

    def prune_for_features(self, max_index: int) -> list[str]:
        removed = super().prune_for_features(max_index)
        self.head_dist = nn.Identity()
        return removed + ["head_dist"]


# DeiT was built on timm: timm's and the official repository's checkpoints use our names.
register_converter("deit", "timm", "official")(adapt_pos_embed)

# --------------------------------------------------------------------------------------- variants
# width, heads, params (M) of Table 1 (DeiT) and Table 5 (DeiT⚗, one more token and head)
_SIZES = {"tiny": (192, 3, 5, 6), "small": (384, 6, 22, 22), "base": (768, 12, 86, 87)}
_OFFICIAL = {
    "deit_tiny_patch16_224": "deit_tiny_patch16_224-a1311bcf.pth",
    "deit_small_patch16_224": "deit_small_patch16_224-cd65a155.pth",
    "deit_base_patch16_224": "deit_base_patch16_224-b5f2ef4d.pth",
    "deit_base_patch16_384": "deit_base_patch16_384-8de9b5d1.pth",
    "deit_tiny_distilled_patch16_224": "deit_tiny_distilled_patch16_224-b40b3cf7.pth",
    "deit_small_distilled_patch16_224": "deit_small_distilled_patch16_224-649709d9.pth",
    "deit_base_distilled_patch16_224": "deit_base_distilled_patch16_224-df68dfff.pth",
    "deit_base_distilled_patch16_384": "deit_base_distilled_patch16_384-d0272ac0.pth",
}


def _deit(size: str, distilled: bool, res: int, **kwargs) -> VisionTransformer:
    """DeiT-{Ti,S,B}(⚗) at res x res: ViT with depth 12, patch 16 and Table 1's width and heads."""
    dim, heads, _, _ = _SIZES[size]
    cls = DistilledVisionTransformer if distilled else VisionTransformer
    args = dict(img_size=res, patch_size=16, embed_dim=dim, depth=12, num_heads=heads)
    return cls(**{**args, **kwargs})


def _meta(name: str, size: str, distilled: bool, res: int) -> dict:
    """Registered metadata: input size, the paper's parameter count, official and timm weights, and the
    classifier(s) a fine-tune re-initialises (DeiT⚗ has two heads, as timm's ``default_cfg`` lists)."""
    _, _, params, params_distilled = _SIZES[size]
    weights = {"official": "https://dl.fbaipublicfiles.com/deit/" + _OFFICIAL[name], "timm": timm_hub_url(name, "fb_in1k")}
    return dict(input_size=(3, res, res), paper_params_m=params_distilled if distilled else params,
                reference={"timm": name}, weights=weights, classifier=("head", "head_dist") if distilled else ("head",))


@register_model(paper="deit", **_meta("deit_tiny_patch16_224", "tiny", False, 224))
def deit_tiny_patch16_224(**kwargs) -> VisionTransformer:
    """DeiT-Ti at 224x224: width 192, depth 12, 3 heads."""
    return _deit("tiny", False, 224, **kwargs)


@register_model(paper="deit", **_meta("deit_small_patch16_224", "small", False, 224))
def deit_small_patch16_224(**kwargs) -> VisionTransformer:
    """DeiT-S at 224x224: width 384, depth 12, 6 heads."""
    return _deit("small", False, 224, **kwargs)


@register_model(paper="deit", **_meta("deit_base_patch16_224", "base", False, 224))
def deit_base_patch16_224(**kwargs) -> VisionTransformer:
    """DeiT-B at 224x224: width 768, depth 12, 12 heads."""
    return _deit("base", False, 224, **kwargs)


@register_model(paper="deit", **_meta("deit_base_patch16_384", "base", False, 384))
def deit_base_patch16_384(**kwargs) -> VisionTransformer:
    """DeiT-B fine-tuned at 384x384: width 768, depth 12, 12 heads."""
    return _deit("base", False, 384, **kwargs)


@register_model(paper="deit", **_meta("deit_tiny_distilled_patch16_224", "tiny", True, 224))
def deit_tiny_distilled_patch16_224(**kwargs) -> DistilledVisionTransformer:
    """DeiT-Ti⚗ (with distillation token) at 224x224: width 192, depth 12, 3 heads."""
    return _deit("tiny", True, 224, **kwargs)


@register_model(paper="deit", **_meta("deit_small_distilled_patch16_224", "small", True, 224))
def deit_small_distilled_patch16_224(**kwargs) -> DistilledVisionTransformer:
    """DeiT-S⚗ (with distillation token) at 224x224: width 384, depth 12, 6 heads."""
    return _deit("small", True, 224, **kwargs)


@register_model(paper="deit", **_meta("deit_base_distilled_patch16_224", "base", True, 224))
def deit_base_distilled_patch16_224(**kwargs) -> DistilledVisionTransformer:
    """DeiT-B⚗ (with distillation token) at 224x224: width 768, depth 12, 12 heads."""
    return _deit("base", True, 224, **kwargs)


@register_model(paper="deit", **_meta("deit_base_distilled_patch16_384", "base", True, 384))
def deit_base_distilled_patch16_384(**kwargs) -> DistilledVisionTransformer:
    """DeiT-B⚗ (with distillation token) fine-tuned at 384x384: width 768, depth 12, 12 heads."""
    return _deit("base", True, 384, **kwargs)
