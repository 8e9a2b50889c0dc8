"""Shared building blocks. Papers' own modules (SE, CBAM, blur pool, attention, ...) live here once they
are used by more than one family."""
from .attention import SqueezeExcite
from .blur_pool import BlurPool2d, get_aa_layer
from .cbam import CBAM
from .conv import ConvNormAct, same_padding
from .drop import DropPath, drop_path, linear_drop_rates
from .factory import LayerNorm2d, get_act_layer, get_attn_layer, get_norm_layer, make_divisible, register_attn
from .selective_kernel import SelectiveKernel
from .std_conv import StdConv2d
from .transformer import (Attention, Mlp, PatchEmbed, TransformerBlock, resample_abs_pos_embed, resize_rel_pos_bias_table,
                          trunc_normal_init)
from .dropblock import DropBlock2d, add_drop_block, drop_block_2d, drop_blocks_of, dropblock_gamma
from .groupnorm import group_norm_reference

__all__ = [
    "Attention",
    "ConvNormAct",
    "DropPath",
    "LayerNorm2d",
    "Mlp",
    "PatchEmbed",
    "SqueezeExcite",
    "TransformerBlock",
    "drop_path",
    "get_act_layer",
    "get_attn_layer",
    "get_norm_layer",
    "linear_drop_rates",
    "make_divisible",
    "register_attn",
    "resample_abs_pos_embed",
    "resize_rel_pos_bias_table",
    "same_padding",
    "BlurPool2d",
    "CBAM",
    "SelectiveKernel",
    "StdConv2d",
    "get_aa_layer",
    "trunc_normal_init",
    "DropBlock2d",
    "add_drop_block",
    "drop_block_2d",
    "drop_blocks_of",
    "dropblock_gamma",
    "group_norm_reference",
]
