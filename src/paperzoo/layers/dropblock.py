"""DropBlock (Ghiasi, Lin & Le, 2018, arXiv:1810.12890): structured dropout for convolutional features.

Neighbouring activations of a feature map are correlated, so dropping single units (dropout) removes
little information. DropBlock drops contiguous block_size x block_size squares instead (Algorithm 1):

1. seeds M ~ Bernoulli(gamma), sampled only where a whole block fits inside the map (the paper's valid
   region), one mask per channel (the variant the paper found better; ``shared_channels`` shares it);
2. every seed is grown into a block_size x block_size square of zeros;
3. the kept activations are rescaled by count(M) / count_ones(M).

gamma is chosen so that about 1 - keep_prob of the units are dropped (eq. 1):
gamma = (1 - keep_prob) / block_size^2 * feat_size^2 / (feat_size - block_size + 1)^2
(here with H x W in place of feat_size^2). The paper also schedules keep_prob, lowering it linearly from
1 to its target during training; ``DropBlock2d.ramp`` is that fraction, set by the Trainer each step.
With block_size = 1 DropBlock is dropout.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError


def dropblock_gamma(drop_prob: float, block_size: int, height: int, width: int) -> float:
    """The seed rate gamma of eq. 1 for a ``height`` x ``width`` map (``block_size`` clipped to the map)."""
    bh, bw = min(block_size, height), min(block_size, width)
    return drop_prob / (bh * bw) * (height * width) / ((height - bh + 1) * (width - bw + 1))


def drop_block_2d(x: torch.Tensor, drop_prob: float, block_size: int, training: bool = True,
                  shared_channels: bool = False) -> torch.Tensor:
    """DropBlock on an NCHW tensor: drop blocks so that about ``drop_prob`` of the units are zero."""
    if not training or drop_prob <= 0.0:
        return x
    n, c, h, w = x.shape
    bh, bw = min(block_size, h), min(block_size, w)
    gamma = dropblock_gamma(drop_prob, block_size, h, w)
    with torch.no_grad():
        seeds = x.new_empty((n, 1 if shared_channels else c, h - bh + 1, w - bw + 1)).bernoulli_(min(gamma, 1.0))
        # a seed at (i, j) of the valid region drops rows i..i+bh-1 and columns j..j+bw-1
        dropped = F.max_pool2d(F.pad(seeds, (bw - 1, bw - 1, bh - 1, bh - 1)), (bh, bw), stride=1)
        keep = 1.0 - dropped
        keep.mul_(keep.numel() / keep.sum().clamp_min(1.0))  # count(M) / count_ones(M)
    return x * keep


class DropBlock2d(nn.Module):
    """DropBlock with target drop probability ``drop_prob`` (= 1 - keep_prob); identity at inference.
    ``ramp`` in [0, 1] scales it (the linear keep_prob schedule)."""

    def __init__(self, drop_prob: float = 0.1, block_size: int = 7, shared_channels: bool = False) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        if block_size < 1:
            raise ValueError(f"block_size must be >= 1, got {block_size}")
        self.drop_prob, self.block_size, self.shared_channels = drop_prob, block_size, shared_channels
        self.ramp = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_block_2d(x, self.drop_prob * self.ramp, self.block_size, self.training, self.shared_channels)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}, block_size={self.block_size}"


class _OutputDropBlock:
    """A forward hook applying a DropBlock2d to a module's output while that module is training."""

    def __init__(self, block: DropBlock2d) -> None:
        self.block = block

    def __call__(self, module: nn.Module, inputs: object, output: torch.Tensor) -> torch.Tensor:
        b = self.block
        return drop_block_2d(output, b.drop_prob * b.ramp, b.block_size, module.training, b.shared_channels)


def add_drop_block(model: nn.Module, drop_prob: float, block_size: int, stages: int = 2) -> list[DropBlock2d]:
    """Apply DropBlock to the outputs of the residual blocks of the last ``stages`` stages of ``model``
    (the paper uses groups 3 and 4 of a ResNet), found from ``model.feature_info``. Hooks add no weights,
    so the state dict is unchanged. Returns the DropBlock2d objects (for the keep_prob schedule)."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise ConfigError(f"dropblock needs a model with feature_info (stages); {type(model).__name__} has none")
    modules = dict(model.named_modules())
    blocks = []
    for entry in info[-stages:]:
        stage = modules[entry["module"]]
        targets = list(stage) if isinstance(stage, nn.Sequential) else [stage]
        for target in targets:
            block = DropBlock2d(drop_prob, block_size)
            target.register_forward_hook(_OutputDropBlock(block))
            blocks.append(block)
    return blocks


def drop_blocks_of(model: nn.Module) -> list[DropBlock2d]:
    """Every DropBlock2d acting in ``model``: its modules and those applied by ``add_drop_block``'s hooks."""
    found = []
    for m in model.modules():
        if isinstance(m, DropBlock2d):
            found.append(m)
        found += [h.block for h in m._forward_hooks.values() if isinstance(h, _OutputDropBlock)]
    return found
