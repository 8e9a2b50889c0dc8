"""Stacked Hourglass Networks (Newell, Yang and Deng, 2016).

* **Residual module** (Sec. 3.1, Fig. 4 left): pre-activation bottleneck, BN-ReLU-1x1 conv to half the features,
  BN-ReLU-3x3, BN-ReLU-1x1 back, plus the input (a 1x1 convolution where the widths differ).
* **Hourglass** (Sec. 3.1, Fig. 3): at each of 4 levels the input goes two ways, an upper branch (a residual module
  at the same resolution) and a lower one (2x2 max pooling, a residual module, the next level, or a residual
  module at the lowest 4x4 resolution, then another residual module and nearest-neighbour upsampling); the two are
  added. All modules keep 256 features.
* **Stem** (Sec. 3.1): a 7x7 stride-2 convolution with 64 features, a residual module to 128, max pooling and two
  residual modules to 256: 64x64 features for a 256x256 input (a narrower net scales 64 and 128 with its features).
* **Stacking with intermediate supervision** (Sec. 3.2, Fig. 4 right): after each hourglass a residual module and a
  1x1 conv-BN-ReLU give the stack's features, a 1x1 convolution its heatmaps; the heatmaps (remapped by a 1x1
  convolution) and the features (another 1x1) are added to the stack's input to form the next stack's input.
  Every stack's heatmaps are supervised with the same target (``forward`` returns the list; the pose task sums
  their losses and decodes the last).

Tensor names follow the authors' PyTorch code (princeton-vl/pytorch_stacked_hourglass): ``pre``, ``hgs``,
``features``, ``outs``, ``merge_features``, ``merge_preds``; its convolutions carry biases.
"""
from __future__ import annotations

import torch
from torch import nn

from ...registry import register_model
from ...weights import register_converter
from ._heatmap import TopDownPose, check_input_size


class Conv(nn.Module):
    """Convolution (with bias, 'same' padding), optionally followed by BN and ReLU."""

    def __init__(self, cin: int, cout: int, k: int = 3, stride: int = 1, bn: bool = False, relu: bool = True) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, bias=True)
        self.bn = nn.BatchNorm2d(cout) if bn else None
        self.relu = nn.ReLU() if relu else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        return self.relu(x) if self.relu is not None else x


class Residual(nn.Module):
    """Pre-activation bottleneck residual module (Fig. 4 left): cin -> cout with cout / 2 inside."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        mid = cout // 2
        self.relu = nn.ReLU()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = Conv(cin, mid, 1, relu=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = Conv(mid, mid, 3, relu=False)
        self.bn3 = nn.BatchNorm2d(mid)
        self.conv3 = Conv(mid, cout, 1, relu=False)
        self.skip_layer = Conv(cin, cout, 1, relu=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = x if self.skip_layer is None else self.skip_layer(x)
        y = self.conv1(self.relu(self.bn1(x)))
        y = self.conv2(self.relu(self.bn2(y)))
        y = self.conv3(self.relu(self.bn3(y)))
        return y + short


class Hourglass(nn.Module):
    """One hourglass of ``depth`` levels (Fig. 3): upper branch + (pool, residual, inner hourglass, residual, upsample)."""

    def __init__(self, depth: int, f: int, increase: int = 0) -> None:
        super().__init__()
        nf = f + increase
        self.up1 = Residual(f, f)
        self.pool1 = nn.MaxPool2d(2, 2)
        self.low1 = Residual(f, nf)
        self.low2 = Hourglass(depth - 1, nf) if depth > 1 else Residual(nf, nf)
        self.low3 = Residual(nf, f)
        self.up2 = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up1(x) + self.up2(self.low3(self.low2(self.low1(self.pool1(x)))))


class StackedHourglass(TopDownPose, nn.Module):
    """``stacks`` hourglasses with intermediate supervision: ``forward`` returns one (B, K, H/4, W/4) heatmap
    tensor per stack (the last is the prediction)."""

    def __init__(self, stacks: int = 8, num_keypoints: int = 16, features: int = 256, depth: int = 4,
                 in_chans: int = 3, input_size: tuple[int, int] = (256, 256), stem: tuple[int, int] | None = None) -> None:
        super().__init__()
        input_size = check_input_size("Stacked Hourglass", input_size, 4 * 2 ** depth)
        f = features
        q, h = stem or (f // 4, f // 2)  # the stem's widths: 64 and 128 for the paper's 256 features
        self.pre = nn.Sequential(Conv(in_chans, q, 7, 2, bn=True, relu=True), Residual(q, h), nn.MaxPool2d(2, 2),
                                 Residual(h, h), Residual(h, f))
        self.hgs = nn.ModuleList(nn.Sequential(Hourglass(depth, f)) for _ in range(stacks))
        self.features = nn.ModuleList(nn.Sequential(Residual(f, f), Conv(f, f, 1, bn=True, relu=True)) for _ in range(stacks))
        self.outs = nn.ModuleList(Conv(f, num_keypoints, 1, relu=False) for _ in range(stacks))
        self.merge_features = nn.ModuleList(Conv(f, f, 1, relu=False) for _ in range(stacks - 1))
        self.merge_preds = nn.ModuleList(Conv(num_keypoints, f, 1, relu=False) for _ in range(stacks - 1))
        self.stacks, self.num_keypoints = stacks, num_keypoints
        self.pose_input_size = tuple(input_size)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.pre(x)
        heatmaps = []
        for i in range(self.stacks):
            feature = self.features[i](self.hgs[i](x))
            preds = self.outs[i](feature)
            heatmaps.append(preds)
            if i < self.stacks - 1:  # remap the predictions and the features into the stream (Fig. 4 right)
                x = x + self.merge_preds[i](preds) + self.merge_features[i](feature)
        return heatmaps


def _from_official(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """The authors' PyTorch code: the same names, except that their ``Merge`` wraps its convolution once more
    (``merge_preds.i.conv.conv`` is our ``merge_preds.i.conv``); their residual modules always build a 1x1
    ``skip_layer``, which their forward uses only where the widths differ, so the unused ones (absent here) are dropped."""
    own = model.state_dict()
    out = {}
    for k, v in state_dict.items():
        if k.startswith(("merge_features.", "merge_preds.")):
            k = k.replace(".conv.conv.", ".conv.", 1)
        if ".skip_layer." not in k or k in own:
            out[k] = v
    return out


register_converter("hourglass", "official")(_from_official)

_META = dict(task="pose", input_size=(3, 256, 256), num_classes=16)


@register_model(paper="hourglass", **_META)
def hourglass_2stack(num_keypoints: int = 16, in_chans: int = 3, input_size: tuple[int, int] = (256, 256),
                     num_classes: int | None = None) -> StackedHourglass:
    """Two stacks (the paper's Sec. 5.2 ablations); ``num_classes`` is accepted and ignored (keypoints, not classes)."""
    return StackedHourglass(2, num_keypoints, in_chans=in_chans, input_size=input_size)


@register_model(paper="hourglass", paper_params_m=25.1, **_META)
def hourglass_8stack(num_keypoints: int = 16, in_chans: int = 3, input_size: tuple[int, int] = (256, 256),
                     num_classes: int | None = None) -> StackedHourglass:
    """Eight stacks (the paper's final network; 25.1M parameters with 17 keypoints as the HRNet paper tabulates)."""
    return StackedHourglass(8, num_keypoints, in_chans=in_chans, input_size=input_size)
