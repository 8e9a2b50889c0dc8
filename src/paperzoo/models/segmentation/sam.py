"""Segment Anything (Kirillov et al., 2023, arXiv:2304.02643).

SAM is a *promptable* segmenter (sec. 3, Fig. 4): a heavy image encoder runs once per image, then a light prompt
encoder and mask decoder turn any number of prompts into masks in milliseconds (the amortised "real-time" claim).

* **Image encoder** (sec. 3, appendix A): an MAE-pretrained ViT (B/L/H) on 1024x1024 inputs with 16x16 patches
  (a 64x64 token grid), windowed attention (14x14 windows, the grid zero-padded to a multiple) in most blocks and
  global attention in four evenly spaced ones, decomposed relative position biases (height and width terms added
  to the attention logits), an absolute position embedding, and a neck (1x1 conv, LayerNorm, 3x3 conv,
  LayerNorm) to a 256-channel 64x64 embedding.
* **Prompt encoder**: points and box corners as random Fourier features of their coordinates plus a learned
  embedding per kind (foreground point, background point, top-left corner, bottom-right corner, "not a point"
  padding); a mask prompt is downscaled 4x by two 2x2/2 convolutions (LayerNorm, GELU) and a 1x1 to 256
  channels and added to the image embedding (a learned "no mask" embedding otherwise).
* **Mask decoder** (Fig. 14): output tokens (an IoU token and 4 mask tokens) join the prompt tokens; two
  two-way transformer layers (token self-attention, token-to-image cross-attention, an MLP on the tokens,
  image-to-token cross-attention; cross-attention at half width), a final token-to-image attention; the
  embedding is upscaled 4x by two transposed convolutions, and each mask token's 3-layer MLP gives the weights of
  a dynamic linear classifier over the upscaled embedding. **Ambiguity**: with ``multimask_output`` the three
  masks of tokens 1-3 are returned (whole, part, subpart), otherwise token 0's; the IoU head predicts each mask's
  IoU (used to rank them). Attention is ``F.scaled_dot_product_attention`` everywhere; the relative position
  biases enter it as an additive mask.
* ``SamPredictor`` embeds an image once and answers many prompts; ``SamAutomaticMaskGenerator`` prompts a
  regular point grid and keeps confident, stable masks after box NMS (torchvision's ``batched_nms``).

Tensor names are the released checkpoints' (``segment_anything``), so the official weights load as they are.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import PaperzooError
from ...registry import register_model
from ...weights import identity, register_converter

__all__ = ["Sam", "SamAutomaticMaskGenerator", "SamPredictor", "build_sam", "stability_score"]

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) map."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int, act: type[nn.Module] = nn.GELU) -> None:
        super().__init__()
        self.lin1, self.lin2, self.act = nn.Linear(dim, hidden), nn.Linear(hidden, dim), act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.act(self.lin1(x)))


# ---------------------------------------------------------------------------------------------- image encoder
def relative_table(rel_pos: torch.Tensor, size: int) -> torch.Tensor:
    """(size, size, C) embeddings of the offsets i - j between query row i and key row j; a table learned for
    another grid (length != 2 size - 1) is resampled linearly first."""
    length = 2 * size - 1
    if rel_pos.shape[0] != length:
        rel_pos = F.interpolate(rel_pos.T[None], size=length, mode="linear")[0].T
    idx = torch.arange(size, device=rel_pos.device)
    return rel_pos[idx[:, None] - idx[None, :] + size - 1]


class Attention(nn.Module):
    """Multi-head self-attention on a (B, H, W, C) grid with decomposed relative position biases: the logit of
    query (i, j) and key (k, l) gains q . Rh[i - k] + q . Rw[j - l] (MViTv2's decomposition)."""

    def __init__(self, dim: int, num_heads: int, grid: tuple[int, int], rel_pos: bool = True) -> None:
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.use_rel_pos = rel_pos
        if rel_pos:
            self.rel_pos_h = nn.Parameter(torch.zeros(2 * grid[0] - 1, head_dim))
            self.rel_pos_w = nn.Parameter(torch.zeros(2 * grid[1] - 1, head_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        q, k, v = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)  # (B, heads, N, d)
        bias = None
        if self.use_rel_pos:
            rq = q.reshape(b, self.num_heads, h, w, -1)
            rel_h = torch.einsum("bnhwc,hkc->bnhwk", rq, relative_table(self.rel_pos_h, h))
            rel_w = torch.einsum("bnhwc,wkc->bnhwk", rq, relative_table(self.rel_pos_w, w))
            bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(b, self.num_heads, h * w, h * w)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(b, h, w, c))


def _windows(x: torch.Tensor, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * windows, size, size, C), the grid zero-padded at the bottom/right to a multiple."""
    b, h, w, c = x.shape
    ph, pw = -h % size, -w % size
    x = F.pad(x, (0, 0, 0, pw, 0, ph))
    hp, wp = h + ph, w + pw
    x = x.reshape(b, hp // size, size, wp // size, size, c).transpose(2, 3)
    return x.reshape(-1, size, size, c), (hp, wp)


def _unwindows(x: torch.Tensor, size: int, padded: tuple[int, int], hw: tuple[int, int]) -> torch.Tensor:
    hp, wp = padded
    c = x.shape[-1]
    x = x.reshape(-1, hp // size, wp // size, size, size, c).transpose(2, 3).reshape(-1, hp, wp, c)
    return x[:, :hw[0], :hw[1]]


class Block(nn.Module):
    """Pre-norm ViT block; ``window`` > 0 restricts attention to non-overlapping windows (0: global)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, window: int, grid: tuple[int, int]) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, (window, window) if window else grid)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        if self.window:
            hw = y.shape[1:3]
            y, padded = _windows(y, self.window)
            y = _unwindows(self.attn(y), self.window, padded, hw)
        else:
            y = self.attn(y)
        x = x + y
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).permute(0, 2, 3, 1)  # (B, H, W, C)


