"""Big Transfer (BiT): General Visual Representation Learning (Kolesnikov et al., 2019, arXiv:1912.11370).

BiT pre-trains ResNet-v2 networks on large data and fine-tunes them with one heuristic. This file holds

* ``ResNetV2`` — the pre-activation ResNet (He et al., 2016: norm and ReLU *before* each conv, the
  shortcut taken from the pre-activated input when it is projected, a final norm-ReLU before pooling)
  with BiT's two changes (Sec. 2.2 and 4.3): every BatchNorm becomes GroupNorm (32 groups) and every
  conv standardises its weights (``layers.StdConv2d``), so that nothing depends on the batch and
  training works at any batch size per device. Widths scale by a factor (R50x1 ... R152x4). The stem
  pads with zeros before its 3x3/2 max pool, as the original TensorFlow code does.
  ``norm_layer="bn", weight_std=False`` gives the BatchNorm baseline of the paper's Fig. 4.
* ``bit_hyperrule`` — BiT-HyperRule (Sec. 3.3): the fine-tuning schedule, resolution and MixUp chosen
  from the dataset's size and image resolution alone.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import DropPath, StdConv2d, get_norm_layer, linear_drop_rates, make_divisible
from ...registry import register_model
from ...weights import register_converter

__all__ = ["PreActBottleneck", "ResNetV2", "bit_hyperrule", "HyperRule"]

ModuleFactory = Callable[..., nn.Module]


class PreActBottleneck(nn.Module):
    """x -> act(norm1(x)) = p; y = conv3(act(norm3(conv2(act(norm2(conv1(p))))))) + (proj(p) or x)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, conv_layer: ModuleFactory, norm_layer: ModuleFactory,
                 project: bool, drop_path: float = 0.0) -> None:
        super().__init__()
        mid = make_divisible(out_chs * 0.25)
        self.downsample = _Projection(in_chs, out_chs, stride, conv_layer) if project else None
        self.norm1 = norm_layer(in_chs)
        self.conv1 = conv_layer(in_chs, mid, 1)
        self.norm2 = norm_layer(mid)
        self.conv2 = conv_layer(mid, mid, 3, stride=stride, padding=1)
        self.norm3 = norm_layer(mid)
        self.conv3 = conv_layer(mid, out_chs, 1)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = F.relu(self.norm1(x), inplace=True)
        shortcut = x if self.downsample is None else self.downsample(p)
        x = self.conv1(p)
        x = self.conv2(F.relu(self.norm2(x), inplace=True))
        x = self.conv3(F.relu(self.norm3(x), inplace=True))
        x = self.drop_path(x)
        x += shortcut
        return x


class _Projection(nn.Module):
    """1x1 (strided) conv on the pre-activated input; no norm after it (pre-activation)."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, conv_layer: ModuleFactory) -> None:
        super().__init__()
        self.conv = conv_layer(in_chs, out_chs, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class _Stage(nn.Module):
    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class ResNetV2(nn.Module):
    """Pre-activation ResNet: stem (7x7/2 conv, zero-pad, 3x3/2 max pool), four stages, norm-ReLU, classifier."""

    def __init__(
        self,
        layers: Sequence[int],
        width_factor: int = 1,
        num_classes: int = 1000,
        in_chans: int = 3,
        channels: Sequence[int] = (256, 512, 1024, 2048),
        stem_width: int = 64,
        norm_layer: str | ModuleFactory = "gn",
        weight_std: bool = True,
        ws_eps: float = 1e-8,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = False,
    ) -> None:
        super().__init__()
        norm = get_norm_layer(norm_layer)
        conv = functools.partial(StdConv2d, eps=ws_eps) if weight_std else nn.Conv2d
        self.num_classes, self.drop_rate = num_classes, drop_rate
        stem_chs = make_divisible(stem_width * width_factor)
        self.stem = nn.Sequential()
        self.stem.add_module("conv", conv(in_chans, stem_chs, 7, stride=2, padding=3))
        self.stem.add_module("pad", nn.ConstantPad2d(1, 0.0))
        self.stem.add_module("pool", nn.MaxPool2d(3, 2))
        self.feature_info = [dict(num_chs=stem_chs, reduction=2, module="stem.conv")]
        dprs = linear_drop_rates(drop_path_rate, sum(layers))
        prev, reduction, idx = stem_chs, 4, 0
        self.stages = nn.Sequential()
        for i, (n, c) in enumerate(zip(layers, channels, strict=True)):
            out = make_divisible(c * width_factor)
            stride = 1 if i == 0 else 2
            blocks = []
            for j in range(n):
                blocks.append(PreActBottleneck(prev if j == 0 else out, out, stride if j == 0 else 1, conv, norm,
                                               project=j == 0, drop_path=dprs[idx]))
                idx += 1
            self.stages.add_module(str(i), _Stage(blocks))
            prev, reduction = out, reduction * stride
            self.feature_info.append(dict(num_chs=out, reduction=reduction, module=f"stages.{i}"))
        self.num_features = prev
        self.norm = norm(prev)
        self.fc = nn.Linear(prev, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_last)

    def _init_weights(self, zero_init_last: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        if zero_init_last:
            for m in self.modules():
                if hasattr(m, "zero_init_last"):
                    m.zero_init_last()

    def reset_classifier(self, num_classes: int, zero_init: bool = False) -> None:
        """A new head; ``zero_init`` starts it at zero, as BiT does before fine-tuning."""
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()
        if num_classes > 0:
            nn.init.zeros_(self.fc.bias)
            if zero_init:
                nn.init.zeros_(self.fc.weight)
            else:
                nn.init.normal_(self.fc.weight, std=0.01)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.stages(self.stem(x))), inplace=True)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """Feature maps at ``indices``: 0 = the stem conv's output, 1-4 = the stages' (un-normalised) outputs."""
        out = []
        x = self.stem.conv(x)
        if 0 in indices:
            out.append(x)
        x = self.stem.pool(self.stem.pad(x))
        for i, stage in enumerate(self.stages, start=1):
            if i > max(indices):
                break
            x = stage(x)
            if i in indices:
                out.append(x)
        return out

    def prune_for_features(self, max_index: int) -> list[str]:
        removed = ["fc", "norm"]
        self.fc, self.norm = nn.Identity(), nn.Identity()
        keep = list(self.stages.children())[:max_index]
        for i in range(max_index, len(self.stages)):
            removed.append(f"stages.{i}")
        self.stages = nn.Sequential(*keep)
        return removed


@register_converter("resnetv2", "timm")
def _from_timm(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm's head is a 1x1 conv (``head.fc``); ours is a linear layer (``fc``)."""
    out = {}
    for k, v in state_dict.items():
        if k.startswith("head.fc."):
            k, v = "fc." + k[len("head.fc."):], v.flatten(1) if v.ndim == 4 else v
        out[k] = v
    return out


