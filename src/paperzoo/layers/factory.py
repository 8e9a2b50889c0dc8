"""Name -> module factories, so that norm and activation are options of a block, not copies of a network."""
from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from ..errors import unknown


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channel dimension of an NCHW tensor (as used by ConvNeXt)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def _group_norm(num_channels: int, num_groups: int = 32, eps: float = 1e-5, **kw) -> nn.GroupNorm:
    return nn.GroupNorm(min(num_groups, num_channels), num_channels, eps=eps, **kw)


_NORMS: dict[str, Callable[..., nn.Module]] = {
    "bn": nn.BatchNorm2d,
    "batchnorm": nn.BatchNorm2d,
    "gn": _group_norm,
    "groupnorm": _group_norm,
    "ln": nn.LayerNorm,
    "ln2d": LayerNorm2d,
    "in": nn.InstanceNorm2d,
    "identity": lambda *a, **k: nn.Identity(),
}

_ACTS: dict[str, Callable[..., nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "gelu": nn.GELU,
    "hard_swish": nn.Hardswish,
    "hswish": nn.Hardswish,
    "hard_sigmoid": nn.Hardsigmoid,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "mish": nn.Mish,
    "elu": nn.ELU,
    "prelu": nn.PReLU,
    "identity": nn.Identity,
}

_INPLACE = {nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Mish, nn.ELU}


def get_norm_layer(norm: str | Callable[..., nn.Module] | None) -> Callable[..., nn.Module]:
    """A callable ``f(num_channels) -> nn.Module`` from a name ('bn', 'gn', 'ln2d', ...) or a class."""
    if norm is None:
        return _NORMS["identity"]
    if callable(norm):
        return norm
    if norm not in _NORMS:
        raise unknown("norm layer", norm, _NORMS)
    return _NORMS[norm]


def get_act_layer(act: str | Callable[..., nn.Module] | None) -> Callable[..., nn.Module]:
    """A callable ``f(inplace=...) -> nn.Module`` from a name ('relu', 'silu', 'hard_swish', ...) or a class."""
    if act is None:
        return nn.Identity
    if isinstance(act, str):
        if act not in _ACTS:
            raise unknown("activation", act, _ACTS)
        act = _ACTS[act]
    if act in _INPLACE:
        return act
    if isinstance(act, type) and issubclass(act, nn.Module):
        # activations without an inplace flag: accept and drop it, so every block can pass inplace=True
        return functools.partial(_drop_inplace, act)
    return act


def _drop_inplace(cls: type[nn.Module], *args, inplace: bool | None = None, **kwargs) -> nn.Module:
    return cls(*args, **kwargs)


def make_divisible(v: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Round channels to a multiple of ``divisor`` without going below ``round_limit`` of the request
    (the rule MobileNet and EfficientNet use for width multipliers)."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < round_limit * v:
        new_v += divisor
    return new_v


_ATTNS: dict[str, Callable[..., nn.Module]] = {}


def register_attn(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register a channel/spatial attention module ``cls(channels, **kw)`` under a name usable as
    ``attn_layer="name"`` by every block that takes ``attn_layer``."""

    def wrap(cls: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _ATTNS[name] = cls
        return cls

    return wrap


def get_attn_layer(attn: str | Callable[..., nn.Module] | None) -> Callable[..., nn.Module] | None:
    """A callable ``f(channels) -> nn.Module`` from a registered name, a class, or None (no attention)."""
    if attn is None or attn == "" or attn == "none":
        return None
    if callable(attn):
        return attn
    if attn not in _ATTNS:
        raise unknown("attention layer", attn, _ATTNS)
    return _ATTNS[attn]
