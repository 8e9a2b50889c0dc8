"""Deep Residual Learning for Image Recognition (He et al., 2015, arXiv:1512.03385).

The paper's contribution is the residual block: a stack of layers learns F(x) and the block outputs
F(x) + x (eq. 1), with a projection W_s x on the shortcut where shapes change (eq. 2). This file holds

* ``ResNet`` — the ImageNet networks of Table 1 (18/34 with basic blocks, 50/101/152 with 1x1-3x3-1x1
  bottlenecks), in the torchvision/timm layout where the stride-2 of a bottleneck sits on the 3x3 conv
  ("ResNet-B" in the Bag of Tricks paper; ``stride_in_1x1=True`` gives the paper's original placement).
  Options used by later papers are arguments, not copies: deep stems and average-pool shortcuts
  (ResNet-C/D), attention modules (SE, CBAM), groups and width (ResNeXt, Wide ResNet), dilation
  (``output_stride`` for dense prediction), stochastic depth.
* ``CifarResNet`` — the paper's CIFAR-10 networks of section 4.2: a 3x3 stem with 16 filters, three
  stages of 2n layers on 32/16/8 maps with 16/32/64 filters, option-A shortcuts (identity, with zeros
  padded for the new channels and stride-2 subsampling), and the same networks without shortcuts
  ("plain"), which exhibit the degradation problem the paper is about.

The registered variants at the end of the file are later papers' networks built from the same ``ResNet``
with options: ResNet-C/D (Bag of Tricks), SE-ResNets (SENet), ResNet-50 + CBAM, ResNet-RS, and
anti-aliased ResNets (BlurPool, and the placements of "An Effective Anti-Aliasing Approach for Residual
Networks"). Selective-kernel blocks (``sknet.py``) and DCT inputs (``resnet_dct.py``) reuse it too.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PaperzooError
from ...layers import DropPath, SqueezeExcite, get_aa_layer, get_act_layer, get_attn_layer, get_norm_layer, linear_drop_rates
from ...registry import register_model
from ...weights import identity, register_converter

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "CifarResNet"]

ModuleFactory = Callable[..., nn.Module]


class BasicBlock(nn.Module):
    """Two 3x3 convs; y = act(F(x) + shortcut(x)) (the paper's Fig. 2 left)."""

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
        stride_in_1x1: bool = False,
        norm_layer: ModuleFactory = nn.BatchNorm2d,
        act_layer: ModuleFactory = nn.ReLU,
        attn_layer: ModuleFactory | None = None,
        aa_layer: ModuleFactory | None = None,
        aa_after_conv: bool = False,
        drop_block: nn.Module | None = None,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if cardinality != 1 or base_width != 64:
            raise PaperzooError("BasicBlock supports only cardinality=1 and base_width=64")
        first_dilation = first_dilation or dilation
        use_aa = aa_layer is not None and stride == 2
        self.aa_after_conv = aa_after_conv
        self.conv1 = nn.Conv2d(
            inplanes, planes, 3, 1 if use_aa else stride, first_dilation, first_dilation, bias=False
        )
        self.bn1 = norm_layer(planes)
        self.drop_block = drop_block if drop_block is not None else nn.Identity()
        self.act1 = act_layer(inplace=True)
        self.aa = aa_layer(channels=planes, stride=stride) if use_aa else nn.Identity()
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = norm_layer(planes)
        self.se = attn_layer(planes) if attn_layer is not None else None
        self.act2 = act_layer(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.conv1(x)
        if self.aa_after_conv:
            x = self.aa(x)
        x = self.act1(self.drop_block(self.bn1(x)))
        if not self.aa_after_conv:
            x = self.aa(x)
        x = self.bn2(self.conv2(x))
        x = self.drop_block(x)
        if self.se is not None:
            x = self.se(x)
        x = self.drop_path(x)
        x += shortcut  # in place: x is this block's own fresh tensor
        return self.act2(x)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4); y = act(F(x) + shortcut(x)) (the paper's Fig. 5 right)."""

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
        stride_in_1x1: bool = False,
        norm_layer: ModuleFactory = nn.BatchNorm2d,
        act_layer: ModuleFactory = nn.ReLU,
        attn_layer: ModuleFactory | None = None,
        aa_layer: ModuleFactory | None = None,
        aa_after_conv: bool = False,
        drop_block: nn.Module | None = None,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64)) * cardinality
        outplanes = planes * self.expansion
        first_dilation = first_dilation or dilation
        use_aa = aa_layer is not None and stride == 2 and not stride_in_1x1
        self.aa_after_conv = aa_after_conv
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, width, 1, s1, bias=False)
        self.bn1 = norm_layer(width)
        self.act1 = act_layer(inplace=True)
        self.conv2 = nn.Conv2d(
            width, width, 3, 1 if use_aa else s3, first_dilation, first_dilation, groups=cardinality, bias=False
        )
        self.bn2 = norm_layer(width)
        self.drop_block = drop_block if drop_block is not None else nn.Identity()
        self.act2 = act_layer(inplace=True)
        self.aa = aa_layer(channels=width, stride=stride) if use_aa else nn.Identity()
        self.conv3 = nn.Conv2d(width, outplanes, 1, bias=False)
        self.bn3 = norm_layer(outplanes)
        self.se = attn_layer(outplanes) if attn_layer is not None else None
        self.act3 = act_layer(inplace=True)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def zero_init_last(self) -> None:
        nn.init.zeros_(self.bn3.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.conv2(x)
        if self.aa_after_conv:
            x = self.aa(x)
        x = self.act2(self.drop_block(self.bn2(x)))
        if not self.aa_after_conv:
            x = self.aa(x)
        x = self.bn3(self.conv3(x))
        x = self.drop_block(x)
        if self.se is not None:
            x = self.se(x)
        x = self.drop_path(x)
        x += shortcut  # in place: x is this block's own fresh tensor
        return self.act3(x)


def _projection(inplanes: int, outplanes: int, stride: int, norm_layer: ModuleFactory, avg_down: bool,
                aa_layer: ModuleFactory | None = None) -> nn.Sequential:
    """The paper's option-B projection shortcut W_s (1x1 conv, stride s, then BN). With ``avg_down``
    (ResNet-D) the stride moves into a 2x2 average pool in front of a stride-1 1x1 conv; with ``aa_layer``
    (anti-aliased ResNets) into that low-pass filter instead."""
    if not (avg_down or aa_layer):
        return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride, bias=False), norm_layer(outplanes))
    if stride == 1:
        pool = nn.Identity()
    elif aa_layer is not None:
        pool = aa_layer(channels=inplanes, stride=stride)
    else:
        pool = nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
    return nn.Sequential(pool, nn.Conv2d(inplanes, outplanes, 1, 1, bias=False), norm_layer(outplanes))


