"""What a network costs: parameters and multiply-accumulates per image, and matching a cost by bisection — one
count shared by ``paperzoo bench`` and the reproductions."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn


def params(model: nn.Module) -> int:
    """Number of parameters (all of them, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def macs(model: nn.Module, image_size: int | tuple[int, int] | torch.Tensor | list[torch.Tensor], in_chans: int = 3) -> float:
    """Multiply-accumulates of a forward pass in eval mode, counted by ``torch.utils.flop_counter`` (convolutions,
    linear layers, matrix products, attention; FLOPs / 2): of one random ``image_size`` image, or of the input given
    (a batch tensor, or a detector's list of images)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    if isinstance(image_size, (torch.Tensor, list)):
        x = image_size
    else:
        h, w = (image_size, image_size) if isinstance(image_size, int) else image_size
        x = torch.randn(1, in_chans, h, w, device=next(model.parameters()).device)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    model.train(was_training)
    return counter.get_total_flops() / 2


def match_cost(target: float, candidates: Sequence[float], cost: Callable[[float], float]) -> float:
    """The candidate whose ``cost`` is closest to ``target`` on a log scale, for a cost that does not decrease
    along the sorted ``candidates`` (a width, depth or resolution against its MACs): a bisection, so that only
    a few networks are built."""
    seen: dict[float, float] = {}

    def cached(c: float) -> float:
        if c not in seen:
            seen[c] = cost(c)
        return seen[c]

    lo, hi = 0, len(candidates) - 1
    while lo < hi:  # the first candidate whose cost reaches the target (or the last one)
        mid = (lo + hi) // 2
        if cached(candidates[mid]) < target:
            lo = mid + 1
        else:
            hi = mid
    near = candidates[max(lo - 1, 0): lo + 1]
    return min(near, key=lambda c: abs(math.log(cached(c) / target)))
