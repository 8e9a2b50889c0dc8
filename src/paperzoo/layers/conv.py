"""Conv -> norm -> activation, the unit most CNN papers are written in."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .factory import get_act_layer, get_norm_layer


def same_padding(kernel_size: int, stride: int = 1, dilation: int = 1) -> int:
    """Symmetric padding that keeps the spatial size at stride 1 (odd kernels)."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


class ConvNormAct(nn.Sequential):
    """``conv -> norm -> act`` as one module with children named ``conv``, ``bn``, ``act``."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = False,
        norm_layer: str | Callable[..., nn.Module] | None = "bn",
        act_layer: str | Callable[..., nn.Module] | None = "relu",
        conv_layer: Callable[..., nn.Module] = nn.Conv2d,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = same_padding(kernel_size, stride, dilation)
        self.conv = conv_layer(in_chs, out_chs, kernel_size, stride, padding, dilation, groups, bias=bias)
        self.bn = get_norm_layer(norm_layer)(out_chs)
        self.act = get_act_layer(act_layer)(inplace=True)
