"""CBAM: Convolutional Block Attention Module (Woo et al., 2018, arXiv:1807.06521).

CBAM refines a feature map F in two steps, channel first and then space (the paper's eq. 1 and Fig. 1):

* channel attention (eq. 2): M_c(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F))), where one MLP with a
  hidden layer of C/r units (r = 16) is shared by the average- and the max-pooled descriptors;
  F' = M_c(F) * F.
* spatial attention (eq. 3): M_s(F') = sigmoid(f7x7([MaxPool_c(F'); AvgPool_c(F')])), a 7x7 convolution
  over the two maps obtained by pooling across channels; F'' = M_s(F') * F'.

Details follow the authors' code (Jongchan/attention-module): the MLP's layers have biases, the pooled
channel maps are stacked max first, and the 7x7 convolution (no bias) is followed by batch norm whose
weight the authors initialise to zero. Registered as ``attn_layer="cbam"``, so any block that takes
``attn_layer`` can use it in place of squeeze-and-excitation.
"""
from __future__ import annotations

import torch
from torch import nn

from .factory import register_attn


class ChannelAttention(nn.Module):
    """M_c: a shared two-layer MLP (as 1x1 convs) over the average- and max-pooled channel descriptors."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=True)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Both descriptors go through the MLP in one call, side by side along the last axis.
        pooled = torch.cat([x.mean((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)], dim=3)
        logits = self.fc2(self.act(self.fc1(pooled))).sum(3, keepdim=True)
        return x * torch.sigmoid(logits)


class SpatialAttention(nn.Module):
    """M_s: a k x k conv (then batch norm) over the channel-wise max and mean maps."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat([x.amax(1, keepdim=True), x.mean(1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.bn(self.conv(maps)))


@register_attn("cbam")
class CBAM(nn.Module):
    """F'' = M_s(F') * F' with F' = M_c(F) * F (channel attention, then spatial attention)."""

    def __init__(self, channels: int, reduction: int = 16, kernel_size: int = 7, spatial: bool = True) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction)
        self.spatial = SpatialAttention(kernel_size) if spatial else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        """The authors start the spatial gate's batch-norm weight at zero (a uniform gate of 0.5)."""
        if isinstance(self.spatial, SpatialAttention):
            nn.init.zeros_(self.spatial.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))