class ResNetTrunk:
    """The interface of a ResNet-shaped network: a stem ``conv1 -> bn1 -> act1 -> maxpool`` (``maxpool`` may be
    any downsampling module), stages ``layer1``..``layer4``, ``global_pool``, ``drop_rate`` and ``fc``.
    Shared by ResNet and its relatives (Assemble-ResNet's Big-Little network)."""

    @property
    def stages(self) -> list[nn.Module]:
        return [getattr(self, f"layer{i}") for i in range(1, 5) if hasattr(self, f"layer{i}")]

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.act1(self.bn1(self.conv1(x))))
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        if self.drop_rate > 0:
            x = F.dropout(x, self.drop_rate, self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """Feature maps at ``indices`` (0 = stem before its pool, 1-4 = stages), as timm numbers them."""
        out = []
        x = self.act1(self.bn1(self.conv1(x)))
        if 0 in indices:
            out.append(x)
        x = self.maxpool(x)
        for i, stage in enumerate(self.stages, start=1):
            if i > max(indices):
                break
            x = stage(x)
            if i in indices:
                out.append(x)
        return out

    def prune_for_features(self, max_index: int) -> list[str]:
        """Drop the classifier and the stages after ``max_index``; return the removed prefixes."""
        removed = ["fc"]
        self.fc = nn.Identity()
        for i in range(max_index + 1, 5):
            delattr(self, f"layer{i}")
            removed.append(f"layer{i}")
        return removed


class ResNet(ResNetTrunk, nn.Module):
    """ImageNet-style ResNet: stem (7x7/2 conv, 3x3/2 max pool), four stages, global pool, classifier.

    Later papers' changes are options: ``stem_type="deep"`` (ResNet-C) and ``avg_down`` (ResNet-D) from
    Bag of Tricks; ``attn_layer`` ("se", "cbam", or a factory); ``replace_stem_pool`` (ResNet-RS: a strided
    3x3 conv instead of the max pool); ``aa_layer`` ("blur", ...: low-pass before every subsampling, with
    ``aa_after_conv`` and ``aa_shortcut`` choosing where); ``channels`` and ``stem_width`` for narrow
    variants; ``stem_type="none"`` feeds the input straight into the first stage (inputs that are
    already at 1/4 or lower resolution, such as DCT coefficients); ``block_args`` go to every block.
    """

    def __init__(
        self,
        block: type[nn.Module],
        layers: Sequence[int],
        num_classes: int = 1000,
        in_chans: int = 3,
        output_stride: int = 32,
        cardinality: int = 1,
        base_width: int = 64,
        channels: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        stem_type: str = "",
        replace_stem_pool: bool = False,
        avg_down: bool = False,
        stride_in_1x1: bool = False,
        norm_layer: str | ModuleFactory = "bn",
        act_layer: str | ModuleFactory = "relu",
        attn_layer: str | ModuleFactory | None = None,
        aa_layer: str | ModuleFactory | None = None,
        aa_after_conv: bool = False,
        aa_shortcut: bool = False,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        drop_block: Callable[[int], nn.Module | None] | None = None,
        zero_init_last: bool = False,
        block_args: dict | None = None,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise PaperzooError(f"output_stride must be 8, 16 or 32, got {output_stride}")
        if stem_type not in ("", "deep", "deep_tiered", "none"):
            raise PaperzooError(f"stem_type must be '', 'deep', 'deep_tiered' or 'none', got '{stem_type}'")
        norm = get_norm_layer(norm_layer)
        act = get_act_layer(act_layer)
        attn = get_attn_layer(attn_layer)
        aa = get_aa_layer(aa_layer)
        self.num_classes = num_classes
        self.drop_rate = drop_rate

        # Stem. "deep" is ResNet-C: three 3x3 convs replace the 7x7.
        if stem_type == "none":
            inplanes, reduction = in_chans, 1
            self.conv1, self.bn1, self.act1, self.maxpool = nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity()
        else:
            inplanes, reduction = (stem_width * 2 if stem_type else stem_width), 4
            if stem_type:
                w1, w2 = (3 * (stem_width // 4), stem_width) if stem_type == "deep_tiered" else (stem_width, stem_width)
                self.conv1 = nn.Sequential(
                    nn.Conv2d(in_chans, w1, 3, 2, 1, bias=False), norm(w1), act(inplace=True),
                    nn.Conv2d(w1, w2, 3, 1, 1, bias=False), norm(w2), act(inplace=True),
                    nn.Conv2d(w2, inplanes, 3, 1, 1, bias=False),
                )
            else:
                self.conv1 = nn.Conv2d(in_chans, inplanes, 7, 2, 3, bias=False)
            self.bn1 = norm(inplanes)
            self.act1 = act(inplace=True)
            self.maxpool = self._stem_pool(inplanes, replace_stem_pool, aa, norm, act)
        self.feature_info = [dict(num_chs=inplanes, reduction=reduction // 2 if reduction > 1 else 1, module="act1")]

        # Four stages; the first block of stages 2-4 halves the resolution (or dilates past output_stride).
        dprs = linear_drop_rates(drop_path_rate, sum(layers))
        dilation, idx = 1, 0
        for i, (n, planes) in enumerate(zip(layers, channels, strict=True)):
            stride = 1 if i == 0 else 2
            first_dilation = dilation
            if reduction * stride > output_stride:
                dilation *= stride
                stride = 1
            outplanes = planes * block.expansion
            downsample = None
            if stride != 1 or inplanes != outplanes:
                downsample = _projection(inplanes, outplanes, stride, norm, avg_down, aa if aa_shortcut else None)
            blocks = []
            for j in range(n):
                blocks.append(block(
                    inplanes, planes, stride if j == 0 else 1, downsample if j == 0 else None,
                    cardinality=cardinality, base_width=base_width, dilation=dilation,
                    first_dilation=first_dilation if j == 0 else dilation, stride_in_1x1=stride_in_1x1,
                    norm_layer=norm, act_layer=act, attn_layer=attn, aa_layer=aa, aa_after_conv=aa_after_conv,
                    drop_block=drop_block(i) if drop_block is not None else None, drop_path=dprs[idx],
                    **(block_args or {}),
                ))
                inplanes = outplanes
                idx += 1
            reduction *= stride
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=outplanes, reduction=reduction, module=f"layer{i + 1}"))

        self.num_features = inplanes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes) if num_classes > 0 else nn.Identity()
        self._init_weights(zero_init_last)

    @staticmethod
    def _stem_pool(channels: int, replace: bool, aa: ModuleFactory | None, norm: ModuleFactory,
                   act: ModuleFactory) -> nn.Module:
        """The stem's 2x subsampling: 3x3/2 max pool; a 3x3/2 conv-BN-ReLU with ``replace`` (ResNet-RS);
        with ``aa`` the stride moves into a low-pass filter after a stride-1 max pool (or conv)."""
        if replace:
            conv = nn.Conv2d(channels, channels, 3, 1 if aa else 2, 1, bias=False)
            parts = [conv, aa(channels=channels, stride=2)] if aa else [conv]
            return nn.Sequential(*parts, norm(channels), act(inplace=True))
        if aa:
            return nn.Sequential(nn.MaxPool2d(3, 1, 1), aa(channels=channels, stride=2))
        return nn.MaxPool2d(3, 2, 1)

    def _init_weights(self, zero_init_last: bool) -> None:
        # He et al. (2015) initialisation for convs, as the paper uses; BN starts as identity. Modules
        # with an initialisation of their own (e.g. CBAM's zero-gamma spatial gate) apply it last.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():
            if m is not self and hasattr(m, "init_weights"):
                m.init_weights()
        if zero_init_last:
            for m in self.modules():
                if hasattr(m, "zero_init_last"):
                    m.zero_init_last()


class _ZeroPadShortcut(nn.Module):
    """Option A: identity shortcut; when the block subsamples, take every other pixel and append zero
    channels (parameter-free, as in the paper's CIFAR experiments)."""

    def __init__(self, stride: int, extra_channels: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = extra_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))


class CifarBlock(nn.Module):
    """Two 3x3 conv-BN layers; with ``residual`` the option-A shortcut is added before the last ReLU."""

    def __init__(self, inplanes: int, planes: int, stride: int, residual: bool, drop_path: float = 0.0) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.act1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.act2 = nn.ReLU(inplace=True)
        self.shortcut = _ZeroPadShortcut(stride, planes - inplanes) if residual else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.act1(self.bn1(self.conv1(x)))))
        if self.shortcut is not None:
            y = self.drop_path(y) + self.shortcut(x)
        return self.act2(y)


