"""Selective-kernel ResNets (Li et al., 2019), the channel attention of Assemble-ResNet (Lee et al., 2020).

A selective-kernel (SK) block replaces the 3x3 conv of a residual block with ``layers.SelectiveKernel``:
parallel 3x3 and dilated-3x3 paths whose per-channel mixture is chosen by a softmax attention computed
from their pooled sum. The networks are the ``ResNet`` of ``resnet.py`` with these blocks:

* ``SelectiveKernelBasic`` — the first 3x3 conv of a basic block is SK (skresnet18/34, as in timm);
* ``SelectiveKernelBottleneck`` — the middle conv of a bottleneck is SK (skresnext50_32x4d, which is the
  SK paper's SKNet-50, and the blocks of Assemble-ResNet). With ``aa_layer`` the SK conv runs at stride 1
  and a low-pass filter subsamples its output, as Assemble-ResNet's "anti-aliased strided conv" does;
  ``last_act=False`` leaves out the final ReLU (the last block of a Big-Little branch).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ...layers import ConvNormAct, DropPath, SelectiveKernel
from ...registry import register_model
from ...weights import identity, register_converter
from .resnet import ResNet

ModuleFactory = Callable[..., nn.Module]


class SelectiveKernelBasic(nn.Module):
    """SK conv (with BN-ReLU inside each path), 3x3 conv-BN; y = act(F(x) + shortcut(x))."""

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        cardinality: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        first_dilation: int | None = None,
        norm_layer: ModuleFactory = nn.BatchNorm2d,
        act_layer: ModuleFactory = nn.ReLU,
        attn_layer: ModuleFactory | None = None,
        drop_path: float = 0.0,
        sk_kwargs: dict | None = None,
        **_: object,
    ) -> None:
        super().__init__()
        if cardinality != 1 or base_width != 64:
            raise ValueError("SelectiveKernelBasic supports only cardinality=1 and base_width=64")
        self.conv1 = SelectiveKernel(inplanes, planes, stride=stride, dilation=first_dilation or dilation,
                                     act_layer=act_layer, norm_layer=norm_layer, **(sk_kwargs or {}))
        self.conv2 = ConvNormAct(planes, planes, 3, dilation=dilation, norm_layer=norm_layer, act_layer=None)
        self.se = attn_layer(planes) if attn_layer is not None else None
        self.act = act_layer(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv2.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.conv2(self.conv1(x))
        if self.se is not None:
            x = self.se(x)
        x = self.drop_path(x)
        x += shortcut
        return self.act(x)


class SelectiveKernelBottleneck(nn.Module):
    """1x1 conv-BN-ReLU, SK conv, [low-pass subsample], 1x1 conv-BN; y = act(F(x) + shortcut(x))."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        cardinality: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        first_dilation: int | None = None,
        norm_layer: ModuleFactory = nn.BatchNorm2d,
        act_layer: ModuleFactory = nn.ReLU,
        attn_layer: ModuleFactory | None = None,
        aa_layer: ModuleFactory | None = None,
        drop_path: float = 0.0,
        sk_kwargs: dict | None = None,
        last_act: bool = True,
        **_: object,
    ) -> None:
        super().__init__()
        width = int(math.floor(planes * (base_width / 64)) * cardinality)
        outplanes = planes * self.expansion
        use_aa = aa_layer is not None and stride == 2
        self.conv1 = ConvNormAct(inplanes, width, 1, norm_layer=norm_layer, act_layer=act_layer)
        self.conv2 = SelectiveKernel(width, width, stride=1 if use_aa else stride, dilation=first_dilation or dilation,
                                     groups=cardinality, act_layer=act_layer, norm_layer=norm_layer, **(sk_kwargs or {}))
        self.aa = aa_layer(channels=width, stride=stride) if use_aa else nn.Identity()
        self.conv3 = ConvNormAct(width, outplanes, 1, norm_layer=norm_layer, act_layer=None)
        self.se = attn_layer(outplanes) if attn_layer is not None else None
        self.act = act_layer(inplace=True) if last_act else nn.Identity()
        self.downsample = downsample
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.conv3.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.conv3(self.aa(self.conv2(self.conv1(x))))
        if self.se is not None:
            x = self.se(x)
        x = self.drop_path(x)
        x += shortcut
        return self.act(x)


# timm names every tensor as we do.
register_converter("sknet", "timm")(identity)


# timm's SK ResNets split the input channels between the two paths to keep the parameter count down.
_SK_SPLIT = dict(rd_ratio=1 / 8, rd_divisor=16, split_input=True)


@register_model(paper="assembled-cnn", reference={"timm": "skresnet18"})
def skresnet18(**kwargs) -> ResNet:
    """SK-ResNet-18: basic blocks whose first conv is a selective kernel (input split over the paths)."""
    return ResNet(SelectiveKernelBasic, [2, 2, 2, 2], block_args=dict(sk_kwargs=_SK_SPLIT), **kwargs)


@register_model(paper="assembled-cnn", reference={"timm": "skresnet34"})
def skresnet34(**kwargs) -> ResNet:
    """SK-ResNet-34: basic blocks whose first conv is a selective kernel (input split over the paths)."""
    return ResNet(SelectiveKernelBasic, [3, 4, 6, 3], block_args=dict(sk_kwargs=_SK_SPLIT), **kwargs)


@register_model(paper="assembled-cnn", reference={"timm": "skresnext50_32x4d"})
def skresnext50_32x4d(**kwargs) -> ResNet:
    """SKNet-50 of the SK paper: ResNeXt-50 (32x4d) with grouped selective-kernel convs."""
    sk_kwargs = dict(rd_ratio=1 / 16, rd_divisor=32, split_input=False)
    return ResNet(SelectiveKernelBottleneck, [3, 4, 6, 3], block_args=dict(sk_kwargs=sk_kwargs),
                  **{**dict(cardinality=32, base_width=4), **kwargs})
