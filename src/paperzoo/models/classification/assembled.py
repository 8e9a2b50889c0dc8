"""Assemble-ResNet (Lee et al., 2020, arXiv:2001.06268): known network tweaks stacked into one ResNet-50.

The paper's point is that improvements compound; its network combines

* selective-kernel convolutions (``sknet.SelectiveKernelBottleneck``) with two 3x3 paths, reduction r = 2
  and at least L = 32 attention units, as the authors' ``sk_conv2d``;
* anti-aliased downsampling: a strided block runs its SK conv at stride 1 and subsamples with a 3x3
  binomial filter (``layers.BlurPool2d``);
* Big-Little stages (Chen et al., 2019): in each of the first three stages a "big" branch of n-1
  blocks works at half resolution while a "little" branch of one block works at full resolution with
  half the width; the two are added (the big one upsampled) and merged by one more block. The stem's max
  pool is replaced the same way by a big (one strided 3x3 conv) and a little (three convs) path;
* ResNet-D style shortcuts: a strided projection averages 3x3 neighbourhoods before its 1x1 conv (the
  authors' Big-Little variant of the 2x2 average pool of ResNet-D).

The structure follows the authors' TensorFlow code (``nets/resnet_model.py`` with ``resnet_version=2``,
``use_sk_block``, ``anti_alias_type=sconv``, ``bl_alpha=2``, ``bl_beta=4``): every stage's first block
has a projection shortcut, and the last block of a big branch has no final ReLU. Its regularisers
(label smoothing, mixup, DropBlock, AutoAugment, knowledge distillation) are training options elsewhere.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import ConvNormAct, get_aa_layer, linear_drop_rates
from ...registry import register_model
from .resnet import ResNetTrunk
from .sknet import SelectiveKernelBottleneck

ModuleFactory = Callable[..., nn.Module]

# The authors' SK: two undilated 3x3 paths on the whole input, d = max(C / 2, 32) attention units.
ASSEMBLED_SK = dict(kernel_size=(3, 3), split_input=False, rd_ratio=1 / 2, rd_divisor=1, rd_min=32)


def _shortcut(inplanes: int, outplanes: int, stride: int) -> nn.Sequential:
    """Projection shortcut of a Big-Little block: [3x3 average pool, stride 2], 1x1 conv, BN."""
    pool = nn.AvgPool2d(3, stride, 1, count_include_pad=True) if stride > 1 else nn.Identity()
    return nn.Sequential(pool, nn.Conv2d(inplanes, outplanes, 1, bias=False), nn.BatchNorm2d(outplanes))


class BigLittleStem(nn.Module):
    """Replaces the stem's max pool: act(big(x) + little(x)) then a 1x1 conv-BN-ReLU, at half resolution."""

    def __init__(self, channels: int, alpha: int) -> None:
        super().__init__()
        self.big = ConvNormAct(channels, channels, 3, 2, act_layer=None)
        self.little = nn.Sequential(
            ConvNormAct(channels, channels // alpha, 3), ConvNormAct(channels // alpha, channels // alpha, 3, 2),
            ConvNormAct(channels // alpha, channels, 1, act_layer=None),
        )
        self.act = nn.ReLU(inplace=True)
        self.fuse = ConvNormAct(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.act(self.big(x) + self.little(x)))


def _blocks(inplanes: int, planes: int, n: int, stride: int, dprs: Sequence[float], last_act: bool = True,
            **block_kw) -> nn.Sequential:
    """n bottlenecks; the first has the stride and a projection shortcut (always, as the authors' code)."""
    out = planes * SelectiveKernelBottleneck.expansion
    blocks = []
    for j in range(n):
        blocks.append(SelectiveKernelBottleneck(
            inplanes if j == 0 else out, planes, stride if j == 0 else 1,
            _shortcut(inplanes, out, stride) if j == 0 else None, drop_path=dprs[j],
            last_act=last_act or j < n - 1, **block_kw))
    return nn.Sequential(*blocks)


class BigLittleStage(nn.Module):
    """x -> act(little_e(little(x)) + up(big(x))) -> merge block (with the stage's stride)."""

    def __init__(self, inplanes: int, planes: int, depth: int, stride: int, alpha: int, beta: int,
                 dprs: Sequence[float], **block_kw) -> None:
        super().__init__()
        if depth < 2:
            raise ValueError(f"a Big-Little stage needs at least 2 blocks (n-1 big, 1 merge), got {depth}")
        out = planes * SelectiveKernelBottleneck.expansion
        n_little = max(1, depth // beta - 1)
        self.big = _blocks(inplanes, planes, depth - 1, 2, dprs[: depth - 1], last_act=False, **block_kw)
        self.little = _blocks(inplanes, planes // alpha, n_little, 1, [0.0] * n_little, **block_kw)
        self.little_e = ConvNormAct((planes // alpha) * SelectiveKernelBottleneck.expansion, out, 1, act_layer=None)
        self.act = nn.ReLU(inplace=True)
        self.merge = _blocks(out, planes, 1, stride, dprs[depth - 1:], **block_kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        little = self.little_e(self.little(x))
        big = F.interpolate(self.big(x), size=little.shape[-2:], mode="nearest")
        return self.merge(self.act(little + big))


class BigLittleResNet(ResNetTrunk, nn.Module):
    """7x7 stem, Big-Little pooling, three Big-Little stages and a plain last stage, global pool, classifier."""

    def __init__(
        self,
        layers: Sequence[int] = (3, 4, 6, 3),
        num_classes: int = 1000,
        in_chans: int = 3,
        channels: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        alpha: int = 2,
        beta: int = 4,
        sk_kwargs: dict | None = None,
        aa_layer: str | ModuleFactory | None = "blur",
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        zero_init_last: bool = True,
    ) -> None:
        super().__init__()
        self.num_classes, self.drop_rate = num_classes, drop_rate
        block_kw = dict(sk_kwargs=ASSEMBLED_SK if sk_kwargs is None else sk_kwargs, aa_layer=get_aa_layer(aa_layer))
        self.conv1 = nn.Conv2d(in_chans, stem_width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem_width)
        self.act1 = nn.ReLU(inplace=True)
        self.maxpool = BigLittleStem(stem_width, alpha)  # in place of the max pool
        self.feature_info = [dict(num_chs=stem_width, reduction=2, module="act1")]
        dprs = linear_drop_rates(drop_path_rate, sum(layers))
        inplanes, reduction, start = stem_width, 4, 0
        for i, (n, planes) in enumerate(zip(layers, channels, strict=True)):
            stride = 1 if i == 0 else 2
            if i < 3:
                stage = BigLittleStage(inplanes, planes, n, stride, alpha, beta, dprs[start:start + n], **block_kw)
            else:
                stage = _blocks(inplanes, planes, n, stride, dprs[start:start + n], **block_kw)
            start += n
            inplanes, reduction = planes * SelectiveKernelBottleneck.expansion, reduction * stride
            self.add_module(f"layer{i + 1}", stage)
            self.feature_info.append(dict(num_chs=inplanes, reduction=reduction, module=f"layer{i + 1}"))
        self.num_features = inplanes
        self.global_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes) if num_classes > 0 else nn.Identity()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if zero_init_last:
            for m in self.modules():
                if hasattr(m, "zero_init_last"):
                    m.zero_init_last()


@register_model(paper="assembled-cnn")
def assembled_resnet50(**kwargs) -> BigLittleResNet:
    """Assemble-ResNet-50: Big-Little ResNet-50 (alpha 2, beta 4) with SK convs and anti-aliased strides."""
    return BigLittleResNet((3, 4, 6, 3), **kwargs)
