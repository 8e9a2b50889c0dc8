"""Image Segmentation Using Text and Image Prompts (Lüddecke and Ecker, 2022, arXiv:2112.10003).

CLIPSeg adds a light conditional decoder to a frozen CLIP ViT-B/16 so that one model segments whatever a prompt
describes (section 3):

* the query image passes the frozen CLIP image encoder; the token activations of three of its layers (3, 6 and 9,
  counted from 0 as the released code counts them: the outputs of the 4th, 7th and 10th blocks) are each projected
  to the decoder width D = 64 (``reduces``) and added in, deepest first, between the decoder's layers (U-Net-like
  skip connections);
* the prompt -- a text encoded by CLIP's text encoder, or an example image by CLIP's image encoder, or any
  interpolation of the two (section 3.1's joint training) -- conditions the decoder by FiLM: the activations are
  scaled and shifted by linear maps of the prompt embedding (``film_mul``, ``film_add``) at the first layer;
* three post-norm Transformer layers of width D (4 heads, ReLU MLP of 2048) and a transposed-convolution head map
  the patch tokens back to a per-pixel logit; the released "refined" model uses a 3x3 conv and two 4x4 stride-4
  transposed convs (``complex_trans_conv``) instead of one 16x16 one.

Visual prompt engineering (section 3.2): an image prompt works best when the support image has its background
darkened (brightness x 0.1), blurred and is cropped around the object; ``visual_prompt`` builds such a prompt from
an image and a mask. ``clipseg_rd64_refined`` is the released model (decoder 1.1M parameters); it loads Hugging
Face ``CLIPSegForImageSegmentation`` weights (``source="transformers"``).
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import register_model
from ...weights import register_converter
from .clip import CLIP, CLIP_MEAN, CLIP_STD, MultiheadAttention, VisionTransformer, _clip, hf_clip_text, hf_clip_vision

__all__ = ["CLIPSeg", "visual_prompt"]


class DecoderLayer(nn.Module):
    """Post-norm Transformer encoder layer (PyTorch's ``nn.TransformerEncoderLayer`` default): x = LN(x + attn(x)),
    x = LN(x + MLP(x)) with a ReLU MLP."""

    def __init__(self, dim: int, heads: int, hidden: int) -> None:
        super().__init__()
        self.attn = MultiheadAttention(dim, heads)
        self.norm1 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(OrderedDict(fc1=nn.Linear(dim, hidden), act=nn.ReLU(), fc2=nn.Linear(hidden, dim)))
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class CLIPSeg(nn.Module):
    """A frozen ``CLIP`` (ViT image tower) and the conditional decoder (see the module docstring).

    ``model(images, token_ids)`` gives mask logits (B, H, W) for text prompts; ``prompt_images=`` conditions on
    example images instead, ``conditional=`` on given (B, embed_dim) prompt embeddings (e.g. a mix of both).
    """

    def __init__(self, clip: CLIP, extract_layers: Sequence[int] = (3, 6, 9), reduce_dim: int = 64, heads: int = 4,
                 mlp_dim: int = 2048, cond_layer: int = 0, complex_trans_conv: bool = True, freeze_clip: bool = True) -> None:
        super().__init__()
        if not isinstance(clip.visual, VisionTransformer):
            raise ValueError("CLIPSeg needs a ViT image encoder")
        self.clip, self.extract_layers, self.cond_layer = clip, tuple(extract_layers), cond_layer
        width, embed, patch = clip.visual.transformer.width, clip.embed_dim, clip.visual.patch_size
        self.film_mul = nn.Linear(embed, reduce_dim)
        self.film_add = nn.Linear(embed, reduce_dim)
        self.reduces = nn.ModuleList([nn.Linear(width, reduce_dim) for _ in extract_layers])
        self.layers = nn.ModuleList([DecoderLayer(reduce_dim, heads, mlp_dim) for _ in extract_layers])
        if complex_trans_conv:
            k = patch // 4
            self.trans_conv = nn.Sequential(nn.Conv2d(reduce_dim, reduce_dim, 3, padding=1), nn.ReLU(),
                                            nn.ConvTranspose2d(reduce_dim, reduce_dim // 2, k, stride=k), nn.ReLU(),
                                            nn.ConvTranspose2d(reduce_dim // 2, 1, k, stride=k))
        else:
            self.trans_conv = nn.ConvTranspose2d(reduce_dim, 1, patch, stride=patch)
        self.freeze_clip = freeze_clip
        if freeze_clip:
            self.clip.requires_grad_(False)

    def train(self, mode: bool = True) -> CLIPSeg:
        super().train(mode)
        if self.freeze_clip:
            self.clip.eval()
        return self

    def conditional(self, token_ids: torch.Tensor | None = None, prompt_images: torch.Tensor | None = None) -> torch.Tensor:
        """The prompt embedding (B, embed_dim): CLIP's text feature of ``token_ids`` or image feature of
        ``prompt_images`` (unnormalised, as the released model uses them)."""
        if (token_ids is None) == (prompt_images is None):
            raise ValueError("CLIPSeg takes exactly one prompt: token_ids (text) or prompt_images")
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_clip):
            if token_ids is not None:
                return self.clip.encode_text(token_ids)
            return self.clip.encode_image(prompt_images)

    def activations(self, images: torch.Tensor) -> tuple[list[torch.Tensor], tuple[int, int]]:
        """Token states after the extracted layers (0-based block indices), and the patch grid."""
        v = self.clip.visual
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_clip):
            x = v.tokens(images)
            _, kept = v.transformer(x, keep=[i + 1 for i in self.extract_layers], stop=max(self.extract_layers) + 1)
        return kept, (images.shape[-2] // v.patch_size, images.shape[-1] // v.patch_size)

    def forward(self, images: torch.Tensor, token_ids: torch.Tensor | None = None, *,
                prompt_images: torch.Tensor | None = None, conditional: torch.Tensor | None = None) -> torch.Tensor:
        cond = conditional if conditional is not None else self.conditional(token_ids, prompt_images)
        if cond.shape[0] != images.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {cond.shape[0]} prompts: give one prompt per image")
        kept, (h, w) = self.activations(images)
        out = None
        for i, (act, reduce, layer) in enumerate(zip(kept[::-1], self.reduces, self.layers)):
            out = reduce(act) if out is None else out + reduce(act)
            if i == self.cond_layer:  # FiLM: a prompt-dependent scale and shift of every token
                out = self.film_mul(cond)[:, None] * out + self.film_add(cond)[:, None]
            out = layer(out)
        out = out[:, 1:].transpose(1, 2).reshape(len(out), -1, h, w)  # drop the class token
        return self.trans_conv(out).squeeze(1)


def visual_prompt(images: torch.Tensor, masks: torch.Tensor, darken: float = 0.1, blur: int = 0,
                  crop: bool = True, size: int | None = None, mean=CLIP_MEAN, std=CLIP_STD) -> torch.Tensor:
    """Visual prompt engineering (section 3.2, Table 2's best form): the background darkened to ``darken`` of its
    brightness (of normalised images: towards the value of black), optionally blurred (``blur`` = box-filter
    size), and the image cropped to the mask's bounding box and resized back to ``size`` (default: unchanged).
    ``images`` (B, 3, H, W) normalised with ``mean``/``std``, ``masks`` (B, H, W) in {0, 1}."""
    m = masks.to(images.dtype)[:, None]
    back = images
    if blur > 1:
        back = F.avg_pool2d(images, blur, stride=1, padding=blur // 2, count_include_pad=False)[..., :images.shape[-2], :images.shape[-1]]
    mean = torch.as_tensor(mean, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)
    std = torch.as_tensor(std, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)
    black = -mean / std
    out = m * images + (1 - m) * (black + darken * (back - black))
    if not crop:
        return out
    h, w = images.shape[-2:]
    size = size or h
    crops = []
    for img, mask in zip(out, masks):  # one box per prompt image; resizing each crop is inherently per image
        ys, xs = torch.nonzero(mask, as_tuple=True)
        if len(ys) == 0:
            crops.append(F.interpolate(img[None], size=(size, size), mode="bilinear", align_corners=False)[0])
            continue
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
        side = max(y1 - y0, x1 - x0)
        cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
        y0, x0 = max(0, min(h - side, cy - side // 2)), max(0, min(w - side, cx - side // 2))
        patch = img[:, y0:y0 + side, x0:x0 + side]
        crops.append(F.interpolate(patch[None], size=(size, size), mode="bilinear", align_corners=False)[0])
    return torch.stack(crops)


@register_model(paper="clipseg", task="prompted-segmentation", input_size=(3, 352, 352), mean=CLIP_MEAN, std=CLIP_STD,
                num_classes=1, paper_params_m=1.1, reference={"transformers": "CIDAS/clipseg-rd64-refined"},
                notes="paper_params_m: the decoder alone (the CLIP backbone is frozen).")
def clipseg_rd64_refined(num_classes: int | None = None, extract_layers: Sequence[int] = (3, 6, 9), reduce_dim: int = 64,
                         decoder_heads: int = 4, mlp_dim: int = 2048, complex_trans_conv: bool = True, freeze_clip: bool = True,
                         **clip_kwargs) -> CLIPSeg:
    """CLIPSeg on CLIP ViT-B/16, D = 64, the refined transposed-conv head (the released model). ``num_classes`` is
    accepted for the registry's uniform signature: a mask per prompt. ``clip_kwargs`` reach the CLIP builder."""
    clip = _clip("vit", **{"embed_dim": 512, "width": 768, "layers": 12, "patch_size": 16, **clip_kwargs})
    return CLIPSeg(clip, extract_layers, reduce_dim, decoder_heads, mlp_dim, 0, complex_trans_conv, freeze_clip)


@register_converter("clipseg", "transformers")
def _from_transformers(state_dict: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Hugging Face ``CLIPSegForImageSegmentation``: the CLIP part as ``CLIPModel``'s keys under ``clip.``; the
    decoder's q/k/v packed; ``layer_norm1/2`` -> ``norm1/2``; ``transposed_convolution`` -> ``trans_conv``."""
    state = dict(state_dict)
    clip = model.clip
    out = {f"clip.{k}": v for k, v in hf_clip_vision(state, "clip.vision_model", "visual", clip.visual.transformer.layers).items()}
    out.update({f"clip.{k}": v for k, v in hf_clip_text(state, "clip.text_model", clip.transformer.layers).items()})
    out["clip.visual.proj"] = state.pop("clip.visual_projection.weight").T
    out["clip.text_projection"] = state.pop("clip.text_projection.weight").T
    out["clip.logit_scale"] = state.pop("clip.logit_scale")
    for i in range(len(model.layers)):
        s, d = f"decoder.layers.{i}", f"layers.{i}"
        out[f"{d}.attn.in_proj_weight"] = torch.cat([state.pop(f"{s}.self_attn.{p}_proj.weight") for p in "qkv"])
        out[f"{d}.attn.in_proj_bias"] = torch.cat([state.pop(f"{s}.self_attn.{p}_proj.bias") for p in "qkv"])
        for ours, theirs in (("attn.out_proj", "self_attn.out_proj"), ("norm1", "layer_norm1"), ("norm2", "layer_norm2"),
                             ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
            for p in ("weight", "bias"):
                out[f"{d}.{ours}.{p}"] = state.pop(f"{s}.{theirs}.{p}")
    for k in list(state):
        if k.startswith("decoder."):
            out[k[len("decoder."):].replace("transposed_convolution", "trans_conv")] = state.pop(k)
    out.update(state)  # anything left is reported by load_weights as unmatched
    return out