# ---------------------------------------------------------------------------------------------------
# BiT-HyperRule (Sec. 3.3): SGD with momentum 0.9, initial learning rate 0.003, batch 512, the new head
# initialised to zero. Schedule by dataset size: < 20k examples 500 steps, < 500k 10k steps, else 20k
# steps; linear warmup, then the rate drops 10x at 30%, 60% and 90% of training. Images under 96x96 are
# resized to 160 and randomly cropped to 128, larger ones to 448 and 384. MixUp (alpha 0.1) only from
# 20k examples up.

@dataclass(frozen=True)
class HyperRule:
    steps: int
    warmup_steps: int
    decay_steps: tuple[int, ...]
    lr: float
    batch_size: int
    resize: int
    crop: int
    mixup_alpha: float

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * step / self.warmup_steps
        return self.lr * 0.1 ** sum(step > s for s in self.decay_steps)


def bit_hyperrule(dataset_size: int, image_size: tuple[int, int], lr: float = 0.003, batch_size: int = 512,
                  scale: float = 1.0) -> HyperRule:
    """BiT's fine-tuning hyperparameters for a dataset of ``dataset_size`` images of ``image_size`` (H, W).
    ``scale`` shrinks the step counts (and warmup) proportionally, for miniature runs."""
    if dataset_size < 20_000:
        supports = (100, 200, 300, 400, 500)
    elif dataset_size < 500_000:
        supports = (500, 3000, 6000, 9000, 10_000)
    else:
        supports = (500, 6000, 12_000, 18_000, 20_000)
    supports = tuple(max(1, round(s * scale)) for s in supports)
    resize, crop = (160, 128) if image_size[0] * image_size[1] < 96 * 96 else (448, 384)
    return HyperRule(steps=supports[-1], warmup_steps=supports[0], decay_steps=supports[1:-1], lr=lr,
                     batch_size=batch_size, resize=resize, crop=crop,
                     mixup_alpha=0.0 if dataset_size < 20_000 else 0.1)


# ---------------------------------------------------------------------------------------------------
# Registered variants: BiT-S/M/L architectures R50x1 ... R152x4 (timm names).

_BIT = dict(paper="bit", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), input_size=(3, 448, 448))


@register_model(reference={"timm": "resnetv2_50x1_bit"}, **_BIT)
def resnetv2_50x1_bit(**kwargs) -> ResNetV2:
    """BiT ResNet-v2 R50x1: GroupNorm + Weight Standardization, widths x1."""
    return ResNetV2([3, 4, 6, 3], width_factor=1, **kwargs)


@register_model(reference={"timm": "resnetv2_50x3_bit"}, **_BIT)
def resnetv2_50x3_bit(**kwargs) -> ResNetV2:
    """BiT ResNet-v2 R50x3: GroupNorm + Weight Standardization, widths x3."""
    return ResNetV2([3, 4, 6, 3], width_factor=3, **kwargs)


@register_model(reference={"timm": "resnetv2_101x1_bit"}, **_BIT)
def resnetv2_101x1_bit(**kwargs) -> ResNetV2:
    """BiT ResNet-v2 R101x1: GroupNorm + Weight Standardization, widths x1."""
    return ResNetV2([3, 4, 23, 3], width_factor=1, **kwargs)


@register_model(reference={"timm": "resnetv2_101x3_bit"}, **_BIT)
def resnetv2_101x3_bit(**kwargs) -> ResNetV2:
    """BiT ResNet-v2 R101x3: GroupNorm + Weight Standardization, widths x3."""
    return ResNetV2([3, 4, 23, 3], width_factor=3, **kwargs)


@register_model(reference={"timm": "resnetv2_152x2_bit"}, **_BIT)
def resnetv2_152x2_bit(**kwargs) -> ResNetV2:
    """BiT ResNet-v2 R152x2: GroupNorm + Weight Standardization, widths x2."""
    return ResNetV2([3, 8, 36, 3], width_factor=2, **kwargs)


@register_model(reference={"timm": "resnetv2_152x4_bit"}, **_BIT)
def resnetv2_152x4_bit(**kwargs) -> ResNetV2:
    """BiT ResNet-v2 R152x4: GroupNorm + Weight Standardization, widths x4."""
    return ResNetV2([3, 8, 36, 3], width_factor=4, **kwargs)
