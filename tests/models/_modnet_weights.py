"""Procedural weights for the MODNet reference fixture: every tensor a closed-form function of its position in
the official state dict, so that the same weights can be rebuilt anywhere without storing 6.5M numbers (see
tests/fixtures/modnet/README.md)."""
from __future__ import annotations

import math

import torch


def procedural_weights(shapes: list[tuple[str, tuple[int, ...]]], phase: float = 0.0) -> dict[str, torch.Tensor]:
    """``{name: tensor}`` for the (name, shape) list in state-dict order: sin(0.7371 k + 1.3 i + 0.5 + phase) over
    the k-th element of the i-th tensor, scaled per kind (He-scaled weights, BN weights near 1, small biases and
    means, variances in [1, 1.5])."""
    out = {}
    for i, (name, shape) in enumerate(shapes):
        if name.endswith("num_batches_tracked"):
            out[name] = torch.tensor(0)
            continue
        n = math.prod(shape)
        base = torch.sin(torch.arange(n, dtype=torch.float64) * 0.7371 + 1.3 * i + 0.5 + phase).reshape(shape)
        if name.endswith("running_var"):
            t = 1 + 0.25 * (base + 1)
        elif name.endswith("running_mean"):
            t = 0.1 * base
        elif len(shape) == 1 and name.endswith("weight"):
            t = 1 + 0.2 * base
        elif len(shape) == 1:
            t = 0.1 * base
        else:
            fan_in = math.prod(shape[1:])
            t = base * math.sqrt(4 / fan_in)
        out[name] = t.float()
    return out
