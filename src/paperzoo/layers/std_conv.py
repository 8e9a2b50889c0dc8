"""Weight Standardization (Qiao et al., 2019, arXiv:1903.10520), as used by Big Transfer (BiT).

``StdConv2d`` standardises each output filter of its weight before convolving: W_hat = (W - mean(W)) /
sqrt(var(W) + eps), with the mean and (biased) variance taken over the filter's fan-in (input channels x
kernel). Combined with GroupNorm it removes the dependence on batch statistics, so training behaves the
same at any batch size; BiT uses it in every convolution of its ResNet-v2 (with eps = 1e-8).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class StdConv2d(nn.Conv2d):
    """Conv2d whose weight is standardised per output channel on every forward pass."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int | None = None, dilation: int = 1, groups: int = 1, bias: bool = False,
                 eps: float = 1e-6) -> None:
        if padding is None:
            padding = ((stride - 1) + dilation * (kernel_size - 1)) // 2
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias)
        self.eps = eps

    def standardized_weight(self) -> torch.Tensor:
        # Standardising each filter over its fan-in is a layer norm of the (out, fan-in) matrix without
        # affine parameters: one fused kernel instead of a mean, a variance and two elementwise passes.
        w = self.weight.reshape(self.out_channels, -1)
        return F.layer_norm(w, w.shape[1:], eps=self.eps).reshape_as(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.standardized_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups)
