"""Channel attention shared by many CNN families.

``SqueezeExcite`` (Hu et al., 2017): squeeze each channel to one number by global average pooling,
excite through a bottleneck (reduce, activation, expand) and a gate, and rescale the channels:
y = x * gate(W2 act(W1 avgpool(x))). The bottleneck width, activation and gate differ by family
(SENet: ratio 1/16, ReLU, sigmoid; MobileNetV3: 1/4, ReLU, hard sigmoid; EfficientNet: 1/4 of the block
input, SiLU, sigmoid), so they are arguments.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .factory import get_act_layer, make_divisible, register_attn


@register_attn("se")
class SqueezeExcite(nn.Module):
    def __init__(
        self,
        channels: int,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        act_layer: str | Callable[..., nn.Module] = "relu",
        gate_layer: str | Callable[..., nn.Module] = "sigmoid",
        norm_layer: Callable[[int], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        if rd_channels is None:
            rd_channels = make_divisible(channels * rd_ratio, rd_divisor, round_limit=0.0)
        self.fc1 = nn.Conv2d(channels, rd_channels, 1, bias=True)
        self.bn = norm_layer(rd_channels) if norm_layer is not None else nn.Identity()
        self.act = get_act_layer(act_layer)(inplace=True)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1, bias=True)
        self.gate = get_act_layer(gate_layer)()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.fc2(self.act(self.bn(self.fc1(s))))
        return x * self.gate(s)