class CifarResNet(nn.Module):
    """The paper's 6n+2-layer CIFAR network; ``residual=False`` gives its "plain" counterpart."""

    def __init__(
        self,
        depth: int,
        residual: bool = True,
        num_classes: int = 10,
        in_chans: int = 3,
        width: int = 16,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise PaperzooError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110, ...), got {depth}")
        n = (depth - 2) // 6
        self.num_classes = num_classes
        self.conv1 = nn.Conv2d(in_chans, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = nn.ReLU(inplace=True)
        self.feature_info = [dict(num_chs=width, reduction=1, module="act1")]
        dprs = linear_drop_rates(drop_path_rate if residual else 0.0, 3 * n)
        inplanes = width
        for i, planes in enumerate((width, 2 * width, 4 * width)):
            stage = [
                CifarBlock(inplanes if j == 0 else planes, planes, 2 if (i > 0 and j == 0) else 1, residual, dprs[i * n + j])
                for j in range(n)
            ]
            inplanes = planes
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            self.feature_info.append(dict(num_chs=planes, reduction=2**i, module=f"layer{i + 1}"))
        self.num_features = inplanes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    @property
    def stages(self) -> list[nn.Module]:
        return [getattr(self, f"layer{i}") for i in range(1, 4) if hasattr(self, f"layer{i}")]

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        for stage in self.stages:
            x = stage(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x).flatten(1)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        out = []
        x = self.act1(self.bn1(self.conv1(x)))
        if 0 in indices:
            out.append(x)
        for i, stage in enumerate(self.stages, start=1):
            if i > max(indices):
                break
            x = stage(x)
            if i in indices:
                out.append(x)
        return out

    def prune_for_features(self, max_index: int) -> list[str]:
        removed = ["fc"]
        self.fc = nn.Identity()
        for i in range(max_index + 1, 4):
            delattr(self, f"layer{i}")
            removed.append(f"layer{i}")
        return removed


# timm and torchvision name every tensor as we do.
register_converter("resnet", "timm", "torchvision")(identity)

# ---------------------------------------------------------------------------------------------------
# Registered variants. FLOPs are the paper's Table 1 (multiply-adds, for its stride-in-1x1 layout);
# CIFAR parameter counts are the paper's Table 6.

_TV = "https://download.pytorch.org/models/"


def _imagenet(name: str, flops: float | None, tv_file: str | None, **extra) -> dict:
    meta = dict(paper="resnet", paper_gflops=flops, reference={"timm": name, "torchvision": name})
    if tv_file:
        meta["weights"] = {"torchvision": _TV + tv_file}
    meta.update(extra)
    return meta


@register_model(**_imagenet("resnet18", 1.8, "resnet18-f37072fd.pth"))
def resnet18(**kwargs) -> ResNet:
    """ResNet-18: basic blocks [2, 2, 2, 2]."""
    return ResNet(BasicBlock, [2, 2, 2, 2], **kwargs)


@register_model(**_imagenet("resnet34", 3.6, "resnet34-b627a593.pth"))
def resnet34(**kwargs) -> ResNet:
    """ResNet-34: basic blocks [3, 4, 6, 3]."""
    return ResNet(BasicBlock, [3, 4, 6, 3], **kwargs)


_V15 = "the paper's FLOPs are for stride 2 on the first 1x1 conv (stride_in_1x1=True); this default layout strides the 3x3"


@register_model(**_imagenet("resnet50", 3.8, "resnet50-0676ba61.pth", notes=_V15))
def resnet50(**kwargs) -> ResNet:
    """ResNet-50: bottlenecks [3, 4, 6, 3]."""
    return ResNet(Bottleneck, [3, 4, 6, 3], **kwargs)


@register_model(**_imagenet("resnet101", 7.6, "resnet101-63fe2227.pth", notes=_V15))
def resnet101(**kwargs) -> ResNet:
    """ResNet-101: bottlenecks [3, 4, 23, 3]."""
    return ResNet(Bottleneck, [3, 4, 23, 3], **kwargs)


@register_model(**_imagenet("resnet152", 11.3, "resnet152-394f9c45.pth", notes=_V15))
def resnet152(**kwargs) -> ResNet:
    """ResNet-152: bottlenecks [3, 8, 36, 3]."""
    return ResNet(Bottleneck, [3, 8, 36, 3], **kwargs)


@register_model(**_imagenet("wide_resnet50_2", None, "wide_resnet50_2-95faca4d.pth"))
def wide_resnet50_2(**kwargs) -> ResNet:
    """Wide ResNet-50-2 (Zagoruyko & Komodakis): ResNet-50 with twice the bottleneck width."""
    return ResNet(Bottleneck, [3, 4, 6, 3], base_width=128, **kwargs)


@register_model(**_imagenet("wide_resnet101_2", None, "wide_resnet101_2-32ee1156.pth"))
def wide_resnet101_2(**kwargs) -> ResNet:
    """Wide ResNet-101-2: ResNet-101 with twice the bottleneck width."""
    return ResNet(Bottleneck, [3, 4, 23, 3], base_width=128, **kwargs)


_CIFAR_PARAMS_M = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}
_CIFAR = dict(paper="resnet", input_size=(3, 32, 32), num_classes=10,
              mean=(0.4914, 0.4822, 0.4465), std=(0.2470, 0.2435, 0.2616))