class ImageEncoderViT(nn.Module):
    """ViT over ``img_size`` inputs to a (B, ``out_chans``, img_size / patch, img_size / patch) embedding."""

    def __init__(self, img_size: int = 1024, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768,
                 depth: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0, out_chans: int = 256,
                 window_size: int = 14, global_attn_indexes: Sequence[int] = (2, 5, 8, 11)) -> None:
        super().__init__()
        self.img_size = img_size
        grid = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, *grid, embed_dim))
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, 0 if i in global_attn_indexes else window_size, grid)
            for i in range(depth))
        self.neck = nn.Sequential(nn.Conv2d(embed_dim, out_chans, 1, bias=False), LayerNorm2d(out_chans),
                                  nn.Conv2d(out_chans, out_chans, 3, padding=1, bias=False), LayerNorm2d(out_chans))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x)
        if x.shape[1:3] != self.pos_embed.shape[1:3]:
            raise PaperzooError(f"SAM: the image encoder takes {self.img_size}x{self.img_size} inputs (preprocess pads "
                                f"to it), got a {x.shape[1] * (self.img_size // self.pos_embed.shape[1])} px side")
        x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.neck(x.permute(0, 3, 1, 2))


# ---------------------------------------------------------------------------------------------- prompt encoder
class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of coordinates in [0, 1]: [sin, cos](2 pi (2 p - 1) G), G ~ N(0, 1) of (2, F)."""

    def __init__(self, num_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def encode(self, coords: torch.Tensor) -> torch.Tensor:
        proj = 2 * math.pi * ((2 * coords - 1) @ self.positional_encoding_gaussian_matrix)
        return torch.cat([proj.sin(), proj.cos()], -1)

    def grid(self, h: int, w: int) -> torch.Tensor:
        """(C, h, w) encodings of the pixel centres of an h x w grid."""
        dev = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w
        xy = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1)  # (h, w, 2) as (x, y)
        return self.encode(xy).permute(2, 0, 1)


class PromptEncoder(nn.Module):
    """Sparse (points, box corners) and dense (mask) prompt embeddings."""

    def __init__(self, embed_dim: int = 256, image_embedding_size: tuple[int, int] = (64, 64),
                 input_image_size: tuple[int, int] = (1024, 1024), mask_in_chans: int = 16) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        # 0: background point, 1: foreground point, 2: box top-left, 3: box bottom-right
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        c = mask_in_chans
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, c // 4, 2, stride=2), LayerNorm2d(c // 4), nn.GELU(),
            nn.Conv2d(c // 4, c, 2, stride=2), LayerNorm2d(c), nn.GELU(), nn.Conv2d(c, embed_dim, 1))
        self.no_mask_embed = nn.Embedding(1, embed_dim)

    def get_dense_pe(self) -> torch.Tensor:
        """(1, C, h, w): the encoding of every image-embedding position."""
        return self.pe_layer.grid(*self.image_embedding_size)[None]

    def _encode_xy(self, xy: torch.Tensor) -> torch.Tensor:
        h, w = self.input_image_size
        xy = (xy.float() + 0.5) / xy.new_tensor([w, h], dtype=torch.float32)  # pixel centres, in [0, 1]
        return self.pe_layer.encode(xy)

    def embed_points(self, coords: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """(B, N, C); label 1 foreground, 0 background, -1 padding ("not a point"). Without a box a padding point
        is appended (the decoder was trained with it)."""
        if pad:
            coords = torch.cat([coords, coords.new_zeros(coords.shape[0], 1, 2)], 1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], 1)
        emb = self._encode_xy(coords)
        lab = labels[..., None]
        table = torch.cat([self.point_embeddings[0].weight, self.point_embeddings[1].weight])  # (2, C)
        emb = torch.where(lab == -1, self.not_a_point_embed.weight, emb)
        return emb + torch.where(lab == 0, table[0], 0.0) + torch.where(lab == 1, table[1], 0.0)

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 2, C): the two corners' encodings plus the corner embeddings."""
        emb = self._encode_xy(boxes.reshape(-1, 2, 2))
        return emb + torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])[None]

    def forward(self, points: tuple[torch.Tensor, torch.Tensor] | None, boxes: torch.Tensor | None,
                masks: torch.Tensor | None, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(sparse (B, N, C), dense (B, C, h, w)) for B prompt sets."""
        bs = (points[0].shape[0] if points is not None else boxes.shape[0] if boxes is not None
              else masks.shape[0] if masks is not None else batch or 1)
        dev = self.no_mask_embed.weight.device
        sparse = [torch.empty(bs, 0, self.embed_dim, device=dev)]
        if points is not None:
            sparse.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            sparse.append(self.embed_boxes(boxes))
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            dense = self.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(bs, -1, *self.image_embedding_size)
        return torch.cat(sparse, 1), dense


# ---------------------------------------------------------------------------------------------- mask decoder
class TokenAttention(nn.Module):
    """Attention between token sets whose q/k/v projections may narrow the width (``downsample_rate``)."""

    def __init__(self, dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        inner = dim // downsample_rate
        if inner % num_heads:
            raise PaperzooError(f"SAM: {num_heads} heads do not divide the attention width {inner}")
        self.num_heads = num_heads
        self.q_proj, self.k_proj, self.v_proj = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        out = F.scaled_dot_product_attention(self._heads(self.q_proj(q)), self._heads(self.k_proj(k)),
                                             self._heads(self.v_proj(v)))
        b, _, n, _ = out.shape
        return self.out_proj(out.transpose(1, 2).reshape(b, n, -1))


class TwoWayAttentionBlock(nn.Module):
    """Tokens attend to themselves, tokens to the image, an MLP on the tokens, the image to the tokens; positional
    encodings are re-added to queries and keys at every attention (the first layer's self-attention takes the
    tokens without them)."""

    def __init__(self, dim: int, num_heads: int, mlp_dim: int, downsample: int, skip_first_pe: bool) -> None:
        super().__init__()
        self.self_attn = TokenAttention(dim, num_heads)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = TokenAttention(dim, num_heads, downsample)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim, nn.ReLU)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = TokenAttention(dim, num_heads, downsample)
        self.skip_first_pe = skip_first_pe

    def forward(self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor,
                key_pe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.skip_first_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + query_pe, keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int = 2, embedding_dim: int = 256, num_heads: int = 8, mlp_dim: int = 2048,
                 attention_downsample_rate: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, attention_downsample_rate, i == 0)
            for i in range(depth))
        self.final_attn_token_to_image = TokenAttention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(self, image: torch.Tensor, image_pe: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        keys = image.flatten(2).transpose(1, 2)  # (B, HW, C)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = tokens
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, key_pe)
        queries = queries + self.final_attn_token_to_image(queries + tokens, keys + key_pe, keys)
        return self.norm_final_attn(queries), keys


class MLP(nn.Module):
    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    def __init__(self, transformer_dim: int = 256, num_multimask_outputs: int = 3, num_heads: int = 8,
                 mlp_dim: int = 2048, depth: int = 2, iou_head_depth: int = 3, iou_head_hidden_dim: int = 256) -> None:
        super().__init__()
        c = transformer_dim
        self.transformer = TwoWayTransformer(depth, c, num_heads, mlp_dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, c)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, c)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, 2, stride=2), LayerNorm2d(c // 4), nn.GELU(),
            nn.ConvTranspose2d(c // 4, c // 8, 2, stride=2), nn.GELU())
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(c, c, c // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(c, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth)

    def forward(self, image_embeddings: torch.Tensor, image_pe: torch.Tensor, sparse_prompt_embeddings: torch.Tensor,
                dense_prompt_embeddings: torch.Tensor, multimask_output: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Masks (P, K, 4h, 4w) and IoU predictions (P, K) for P prompt sets on P images, or on one image
        (``image_embeddings`` of batch 1 is shared by every prompt set); K = 3 with ``multimask_output``, else 1."""
        p = sparse_prompt_embeddings.shape[0]
        out_tokens = torch.cat([self.iou_token.weight, self.mask_tokens.weight])[None].expand(p, -1, -1)
        tokens = torch.cat([out_tokens, sparse_prompt_embeddings], 1)
        src = image_embeddings.expand(p, -1, -1, -1) if image_embeddings.shape[0] == 1 else image_embeddings
        src = src + dense_prompt_embeddings
        b, c, h, w = src.shape
        hs, keys = self.transformer(src, image_pe.expand(b, -1, -1, -1), tokens)
        iou_out, mask_out = hs[:, 0], hs[:, 1:1 + self.num_mask_tokens]
        up = self.output_upscaling(keys.transpose(1, 2).reshape(b, c, h, w))
        hyper = torch.stack([mlp(mask_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], 1)
        masks = (hyper @ up.flatten(2)).reshape(b, -1, *up.shape[-2:])
        iou = self.iou_prediction_head(iou_out)
        keep = slice(1, None) if multimask_output else slice(0, 1)
        return masks[:, keep], iou[:, keep]


# ---------------------------------------------------------------------------------------------- SAM
class Sam(nn.Module):
    """``model(images, point_coords, point_labels, boxes, mask_inputs, multimask_output)`` for preprocessed
    ``img_size`` images (``preprocess``) and one prompt set per image, in the input frame -> (low-res mask logits
    (B, K, 4h, 4w), IoU predictions (B, K)). ``num_classes`` is accepted for the common interface: SAM is
    class-agnostic."""

    mask_threshold = 0.0

    def __init__(self, image_encoder: ImageEncoderViT, prompt_encoder: PromptEncoder, mask_decoder: MaskDecoder,
                 num_classes: int = 1) -> None:
        super().__init__()
        self.image_encoder, self.prompt_encoder, self.mask_decoder = image_encoder, prompt_encoder, mask_decoder
        self.num_classes = num_classes
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(-1, 1, 1), persistent=False)

    @property
    def img_size(self) -> int:
        return self.image_encoder.img_size

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in 0..255 (C, H, W or B, C, H, W; the long side already ``img_size``) -> normalised and
        zero-padded at the bottom/right to ``img_size`` squared."""
        x = (x - self.pixel_mean) / self.pixel_std
        h, w = x.shape[-2:]
        if max(h, w) > self.img_size:
            raise PaperzooError(f"SAM: an image of {h}x{w} is larger than the encoder's {self.img_size} px; resize its "
                                "long side first (SamPredictor does)")
        return F.pad(x, (0, self.img_size - w, 0, self.img_size - h))

    def postprocess_masks(self, masks: torch.Tensor, input_size: tuple[int, int],
                          original_size: tuple[int, int]) -> torch.Tensor:
        """Low-res logits -> the padded input size, the padding cut off, then the original image size."""
        masks = F.interpolate(masks, (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        masks = masks[..., :input_size[0], :input_size[1]]
        return F.interpolate(masks, original_size, mode="bilinear", align_corners=False)

    def decode(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor | None = None,
               point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
               mask_inputs: torch.Tensor | None = None, multimask_output: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """The light half: prompts (P sets) on given embeddings (P images, or 1 shared) -> masks, IoU predictions."""
        if (point_coords is None) != (point_labels is None):
            raise PaperzooError("SAM: point_coords and point_labels go together")
        points = (point_coords, point_labels) if point_coords is not None else None
        sparse, dense = self.prompt_encoder(points, boxes, mask_inputs, batch=image_embeddings.shape[0])
        return self.mask_decoder(image_embeddings, self.prompt_encoder.get_dense_pe(), sparse, dense, multimask_output)

    def forward(self, images: torch.Tensor, point_coords: torch.Tensor | None = None,
                point_labels: torch.Tensor | None = None, boxes: torch.Tensor | None = None,
                mask_inputs: torch.Tensor | None = None, multimask_output: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        return self.decode(self.image_encoder(images), point_coords, point_labels, boxes, mask_inputs, multimask_output)


def stability_score(logits: torch.Tensor, threshold: float = 0.0, offset: float = 1.0) -> torch.Tensor:
    """IoU of the masks thresholded at ``threshold + offset`` and ``threshold - offset`` (the first lies inside
    the second): how little the mask moves when the cut-off does (sec. 4 / appendix B)."""
    inner = (logits > threshold + offset).flatten(-2).sum(-1)
    outer = (logits > threshold - offset).flatten(-2).sum(-1)
    return inner / outer.clamp_min(1)


class SamPredictor:
    """Embed an image once (``set_image``), then answer any number of prompts (``predict``): the paper's
    amortised real-time use, where only the prompt encoder and mask decoder run per prompt."""

    def __init__(self, model: Sam) -> None:
        self.model = model
        self.features: torch.Tensor | None = None

    @property
    def device(self) -> torch.device:
        return self.model.pixel_mean.device

    def input_size_for(self, h: int, w: int) -> tuple[int, int]:
        scale = self.model.img_size / max(h, w)
        return int(h * scale + 0.5), int(w * scale + 0.5)

    @torch.no_grad()
    def set_image(self, image: torch.Tensor) -> None:
        """``image``: (3, H, W) or (H, W, 3) with values in 0..255 (uint8 or float). Resized so that its long side
        is the encoder's size (bilinear, antialiased), normalised, padded, embedded."""
        if image.ndim != 3:
            raise PaperzooError(f"SamPredictor: an image is (3, H, W) or (H, W, 3), got shape {tuple(image.shape)}")
        if image.shape[0] != 3 and image.shape[-1] == 3:
            image = image.permute(2, 0, 1)
        h, w = image.shape[-2:]
        size = self.input_size_for(h, w)
        x = F.interpolate(image[None].float(), size, mode="bilinear", align_corners=False, antialias=True)
        self.set_torch_image(x.round().clamp(0, 255) if image.dtype == torch.uint8 else x, (h, w))

    @torch.no_grad()
    def set_torch_image(self, transformed: torch.Tensor, original_size: tuple[int, int]) -> None:
        """(1, 3, h, w) already resized (long side = the encoder's size), in 0..255."""
        self.original_size = tuple(original_size)
        self.input_size = tuple(transformed.shape[-2:])
        self.features = self.model.image_encoder(self.model.preprocess(transformed.to(self.device)))

    def _scale(self) -> torch.Tensor:
        (oh, ow), (ih, iw) = self.original_size, self.input_size
        return torch.tensor([iw / ow, ih / oh], device=self.device)

    @torch.no_grad()
    def predict(self, point_coords: torch.Tensor | None = None, point_labels: torch.Tensor | None = None,
                box: torch.Tensor | None = None, mask_input: torch.Tensor | None = None, multimask_output: bool = True,
                return_logits: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Prompts in the original image's pixels: ``point_coords`` (N, 2) or batched (P, N, 2) as (x, y),
        ``point_labels`` (N,) / (P, N), ``box`` (4,) / (P, 4) as x0 y0 x1 y1, ``mask_input`` (1, 256, 256) /
        (P, 1, 256, 256) low-res logits. Returns masks at the original size (bool, or logits), IoU predictions and
        low-res logits, with a leading P where the prompts were batched."""
        if self.features is None:
            raise PaperzooError("SamPredictor: call set_image(...) before predict(...)")
        # batched (a leading P) when the points are (P, N, 2); without points, when the box is (P, 4) / the mask 4-D
        if point_coords is not None:
            single = point_coords.ndim == 2
        elif box is not None:
            single = box.ndim == 1
        else:
            single = mask_input is None or mask_input.ndim == 3
        s = self._scale()
        coords = labels = boxes = masks_in = None
        if point_coords is not None:
            if point_labels is None:
                raise PaperzooError("SamPredictor: point_coords need point_labels")
            coords = torch.as_tensor(point_coords, dtype=torch.float32, device=self.device) * s
            labels = torch.as_tensor(point_labels, device=self.device).int()
            coords, labels = (coords[None], labels[None]) if single else (coords, labels)
        if box is not None:
            boxes = torch.as_tensor(box, dtype=torch.float32, device=self.device) * s.repeat(2)
            boxes = boxes.reshape(-1, 4)
        if mask_input is not None:
            masks_in = torch.as_tensor(mask_input, dtype=torch.float32, device=self.device)
            masks_in = masks_in[None] if single else masks_in
        low, iou = self.model.decode(self.features, coords, labels, boxes, masks_in, multimask_output)
        masks = self.model.postprocess_masks(low, self.input_size, self.original_size)
        if not return_logits:
            masks = masks > self.model.mask_threshold
        return (masks[0], iou[0], low[0]) if single else (masks, iou, low)


class SamAutomaticMaskGenerator:
    """Masks for everything (sec. 7.1 / appendix B, without crops): a ``points_per_side``^2 grid of single-point
    prompts, three masks each; masks with predicted IoU <= ``pred_iou_thresh`` or stability score <
    ``stability_score_thresh`` are dropped, and duplicates removed by box NMS (IoU ``box_nms_thresh``, ranked by
    predicted IoU) with torchvision's ``batched_nms``."""

    def __init__(self, model: Sam, points_per_side: int = 32, points_per_batch: int = 64, pred_iou_thresh: float = 0.88,
                 stability_score_thresh: float = 0.95, stability_score_offset: float = 1.0,
                 box_nms_thresh: float = 0.7) -> None:
        self.predictor = SamPredictor(model)
        self.points_per_side, self.points_per_batch = points_per_side, points_per_batch
        self.pred_iou_thresh, self.stability_score_thresh = pred_iou_thresh, stability_score_thresh
        self.stability_score_offset, self.box_nms_thresh = stability_score_offset, box_nms_thresh

    def point_grid(self, h: int, w: int) -> torch.Tensor:
        n = self.points_per_side
        side = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        xy = torch.stack(torch.meshgrid(side, side, indexing="xy"), -1).reshape(-1, 2)
        return xy * torch.tensor([w, h], dtype=torch.float64)

    @torch.no_grad()
    def generate(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"masks": (M, H, W) bool, "boxes": (M, 4) xyxy, "iou_predictions", "stability_scores", "points"}``."""
        from torchvision.ops import batched_nms, masks_to_boxes

        self.predictor.set_image(image)
        h, w = self.predictor.original_size
        points = self.point_grid(h, w)
        kept: dict[str, list[torch.Tensor]] = {"masks": [], "iou_predictions": [], "stability_scores": [], "points": []}
        for start in range(0, len(points), self.points_per_batch):
            pts = points[start:start + self.points_per_batch]
            logits, iou, _ = self.predictor.predict(pts[:, None].float(), torch.ones(len(pts), 1), return_logits=True)
            logits, iou = logits.flatten(0, 1), iou.flatten(0, 1)
            pts = pts.repeat_interleave(3, 0)
            keep = iou > self.pred_iou_thresh if self.pred_iou_thresh > 0 else torch.ones_like(iou, dtype=torch.bool)
            stab = stability_score(logits, self.predictor.model.mask_threshold, self.stability_score_offset)
            if self.stability_score_thresh > 0:
                keep &= stab >= self.stability_score_thresh
            masks = logits[keep] > self.predictor.model.mask_threshold
            nonempty = masks.flatten(1).any(1)
            for key, value in zip(kept, (masks[nonempty], iou[keep][nonempty], stab[keep][nonempty],
                                         pts.to(iou.device)[keep][nonempty])):
                kept[key].append(value)
        out = {k: torch.cat(v) for k, v in kept.items()}
        boxes = masks_to_boxes(out["masks"]) if len(out["masks"]) else torch.zeros(0, 4)
        order = batched_nms(boxes.float(), out["iou_predictions"].float(), torch.zeros(len(boxes)), self.box_nms_thresh)
        return {"boxes": boxes[order], **{k: v[order] for k, v in out.items()}}


# ---------------------------------------------------------------------------------------------- variants
def build_sam(embed_dim: int = 768, depth: int = 12, num_heads: int = 12, global_attn_indexes: Sequence[int] = (2, 5, 8, 11),
              img_size: int = 1024, patch_size: int = 16, window_size: int = 14, prompt_dim: int = 256,
              mask_in_chans: int = 16, decoder_heads: int = 8, decoder_mlp_dim: int = 2048, decoder_depth: int = 2,
              num_classes: int = 1, in_chans: int = 3) -> Sam:
    """SAM of any size (the released ones: ``sam_vit_b/l/h``); small settings give miniatures of the same design."""
    grid = img_size // patch_size
    return Sam(
        ImageEncoderViT(img_size, patch_size, in_chans, embed_dim, depth, num_heads, 4.0, prompt_dim, window_size,
                        tuple(global_attn_indexes)),
        PromptEncoder(prompt_dim, (grid, grid), (img_size, img_size), mask_in_chans),
        MaskDecoder(prompt_dim, 3, decoder_heads, decoder_mlp_dim, decoder_depth, 3, prompt_dim),
        num_classes=num_classes)


def _variant(dim: int, depth: int, heads: int, global_idx: tuple[int, ...], kwargs: dict[str, Any]) -> Sam:
    """A released configuration; keywords override any of its settings (reduced encoders for tests, miniatures)."""
    return build_sam(**{"embed_dim": dim, "depth": depth, "num_heads": heads, "global_attn_indexes": global_idx, **kwargs})


# segment_anything's names are ours; the released checkpoints are those state dicts.
register_converter("sam", "segment-anything", "official")(identity)

_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
_META = dict(paper="segment-anything", task="promptable", num_classes=1, input_size=(3, 1024, 1024),
             mean=tuple(m / 255 for m in PIXEL_MEAN), std=tuple(s / 255 for s in PIXEL_STD),
             notes="class-agnostic: num_classes is accepted and ignored; inputs are preprocessed 1024x1024 images")


@register_model(**_META, reference={"segment-anything": "vit_b"}, weights={"official": _URL + "sam_vit_b_01ec64.pth"})
def sam_vit_b(**kwargs: Any) -> Sam:
    """SAM with ViT-B/16 (12 blocks, width 768, global attention in blocks 2, 5, 8, 11)."""
    return _variant(768, 12, 12, (2, 5, 8, 11), kwargs)


@register_model(**_META, reference={"segment-anything": "vit_l"}, weights={"official": _URL + "sam_vit_l_0b3195.pth"})
def sam_vit_l(**kwargs: Any) -> Sam:
    """SAM with ViT-L/16 (24 blocks, width 1024, global attention in blocks 5, 11, 17, 23)."""
    return _variant(1024, 24, 16, (5, 11, 17, 23), kwargs)


@register_model(**_META, reference={"segment-anything": "vit_h"}, weights={"official": _URL + "sam_vit_h_4b8939.pth"})
def sam_vit_h(**kwargs: Any) -> Sam:
    """SAM with ViT-H/16 (32 blocks, width 1280, global attention in blocks 7, 15, 23, 31): 636M parameters."""
    return _variant(1280, 32, 16, (7, 15, 23, 31), kwargs)
