"""Shared building blocks. Papers' own modules (SE, CBAM, blur pool, attention, ...) live here once they
are used by more than one family."""
from .attention import SqueezeExcite
from .conv import ConvNormAct, same_padding
from .drop import DropPath, drop_path, linear_drop_rates
from .factory import LayerNorm2d, get_act_layer, get_attn_layer, get_norm_layer, make_divisible, register_attn

__all__ = [
    "ConvNormAct",
    "DropPath",
    "LayerNorm2d",
    "SqueezeExcite",
    "drop_path",
    "get_act_layer",
    "get_attn_layer",
    "get_norm_layer",
    "linear_drop_rates",
    "make_divisible",
    "register_attn",
    "same_padding",
]
