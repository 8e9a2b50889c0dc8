"""TensorFlow's "SAME" padding, for networks whose published weights were trained in TensorFlow.

TF pads a conv so that the output has ceil(in / stride) positions; the total padding along a dimension is
``max((ceil(in / s) - 1) * s + (k - 1) * d + 1 - in, 0)`` and TF puts the odd pixel at the *end* (bottom,
right). At stride 1 with an odd (dilated) kernel that is the symmetric padding PyTorch convs take, fixed
at build time; a strided conv's padding depends on the input size (224 needs 0 before and 1 after for a
3x3 stride-2 conv, 225 needs 1 and 1), so it is computed at each call, as timm's ``Conv2dSame`` does.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import unknown
from .conv import same_padding

__all__ = ["Conv2dSame", "create_conv2d", "is_static_same", "tf_same_pad"]


def tf_same_pad(size: int, kernel_size: int, stride: int = 1, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one dimension of length ``size`` under TF "SAME"; the odd pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel_size - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def is_static_same(kernel_size: int, stride: int = 1, dilation: int = 1) -> bool:
    """Whether "SAME" is one symmetric padding for every input size: stride 1 and an even (k - 1) * d."""
    return stride == 1 and (dilation * (kernel_size - 1)) % 2 == 0


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and state-dict keys) whose input is padded as TF "SAME" at each call."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 groups: int = 1, bias: bool = True) -> None:
        super().__init__(in_chs, out_chs, kernel_size, stride, 0, dilation, groups, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = tf_same_pad(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        left, right = tf_same_pad(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def create_conv2d(in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, dilation: int = 1, groups: int = 1,
                  bias: bool = False, padding: str = "") -> nn.Conv2d:
    """A conv whose output keeps ceil(in / stride) positions: ``padding=""`` pads symmetrically by
    ((s - 1) + d (k - 1)) // 2 (PyTorch's usual choice); ``padding="same"`` pads as TF "SAME", statically
    where that is symmetric and at each call (``Conv2dSame``) where it depends on the input size."""
    if padding not in ("", "same"):
        raise unknown("padding", padding, ("", "same"))
    if padding == "same" and not is_static_same(kernel_size, stride, dilation):
        return Conv2dSame(in_chs, out_chs, kernel_size, stride, dilation, groups, bias)
    return nn.Conv2d(in_chs, out_chs, kernel_size, stride, same_padding(kernel_size, stride, dilation), dilation,
                     groups, bias=bias)
