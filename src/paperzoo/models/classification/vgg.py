"""Very Deep Convolutional Networks for Large-Scale Image Recognition (Simonyan & Zisserman, 2014,
arXiv:1409.1556).

The paper's point is depth built from the smallest useful filter: five blocks of 3x3 convolutions (stride
1, padding 1, ReLU) separated by 2x2 max pooling, then three fully-connected layers (4096, 4096, 1000)
with dropout 0.5 (sec. 2.1). A stack of two 3x3 convs sees a 5x5 field, three see 7x7, with fewer
weights (27C^2 vs 49C^2) and more nonlinearities than one large kernel (sec. 2.3). Table 1 lists the
configurations A (11 weight layers) to E (19); ``CONFIGS`` holds all five, including C's 1x1 convs, as
lists of (channels, kernel) with "M" for pooling. The registered models are A, B, D, E (``vgg11/13/16/19``)
and their batch-norm versions, which postdate the paper (BN after every conv), laid out like torchvision.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from ...registry import register_model
from ...weights import register_converter

__all__ = ["CONFIGS", "VGG"]

Layer = int | tuple[int, int] | str  # channels (3x3), (channels, kernel), or "M" for 2x2 max pooling

CONFIGS: dict[str, list[Layer]] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, (256, 1), "M", 512, 512, (512, 1), "M", 512, 512, (512, 1), "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


class VGG(nn.Module):
    """Conv stacks (``features``), pooling to ``pool_size`` x ``pool_size``, FC-6 and FC-7 (``pre_logits``) and
    the classifier FC-8 (``fc``). ``width`` scales every conv and ``fc_dim`` the hidden FC layers, for
    miniature versions of the same layout."""

    def __init__(
        self,
        cfg: Sequence[Layer],
        num_classes: int = 1000,
        in_chans: int = 3,
        batch_norm: bool = False,
        width: float = 1.0,
        fc_dim: int = 4096,
        pool_size: int = 7,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        layers: list[nn.Module] = []
        self.feature_info: list[dict] = []
        in_chs, reduction = in_chans, 1
        for item in cfg:
            if item == "M":
                self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f"features.{len(layers) - 1}"))
                layers.append(nn.MaxPool2d(2, 2))
                reduction *= 2
                continue
            chs, k = item if isinstance(item, tuple) else (item, 3)
            chs = max(1, round(chs * width))
            layers.append(nn.Conv2d(in_chs, chs, k, padding=k // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(chs))
            layers.append(nn.ReLU(inplace=True))
            in_chs = chs
        self.features = nn.Sequential(*layers)
        self._level_ends = [int(f["module"].split(".")[1]) for f in self.feature_info]
        self.avgpool = nn.AdaptiveAvgPool2d(pool_size)
        self.pre_logits = nn.Sequential(OrderedDict([
            ("fc6", nn.Linear(in_chs * pool_size**2, fc_dim)), ("act6", nn.ReLU(inplace=True)), ("drop6", nn.Dropout(drop_rate)),
            ("fc7", nn.Linear(fc_dim, fc_dim)), ("act7", nn.ReLU(inplace=True)), ("drop7", nn.Dropout(drop_rate)),
        ]))
        self.num_features = fc_dim
        self.fc = nn.Linear(fc_dim, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        # He init for the convs (the paper pre-initialised deep nets from net A, then noted that Glorot init
        # works without pre-training); FC ~ N(0, 0.01^2) as in the paper; biases zero.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pre_logits(torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """The last activation of each conv block (before its max pooling), at strides 1, 2, 4, 8, 16."""
        wanted = {self._level_ends[i] for i in indices}
        out = []
        for i, layer in enumerate(self.features):
            if i > max(wanted):
                break
            x = layer(x)
            if i in wanted:
                out.append(x)
        return out

    def prune_for_features(self, max_index: int) -> list[str]:
        del self.features[self._level_ends[max_index] + 1:]
        self.pre_logits, self.fc = nn.Identity(), nn.Identity()
        return ["pre_logits", "fc"]


def _rename_head(state_dict: dict[str, torch.Tensor], names: dict[str, str]) -> dict[str, torch.Tensor]:
    """Rename the modules in ``names`` (FC-6, FC-7, FC-8) to ours; a convolution's weight there is flattened in
    (channel, row, column) order into the linear layer it equals (a no-op for weights that are already 2-D)."""
    out = {}
    for k, v in state_dict.items():
        head, _, leaf = k.rpartition(".")
        if head in names and leaf == "weight":
            v = v.flatten(1)
        out[f"{names.get(head, head)}.{leaf}"] = v
    return out


@register_converter("vgg", "torchvision")
def _from_torchvision(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """torchvision keeps FC-6/7/8 in one ``classifier`` sequence (positions 0, 3, 6)."""
    return _rename_head(state_dict, {"classifier.0": "pre_logits.fc6", "classifier.3": "pre_logits.fc7",
                                     "classifier.6": "fc"})


@register_converter("vgg", "timm")
def _from_timm(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """timm holds FC-6/FC-7 as 7x7 and 1x1 convolutions (``pre_logits.fc1/fc2``): the same weights, flattened,
    are this model's linear layers. Outputs agree where timm's convolution sees exactly a 7x7 map, i.e. at
    224x224 input."""
    return _rename_head(state_dict, {"pre_logits.fc1": "pre_logits.fc6", "pre_logits.fc2": "pre_logits.fc7",
                                     "head.fc": "fc"})


# ---------------------------------------------------------------------------------------------------
# Registered variants: Table 1 configurations, parameters from Table 2 (millions).
_TV = "https://download.pytorch.org/models/"
_NOTE = ("timm's vgg computes FC-6/FC-7 as 7x7/1x1 convolutions (the paper's dense evaluation); its weights "
         "load into these linear layers and agree at 224x224; torchvision's layout is the one kept here")
_VARIANTS = {  # name: config, paper params, torchvision weights, torchvision BN weights
    "vgg11": ("A", 133, "vgg11-8a719046.pth", "vgg11_bn-6002323d.pth"),
    "vgg13": ("B", 133, "vgg13-19584684.pth", "vgg13_bn-abd245e5.pth"),
    "vgg16": ("D", 138, "vgg16-397923af.pth", "vgg16_bn-6c64b313.pth"),
    "vgg19": ("E", 144, "vgg19-dcbb9e9d.pth", "vgg19_bn-c79401a0.pth"),
}


def _meta(name: str, bn: bool) -> dict:
    """Registered metadata: Table 2's params (plain nets only), torchvision's weights, timm's name."""
    _, params, tv, tv_bn = _VARIANTS[name]
    full = f"{name}_bn" if bn else name
    return dict(paper_params_m=None if bn else params, reference={"torchvision": full, "timm": full},
                weights={"torchvision": _TV + (tv_bn if bn else tv)}, notes=_NOTE)


