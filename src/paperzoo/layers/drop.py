"""Stochastic depth (Huang et al., 2016): drop a residual branch per sample during training."""
from __future__ import annotations

import torch
from torch import nn


def drop_path(x: torch.Tensor, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True) -> torch.Tensor:
    """Zero the whole residual branch ``x`` for each sample with probability ``drop_prob``.

    The paper keeps a block with survival probability p_l and multiplies by p_l at test time; we use the
    equivalent "inverted" form, dividing by p_l during training, so inference needs no rescaling.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    if scale_by_keep and keep > 0.0:
        mask.div_(keep)
    return x * mask


class DropPath(nn.Module):
    """Per-sample drop of a residual branch; identity at inference."""

    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True) -> None:
        super().__init__()
        if not 0.0 <= drop_prob < 1.0:
            raise ValueError(f"drop_prob must be in [0, 1), got {drop_prob}")
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob:.3f}"


def linear_drop_rates(drop_path_rate: float, depth: int) -> list[float]:
    """The paper's linear decay rule (eq. 4): p_l = 1 - l/L * (1 - p_L) survives, for blocks l = 1..L.

    Returned as drop probabilities ``l/L * drop_path_rate``: the last block drops with ``drop_path_rate``,
    the first with ``drop_path_rate / L``.
    """
    return [drop_path_rate * (i + 1) / depth for i in range(depth)]
