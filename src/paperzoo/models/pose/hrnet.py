"""HRNet (Sun et al., 2019, "Deep High-Resolution Representation Learning for Human Pose Estimation").

The network keeps a high-resolution representation from start to end (Sec. 3). After a stem of two stride-2
3x3 convolutions (1/4 resolution) and a first stage of four bottleneck units, each new stage adds a parallel
branch at half the resolution and twice the width (widths ``C, 2C, 4C, 8C``; ``C`` = 18, 32 or 48 is the
"W" of the name). Inside a stage, exchange units ("modules") alternate four residual units per branch with a
**multi-scale fusion** (Sec. 3, Eq. 1-2): every output branch ``r`` sums every input branch ``i``, brought to
its resolution by ``a(X_i, r)`` — the identity for ``i = r``, a 1x1 convolution then nearest upsampling for a
lower resolution, and ``r - i`` stride-2 3x3 convolutions for a higher one — followed by a ReLU. Stages 2, 3
and 4 have 1, 4 and 3 modules.

* ``pose_hrnet_w32`` / ``pose_hrnet_w48``: the pose networks (Sec. 3, "Heatmap estimation"): the last module
  fuses into the high-resolution branch only, and a 1x1 convolution regresses one heatmap per keypoint at 1/4
  resolution (64x48 for a 256x192 input). Paper Table 1: 28.5M / 63.6M parameters, 7.1 / 14.6 GFLOPs at 256x192.
* ``hrnet_w18`` / ``hrnet_w32`` / ``hrnet_w48``: the ImageNet classification networks of the follow-up paper
  (Wang et al., 2020), as timm has them: all four branches fused in every module, then each branch widened by a
  bottleneck unit to 128, 256, 512, 1024 channels, merged from high to low resolution by stride-2 convolutions,
  a 1x1 convolution to 2048 channels, global pooling and the classifier.

The tensor names follow the official code and timm, so both load with identity key maps
(``source="timm"`` for the classifiers, ``source="official"`` for the pose checkpoints).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ...registry import register_model
from ...weights import identity, register_converter
from ._heatmap import TopDownPose, check_input_size

BN_MOMENTUM = 0.1


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, momentum=BN_MOMENTUM)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN units with an identity shortcut (the residual unit of every branch)."""

    expansion = 1

    def __init__(self, cin: int, c: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = _bn(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = _bn(c)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + short)


class Bottleneck(nn.Module):
    """1x1 - 3x3 - 1x1 bottleneck (expansion 4), a 1x1 projection shortcut when the shape changes."""

    expansion = 4

    def __init__(self, cin: int, c: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 1, bias=False)
        self.bn1 = _bn(c)
        self.conv2 = nn.Conv2d(c, c, 3, stride, 1, bias=False)
        self.bn2 = _bn(c)
        self.conv3 = nn.Conv2d(c, c * 4, 1, bias=False)
        self.bn3 = _bn(c * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + short)


def residual_layer(block: type[nn.Module], cin: int, c: int, n: int, stride: int = 1) -> nn.Sequential:
    """``n`` residual units, the first projecting ``cin`` to ``c * expansion`` when needed."""
    down = None
    if stride != 1 or cin != c * block.expansion:
        down = nn.Sequential(nn.Conv2d(cin, c * block.expansion, 1, stride, bias=False), _bn(c * block.expansion))
    layers = [block(cin, c, stride, down)]
    layers += [block(c * block.expansion, c) for _ in range(n - 1)]
    return nn.Sequential(*layers)


class ExchangeUnit(nn.Module):
    """One HRNet module: ``blocks`` residual units per branch, then the multi-scale fusion into ``outputs``
    branches (all of them, or only the highest resolution for the pose net's last module)."""

    def __init__(self, widths: Sequence[int], blocks: int, outputs: int) -> None:
        super().__init__()
        n = len(widths)
        self.branches = nn.ModuleList(residual_layer(BasicBlock, w, w, blocks) for w in widths)
        self.fuse_layers = nn.ModuleList()
        if n == 1:
            return
        for r in range(outputs):
            row = nn.ModuleList()
            for i in range(n):
                if i > r:  # lower resolution: 1x1 conv to the width of r, nearest upsampling by 2^(i - r)
                    row.append(nn.Sequential(nn.Conv2d(widths[i], widths[r], 1, bias=False), _bn(widths[r]),
                                             nn.Upsample(scale_factor=2.0 ** (i - r), mode="nearest")))
                elif i == r:
                    row.append(nn.Identity())
                else:  # higher resolution: r - i stride-2 3x3 convs, the last to the width of r and without ReLU
                    steps = []
                    for k in range(r - i):
                        last = k == r - i - 1
                        cout = widths[r] if last else widths[i]
                        step = [nn.Conv2d(widths[i], cout, 3, 2, 1, bias=False), _bn(cout)]
                        steps.append(nn.Sequential(*step) if last else nn.Sequential(*step, nn.ReLU(inplace=False)))
                    row.append(nn.Sequential(*steps))
            self.fuse_layers.append(row)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        if len(xs) == 1:
            return xs
        out = []
        for row in self.fuse_layers:  # Eq. 1: Y_r = sum_i a(X_i, r)
            y = row[0](xs[0])
            for i in range(1, len(xs)):
                y = y + row[i](xs[i])
            out.append(self.relu(y))
        return out


def _transition(prev: Sequence[int], cur: Sequence[int]) -> nn.ModuleList:
    """Between stages: existing branches keep their resolution (a 3x3 conv where the width changes), the new
    branch is a stride-2 3x3 conv of the previous lowest-resolution branch."""
    layers = nn.ModuleList()
    for i, c in enumerate(cur):
        if i < len(prev):
            layers.append(nn.Identity() if prev[i] == c else
                          nn.Sequential(nn.Conv2d(prev[i], c, 3, 1, 1, bias=False), _bn(c), nn.ReLU(inplace=True)))
        else:
            layers.append(nn.Sequential(nn.Sequential(nn.Conv2d(prev[-1], c, 3, 2, 1, bias=False), _bn(c),
                                                      nn.ReLU(inplace=True))))
    return layers


class HRNetBody(nn.Module):
    """Stem, stage 1 and the multi-resolution stages (one per entry of ``modules``: three in HRNet, two in the stem of
    TokenPose-B / PPT-B); ``forward`` returns the branches' outputs (1/4 to 1/32 resolution; only the 1/4 one when
    ``last_single``, the pose net's layout: the last module fuses into it alone)."""

    def __init__(self, width: int, in_chans: int = 3, modules: Sequence[int] = (1, 4, 3), blocks: int = 4,
                 last_single: bool = False, stage1: tuple[int, int] = (4, 64)) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, 64, 3, 2, 1, bias=False)
        self.bn1 = _bn(64)
        self.conv2 = nn.Conv2d(64, 64, 3, 2, 1, bias=False)
        self.bn2 = _bn(64)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = residual_layer(Bottleneck, 64, stage1[1], stage1[0])
        widths = [width * 2 ** k for k in range(4)]
        self.widths = widths
        prev = [stage1[1] * 4]
        self.num_stages = len(modules)  # multi-resolution stages built: 2, 3 (and 4)
        for s, n_mod in zip((2, 3, 4), modules):
            cur = widths[: s]
            setattr(self, f"transition{s - 1}", _transition(prev, cur))
            units = []
            for m in range(n_mod):
                single = last_single and s == len(modules) + 1 and m == n_mod - 1
                units.append(ExchangeUnit(cur, blocks, 1 if single else len(cur)))
            setattr(self, f"stage{s}", nn.Sequential(*units))
            prev = cur

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.branches_from_stem(self.relu(self.bn1(self.conv1(x))))

    def branches_from_stem(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn2(self.conv2(x)))
        x = self.layer1(x)
        xs = [t(x) for t in self.transition1]
        xs = self.stage2(xs)
        for s in range(3, self.num_stages + 2):
            trans = getattr(self, f"transition{s - 1}")
            xs = [xs[i] if isinstance(t, nn.Identity) else t(xs[i] if i < len(xs) else xs[-1]) for i, t in enumerate(trans)]
            xs = getattr(self, f"stage{s}")(xs)
        return xs


