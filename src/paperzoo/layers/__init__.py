"""Shared building blocks. Papers' own modules (SE, CBAM, blur pool, attention, ...) live here once they
are used by more than one family."""
from .attention import SqueezeExcite
from .conv import ConvNormAct, same_padding
from .drop import DropPath, drop_path, linear_drop_rates
from .factory import LayerNorm2d, get_act_layer, get_attn_layer, get_norm_layer, make_divisible, register_attn
from .dropblock import DropBlock2d, add_drop_block, drop_block_2d, drop_blocks_of, dropblock_gamma
from .groupnorm import group_norm_reference

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
    "DropBlock2d",
    "add_drop_block",
    "drop_block_2d",
    "drop_blocks_of",
    "dropblock_gamma",
    "group_norm_reference",
]
