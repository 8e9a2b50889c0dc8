"""Selective kernel convolution (Li et al., 2019, arXiv:1903.06586), as used by Assemble-ResNet.

The input goes through several paths with different receptive fields (a 3x3 conv and a 5x5 one, the
latter realised as a 3x3 conv with dilation 2), each conv -> BN -> ReLU ("split"). Their sum U is pooled
to s = GAP(U) and squeezed to z = ReLU(BN(W_z s)) with d = max(C / r, L) units ("fuse"). One logit per
path and channel comes from z, a softmax across paths gives weights a_i with sum_i a_i = 1, and the
output is V = sum_i a_i * U_i ("select"; the paper's eqs. 1-6).

Options cover the variants in use: ``split_input`` feeds each path its own slice of the input channels
(timm's cheaper variant), and ``kernel_size=[3, 3]`` with ``keep_3x3`` gives Assemble-ResNet's two
undilated 3x3 paths. The width d is ``rd_channels`` if given, else ``max(rd_min, make_divisible(C * rd_ratio,
rd_divisor))``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .conv import ConvNormAct
from .factory import get_act_layer, get_norm_layer, make_divisible


class SelectiveKernelAttn(nn.Module):
    """Fuse and select: path weights a (B, paths, C, 1, 1) from the summed paths, softmax over paths."""

    def __init__(self, channels: int, num_paths: int = 2, attn_channels: int = 32,
                 act_layer: Callable[..., nn.Module] = nn.ReLU, norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d) -> None:
        super().__init__()
        self.num_paths = num_paths
        self.fc_reduce = nn.Conv2d(channels, attn_channels, 1, bias=False)
        self.bn = norm_layer(attn_channels)
        self.act = act_layer(inplace=True)
        self.fc_select = nn.Conv2d(attn_channels, channels * num_paths, 1, bias=False)

    def forward(self, paths: torch.Tensor) -> torch.Tensor:
        s = paths.sum(1).mean((2, 3), keepdim=True)  # s = GAP(U), U = sum of the paths
        z = self.act(self.bn(self.fc_reduce(s)))
        logits = self.fc_select(z)
        b, c = logits.shape[:2]
        return torch.softmax(logits.view(b, self.num_paths, c // self.num_paths, 1, 1), dim=1)


class SelectiveKernel(nn.Module):
    """Split into conv paths of different receptive fields, fuse, select (V = sum_i a_i U_i)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        kernel_size: Sequence[int] = (3, 5),
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        rd_ratio: float = 1 / 16,
        rd_channels: int | None = None,
        rd_divisor: int = 8,
        rd_min: int = 0,
        keep_3x3: bool = True,
        split_input: bool = True,
        act_layer: str | Callable[..., nn.Module] = "relu",
        norm_layer: str | Callable[..., nn.Module] = "bn",
    ) -> None:
        super().__init__()
        out_channels = out_channels or in_channels
        kernel_size = list(kernel_size)
        if keep_3x3:  # a k x k kernel becomes a 3x3 one with the same reach: dilation (k - 1) / 2
            dilations = [dilation * (k - 1) // 2 for k in kernel_size]
            kernel_size = [3] * len(kernel_size)
        else:
            dilations = [dilation] * len(kernel_size)
        self.num_paths = len(kernel_size)
        self.split_input = split_input
        path_in = in_channels // self.num_paths if split_input else in_channels
        if split_input and in_channels % self.num_paths:
            raise ValueError(f"split_input needs in_channels ({in_channels}) divisible by the number of paths")
        self.path_in = path_in
        act, norm = get_act_layer(act_layer), get_norm_layer(norm_layer)
        self.paths = nn.ModuleList(
            ConvNormAct(path_in, out_channels, k, stride, dilation=d,
                        groups=min(out_channels, groups), norm_layer=norm, act_layer=act)
            for k, d in zip(kernel_size, dilations)
        )
        attn_channels = rd_channels or max(rd_min, make_divisible(out_channels * rd_ratio, rd_divisor))
        self.attn = SelectiveKernelAttn(out_channels, self.num_paths, attn_channels, act, norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inputs = torch.split(x, self.path_in, 1) if self.split_input else [x] * self.num_paths
        paths = torch.stack([op(xi) for op, xi in zip(self.paths, inputs)], dim=1)
        return (paths * self.attn(paths)).sum(1)