def _cifar(depth: int) -> dict:
    """Registered metadata of the CIFAR-10 net of this depth: 32x32 inputs, 10 classes, Table 6's params."""
    return dict(**_CIFAR, paper_params_m=_CIFAR_PARAMS_M[depth])


@register_model(**_cifar(20))
def resnet20_cifar(**kwargs) -> CifarResNet:
    """The paper's CIFAR-10 ResNet-20 (n=3)."""
    return CifarResNet(20, residual=True, **kwargs)


@register_model(**_cifar(20))
def plain20_cifar(**kwargs) -> CifarResNet:
    """The paper's CIFAR-10 plain net-20 (n=3)."""
    return CifarResNet(20, residual=False, **kwargs)


@register_model(**_cifar(32))
def resnet32_cifar(**kwargs) -> CifarResNet:
    """The paper's CIFAR-10 ResNet-32 (n=5)."""
    return CifarResNet(32, residual=True, **kwargs)


@register_model(**_cifar(32))
def plain32_cifar(**kwargs) -> CifarResNet:
    """The paper's CIFAR-10 plain net-32 (n=5)."""
    return CifarResNet(32, residual=False, **kwargs)


@register_model(**_cifar(44))
def resnet44_cifar(**kwargs) -> CifarResNet:
    """The paper's CIFAR-10 ResNet-44 (n=7)."""
    return CifarResNet(44, residual=True, **kwargs)


