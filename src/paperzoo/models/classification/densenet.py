"""Densely Connected Convolutional Networks (Huang et al., 2016, arXiv:1608.06993).

Inside a dense block every layer receives the concatenation of all earlier feature maps,
x_l = H_l([x_0, x_1, ..., x_{l-1}]) (eq. 2), and adds only k new maps (the growth rate), so features are
reused instead of re-learned. H_l is BN-ReLU-Conv3x3; DenseNet-B puts a BN-ReLU-Conv1x1 bottleneck with
4k outputs in front of it, and DenseNet-C compresses the maps by theta = 0.5 in the transition layers
(BN-Conv1x1-AvgPool2x2) between blocks (sec. 3). ``DenseNet`` builds both the ImageNet networks of Table 1
(7x7 stem with max pooling, four blocks; DenseNet-BC with k = 32, or 48 for 161) in torchvision's
layout, and the CIFAR networks of Table 2 (a 3x3 stem of 16 or 2k filters, three blocks of equal depth).
"""
from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ...registry import register_model
from ...weights import identity, register_converter

__all__ = ["DenseLayer", "DenseNet"]


class DenseLayer(nn.Module):
    """H_l: [BN-ReLU-Conv1x1 (bn_size * k)] - BN-ReLU-Conv3x3 (k); returns only the k new maps."""

    def __init__(self, in_chs: int, growth_rate: int, bn_size: int | None = 4, drop_rate: float = 0.0) -> None:
        super().__init__()
        mid = in_chs
        self.bottleneck = bool(bn_size)
        if bn_size:
            mid = bn_size * growth_rate
            self.norm1 = nn.BatchNorm2d(in_chs)
            self.relu1 = nn.ReLU(inplace=True)
            self.conv1 = nn.Conv2d(in_chs, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, growth_rate, 3, padding=1, bias=False)
        self.drop = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bottleneck:
            x = self.conv1(self.relu1(self.norm1(x)))
        return self.drop(self.conv2(self.relu2(self.norm2(x))))


