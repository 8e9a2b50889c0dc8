"""A ConvNet for the 2020s (Liu et al., 2022, arXiv:2201.03545).

The paper "modernises" a ResNet-50 step by step towards a Swin-T-like design (section 2, Fig. 2) and shows
that a pure ConvNet built this way matches the Transformer. The end point, implemented here:

* macro design (2.2): stage compute ratio (3, 3, 9, 3) like Swin-T's (1, 1, 3, 1); a "patchify" stem, a
  4x4 stride-4 convolution followed by LayerNorm;
* ResNeXt-ify (2.3): depthwise convolution, width raised to Swin's 96 channels;
* inverted bottleneck (2.4): the MLP expands 4x like a Transformer's;
* large kernels (2.5): the depthwise conv moves to the top of the block and grows to 7x7;
* micro design (2.6): GELU instead of ReLU, one activation and one normalisation per block, LayerNorm
  instead of BatchNorm, and separate downsampling layers (LayerNorm + 2x2 stride-2 conv) between stages.

Block (Fig. 4): x + gamma * Linear(GELU(Linear(LN(DWConv7x7(x))))), the two 1x1 convs written as Linear
layers on channels-last tensors, gamma a per-channel layer scale initialised to 1e-6, with stochastic depth.
Table 9 variants: T (96; 3,3,9,3), S (96; 3,3,27,3), B (128), L (192), XL (256), widths doubling per stage.
``reproduce/convnext.py`` walks the modernisation ladder in miniature.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import DropPath, LayerNorm2d, Mlp, linear_drop_rates, trunc_normal_init
from ...registry import register_model
from ...weights import identity, register_converter

__all__ = ["ConvNeXt", "ConvNeXtBlock"]

EPS = 1e-6


class ConvNeXtBlock(nn.Module):
    """DWConv k x k -> LN -> Linear 4x -> GELU -> Linear -> layer scale -> drop path -> + shortcut."""

    def __init__(self, dim: int, drop_path: float = 0.0, ls_init_value: float | None = 1e-6, kernel_size: int = 7,
                 mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=EPS)
        self.mlp = Mlp(dim, int(mlp_ratio * dim))
        self.gamma = nn.Parameter(torch.full((dim,), ls_init_value)) if ls_init_value is not None else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mlp(self.norm(self.conv_dw(x).permute(0, 2, 3, 1)))
        if self.gamma is not None:
            y = y * self.gamma
        return x + self.drop_path(y.permute(0, 3, 1, 2))


class ConvNeXtStage(nn.Module):
    """Downsampling layer (LN + 2x2 stride-2 conv; none in stage 1) followed by ``depth`` blocks."""

    def __init__(self, in_dim: int, out_dim: int, depth: int, downsample: bool, drop_path: Sequence[float], **block_kwargs) -> None:
        super().__init__()
        self.downsample = (nn.Sequential(LayerNorm2d(in_dim, eps=EPS), nn.Conv2d(in_dim, out_dim, 2, 2))
                           if downsample else nn.Identity())
        self.blocks = nn.Sequential(*[ConvNeXtBlock(out_dim, drop_path[i], **block_kwargs) for i in range(depth)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.downsample(x))


class NormHead(nn.Module):
    """Global average pool, LayerNorm, dropout, linear classifier (keys ``head.norm``, ``head.fc``)."""

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(in_features, eps=EPS)
        self.drop_rate = drop_rate
        self.fc = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.norm(x.mean((2, 3)))
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)


class ConvNeXt(nn.Module):
    """ConvNeXt: patchify stem, four stages of ConvNeXt blocks, pooled LayerNorm head."""

    def __init__(
        self,
        in_chans: int = 3,
        num_classes: int = 1000,
        depths: Sequence[int] = (3, 3, 9, 3),
        dims: Sequence[int] = (96, 192, 384, 768),
        kernel_size: int = 7,
        ls_init_value: float | None = 1e-6,
        patch_size: int = 4,
        head_init_scale: float = 1.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.num_features = dims[-1]
        self.stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], patch_size, patch_size), LayerNorm2d(dims[0], eps=EPS))
        dprs = linear_drop_rates(drop_path_rate, sum(depths))
        stages, self.feature_info = [], []
        for i, (depth, dim) in enumerate(zip(depths, dims, strict=True)):
            start = sum(depths[:i])
            stages.append(ConvNeXtStage(dims[max(i - 1, 0)], dim, depth, i > 0, dprs[start:start + depth],
                                        ls_init_value=ls_init_value, kernel_size=kernel_size))
            self.feature_info.append(dict(num_chs=dim, reduction=patch_size * 2**i, module=f"stages.{i}"))
        self.stages = nn.Sequential(*stages)
        self.head = NormHead(dims[-1], num_classes, drop_rate)
        self.apply(_init_weights)  # Appendix A: truncated normal (std 0.02) for conv and linear weights
        if isinstance(self.head.fc, nn.Linear):
            with torch.no_grad():
                self.head.fc.weight.mul_(head_init_scale)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        self.head.fc.apply(_init_weights)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(_channels_last(x)))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """Stage outputs at ``indices`` (0-3, strides 4-32), NCHW."""
        out = []
        x = self.stem(_channels_last(x))
        for i, stage in enumerate(self.stages):
            if i > max(indices):
                break
            x = stage(x)
            if i in indices:
                out.append(x)
        return out

    def prune_for_features(self, max_index: int) -> list[str]:
        removed = [f"stages.{i}" for i in range(max_index + 1, len(self.stages))] + ["head"]
        self.stages = self.stages[: max_index + 1]
        self.head = nn.Identity()
        return removed


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """The network runs on channels-last memory: each block's NHWC view for LayerNorm and the MLP is then free
    (no copies forward or backward); shapes stay NCHW."""
    return x.contiguous(memory_format=torch.channels_last)


_init_weights = partial(trunc_normal_init, types=(nn.Conv2d, nn.Linear))


# --------------------------------------------------------------------------------------- weight maps
register_converter("convnext", "timm")(identity)


def _rename(state: dict[str, torch.Tensor], rules: list[tuple[str, object]]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        for pattern, repl in rules:
            key = re.sub(pattern, repl, key)
        out[key] = value.flatten() if key.endswith(".gamma") else value
    return out


@register_converter("convnext", "torchvision")
def _from_torchvision(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision: features = [stem, stage 1, downsample, stage 2, ...], block = [dwconv, permute, LN,
    Linear, GELU, Linear, permute] with ``layer_scale`` (C, 1, 1); classifier = [LN2d, flatten, Linear]."""
    rules = [(r"^features\.0\.", "stem."),
             (r"^features\.(\d+)\.(\d+)\.", lambda m: (f"stages.{int(m[1]) // 2}.blocks.{m[2]}." if int(m[1]) % 2
                                                       else f"stages.{int(m[1]) // 2}.downsample.{m[2]}.")),
             (r"\.block\.0\.", ".conv_dw."), (r"\.block\.2\.", ".norm."), (r"\.block\.3\.", ".mlp.fc1."),
             (r"\.block\.5\.", ".mlp.fc2."), (r"\.layer_scale$", ".gamma"),
             (r"^classifier\.0\.", "head.norm."), (r"^classifier\.2\.", "head.fc.")]
    return _rename(state, rules)