@register_model(**_cifar(44))
def plain44_cifar(**kwargs) -> CifarResNet:
    """The paper's CIFAR-10 plain net-44 (n=7)."""
    return CifarResNet(44, residual=False, **kwargs)


@register_model(**_cifar(56))
def resnet56_cifar(**kwargs) -> CifarResNet:
    """The paper's CIFAR-10 ResNet-56 (n=9)."""
    return CifarResNet(56, residual=True, **kwargs)


@register_model(**_cifar(56))
def plain56_cifar(**kwargs) -> CifarResNet:
    """The paper's CIFAR-10 plain net-56 (n=9)."""
    return CifarResNet(56, residual=False, **kwargs)


@register_model(**_cifar(110))
def resnet110_cifar(**kwargs) -> CifarResNet:
    """The paper's CIFAR-10 ResNet-110 (n=18)."""
    return CifarResNet(110, residual=True, **kwargs)


@register_model(**_cifar(110))
def plain110_cifar(**kwargs) -> CifarResNet:
    """The paper's CIFAR-10 plain net-110 (n=18)."""
    return CifarResNet(110, residual=False, **kwargs)


# ---------------------------------------------------------------------------------------------------
# Variants from later papers: the same network with options.
# Bag of Tricks (He et al., 2018, Sec. 4): ResNet-B is the default layout above (stride on the 3x3 conv);
# ResNet-C replaces the 7x7 stem conv with three 3x3 convs (32, 32, 64 filters); ResNet-D also moves the
# projection shortcut's stride into a 2x2 average pool. FLOPs are the paper's Table 5 (multiply-adds).

