"""MicroNet: Towards Image Recognition with Extremely Low FLOPs (Li et al., 2020, arXiv:2011.12289;
ICCV 2021 version arXiv:2108.05894).

At 4-21M multiply-adds a network can afford neither width nor depth. MicroNet keeps width by lowering
connectivity and keeps expressiveness by a richer activation:

* **Micro-Factorized convolution** (sec. 3). A pointwise conv W (C x C) is factorised as P Phi Q^T with
  group-sparse P and Q of G groups and a channel permutation Phi between them: two grouped 1x1 convs with
  a channel shuffle. A depthwise kxk conv is factorised into a kx1 and a 1xk depthwise conv (with channel
  multipliers when it expands the width).
* **Dynamic Shift-Max** (sec. 4, eq. 6): y_i = max_{1<=k<=K} sum_{j=0}^{J-1} a^k_{i,j}(x) x_{C_j(i)}, where
  x_{C_1(i)} is channel i circularly shifted to the next group and the next position in it (J = 2), and the
  coefficients a come from a squeeze-excite-like hyper-function of the pooled input: two FC layers and a
  hard sigmoid rescaled to [-2, 2] and offset by a fixed initial value (1 for a^1_{i,0}, 0 otherwise unless
  the configuration says so). K = 2 fusions are maxed where the configuration asks for a nonlinearity,
  K = 1 is a dynamic linear fusion.

Blocks (Fig. 4): *Micro-Block-A* (depthwise first, early layers), *Micro-Block-B/C* (pointwise, depthwise,
pointwise) and a last expanding pointwise layer, each followed by Dynamic Shift-Max and channel shuffles.
The stem factorises the 3x3 conv the same way; the head is ReLU6, pooling, h-swish, and two FC layers each
with 1-D BN and h-swish. M0-M3 follow the official repository's configurations (its README: 1.0/1.8/2.4/
2.6M parameters and 4/6/12/21M MAdds; these are the ICCV models, the arXiv v1 models were larger).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...layers import DropPath, make_divisible
from ...registry import register_model

__all__ = ["DynamicShiftMax", "MicroNet", "MicroRow"]


def shuffle_index(channels: int, *groups: int) -> torch.Tensor:
    """The permutation of ShuffleNet's channel shuffles applied one after the other: each views the
    channels as (g, C/g) and transposes to (C/g, g)."""
    idx = torch.arange(channels)
    for g in groups:
        idx = idx.view(g, channels // g).t().reshape(-1)
    return idx


class ChannelShuffle(nn.Module):
    def __init__(self, channels: int, *groups: int) -> None:
        super().__init__()
        self.register_buffer("index", shuffle_index(channels, *groups), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index)


class DynamicShiftMax(nn.Module):
    """Eq. 6 with J = 2: y = max_k (a^k_0 * x + a^k_1 * shift(x)), the coefficients predicted from x."""

    def __init__(self, channels: int, groups: int, k: int = 2, reduction: int = 8, init_a: Sequence[float] = (1.0, 0.0),
                 init_b: Sequence[float] = (0.0, 0.0), act_max: float = 2.0) -> None:
        super().__init__()
        self.k, self.groups, self.act_max = k, groups, act_max
        squeeze = max(4, make_divisible(channels // reduction, 4))
        self.fc1 = nn.Linear(channels, squeeze)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(squeeze, 2 * k * channels)
        # initial values of (a^k_0, a^k_1) for k = 1..K
        self.register_buffer("init", torch.tensor([[init_a[i], init_b[i]] for i in range(k)]), persistent=False)

    def shift(self, x: torch.Tensor) -> torch.Tensor:
        """x_{C_1(i)}: channel i takes the channel one group on and one position on within the group (circularly)."""
        b, c, h, w = x.shape
        return x.view(b, self.groups, c // self.groups, h, w).roll((-1, -1), (1, 2)).reshape(b, c, h, w)

    def coefficients(self, x: torch.Tensor) -> torch.Tensor:
        """a^k_{i,j}(x) as a (B, K, J=2, C, 1, 1) tensor."""
        s = F.hardsigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3))))))
        a = (s - 0.5) * (2 * self.act_max)
        return a.view(x.shape[0], self.k, 2, x.shape[1], 1, 1) + self.init.view(1, self.k, 2, 1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.coefficients(x)
        xs = self.shift(x)
        y = a[:, 0, 0] * x + a[:, 0, 1] * xs
        for k in range(1, self.k):
            y = torch.maximum(y, a[:, k, 0] * x + a[:, k, 1] * xs)
        return y


def _bn_conv(in_chs: int, out_chs: int, kernel: tuple[int, int], stride: tuple[int, int], groups: int) -> list:
    pad = (kernel[0] // 2, kernel[1] // 2)
    return [nn.Conv2d(in_chs, out_chs, kernel, stride, pad, groups=groups, bias=False), nn.BatchNorm2d(out_chs)]


class MicroDepthwise(nn.Sequential):
    """Micro-factorised depthwise kxk conv: kx1 depthwise (x e1 channels) then 1xk depthwise (x e2), each + BN."""

    def __init__(self, in_chs: int, kernel: int, stride: int, e1: int = 1, e2: int = 1) -> None:
        super().__init__(*_bn_conv(in_chs, in_chs * e1, (kernel, 1), (stride, 1), in_chs),
                         *_bn_conv(in_chs * e1, in_chs * e1 * e2, (1, kernel), (1, stride), in_chs * e1))


class GroupPointwise(nn.Sequential):
    """One factor of a micro-factorised pointwise conv: a grouped 1x1 conv + BN."""

    def __init__(self, in_chs: int, out_chs: int, groups: int) -> None:
        super().__init__(*_bn_conv(in_chs, out_chs, (1, 1), (1, 1), groups))


@dataclass(frozen=True)
class MicroRow:
    """One row of a MicroNet configuration.

    ``exp`` = (e1, e2) channel multipliers of the depthwise conv (block A) or of the first pointwise conv;
    ``g1, g2`` the groups of the first pointwise conv and of the shuffle after it; ``g3, g4`` those of the
    second pointwise conv (0 marks the last, expanding layer); ``dy`` says for the three activations whether
    they are ReLU6 (0), Dynamic Shift-Max with K = 1 (1) or K = 2 (2); ``r`` multiplies the reduction.
    Block A (depthwise first) has g1 = 0.
    """

    stride: int
    out_chs: int
    kernel: int
    exp: tuple[int, int]
    g1: int
    g2: int
    g3: int
    g4: int
    dy: tuple[int, int, int]
    r: int = 1


class MicroBlock(nn.Module):
    def __init__(self, in_chs: int, row: MicroRow, reduction: int, init_a: Sequence[float], init_b: Sequence[float],
                 drop_path: float = 0.0) -> None:
        super().__init__()
        e1, e2 = row.exp
        hidden = in_chs * e1 * e2
        out = row.out_chs
        y1, y2, y3 = row.dy
        red = reduction * row.r

        def act(chs: int, dy: int, groups: int, red_: int = red, linear: bool = False) -> nn.Module:
            if linear:  # after a projection: no activation, or a K = 1 fusion that starts as the identity
                return DynamicShiftMax(chs, groups, 1, red_, (1.0, 0.0), (0.0, 0.0)) if dy else nn.Identity()
            return DynamicShiftMax(chs, groups, dy, red_, init_a, init_b) if dy else nn.ReLU6(inplace=True)

        layers: list[tuple[str, nn.Module]] = []
        if row.g1 == 0:  # Micro-Block-A: micro-factorised depthwise conv that expands, then one pointwise factor
            layers += [("dw", MicroDepthwise(in_chs, row.kernel, row.stride, e1, e2)),
                       ("act1", act(hidden, y2, row.g2)),
                       ("shuffle1", ChannelShuffle(hidden, row.g2, *([hidden // 2] if y2 else [])))]
            layers += self._projection(hidden, out, row, act, red // 2)
        elif row.g4 == 0:  # the last layer: one expanding grouped pointwise conv
            out = hidden
            layers += [("pw1", GroupPointwise(in_chs, hidden, row.g1)), ("act1", act(hidden, y3, row.g2, linear=True))]
        else:  # Micro-Block-B/C: pointwise factor, micro-factorised depthwise conv, pointwise factor
            second = [hidden // 4] if y1 and y2 else [] if not (y1 or y2) else [hidden // 2]
            layers += [("pw1", GroupPointwise(in_chs, hidden, row.g1)),
                       ("act1", act(hidden, y1, row.g2)),
                       ("shuffle1", ChannelShuffle(hidden, row.g2)),
                       ("dw", MicroDepthwise(hidden, row.kernel, row.stride)),
                       ("act2", act(hidden, y2, hidden // row.g2)),
                       ("shuffle2", ChannelShuffle(hidden, *second))]
            layers += self._projection(hidden, out, row, act, red // 2 if out < hidden else red)
        self.layers = nn.Sequential(OrderedDict(layers))
        self.out_chs = out
        self.has_skip = row.stride == 1 and in_chs == out
        self.drop_path = DropPath(drop_path) if self.has_skip and drop_path > 0 else nn.Identity()

    @staticmethod
    def _projection(hidden: int, out: int, row: MicroRow, act, red: int) -> list[tuple[str, nn.Module]]:
        y3 = row.dy[2]
        return [("pw2", GroupPointwise(hidden, out, row.g3)),
                ("act3", act(out, y3, row.g4, red, linear=True)),
                ("shuffle3", ChannelShuffle(out, row.g4, *([out // 2] if y3 and out % 2 == 0 else [])))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.layers(x)
        return self.drop_path(y) + x if self.has_skip else y


class MicroNet(nn.Module):
    """Factorised stem, micro blocks, and the head ReLU6 - pool - h-swish - FC-BN-h-swish - dropout - FC-BN-h-swish."""

    def __init__(
        self,
        rows: Sequence[MicroRow],
        stem_groups: tuple[int, int],
        head_chs: int,
        init_a: Sequence[float] = (1.0, 1.0),
        init_b: Sequence[float] = (0.0, 0.0),
        reduction: int = 8,
        num_classes: int = 1000,
        in_chans: int = 3,
        drop_rate: float = 0.05,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        g1, g2 = stem_groups
        chs = g1 * g2
        self.stem = nn.Sequential(*_bn_conv(in_chans, g1, (3, 1), (2, 1), 1), *_bn_conv(g1, chs, (1, 3), (1, 2), g1),
                                  ChannelShuffle(chs, g1), nn.ReLU6(inplace=True))
        self.feature_info = []
        blocks, reduction_now = [], 2
        for i, row in enumerate(rows):
            if row.stride > 1 and i > 0:
                self.feature_info.append(dict(num_chs=chs, reduction=reduction_now, module=f"blocks.{i - 1}"))
            reduction_now *= row.stride
            block = MicroBlock(chs, row, reduction, init_a, init_b, drop_path_rate * i / len(rows))
            blocks.append(block)
            chs = block.out_chs
        self.feature_info.append(dict(num_chs=chs, reduction=reduction_now, module=f"blocks.{len(rows) - 1}"))
        self.blocks = nn.Sequential(*blocks)
        self._level_ends = [int(f["module"].split(".")[1]) for f in self.feature_info]
        self.num_features = head_chs
        self.fc1 = nn.Linear(chs, head_chs)
        self.bn1 = nn.BatchNorm1d(head_chs)
        self.drop = nn.Dropout(drop_rate)
        self.classifier = nn.Linear(head_chs, num_classes)
        self.bn2 = nn.BatchNorm1d(num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0, (2.0 / fan_out) ** 0.5)
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes)
        self.bn2 = nn.BatchNorm1d(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.hardswish(F.relu6(x).mean((2, 3)))
        x = self.drop(F.hardswish(self.bn1(self.fc1(x))))
        return x if pre_logits else F.hardswish(self.bn2(self.classifier(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        wanted = {self._level_ends[i] for i in indices}
        out = []
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            if i > max(wanted):
                break
            x = block(x)
            if i in wanted:
                out.append(x)
        return out

    def prune_for_features(self, max_index: int) -> list[str]:
        last = self._level_ends[max_index]
        removed = [f"blocks.{i}" for i in range(last + 1, len(self.blocks))] + ["fc1", "bn1", "classifier", "bn2"]
        del self.blocks[last + 1:]
        self.fc1, self.bn1, self.classifier, self.bn2 = nn.Identity(), nn.Identity(), nn.Identity(), nn.Identity()
        return removed


# ---------------------------------------------------------------------------------------------------
# The official configurations (stride, out, kernel, (e1, e2), g1, g2, g3, g4, (dy1, dy2, dy3), r).
def _rows(table: list[tuple]) -> list[MicroRow]:
    return [MicroRow(*r) for r in table]


M0 = _rows([
    (2, 8, 3, (2, 2), 0, 4, 2, 2, (2, 0, 1)),
    (2, 12, 3, (2, 2), 0, 8, 4, 4, (2, 2, 1)),
    (2, 16, 5, (2, 2), 0, 12, 4, 4, (2, 2, 1)),
    (1, 32, 5, (1, 4), 4, 4, 4, 4, (2, 2, 1)),
    (2, 64, 5, (1, 4), 8, 8, 8, 8, (2, 2, 1)),
    (1, 96, 3, (1, 4), 8, 8, 8, 8, (2, 2, 1), 2),
    (1, 384, 3, (1, 4), 12, 12, 0, 0, (2, 2, 1), 2),
])
M1 = _rows([
    (2, 8, 3, (2, 2), 0, 6, 2, 2, (2, 0, 1)),
    (2, 16, 3, (2, 2), 0, 8, 4, 4, (2, 2, 1)),
    (2, 16, 5, (2, 2), 0, 16, 4, 4, (2, 2, 1)),
    (1, 32, 5, (1, 6), 4, 4, 4, 4, (2, 2, 1)),
    (2, 64, 5, (1, 6), 8, 8, 8, 8, (2, 2, 1)),
    (1, 96, 3, (1, 6), 8, 8, 8, 8, (2, 2, 1), 2),
    (1, 576, 3, (1, 6), 12, 12, 0, 0, (2, 2, 1), 2),
])
M2 = _rows([
    (2, 12, 3, (2, 2), 0, 8, 4, 4, (2, 0, 1)),
    (2, 16, 3, (2, 2), 0, 12, 4, 4, (2, 2, 1)),
    (1, 24, 3, (2, 2), 0, 16, 4, 4, (2, 2, 1)),
    (2, 32, 5, (1, 6), 6, 6, 4, 4, (2, 2, 1)),
    (1, 32, 5, (1, 6), 8, 8, 4, 4, (2, 2, 1), 2),
    (1, 64, 5, (1, 6), 8, 8, 8, 8, (2, 2, 1), 2),
    (2, 96, 5, (1, 6), 8, 8, 8, 8, (2, 2, 1), 2),
    (1, 128, 3, (1, 6), 12, 12, 8, 8, (2, 2, 1), 2),
    (1, 768, 3, (1, 6), 16, 16, 0, 0, (2, 2, 1), 2),
])
M3 = _rows([
    (2, 16, 3, (2, 2), 0, 12, 4, 4, (0, 2, 0)),
    (2, 24, 3, (2, 2), 0, 16, 4, 4, (0, 2, 0)),
    (1, 24, 3, (2, 2), 0, 24, 4, 4, (0, 2, 0)),
    (2, 32, 5, (1, 6), 6, 6, 4, 4, (0, 2, 0)),
    (1, 32, 5, (1, 6), 8, 8, 4, 4, (0, 2, 0), 2),
    (1, 64, 5, (1, 6), 8, 8, 8, 8, (0, 2, 0), 2),
    (1, 80, 5, (1, 6), 8, 8, 8, 8, (0, 2, 0), 2),
    (1, 80, 5, (1, 6), 10, 10, 8, 8, (0, 2, 0), 2),
    (2, 120, 5, (1, 6), 10, 10, 10, 10, (0, 2, 0), 2),
    (1, 120, 5, (1, 6), 12, 12, 10, 10, (0, 2, 0), 2),
    (1, 144, 3, (1, 6), 12, 12, 12, 12, (0, 2, 0), 2),
    (1, 864, 3, (1, 6), 12, 12, 0, 0, (0, 2, 0), 2),
])

_NOTE = "configuration of the official repository (ICCV 2021 models); no library reference exists"


@register_model(paper="micronet", paper_params_m=1.0, paper_gflops=0.004, notes=_NOTE)
def micronet_m0(**kwargs) -> MicroNet:
    """MicroNet-M0: 4M MAdds."""
    return MicroNet(M0, (2, 2), 640, **kwargs)


@register_model(paper="micronet", paper_params_m=1.8, paper_gflops=0.006, notes=_NOTE)
def micronet_m1(**kwargs) -> MicroNet:
    """MicroNet-M1: 6M MAdds."""
    return MicroNet(M1, (3, 2), 960, **kwargs)


@register_model(paper="micronet", paper_params_m=2.4, paper_gflops=0.012, notes=_NOTE)
def micronet_m2(**kwargs) -> MicroNet:
    """MicroNet-M2: 12M MAdds."""
    kwargs.setdefault("drop_rate", 0.1)
    return MicroNet(M2, (4, 2), 1024, **kwargs)


@register_model(paper="micronet", paper_params_m=2.6, paper_gflops=0.021, notes=_NOTE)
def micronet_m3(**kwargs) -> MicroNet:
    """MicroNet-M3: 21M MAdds."""
    kwargs.setdefault("drop_rate", 0.1)
    return MicroNet(M3, (4, 3), 1024, init_a=(1.0, 0.5), init_b=(0.0, 0.5), **kwargs)