class HRNet(HRNetBody):
    """The classification network (timm's ``hrnet_w*``): the four branches widened, merged from high to low
    resolution, pooled and classified."""

    def __init__(self, width: int, num_classes: int = 1000, in_chans: int = 3, **body: Any) -> None:
        super().__init__(width, in_chans, **body)
        head = (32, 64, 128, 256)
        self.incre_modules = nn.ModuleList(residual_layer(Bottleneck, w, h, 1) for w, h in zip(self.widths, head))
        self.downsamp_modules = nn.ModuleList(
            nn.Sequential(nn.Conv2d(h * 4, h * 8, 3, 2, 1), _bn(h * 8), nn.ReLU(inplace=True)) for h in head[:-1])
        self.final_layer = nn.Sequential(nn.Conv2d(1024, 2048, 1), _bn(2048), nn.ReLU(inplace=True))
        self.num_classes = num_classes
        self.classifier = nn.Linear(2048, num_classes) if num_classes > 0 else nn.Identity()
        self.feature_info = [dict(num_chs=64, reduction=2, module="conv1")] + [
            dict(num_chs=h * 4, reduction=4 * 2 ** i, module=f"incre_modules.{i}") for i, h in enumerate(head)]
        _init(self)

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        """Feature maps of the levels ``indices``: 0 the first stem conv (1/2), 1-4 the widened branches (1/4-1/32)."""
        stem = self.relu(self.bn1(self.conv1(x)))
        levels = [stem]
        if max(indices) > 0:
            levels += [m(y) for m, y in zip(self.incre_modules, self.branches_from_stem(stem))]
        return [levels[i] for i in indices]

    def prune_for_features(self, max_index: int) -> list[str]:
        """Drop the merging head and the classifier; return the removed prefixes."""
        for name in ("downsamp_modules", "final_layer", "classifier"):
            setattr(self, name, nn.Identity())
        return ["downsamp_modules", "final_layer", "classifier"]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        xs = super().forward(x)
        y = self.incre_modules[0](xs[0])
        for i, down in enumerate(self.downsamp_modules):
            y = self.incre_modules[i + 1](xs[i + 1]) + down(y)
        return self.final_layer(y)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x).mean((2, 3)))