class DenseBlock(nn.ModuleDict):
    """x <- [x, H_l(x)] for each layer: the concatenation grows by k channels per layer (eq. 2)."""

    def __init__(self, n_layers: int, in_chs: int, growth_rate: int, bn_size: int | None, drop_rate: float) -> None:
        super().__init__({f"denselayer{i + 1}": DenseLayer(in_chs + i * growth_rate, growth_rate, bn_size, drop_rate)
                          for i in range(n_layers)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.values():
            x = torch.cat([x, layer(x)], 1)
        return x


class Transition(nn.Sequential):
    """BN-ReLU-Conv1x1 to theta * m channels, then 2x2 average pooling."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__(OrderedDict([
            ("norm", nn.BatchNorm2d(in_chs)), ("relu", nn.ReLU(inplace=True)),
            ("conv", nn.Conv2d(in_chs, out_chs, 1, bias=False)), ("pool", nn.AvgPool2d(2, 2)),
        ]))


class DenseNet(nn.Module):
    """``stem="imagenet"``: 7x7/2 conv, BN, ReLU, 3x3/2 max pool; ``stem="cifar"``: one 3x3 conv.
    ``bn_size=None`` drops the bottleneck (plain DenseNet) and ``compression=1`` keeps all channels."""

    def __init__(
        self,
        block_config: Sequence[int] = (6, 12, 24, 16),
        growth_rate: int = 32,
        init_features: int | None = None,
        bn_size: int | None = 4,
        compression: float = 0.5,
        stem: str = "imagenet",
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        chs = init_features or 2 * growth_rate
        if stem == "imagenet":
            layers = [("conv0", nn.Conv2d(in_chans, chs, 7, 2, 3, bias=False)), ("norm0", nn.BatchNorm2d(chs)),
                      ("relu0", nn.ReLU(inplace=True)), ("pool0", nn.MaxPool2d(3, 2, 1))]
            self.feature_info = [dict(num_chs=chs, reduction=2, module="features.relu0")]
            reduction = 4
        else:
            layers = [("conv0", nn.Conv2d(in_chans, chs, 3, 1, 1, bias=False))]
            self.feature_info = [dict(num_chs=chs, reduction=1, module="features.conv0")]
            reduction = 1
        for i, n in enumerate(block_config):
            layers.append((f"denseblock{i + 1}", DenseBlock(n, chs, growth_rate, bn_size, drop_rate)))
            chs += n * growth_rate
            if i < len(block_config) - 1:
                self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"features.denseblock{i + 1}"))
                layers.append((f"transition{i + 1}", Transition(chs, int(chs * compression))))
                chs, reduction = int(chs * compression), reduction * 2
        layers += [("norm5", nn.BatchNorm2d(chs)), ("relu5", nn.ReLU(inplace=True))]
        self.feature_info.append(dict(num_chs=chs, reduction=reduction, module="features.relu5"))
        self.features = nn.Sequential(OrderedDict(layers))
        self.num_features = chs
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(chs, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """Outputs of the stem, of each dense block but the last, and of the final BN-ReLU."""
        wanted = {self.feature_info[i]["module"].split(".")[1] for i in indices}
        out = []
        for name, layer in self.features.named_children():
            x = layer(x)
            if name in wanted:
                out.append(x)
                if len(out) == len(wanted):
                    break
        return out

    def prune_for_features(self, max_index: int) -> list[str]:
        last = self.feature_info[max_index]["module"].split(".")[1]
        names = [n for n, _ in self.features.named_children()]
        removed = [f"features.{n}" for n in names[names.index(last) + 1:]]
        for name in names[names.index(last) + 1:]:
            delattr(self.features, name)
        self.classifier = nn.Identity()
        return removed + ["classifier"]


register_converter("densenet", "timm")(identity)


@register_converter("densenet", "torchvision")
def _from_torchvision(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision's published checkpoints name dense-layer tensors 'norm.1' for 'norm1' (and so on)."""
    old = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$")
    out = {}
    for k, v in state_dict.items():
        m = old.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


# ---------------------------------------------------------------------------------------------------
_TV = "https://download.pytorch.org/models/"


def _imagenet(name: str, tv_file: str, params: float | None = None) -> dict:
    """Registered metadata of an ImageNet DenseNet-BC: torchvision's weights, timm's and torchvision's name."""
    return dict(paper_params_m=params, reference={"timm": name, "torchvision": name}, weights={"torchvision": _TV + tv_file})


@register_model(paper="densenet", **_imagenet("densenet121", "densenet121-a639ec97.pth"))
def densenet121(**kwargs) -> DenseNet:
    """DenseNet-BC-121 (Table 1): blocks (6, 12, 24, 16), growth rate 32."""
    return DenseNet((6, 12, 24, 16), 32, **kwargs)


@register_model(paper="densenet", **_imagenet("densenet169", "densenet169-b2777c0a.pth"))
def densenet169(**kwargs) -> DenseNet:
    """DenseNet-BC-169 (Table 1): blocks (6, 12, 32, 32), growth rate 32."""
    return DenseNet((6, 12, 32, 32), 32, **kwargs)


# sec. 4.4: "a DenseNet-201 with 20M parameters"
@register_model(paper="densenet", **_imagenet("densenet201", "densenet201-c1103571.pth", 20))
def densenet201(**kwargs) -> DenseNet:
    """DenseNet-BC-201 (Table 1): blocks (6, 12, 48, 32), growth rate 32."""
    return DenseNet((6, 12, 48, 32), 32, **kwargs)


@register_model(paper="densenet", **_imagenet("densenet161", "densenet161-8d451a50.pth"))
def densenet161(**kwargs) -> DenseNet:
    """DenseNet-BC-161 (Table 1): blocks (6, 12, 36, 24), growth rate 48."""
    return DenseNet((6, 12, 36, 24), 48, **kwargs)


def cifar_densenet(depth: int, growth_rate: int, bc: bool = True, **kwargs) -> DenseNet:
    """The CIFAR networks of Table 2: three blocks of (depth - 4) / 6 bottleneck layers (BC) or
    (depth - 4) / 3 plain layers; the stem has 2k filters (BC) or 16."""
    n = (depth - 4) // (6 if bc else 3)
    return DenseNet((n, n, n), growth_rate, 2 * growth_rate if bc else 16, 4 if bc else None, 0.5 if bc else 1.0,
                    stem="cifar", **kwargs)


@register_model(paper="densenet", input_size=(3, 32, 32), num_classes=10, paper_params_m=0.8,
                mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))
def densenet100_bc_cifar(**kwargs) -> DenseNet:
    """DenseNet-BC (L=100, k=12) for CIFAR (Table 2: 0.8M parameters)."""
    kwargs.setdefault("num_classes", 10)
    return cifar_densenet(100, 12, bc=True, **kwargs)
