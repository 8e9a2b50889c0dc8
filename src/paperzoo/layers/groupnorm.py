"""Group Normalization (Wu & He, 2018, arXiv:1803.08494), as an annotated reference.

GN normalises each sample over groups of channels instead of over the batch, so its statistics do not
depend on the batch size (eq. 1-3 with the set S_i = the C/G channels of one group, all H x W positions,
one sample). Models use ``torch.nn.GroupNorm`` (norm_layer="gn" in ``get_norm_layer``); this function
restates the paper's computation (its Figure 3) and is checked against PyTorch's in tests.
"""
from __future__ import annotations

import torch


def group_norm_reference(x: torch.Tensor, num_groups: int, weight: torch.Tensor | None = None,
                         bias: torch.Tensor | None = None, eps: float = 1e-5) -> torch.Tensor:
    """GN of an (N, C, *) tensor: mean and (biased) variance over each group's channels and positions,
    then a per-channel affine transform gamma * x_hat + beta."""
    n, c = x.shape[:2]
    if c % num_groups:
        raise ValueError(f"{c} channels cannot be split into {num_groups} groups")
    g = x.reshape(n, num_groups, -1)                      # (N, G, C/G * H * W): the set S_i of eq. 3
    mean = g.mean(-1, keepdim=True)                       # mu_i, eq. 2
    var = g.var(-1, unbiased=False, keepdim=True)         # sigma_i^2, eq. 2
    y = ((g - mean) / torch.sqrt(var + eps)).reshape(x.shape)  # x_hat, eq. 1
    shape = (1, c) + (1,) * (x.ndim - 2)
    if weight is not None:
        y = y * weight.reshape(shape)                     # gamma, per channel (eq. 4)
    if bias is not None:
        y = y + bias.reshape(shape)                       # beta
    return y