@register_model(paper="vgg", **_meta("vgg11", bn=False))
def vgg11(**kwargs) -> VGG:
    """VGG configuration A."""
    return VGG(CONFIGS["A"], batch_norm=False, **kwargs)


@register_model(paper="vgg", **_meta("vgg11", bn=True))
def vgg11_bn(**kwargs) -> VGG:
    """VGG configuration A with batch norm."""
    return VGG(CONFIGS["A"], batch_norm=True, **kwargs)


@register_model(paper="vgg", **_meta("vgg13", bn=False))
def vgg13(**kwargs) -> VGG:
    """VGG configuration B."""
    return VGG(CONFIGS["B"], batch_norm=False, **kwargs)


@register_model(paper="vgg", **_meta("vgg13", bn=True))
def vgg13_bn(**kwargs) -> VGG:
    """VGG configuration B with batch norm."""
    return VGG(CONFIGS["B"], batch_norm=True, **kwargs)


@register_model(paper="vgg", **_meta("vgg16", bn=False))
def vgg16(**kwargs) -> VGG:
    """VGG configuration D."""
    return VGG(CONFIGS["D"], batch_norm=False, **kwargs)


@register_model(paper="vgg", **_meta("vgg16", bn=True))
def vgg16_bn(**kwargs) -> VGG:
    """VGG configuration D with batch norm."""
    return VGG(CONFIGS["D"], batch_norm=True, **kwargs)


@register_model(paper="vgg", **_meta("vgg19", bn=False))
def vgg19(**kwargs) -> VGG:
    """VGG configuration E."""
    return VGG(CONFIGS["E"], batch_norm=False, **kwargs)


@register_model(paper="vgg", **_meta("vgg19", bn=True))
def vgg19_bn(**kwargs) -> VGG:
    """VGG configuration E with batch norm."""
    return VGG(CONFIGS["E"], batch_norm=True, **kwargs)