_TIMM = "https://github.com/rwightman/pytorch-image-models/releases/download/"
_GLUON = "https://github.com/rwightman/pytorch-pretrained-gluonresnet/releases/download/v0.1/"
_C = dict(stem_width=32, stem_type="deep")
_D = dict(stem_width=32, stem_type="deep", avg_down=True)


def _variant(name: str, paper: str, url: str | None = None, **extra) -> dict:
    meta = dict(paper=paper, reference={"timm": name})
    if url:
        meta["weights"] = {"timm": url}
    meta.update(extra)
    return meta


@register_model(**_variant("resnet50c", "bag-of-tricks", _GLUON + "gluon_resnet50_v1c-48092f55.pth", paper_gflops=4.3))
def resnet50c(**kwargs) -> ResNet:
    """ResNet-50-C: the deep 3x3 stem."""
    return ResNet(Bottleneck, [3, 4, 6, 3], **{**_C, **kwargs})


@register_model(**_variant("resnet50d", "bag-of-tricks", _TIMM + "v0.1-weights/resnet50d_ra2-464e36ba.pth", paper_gflops=4.3))
def resnet50d(**kwargs) -> ResNet:
    """ResNet-50-D: deep stem and average-pool projection shortcuts."""
    return ResNet(Bottleneck, [3, 4, 6, 3], **{**_D, **kwargs})


@register_model(**_variant("resnet18d", "bag-of-tricks", _TIMM + "v0.1-weights/resnet18d_ra2-48a79e06.pth"))
def resnet18d(**kwargs) -> ResNet:
    """ResNet-18-D."""
    return ResNet(BasicBlock, [2, 2, 2, 2], **{**_D, **kwargs})