@register_converter("convnext", "official")
def _from_official(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The official repository: ``downsample_layers`` (0 = stem), ``stages.i.j`` with dwconv/pwconv1/pwconv2,
    a final ``norm`` and ``head``."""
    rules = [(r"^downsample_layers\.0\.", "stem."), (r"^downsample_layers\.(\d+)\.", r"stages.\1.downsample."),
             (r"^stages\.(\d+)\.(\d+)\.", r"stages.\1.blocks.\2."), (r"\.dwconv\.", ".conv_dw."),
             (r"\.pwconv(\d)\.", r".mlp.fc\1."), (r"^norm\.", "head.norm."), (r"^head\.(weight|bias)$", r"head.fc.\1")]
    return _rename(state, rules)


# --------------------------------------------------------------------------------------- variants
_CONFIGS = {  # size: (depths, dims, Table 9 params (M), FLOPs (G) at 224)
    "tiny": ((3, 3, 9, 3), (96, 192, 384, 768), 28, 4.5),
    "small": ((3, 3, 27, 3), (96, 192, 384, 768), 50, 8.7),
    "base": ((3, 3, 27, 3), (128, 256, 512, 1024), 89, 15.4),
    "large": ((3, 3, 27, 3), (192, 384, 768, 1536), 198, 34.4),
    "xlarge": ((3, 3, 27, 3), (256, 512, 1024, 2048), 350, 60.9),
}
_FB = "https://dl.fbaipublicfiles.com/convnext/"
_OFFICIAL = {"tiny": "convnext_tiny_1k_224_ema.pth", "small": "convnext_small_1k_224_ema.pth",
             "base": "convnext_base_1k_224_ema.pth", "large": "convnext_large_1k_224_ema.pth",
             "xlarge": "convnext_xlarge_22k_1k_224_ema.pth"}
_TV = {"tiny": "convnext_tiny-983f1562.pth", "small": "convnext_small-0c510722.pth",
       "base": "convnext_base-6075fbad.pth", "large": "convnext_large-ea097f82.pth"}


def _convnext(size: str, **kwargs) -> ConvNeXt:
    """ConvNeXt-<size> with Table 9's stage depths and widths."""
    depths, dims, _, _ = _CONFIGS[size]
    return ConvNeXt(**{**dict(depths=depths, dims=dims), **kwargs})


def _meta(size: str) -> dict:
    """Registered metadata: Table 9's params and FLOPs, official and (but for XL) torchvision weights."""
    _, _, params, flops = _CONFIGS[size]
    name = f"convnext_{size}"
    reference = {"timm": name}
    weights = {"official": _FB + _OFFICIAL[size]}
    if size in _TV:
        reference["torchvision"] = name
        weights["torchvision"] = "https://download.pytorch.org/models/" + _TV[size]
    return dict(paper_params_m=params, paper_gflops=flops, reference=reference, weights=weights)


@register_model(paper="convnext", **_meta("tiny"))
def convnext_tiny(**kwargs) -> ConvNeXt:
    """ConvNeXt-T: widths (96, 192, 384, 768), depths (3, 3, 9, 3)."""
    return _convnext("tiny", **kwargs)


@register_model(paper="convnext", **_meta("small"))
def convnext_small(**kwargs) -> ConvNeXt:
    """ConvNeXt-S: widths (96, 192, 384, 768), depths (3, 3, 27, 3)."""
    return _convnext("small", **kwargs)


@register_model(paper="convnext", **_meta("base"))
def convnext_base(**kwargs) -> ConvNeXt:
    """ConvNeXt-B: widths (128, 256, 512, 1024), depths (3, 3, 27, 3)."""
    return _convnext("base", **kwargs)


@register_model(paper="convnext", **_meta("large"))
def convnext_large(**kwargs) -> ConvNeXt:
    """ConvNeXt-L: widths (192, 384, 768, 1536), depths (3, 3, 27, 3)."""
    return _convnext("large", **kwargs)


@register_model(paper="convnext", **_meta("xlarge"))
def convnext_xlarge(**kwargs) -> ConvNeXt:
    """ConvNeXt-XL: widths (256, 512, 1024, 2048), depths (3, 3, 27, 3)."""
    return _convnext("xlarge", **kwargs)
