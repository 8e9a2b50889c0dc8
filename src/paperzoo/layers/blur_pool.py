"""Anti-aliased downsampling: low-pass filter, then subsample (Zhang, 2019; Vasconcelos et al., 2020).

A strided convolution or pooling keeps one sample in ``stride**2`` and so folds high frequencies into
low ones (aliasing); small input shifts then change the output a lot. ``BlurPool2d`` filters each channel
with a fixed binomial kernel (the outer product of a row of Pascal's triangle, normalised to sum 1:
[1, 2, 1]/4 for size 3, [1, 3, 3, 1]/8 for size 4) before keeping every ``stride``-th sample. The filter
has no trainable parameters; it is a non-persistent buffer, so state dicts are unchanged by it.

``get_aa_layer`` turns the names a ResNet accepts for ``aa_layer`` ("blur", "blur5", "avg") into
factories ``f(channels=..., stride=...)``.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from math import comb

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import unknown


class BlurPool2d(nn.Module):
    """Depthwise binomial blur of size ``filt_size`` with stride ``stride`` (``reflect`` padding by default)."""

    def __init__(self, channels: int, filt_size: int = 3, stride: int = 2, pad_mode: str = "reflect") -> None:
        super().__init__()
        if filt_size < 2:
            raise ValueError(f"filt_size must be >= 2, got {filt_size}")
        self.channels, self.filt_size, self.stride, self.pad_mode = channels, filt_size, stride, pad_mode
        lo = (filt_size - 1) // 2  # left/top padding; size-4 filters pad one more on the right/bottom
        self.padding = (lo, filt_size - 1 - lo, lo, filt_size - 1 - lo)
        row = torch.tensor([comb(filt_size - 1, k) for k in range(filt_size)], dtype=torch.float32)
        kernel = torch.outer(row, row)
        kernel = (kernel / kernel.sum()).expand(channels, 1, filt_size, filt_size).contiguous()
        self.register_buffer("filt", kernel, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pad(x, self.padding, mode=self.pad_mode)
        return F.conv2d(x, self.filt.to(x.dtype), stride=self.stride, groups=self.channels)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, filt_size={self.filt_size}, stride={self.stride}"


def _avg_pool(channels: int | None = None, stride: int = 2) -> nn.Module:
    return nn.AvgPool2d(stride, stride)


_AA: dict[str, Callable[..., nn.Module]] = {
    "blur": BlurPool2d,
    "blur3": BlurPool2d,
    "blur4": functools.partial(BlurPool2d, filt_size=4),
    "blur5": functools.partial(BlurPool2d, filt_size=5),
    "avg": _avg_pool,
}


def get_aa_layer(aa: str | Callable[..., nn.Module] | None) -> Callable[..., nn.Module] | None:
    """A factory ``f(channels=..., stride=...)`` from a name ('blur', 'blur4', 'blur5', 'avg'), a class, or None."""
    if aa is None or aa == "" or aa == "none":
        return None
    if callable(aa):
        return aa
    if aa not in _AA:
        raise unknown("anti-aliasing layer", aa, _AA)
    return _AA[aa]