@register_model(**_variant("resnet34d", "bag-of-tricks", _TIMM + "v0.1-weights/resnet34d_ra2-f8dcfcaf.pth"))
def resnet34d(**kwargs) -> ResNet:
    """ResNet-34-D."""
    return ResNet(BasicBlock, [3, 4, 6, 3], **{**_D, **kwargs})


@register_model(**_variant("resnet101d", "bag-of-tricks", _TIMM + "v0.1-weights/resnet101d_ra2-2803ffab.pth"))
def resnet101d(**kwargs) -> ResNet:
    """ResNet-101-D."""
    return ResNet(Bottleneck, [3, 4, 23, 3], **{**_D, **kwargs})


@register_model(**_variant("resnet152d", "bag-of-tricks", _TIMM + "v0.1-weights/resnet152d_ra2-5cac0439.pth"))
def resnet152d(**kwargs) -> ResNet:
    """ResNet-152-D."""
    return ResNet(Bottleneck, [3, 8, 36, 3], **{**_D, **kwargs})


# Squeeze-and-Excitation Networks (Hu et al., 2017): an SE module (ratio 1/16) on each bottleneck's
# residual branch, before the addition. Parameters and FLOPs are the paper's Table 2 (FLOPs for its
# stride-on-the-1x1 layout).

@register_model(**_variant("seresnet50", "senet", _TIMM + "v0.1-weights/seresnet50_ra_224-8efdb4bb.pth",
                           paper_params_m=28.1, paper_gflops=3.87))
def seresnet50(**kwargs) -> ResNet:
    """SE-ResNet-50."""
    return ResNet(Bottleneck, [3, 4, 6, 3], attn_layer="se", **kwargs)


@register_model(**_variant("seresnet101", "senet", paper_gflops=7.60))
def seresnet101(**kwargs) -> ResNet:
    """SE-ResNet-101."""
    return ResNet(Bottleneck, [3, 4, 23, 3], attn_layer="se", **kwargs)


@register_model(**_variant("seresnet152", "senet", paper_gflops=11.32))
def seresnet152(**kwargs) -> ResNet:
    """SE-ResNet-152."""
    return ResNet(Bottleneck, [3, 8, 36, 3], attn_layer="se", **kwargs)


@register_model(**_variant("seresnet152d", "senet", _TIMM + "v0.1-weights/seresnet152d_ra2-04464dd2.pth",
                           input_size=(3, 256, 256),
                           notes="timm's RA2-trained SE-ResNet-152 with Bag of Tricks' ResNet-D stem and shortcuts; "
                                 "timm trains at 256px and evaluates at 320px"))
def seresnet152d(**kwargs) -> ResNet:
    """SE-ResNet-152-D: SE in every bottleneck of a ResNet-152-D (deep stem, average-pool shortcuts)."""
    return ResNet(Bottleneck, [3, 8, 36, 3], attn_layer="se", **{**_D, **kwargs})


# CBAM (Woo et al., 2018): channel then spatial attention in the same place as SE (the authors' code).

@register_model(paper="cbam", reference={"official": "Jongchan/attention-module ResidualNet('ImageNet', 50, 1000, 'CBAM')"},
                paper_params_m=28.09)
def resnet50_cbam(**kwargs) -> ResNet:
    """ResNet-50 + CBAM (reduction 16, 7x7 spatial kernel) in every bottleneck."""
    return ResNet(Bottleneck, [3, 4, 6, 3], attn_layer="cbam", **kwargs)


# Revisiting ResNets (Bello et al., 2021): ResNet-D with SE (ratio 1/4) and the stem's max pool replaced by a
# strided 3x3 conv; the depths are the paper's Table 7 and the input sizes its training resolutions.

def _resnetrs(layers: list[int], **kwargs) -> ResNet:
    """ResNet-RS: ResNet-D with SE (ratio 1/4) and a strided 3x3 conv for the stem's max pool."""
    se = functools.partial(SqueezeExcite, rd_ratio=0.25)
    return ResNet(Bottleneck, layers, attn_layer=se, replace_stem_pool=True, **{**_D, **kwargs})


@register_model(**_variant("resnetrs50", "resnet-rs", _TIMM + "v0.1-rs-weights/resnetrs50_ema-6b53758b.pth", input_size=(3, 160, 160)))
def resnetrs50(**kwargs) -> ResNet:
    """ResNet-RS-50: blocks [3, 4, 6, 3], trained at 160px."""
    return _resnetrs([3, 4, 6, 3], **kwargs)


