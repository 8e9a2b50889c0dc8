"""Deformable DETR: Deformable Transformers for End-to-End Object Detection (Zhu et al., 2020, arXiv:2010.04159).

DETR's attention looks at every pixel of one coarse map, which makes it slow to converge and blind to small objects.
Deformable DETR replaces it, in the encoder and in the decoder's cross-attention, by **multi-scale deformable
attention** (Sec. 4.1, eq. 3; ``_parts/deformable.py``): each query samples K = 4 points per head on each of L = 4
feature levels around a reference point, with offsets and weights predicted from the query itself. This file is the
paper's first configuration ("Deformable DETR", Table 1: 40M parameters), without iterative box refinement or the
two-stage variant:

* **multi-scale maps** (Sec. 4.1, App. A.2, Fig. 4): the backbone's C3-C5 (strides 8, 16, 32) each through a 1x1
  convolution to d = 256 and GroupNorm (32 groups), and a fourth level from a 3x3 stride-2 convolution of C5 (with
  GroupNorm); ResNet-50 with frozen BatchNorm, its stem and first stage frozen, as the official code;
* **encoder** (6 post-norm layers, 8 heads, FFN 1024, dropout 0.1): deformable self-attention over the pixels of
  all levels, each pixel its own reference point; the positional embedding is the sine encoding of each level
  (pixel centres, DETR's ``sine_position_embedding`` with offset 0.5) plus a learned **level embedding** e_l;
* **decoder** (6 post-norm layers): ordinary self-attention among the N = 300 object queries
  (``F.scaled_dot_product_attention``), then deformable cross-attention to the encoder's output around each
  query's **reference point** p^_q = sigmoid(Linear(query positional embedding)) (the query embedding holds a
  positional and a content half, the content half the decoder's input), then the FFN;
* **heads**: a linear classifier with ``num_classes`` sigmoid outputs (no "no object" class) and a 3-layer MLP
  whose box is relative to the reference point: b = sigmoid(MLP(h) + (sigma^-1(p^_q), 0, 0)) (App. A.3); heads are
  shared by all decoder layers (there is no final decoder LayerNorm), each layer's output supervised
  (**auxiliary losses**);
* **loss and matching** (App. A.2): our DETR's ``HungarianMatcher`` and ``SetCriterion`` in their focal form:
  sigmoid focal loss (alpha 0.25, gamma 2) for the classes with weight 2, L1 x 5 and GIoU x 2 for the boxes, and
  the matching cost class 2 (a focal cost), L1 5, GIoU 2. ``model(images, targets)`` returns the weighted terms;
* ``postprocess``: the official one, the 100 highest sigmoid scores over all (query, class) pairs of an image.

``model(images)`` returns ``{"pred_logits" (N, 300, num_classes), "pred_boxes" (N, 300, 4) cxcywh in [0, 1]}``.
Weights load from Hugging Face's ``DeformableDetrForObjectDetection`` (``source="transformers"``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert

from ...errors import ConfigError, WeightsError
from ...registry import IMAGENET_MEAN, IMAGENET_STD, create_model, register_model
from ...weights import register_converter
from ._parts.backbone import freeze_batchnorm
from ._parts.deformable import MSDeformAttn, encoder_reference_points, valid_ratios
from ._parts.detector import Detector
from ._parts.transform import DetectionTransform
from .detr import _META, DETR, MLP, Attention, HungarianMatcher, SetCriterion, sine_position_embedding
from .detr import _from_transformers as _detr_from_transformers

__all__ = ["DeformableDETR", "DeformableDecoderLayer", "DeformableEncoderLayer", "inverse_sigmoid"]


def inverse_sigmoid(x: Tensor, eps: float = 1e-5) -> Tensor:
    """sigma^-1 of ``x`` clamped to [0, 1], both log terms kept above ``eps`` (as the official code)."""
    x = x.clamp(0, 1)
    return torch.log(x.clamp(min=eps) / (1 - x).clamp(min=eps))


class DeformableEncoderLayer(nn.Module):
    """Post-norm: x = LN(x + MSDeformAttn(x + pos, ref, x)); x = LN(x + FFN(x))."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float, levels: int, points: int) -> None:
        super().__init__()
        self.self_attn = MSDeformAttn(d, heads, levels, points)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, pos: Tensor, reference: Tensor, shapes: Sequence[tuple[int, int]], valid: Tensor) -> Tensor:
        x = self.norm1(x + self.drop(self.self_attn(x + pos, reference, x, shapes, valid)))
        return self.norm2(x + self.drop(self.linear2(self.drop(F.relu(self.linear1(x))))))