class PoseHRNet(TopDownPose, HRNetBody):
    """The pose network: heatmaps (B, K, H/4, W/4) from the high-resolution branch by a 1x1 convolution."""

    def __init__(self, width: int, num_keypoints: int = 17, in_chans: int = 3,
                 input_size: tuple[int, int] = (256, 192), **body: Any) -> None:
        input_size = check_input_size("HRNet", input_size, 32)
        super().__init__(width, in_chans, last_single=True, **body)
        self.final_layer = nn.Conv2d(width, num_keypoints, 1)
        self.num_keypoints = num_keypoints
        self.pose_input_size = tuple(input_size)
        _init(self)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(super().forward(x)[0])


def _init(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight), nn.init.zeros_(m.bias)


# timm and the official code name every tensor as we do
register_converter("hrnet", "timm", "official")(identity)

_POSE = dict(task="pose", input_size=(3, 256, 192), num_classes=17)
_REF = "https://github.com/leoxiaobin/deep-high-resolution-net.pytorch"


@register_model(paper="hrnet", reference={"timm": "hrnet_w18"},
                notes="classification net of the follow-up paper (HRNetV1-W18 as timm has it)")
def hrnet_w18(num_classes: int = 1000, in_chans: int = 3) -> HRNet:
    return HRNet(18, num_classes, in_chans)


@register_model(paper="hrnet", reference={"timm": "hrnet_w18_small"},
                notes="the small W18 of the follow-up paper: one module per stage, two residual units per branch")
def hrnet_w18_small(num_classes: int = 1000, in_chans: int = 3) -> HRNet:
    return HRNet(16, num_classes, in_chans, modules=(1, 1, 1), blocks=2, stage1=(1, 32))


@register_model(paper="hrnet", reference={"timm": "hrnet_w32"})
def hrnet_w32(num_classes: int = 1000, in_chans: int = 3) -> HRNet:
    return HRNet(32, num_classes, in_chans)


@register_model(paper="hrnet", reference={"timm": "hrnet_w48"})
def hrnet_w48(num_classes: int = 1000, in_chans: int = 3) -> HRNet:
    return HRNet(48, num_classes, in_chans)


@register_model(paper="hrnet", paper_params_m=28.5, paper_gflops=7.1, reference={"official": _REF}, **_POSE)
def pose_hrnet_w32(num_keypoints: int = 17, in_chans: int = 3, input_size: tuple[int, int] = (256, 192),
                   num_classes: int | None = None) -> PoseHRNet:
    """``num_classes`` is accepted and ignored (a top-down pose net has keypoints, not classes)."""
    return PoseHRNet(32, num_keypoints, in_chans, input_size)


@register_model(paper="hrnet", paper_params_m=63.6, paper_gflops=14.6, reference={"official": _REF}, **_POSE)
def pose_hrnet_w48(num_keypoints: int = 17, in_chans: int = 3, input_size: tuple[int, int] = (256, 192),
                   num_classes: int | None = None) -> PoseHRNet:
    """``num_classes`` is accepted and ignored (a top-down pose net has keypoints, not classes)."""
    return PoseHRNet(48, num_keypoints, in_chans, input_size)