@register_model(**_variant("resnetrs101", "resnet-rs", _TIMM + "v0.1-rs-weights/resnetrs101_i192_ema-1509bbf6.pth", input_size=(3, 192, 192)))
def resnetrs101(**kwargs) -> ResNet:
    """ResNet-RS-101: blocks [3, 4, 23, 3], trained at 192px."""
    return _resnetrs([3, 4, 23, 3], **kwargs)


@register_model(**_variant("resnetrs152", "resnet-rs", _TIMM + "v0.1-rs-weights/resnetrs152_i256_ema-a9aff7f9.pth", input_size=(3, 256, 256)))
def resnetrs152(**kwargs) -> ResNet:
    """ResNet-RS-152: blocks [3, 8, 36, 3], trained at 256px."""
    return _resnetrs([3, 8, 36, 3], **kwargs)


@register_model(**_variant("resnetrs200", "resnet-rs", _TIMM + "v0.1-tpu-weights/resnetrs200_c-6b698b88.pth", input_size=(3, 256, 256)))
def resnetrs200(**kwargs) -> ResNet:
    """ResNet-RS-200: blocks [3, 24, 36, 3], trained at 256px."""
    return _resnetrs([3, 24, 36, 3], **kwargs)


@register_model(**_variant("resnetrs270", "resnet-rs", _TIMM + "v0.1-rs-weights/resnetrs270_ema-b40e674c.pth", input_size=(3, 256, 256)))
def resnetrs270(**kwargs) -> ResNet:
    """ResNet-RS-270: blocks [4, 29, 53, 4], trained at 256px."""
    return _resnetrs([4, 29, 53, 4], **kwargs)


@register_model(**_variant("resnetrs350", "resnet-rs", _TIMM + "v0.1-rs-weights/resnetrs350_i256_ema-5a1aa8f1.pth", input_size=(3, 288, 288)))
def resnetrs350(**kwargs) -> ResNet:
    """ResNet-RS-350: blocks [4, 36, 72, 4], trained at 288px."""
    return _resnetrs([4, 36, 72, 4], **kwargs)


@register_model(**_variant("resnetrs420", "resnet-rs", _TIMM + "v0.1-rs-weights/resnetrs420_ema-972dee69.pth", input_size=(3, 320, 320)))
def resnetrs420(**kwargs) -> ResNet:
    """ResNet-RS-420: blocks [4, 44, 87, 4], trained at 320px."""
    return _resnetrs([4, 44, 87, 4], **kwargs)


# Anti-aliasing. resnetblur* are Zhang's (2019) BlurPool ResNets as timm builds them: a 3x3 binomial filter
# after the stem's (stride-1) max pool and after the ReLU that follows each stride-1 3x3 conv that used to be
# strided. resnet50_aa places the filters as Vasconcelos et al. (2020) argue: directly after the strided
# conv ("blur after conv", before BN and ReLU) and in front of the 1x1 projection shortcuts, whose 1x1 kernel
# cannot learn a low-pass filter of its own; the stem's max pool is blurred as in resnetblur.

@register_model(**_variant("resnetblur18", "antialias-resnet"))
def resnetblur18(**kwargs) -> ResNet:
    """ResNet-18 with BlurPool downsampling."""
    return ResNet(BasicBlock, [2, 2, 2, 2], aa_layer="blur", **kwargs)


@register_model(**_variant("resnetblur50", "antialias-resnet", _TIMM + "v0.1-weights/resnetblur50-84f4748f.pth"))
def resnetblur50(**kwargs) -> ResNet:
    """ResNet-50 with BlurPool downsampling."""
    return ResNet(Bottleneck, [3, 4, 6, 3], aa_layer="blur", **kwargs)


@register_model(paper="antialias-resnet")
def resnet50_aa(**kwargs) -> ResNet:
    """ResNet-50 with low-pass filters at the placements of Vasconcelos et al.: after each strided conv,
    before each strided projection shortcut, and in the stem's max pool."""
    return ResNet(Bottleneck, [3, 4, 6, 3], aa_layer="blur", aa_after_conv=True, aa_shortcut=True, **kwargs)