class DeformableDecoderLayer(nn.Module):
    """Post-norm: self-attention among queries (query positions on q and k), deformable cross-attention to the
    encoder's output around the reference points, FFN. Norm names as our DETR's decoder layer."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float, levels: int, points: int) -> None:
        super().__init__()
        self.self_attn = Attention(d, heads, dropout)
        self.cross_attn = MSDeformAttn(d, heads, levels, points)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, t: Tensor, query_pos: Tensor, reference: Tensor, memory: Tensor, shapes: Sequence[tuple[int, int]],
                valid: Tensor, self_mask: Tensor | None = None) -> Tensor:
        """``self_mask`` (N or 1, 1, L, L), True = may attend, restricts the queries' self-attention (Co-DETR's
        groups); ``reference`` (N, L, levels, 2)."""
        qk = t + query_pos
        if self_mask is None:
            t = self.norm1(t + self.drop(self.self_attn(qk, qk, t)))
        else:
            t = self.norm1(t + self.drop(_masked_attention(self.self_attn, qk, t, self_mask)))
        t = self.norm2(t + self.drop(self.cross_attn(t + query_pos, reference, memory, shapes, valid)))
        return self.norm3(t + self.drop(self.linear2(self.drop(F.relu(self.linear1(t))))))


def _masked_attention(attn: Attention, qk: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """Our DETR's ``Attention`` with an (N or 1, 1, L, L) attention mask instead of a key padding mask."""
    n, lq, d = qk.shape
    split = lambda t: t.view(n, -1, attn.heads, d // attn.heads).transpose(1, 2)  # noqa: E731
    out = F.scaled_dot_product_attention(split(attn.q_proj(qk)), split(attn.k_proj(qk)), split(attn.v_proj(v)),
                                         attn_mask=mask, dropout_p=attn.dropout if attn.training else 0.0)
    return attn.out_proj(out.transpose(1, 2).reshape(n, lq, d))


class DeformableDETR(Detector, nn.Module):
    """Backbone (several maps, ``features_only``) -> per-level projections (+ extra stride-2 levels) -> deformable
    encoder -> decoder with ``num_queries`` queries and reference points -> sigmoid class and box heads.

    The image batching, the targets' conversion, the loss call and ``forward`` are our DETR's (the same methods)."""

    def __init__(self, backbone: nn.Module, num_classes: int = 91, *, num_queries: int = 300, d_model: int = 256,
                 heads: int = 8, enc_layers: int = 6, dec_layers: int = 6, ffn: int = 1024, dropout: float = 0.1,
                 levels: int = 4, enc_points: int = 4, dec_points: int = 4, aux_loss: bool = True, min_size: int = 800,
                 max_size: int = 1333, focal_alpha: float = 0.25, cost_class: float = 2.0, cost_bbox: float = 5.0,
                 cost_giou: float = 2.0, loss_weights: dict[str, float] | None = None,
                 detections_per_img: int = 100) -> None:
        super().__init__()
        channels = list(backbone.out_channels)
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        if d_model % 32:
            raise ConfigError(f"d_model must be a multiple of 32 (the projections' GroupNorm has 32 groups), got {d_model}")
        if levels < len(channels):
            raise ConfigError(f"levels ({levels}) must be at least the number of backbone maps ({len(channels)})")
        if min(num_queries, enc_layers, dec_layers, enc_points, dec_points, detections_per_img) < 1:
            raise ConfigError("num_queries, enc_layers, dec_layers, enc_points, dec_points and detections_per_img "
                              "must be >= 1")
        self.transform = DetectionTransform(min_size, max_size, IMAGENET_MEAN, IMAGENET_STD, size_divisible=1)
        self.backbone = backbone
        extra = [channels[-1]] + [d_model] * (levels - len(channels) - 1)
        self.input_proj = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(c, d_model, 1), nn.GroupNorm(32, d_model)) for c in channels]
            + [nn.Sequential(nn.Conv2d(c, d_model, 3, 2, 1), nn.GroupNorm(32, d_model)) for c in extra[: levels - len(channels)]])
        self.level_embed = nn.Parameter(torch.empty(levels, d_model))
        self.encoder = nn.ModuleList(DeformableEncoderLayer(d_model, heads, ffn, dropout, levels, enc_points)
                                     for _ in range(enc_layers))
        self.decoder = nn.ModuleList(DeformableDecoderLayer(d_model, heads, ffn, dropout, levels, dec_points)
                                     for _ in range(dec_layers))
        self.query_embed = nn.Embedding(num_queries, 2 * d_model)  # (positional | content) halves
        self.reference_points = nn.Linear(d_model, 2)
        self.class_embed = nn.Linear(d_model, num_classes)
        self.bbox_embed = MLP(d_model, d_model, 4, 3)
        self.num_classes, self.aux_loss, self.detections_per_img = num_classes, aux_loss, detections_per_img
        weights = loss_weights or {"loss_ce": 2.0, "loss_bbox": 5.0, "loss_giou": 2.0}
        self.criterion = SetCriterion(num_classes, HungarianMatcher(cost_class, cost_bbox, cost_giou, focal_alpha),
                                      weights=weights, focal_alpha=focal_alpha)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official initialisation: Xavier for the transformer's matrices, then deformable attention's own,
        Xavier for the reference-point layer and the projections, N(0, 1) level embeddings, the classifier's bias at
        a prior of 0.01 and the box MLP's last layer zero (box sizes starting at sigmoid(-2))."""
        for p in [*self.encoder.parameters(), *self.decoder.parameters()]:
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.xavier_uniform_(self.reference_points.weight)
        nn.init.zeros_(self.reference_points.bias)
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight)
            nn.init.zeros_(proj[0].bias)
        nn.init.normal_(self.level_embed)
        nn.init.constant_(self.class_embed.bias, -math.log((1 - 0.01) / 0.01))
        last = self.bbox_embed.layers[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        last.bias[2:] = -2.0

    # our DETR's image batching (normalise, resize, pad, pixel mask), targets, loss call and forward
    batch = DETR.batch
    set_targets = DETR.set_targets
    loss = DETR.loss
    forward = DETR.forward

    def encode(self, x: Tensor, valid: Tensor) -> dict[str, Any]:
        """Backbone, projections and encoder on a prepared batch: the memory ``src`` (N, S, d) over all levels, its
        position + level embedding ``pos``, the real-pixel mask ``keys`` (N, S), the levels' ``shapes`` and
        ``ratios`` (N, L, 2) of valid area, and ``strides`` of the levels in batch pixels."""
        feats = self.backbone(x)
        maps = [proj(f) for proj, f in zip(self.input_proj, feats)]
        for proj in self.input_proj[len(feats):]:
            maps.append(proj(feats[-1] if len(maps) == len(feats) else maps[-1]))
        masks = [F.interpolate(valid[None].float(), size=m.shape[-2:])[0].bool() for m in maps]
        d = self.level_embed.shape[1]
        shapes = [(m.shape[-2], m.shape[-1]) for m in maps]
        pos = torch.cat([(sine_position_embedding(mask, d // 2, offset=0.5).to(m.dtype) + e[:, None, None])
                         .flatten(2).transpose(1, 2) for m, mask, e in zip(maps, masks, self.level_embed)], 1)
        src = torch.cat([m.flatten(2).transpose(1, 2) for m in maps], 1)
        keys = torch.cat([mask.flatten(1) for mask in masks], 1)
        ratios = torch.stack([valid_ratios(mask) for mask in masks], 1).to(src.dtype)
        reference = encoder_reference_points(shapes, ratios)
        for layer in self.encoder:
            src = layer(src, pos, reference, shapes, keys)
        return {"src": src, "pos": pos, "keys": keys, "shapes": shapes, "ratios": ratios,
                "strides": [x.shape[-1] / w for _, w in shapes]}

    def decode(self, t: Tensor, query_pos: Tensor, reference: Tensor, enc: dict[str, Any],
               self_mask: Tensor | None = None) -> Tensor:
        """All decoder layers on queries ``t`` with positions ``query_pos`` and reference points ``reference`` (N, L, 2)
        in [0, 1] of the image: their outputs stacked (layers, N, L, d)."""
        ref = reference[:, :, None] * enc["ratios"][:, None]  # into each level's padded frame
        hidden = []
        for layer in self.decoder:
            t = layer(t, query_pos, ref, enc["src"], enc["shapes"], enc["keys"], self_mask)
            hidden.append(t)
        return torch.stack(hidden)

    def heads(self, hs: Tensor, reference: Tensor) -> dict[str, Any]:
        """Class logits and boxes (relative to the reference points) of every decoder layer's output ``hs``."""
        delta = self.bbox_embed(hs)
        boxes = torch.cat((delta[..., :2] + inverse_sigmoid(reference), delta[..., 2:]), -1).sigmoid()
        logits = self.class_embed(hs)
        out: dict[str, Any] = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])]
        return out

    def queries(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """The object queries of a batch of ``n``: content (decoder input), positional embedding, reference points."""
        query_pos, content = self.query_embed.weight.split(self.query_embed.weight.shape[1] // 2, 1)
        query_pos = query_pos[None].expand(n, -1, -1)
        return content[None].expand(n, -1, -1), query_pos, self.reference_points(query_pos).sigmoid()

    def forward_features(self, x: Tensor, valid: Tensor) -> dict[str, Any]:
        """The network on a prepared batch and its pixel mask: head outputs of the last decoder layer and, as
        ``aux_outputs``, of the others."""
        enc = self.encode(x, valid)
        t, query_pos, reference = self.queries(len(x))
        return self.heads(self.decode(t, query_pos, reference, enc), reference)

    def postprocess(self, outputs: dict[str, Tensor], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """The official post-processing: per image the ``detections_per_img`` highest sigmoid scores over all
        (query, class) pairs, each with its query's box in the image's pixels; no NMS."""
        prob = outputs["pred_logits"].sigmoid()
        n, q, c = prob.shape
        scores, index = prob.flatten(1).topk(min(self.detections_per_img, q * c), dim=1)
        query, labels = index // c, index % c
        scale = torch.tensor([[w, h, w, h] for h, w in sizes], dtype=scores.dtype, device=scores.device)
        boxes = box_convert(outputs["pred_boxes"], "cxcywh", "xyxy").gather(1, query[..., None].expand(-1, -1, 4))
        boxes = boxes * scale[:, None]
        return [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in zip(boxes, scores, labels)]


# ------------------------------------------------------------------------------------------- converters
_HF_RENAME = {"model.input_proj.": "input_proj.", "model.level_embed": "level_embed",
              "model.reference_points.": "reference_points.", "class_embed.0.": "class_embed.",
              "bbox_embed.0.": "bbox_embed."}


@register_converter("deformable_detr", "transformers")
def _from_transformers(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Hugging Face ``DeformableDetrForObjectDetection`` -> ours: the backbone, query embedding and the layers' keys
    as for DETR (our DETR's map: ``self_attn_layer_norm`` -> norm1, ``encoder_attn`` -> cross_attn and its norm ->
    norm2, ``final_layer_norm`` -> norm2 / norm3, ``mlp.fc1/fc2`` -> linear1/2, ``o_proj`` -> out_proj; deformable
    attention's names are the official ones on both sides); ``model.input_proj``, ``model.level_embed``,
    ``model.reference_points``; the per-layer heads ``class_embed.i`` / ``bbox_embed.i``, tied in the model without
    box refinement, to our one shared head (a checkpoint whose heads differ is refused)."""
    out = {}
    for key, value in _detr_from_transformers(state_dict, model).items():
        head = key.split(".", 2)
        if head[0] in ("class_embed", "bbox_embed") and head[1].isdigit() and head[1] != "0":
            if not torch.equal(value, state_dict[f"{head[0]}.0.{head[2]}"]):
                raise WeightsError(f"transformers weights: {key} differs from {head[0]}.0.{head[2]} (a box-refinement or "
                                   "two-stage checkpoint; deformable_detr_resnet50 shares one head across layers)")
            continue
        for a, b in _HF_RENAME.items():
            if key.startswith(a):
                key = b + key[len(a):]
                break
        out[key] = value
    return out


# ---------------------------------------------------------------------------------------------- builders
@register_model(**{**_META, "paper": "co-detr", "paper_params_m": 40.0,
                   "reference": {"transformers": "SenseTime/deformable-detr"},
                   "recipe": {**_META["recipe"], "lr": 2e-4},  # Sec. 5: Adam(W) 2e-4, weight decay 1e-4
                   "notes": "Deformable DETR's first configuration (single-scale queries, no box refinement, not "
                            "two-stage): num_classes sigmoid outputs (no 'no object'); the loss dict's terms come "
                            "weighted (2 / 5 / 2); backbone BN frozen, stem and layer1 frozen; the paper's 10x lower "
                            "backbone learning rate is not applied"})
def deformable_detr_resnet50(pretrained_backbone: str | bool | None = None, num_classes: int = 91,
                             **kwargs: Any) -> DeformableDETR:
    """Deformable DETR with a ResNet-50 backbone (C3-C5 + one extra level; Table 1: 40M parameters, 43.8 AP)."""
    body = create_model("resnet50", pretrained=pretrained_backbone or None, features_only=True, out_indices=(2, 3, 4))
    freeze_batchnorm(body)
    for module in (body.model.conv1, body.model.bn1, body.model.layer1):  # the official code trains layer2-layer4
        module.requires_grad_(False)
    return DeformableDETR(body, num_classes, **kwargs)
