"""End-to-End Object Detection with Transformers (Carion et al., 2020, arXiv:2005.12872).

DETR predicts a fixed-size **set** of N = 100 detections in one pass and learns it with a loss that is invariant to
their order (Sec. 3.1): a bipartite matching between predictions and ground truth, then losses on the matched pairs,
so that neither anchors nor non-maximum suppression are needed. What this file implements:

* the architecture (Sec. 3.2, Fig. 2): a CNN backbone (ResNet-50/101, frozen BatchNorm; the stem and first stage
  frozen as the official code does), a 1x1 projection to d = 256, a **sine positional encoding** of the 2-D feature
  positions (normalised to [0, 2 pi], 128 frequencies per axis) added to queries and keys of every attention layer,
  a post-norm transformer **encoder** (6 layers, 8 heads, FFN 2048, dropout 0.1) and **decoder** (6 layers) whose
  inputs are 100 learned **object queries** (zero inputs, learned positional embeddings), decoding all objects in
  parallel; FFN heads: a linear class head over ``num_classes`` + 1 ("no object") and a 3-layer MLP giving boxes as
  normalised (cx, cy, w, h) with a sigmoid. Attention is ``F.scaled_dot_product_attention`` with a key padding mask.
* ``HungarianMatcher`` (eq. 1, Appendix A.1): the optimal assignment (scipy's ``linear_sum_assignment``) under the
  cost -p(c_i) x 1 + L1(b_i, b^) x 5 + (-GIoU(b_i, b^)) x 2;
* ``SetCriterion`` (eq. 2): cross-entropy over all queries with the "no object" class down-weighted by 0.1, L1 (x 5)
  and 1 - GIoU (x 2) on matched boxes, both normalised by the number of objects; **auxiliary decoding losses**
  (Sec. 3.2): the same loss after every decoder layer (shared heads, the final LayerNorm applied), each layer matched
  anew. In training ``model(images, targets)`` returns every term already weighted (``loss_ce``, ``loss_bbox``,
  ``loss_giou`` and ``loss_ce_0`` ... for the auxiliary layers), so that their sum is the training objective.
* ``postprocess``: per query the most likely real class, its probability as the score, boxes in each image's pixels;
  no NMS (``nms_thresh`` adds one, for the reproduction's comparison).

``model(images)`` (a list of images in [0, 1], or an (N, 3, H, W) batch) returns ``{"pred_logits" (N, 100,
num_classes + 1), "pred_boxes" (N, 100, 4)}``; ``num_classes`` excludes "no object" and labels index classes
directly (COCO's 91 ids as the official models, class 0 unused). Weights load from Hugging Face's
``DetrForObjectDetection`` (``source="transformers"``) and from the official repository (``source="official"``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert, generalized_box_iou, sigmoid_focal_loss

from ...errors import ConfigError
from ...registry import IMAGENET_MEAN, IMAGENET_STD, create_model, register_model
from ...weights import register_converter
from ._coco import COCO_CATEGORIES
from ._parts.backbone import freeze_batchnorm
from ._parts.detector import Detector
from ._parts.grid import check_targets, image_sizes, normalized_targets
from ._parts.transform import DetectionTransform

__all__ = ["DETR", "HungarianMatcher", "SetCriterion", "sine_position_embedding"]


def sine_position_embedding(mask: Tensor, num_feats: int = 128, temperature: float = 10000.0,
                            scale: float = 2 * math.pi, offset: float = 0.0) -> Tensor:
    """The 2-D sine encoding (Sec. 3.2, App. A.4): ``mask`` (N, H, W) True on real pixels; each axis' cumulative
    position (minus ``offset``: 0.5 in Deformable DETR, pixel centres) normalised to (0, ``scale``], encoded by
    sin / cos at ``num_feats`` frequencies temperature^(2i/F), y's features then x's: (N, 2 F, H, W)."""
    m = mask.to(torch.float32)
    y = m.cumsum(1)
    x = m.cumsum(2)
    eps = 1e-6
    y = (y - offset) / (y[:, -1:, :] + eps) * scale
    x = (x - offset) / (x[:, :, -1:] + eps) * scale
    dim_t = temperature ** (2 * torch.div(torch.arange(num_feats, device=mask.device), 2, rounding_mode="floor")
                            .to(torch.float32) / num_feats)
    px, py = x[..., None] / dim_t, y[..., None] / dim_t
    px = torch.stack((px[..., 0::2].sin(), px[..., 1::2].cos()), dim=4).flatten(3)
    py = torch.stack((py[..., 0::2].sin(), py[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((py, px), dim=3).permute(0, 3, 1, 2)


class Attention(nn.Module):
    """Multi-head attention with separate q, k, v projections; ``key_valid`` (N, S) masks padded keys."""

    def __init__(self, d: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, q: Tensor, k: Tensor, v: Tensor, key_valid: Tensor | None = None) -> Tensor:
        n, lq, d = q.shape
        split = lambda t: t.view(n, -1, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        mask = key_valid[:, None, None, :] if key_valid is not None else None
        out = F.scaled_dot_product_attention(split(self.q_proj(q)), split(self.k_proj(k)), split(self.v_proj(v)),
                                             attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(n, lq, d))


class EncoderLayer(nn.Module):
    """Post-norm: x = LN(x + Attn(x + pos, x + pos, x)); x = LN(x + FFN(x))."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = Attention(d, heads, dropout)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, pos: Tensor, valid: Tensor) -> Tensor:
        qk = x + pos
        x = self.norm1(x + self.drop(self.self_attn(qk, qk, x, valid)))
        return self.norm2(x + self.drop(self.linear2(self.drop(F.relu(self.linear1(x))))))


class DecoderLayer(nn.Module):
    """Post-norm: self-attention among queries (query positions on q and k), cross-attention to the encoder output
    (query positions on q, feature positions on k), FFN."""

    def __init__(self, d: int, heads: int, ffn: int, dropout: float) -> None:
        super().__init__()
        self.self_attn, self.cross_attn = Attention(d, heads, dropout), Attention(d, heads, dropout)
        self.linear1, self.linear2 = nn.Linear(d, ffn), nn.Linear(ffn, d)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, t: Tensor, query_pos: Tensor, memory: Tensor, pos: Tensor, valid: Tensor) -> Tensor:
        qk = t + query_pos
        t = self.norm1(t + self.drop(self.self_attn(qk, qk, t)))
        t = self.norm2(t + self.drop(self.cross_attn(t + query_pos, memory + pos, memory, valid)))
        return self.norm3(t + self.drop(self.linear2(self.drop(F.relu(self.linear1(t))))))


class MLP(nn.Module):
    def __init__(self, d_in: int, hidden: int, d_out: int, layers: int) -> None:
        super().__init__()
        dims = [d_in] + [hidden] * (layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, dims[1:] + [d_out]))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


# ------------------------------------------------------------------------------------------ matching, loss
class HungarianMatcher(nn.Module):
    """Eq. 1: per image, the assignment of ground-truth objects to predictions minimising
    ``cost_class`` x (-p(class)) + ``cost_bbox`` x L1(cxcywh) + ``cost_giou`` x (-GIoU), by scipy's
    ``linear_sum_assignment``. The cost matrices of a whole batch are computed at once.

    With ``focal_alpha`` (Deformable DETR's sigmoid classifier) the class cost is the focal loss of calling the query
    the object's class minus that of calling it not: alpha (1 - p)^2 (-log p) - (1 - alpha) p^2 (-log(1 - p)),
    p = sigmoid(logit)."""

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 focal_alpha: float | None = None) -> None:
        super().__init__()
        self.cost_class, self.cost_bbox, self.cost_giou = cost_class, cost_bbox, cost_giou
        self.focal_alpha = focal_alpha

    @torch.no_grad()
    def cost(self, logits: Tensor, boxes: Tensor, tgt_labels: Tensor, tgt_boxes: Tensor) -> Tensor:
        """(N x Q, T) costs of every prediction against every object of the batch (``tgt_*`` concatenated)."""
        out = boxes.flatten(0, 1)
        if self.focal_alpha is None:
            c_class = -logits.flatten(0, 1).softmax(-1)[:, tgt_labels]
        else:
            a, p = self.focal_alpha, logits.flatten(0, 1).sigmoid()[:, tgt_labels]
            c_class = a * (1 - p) ** 2 * -(p + 1e-8).log() - (1 - a) * p ** 2 * -(1 - p + 1e-8).log()
        c_bbox = torch.cdist(out, tgt_boxes, p=1)
        c_giou = -generalized_box_iou(box_convert(out, "cxcywh", "xyxy"), box_convert(tgt_boxes, "cxcywh", "xyxy"))
        return self.cost_bbox * c_bbox + self.cost_class * c_class + self.cost_giou * c_giou

    @torch.no_grad()
    def forward(self, logits: Tensor, boxes: Tensor, targets: Sequence[dict[str, Tensor]]) -> list[tuple[Tensor, Tensor]]:
        from scipy.optimize import linear_sum_assignment

        n, q = logits.shape[:2]
        sizes = [len(t["labels"]) for t in targets]
        if sum(sizes) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return [(empty, empty) for _ in targets]
        c = self.cost(logits, boxes, torch.cat([t["labels"] for t in targets]), torch.cat([t["boxes"] for t in targets]))
        c = c.view(n, q, -1).cpu()
        out = []
        for i, block in enumerate(c.split(sizes, -1)):  # scipy solves one image at a time
            rows, cols = linear_sum_assignment(block[i].numpy())
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return out


class SetCriterion(nn.Module):
    """Eq. 2 plus auxiliary losses: ``loss_ce`` (no-object weight ``eos_coef``), ``loss_bbox`` (L1) and ``loss_giou``
    (1 - GIoU), the box terms over the number of objects in the batch (at least 1). ``weights`` multiply the terms.

    With ``focal_alpha`` (Deformable DETR, Sec. 5 / App. A.2) ``loss_ce`` is instead the sigmoid focal loss (gamma 2)
    of ``num_classes`` logits per query against one-hot targets ("no object": all zeros), summed over queries and
    classes and divided by the number of objects."""

    def __init__(self, num_classes: int, matcher: HungarianMatcher, eos_coef: float = 0.1,
                 weights: dict[str, float] | None = None, focal_alpha: float | None = None) -> None:
        super().__init__()
        self.num_classes, self.matcher = num_classes, matcher
        self.weights = weights or {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0}
        self.eos_coef, self.focal_alpha = eos_coef, focal_alpha

    def empty_weight(self, device: torch.device | None = None) -> Tensor:
        """Class weights of the cross-entropy: 1 for the classes, ``eos_coef`` for "no object"."""
        w = torch.ones(self.num_classes + 1, device=device)
        w[-1] = self.eos_coef
        return w

    def terms(self, logits: Tensor, boxes: Tensor, targets: Sequence[dict[str, Tensor]], num_boxes: float
              ) -> dict[str, Tensor]:
        """The three unweighted terms for one set of predictions."""
        indices = self.matcher(logits, boxes, targets)
        batch = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(indices)]).to(logits.device)
        query = torch.cat([q for q, _ in indices]).to(logits.device)
        classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        classes[batch, query] = torch.cat([t["labels"][j.to(t["labels"].device)] for t, (_, j) in zip(targets, indices)])
        if self.focal_alpha is None:
            loss_ce = F.cross_entropy(logits.transpose(1, 2), classes, self.empty_weight(logits.device).to(logits.dtype))
        else:
            onehot = F.one_hot(classes, self.num_classes + 1)[..., :-1].to(logits.dtype)
            loss_ce = sigmoid_focal_loss(logits, onehot, self.focal_alpha, 2.0, reduction="sum") / num_boxes
        src = boxes[batch, query]
        tgt = torch.cat([t["boxes"][j.to(t["boxes"].device)] for t, (_, j) in zip(targets, indices)])
        loss_bbox = F.l1_loss(src, tgt, reduction="none").sum() / num_boxes
        giou = torch.diag(generalized_box_iou(box_convert(src, "cxcywh", "xyxy"), box_convert(tgt, "cxcywh", "xyxy")))
        return {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": (1 - giou).sum() / num_boxes}

    def forward(self, outputs: dict[str, Any], targets: Sequence[dict[str, Tensor]], weighted: bool = True
                ) -> dict[str, Tensor]:
        num_boxes = max(float(sum(len(t["labels"]) for t in targets)), 1.0)
        losses = self.terms(outputs["pred_logits"], outputs["pred_boxes"], targets, num_boxes)
        for i, aux in enumerate(outputs.get("aux_outputs", [])):
            losses.update({f"{k}_{i}": v for k, v in self.terms(aux["pred_logits"], aux["pred_boxes"], targets,
                                                                 num_boxes).items()})
        if weighted:
            losses = {k: v * self.weights[k.rsplit("_", 1)[0] if k[-1].isdigit() else k] for k, v in losses.items()}
        return losses


# -------------------------------------------------------------------------------------------------- model
class DETR(Detector, nn.Module):
    """Backbone -> 1x1 projection -> transformer encoder-decoder with object queries -> class and box heads.

    ``backbone`` returns one map (``features_only`` with one index); ``min_size``/``max_size`` resize images as
    the official evaluation does (800 / 1333), padding a batch to its largest image with a mask."""

    def __init__(self, backbone: nn.Module, num_classes: int = 91, *, num_queries: int = 100, d_model: int = 256,
                 heads: int = 8, enc_layers: int = 6, dec_layers: int = 6, ffn: int = 2048, dropout: float = 0.1,
                 aux_loss: bool = True, min_size: int = 800, max_size: int = 1333, eos_coef: float = 0.1,
                 cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 loss_weights: dict[str, float] | None = None, nms_thresh: float | None = None,
                 detections_per_img: int | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes (without 'no object') must be >= 1, got {num_classes}")
        self.transform = DetectionTransform(min_size, max_size, IMAGENET_MEAN, IMAGENET_STD, size_divisible=1)
        self.backbone = backbone
        self.input_proj = nn.Conv2d(backbone.out_channels[-1], d_model, 1)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, heads, ffn, dropout) for _ in range(enc_layers))
        self.decoder = nn.ModuleList(DecoderLayer(d_model, heads, ffn, dropout) for _ in range(dec_layers))
        self.decoder_norm = nn.LayerNorm(d_model)
        self.query_embed = nn.Embedding(num_queries, d_model)
        self.class_embed = nn.Linear(d_model, num_classes + 1)
        self.bbox_embed = MLP(d_model, d_model, 4, 3)
        self.num_classes, self.aux_loss = num_classes, aux_loss
        self.criterion = SetCriterion(num_classes, HungarianMatcher(cost_class, cost_bbox, cost_giou), eos_coef,
                                      loss_weights)
        self.nms_thresh, self.detections_per_img = nms_thresh, detections_per_img
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for p in self.decoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def batch(self, images: Sequence[Tensor] | Tensor) -> tuple[Tensor, Tensor]:
        """Normalised, resized, padded images (N, 3, H, W) and the mask of their real pixels (N, H, W)."""
        batch, _ = self.transform(list(images))
        x = batch.tensors
        h = torch.tensor([s[0] for s in batch.image_sizes], device=x.device)
        w = torch.tensor([s[1] for s in batch.image_sizes], device=x.device)
        valid = (torch.arange(x.shape[-2], device=x.device)[None, :, None] < h[:, None, None]) & \
                (torch.arange(x.shape[-1], device=x.device)[None, None, :] < w[:, None, None])
        return x, valid

    def encode(self, x: Tensor, valid: Tensor) -> dict[str, Any]:
        """Backbone, projection and encoder on a prepared batch: the memory ``src`` (N, HW, d), its position
        embedding ``pos``, the real-pixel mask ``keys`` (N, HW), the map size ``hw`` and its ``stride``."""
        feature = self.backbone(x)[-1]
        mask = F.interpolate(valid[None].float(), size=feature.shape[-2:])[0].bool()
        pos = sine_position_embedding(mask, self.input_proj.out_channels // 2).to(feature.dtype).flatten(2).transpose(1, 2)
        src = self.input_proj(feature).flatten(2).transpose(1, 2)
        keys = mask.flatten(1)
        for layer in self.encoder:
            src = layer(src, pos, keys)
        return {"src": src, "pos": pos, "keys": keys, "hw": feature.shape[-2:], "stride": x.shape[-1] / feature.shape[-1]}

    def forward_features(self, x: Tensor, valid: Tensor) -> dict[str, Any]:
        """The network on a prepared batch and its pixel mask: head outputs of the last decoder layer and, as
        ``aux_outputs``, of the others."""
        enc = self.encode(x, valid)
        src, pos, keys = enc["src"], enc["pos"], enc["keys"]
        query_pos = self.query_embed.weight[None].expand(len(x), -1, -1)
        t = torch.zeros_like(query_pos)
        hidden = []
        for layer in self.decoder:
            t = layer(t, query_pos, src, pos, keys)
            hidden.append(self.decoder_norm(t))
        hs = torch.stack(hidden)
        logits, boxes = self.class_embed(hs), self.bbox_embed(hs).sigmoid()
        out: dict[str, Any] = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])]
        return out

    def set_targets(self, targets: Sequence[dict[str, Tensor]], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Targets as the criterion takes them: labels and boxes as normalised (cx, cy, w, h)."""
        image, boxes, labels = normalized_targets(targets, sizes)
        counts = torch.bincount(image, minlength=len(sizes)).tolist()
        cxcywh = box_convert(boxes, "xyxy", "cxcywh")
        return [{"labels": lab, "boxes": box} for lab, box in zip(labels.split(counts), cxcywh.split(counts))]

    def loss(self, outputs: dict[str, Any], targets: Sequence[dict[str, Tensor]], sizes: Sequence[tuple[int, int]],
             weighted: bool = True) -> dict[str, Tensor]:
        return self.criterion(outputs, self.set_targets(targets, sizes), weighted)

    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None):
        sizes = image_sizes(images)
        if targets is not None:
            check_targets(targets, len(sizes), self.num_classes)
        x, valid = self.batch(images)
        out = self.forward_features(x, valid)
        if targets is None:
            return {"pred_logits": out["pred_logits"], "pred_boxes": out["pred_boxes"]}
        return self.loss(out, targets, sizes)

    def postprocess(self, outputs: dict[str, Tensor], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """Per query: the most probable real class and its probability, the box in the image's pixels. Without
        ``nms_thresh`` (the paper) every query is a detection; with it, class-wise NMS runs as for other detectors."""
        prob = outputs["pred_logits"].softmax(-1)[..., :-1]
        scores, labels = prob.max(-1)
        scale = torch.tensor([[w, h, w, h] for h, w in sizes], dtype=scores.dtype, device=scores.device)
        boxes = box_convert(outputs["pred_boxes"], "cxcywh", "xyxy") * scale[:, None]
        dets = [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in zip(boxes, scores, labels)]
        if self.nms_thresh is not None:
            from ._parts.grid import nms_per_image

            n, q = scores.shape
            image = torch.arange(n, device=scores.device).repeat_interleave(q)
            dets = nms_per_image(image, boxes.flatten(0, 1), scores.flatten(), labels.flatten(), n,
                                 self.num_classes + 1, self.nms_thresh, self.detections_per_img or q)
        elif self.detections_per_img is not None:
            dets = [{k: v[d["scores"].argsort(descending=True)[: self.detections_per_img]] for k, v in d.items()}
                    for d in dets]
        return dets



# ------------------------------------------------------------------------------------------- converters
_HF_LAYER = {"self_attn.o_proj": "self_attn.out_proj", "encoder_attn.o_proj": "cross_attn.out_proj",
             "encoder_attn.": "cross_attn.", "self_attn_layer_norm": "norm1", "mlp.fc1": "linear1", "mlp.fc2": "linear2"}


@register_converter("detr", "transformers")
def _from_transformers(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """Hugging Face ``DetrForObjectDetection`` -> ours: ``model.backbone.model.*`` (timm's ResNet, frozen BN) ->
    ``backbone.model.*``; ``input_projection``, ``query_position_embeddings``; per layer ``self_attn.{q,k,v,o}_proj``,
    ``encoder_attn`` (cross), ``self_attn_layer_norm`` / ``encoder_attn_layer_norm`` / ``final_layer_norm`` ->
    norm1 / norm2 / norm2 (encoder) or norm3 (decoder), ``mlp.fc1/fc2`` -> linear1/2; ``decoder.layernorm``;
    ``class_labels_classifier``, ``bbox_predictor``."""
    out = {}
    for key, value in state_dict.items():
        k = key
        if k.startswith("model.backbone.model."):
            k = "backbone.model." + k[len("model.backbone.model."):]
        elif k.startswith("model.input_projection."):
            k = "input_proj." + k[len("model.input_projection."):]
        elif k.startswith("model.query_position_embeddings."):
            k = "query_embed." + k[len("model.query_position_embeddings."):]
        elif k.startswith("model.decoder.layernorm."):
            k = "decoder_norm." + k[len("model.decoder.layernorm."):]
        elif k.startswith(("model.encoder.layers.", "model.decoder.layers.")):
            part = "encoder" if k.startswith("model.encoder") else "decoder"
            k = k[len("model."):].replace(f"{part}.layers.", f"{part}.", 1)
            for a, b in _HF_LAYER.items():
                k = k.replace(a, b)
            k = k.replace("encoder_attn_layer_norm", "norm2").replace("cross_attn_layer_norm", "norm2")
            k = k.replace("final_layer_norm", "norm2" if part == "encoder" else "norm3")
        elif k.startswith("class_labels_classifier."):
            k = "class_embed." + k[len("class_labels_classifier."):]
        elif k.startswith("bbox_predictor."):
            k = "bbox_embed." + k[len("bbox_predictor."):]
        out[k] = value
    return out


@register_converter("detr", "official")
def _from_official(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """The official repository's checkpoints (``detr-r50-e632da11.pth``'s ``model``): ``backbone.0.body.*``;
    ``transformer.encoder/decoder.layers.i`` with ``nn.MultiheadAttention``'s packed ``in_proj_weight`` (q, k, v
    stacked) split into our three projections, ``multihead_attn`` -> ``cross_attn``; ``transformer.decoder.norm``;
    ``input_proj``, ``query_embed``, ``class_embed``, ``bbox_embed``."""
    state_dict = state_dict.get("model", state_dict)
    out = {}
    for key, value in state_dict.items():
        k = key
        if k.startswith("backbone.0.body."):
            k = "backbone.model." + k[len("backbone.0.body."):]
        elif k.startswith("transformer.decoder.norm."):
            k = "decoder_norm." + k[len("transformer.decoder.norm."):]
        elif k.startswith("transformer."):
            k = k[len("transformer."):].replace("encoder.layers.", "encoder.", 1).replace("decoder.layers.", "decoder.", 1)
            k = k.replace("multihead_attn.", "cross_attn.")
            if ".in_proj_" in k:
                head, kind = k.rsplit(".in_proj_", 1)
                for name, part in zip(("q_proj", "k_proj", "v_proj"), value.chunk(3)):
                    out[f"{head}.{name}.{kind}"] = part
                continue
        out[k] = value
    return out


# ---------------------------------------------------------------------------------------------- builders
def _detr(depth: str, num_classes: int, pretrained_backbone: Any, kwargs: dict[str, Any], dc5: bool = False) -> DETR:
    """``dc5``: the paper's DC5 variant -- the last stage dilated instead of strided (stride 16, the first block of
    layer4 undilated as torchvision's ``replace_stride_with_dilation``), twice the feature resolution."""
    body = create_model(depth, pretrained=pretrained_backbone or None, features_only=True, out_indices=(4,),
                        output_stride=16 if dc5 else 32)
    freeze_batchnorm(body)
    m = body.model
    for module in (m.conv1, m.bn1, m.layer1):  # the official code trains layer2-layer4 only
        module.requires_grad_(False)
    return DETR(body, num_classes, **kwargs)


_META = dict(paper="detr", task="detection", num_classes=91, categories=COCO_CATEGORIES, input_size=(3, 800, 800),
             classifier=("class_embed",),
             recipe={"optimizer": "adamw", "lr": 1e-4, "weight_decay": 1e-4, "clip_grad": 0.1},  # sec. 4 (one lr)
             notes="num_classes excludes 'no object' (COCO: 91 ids, 0 unused); the loss dict's terms come weighted "
                   "(1 / 5 / 2) so that their sum is the objective; backbone BN frozen, stem and layer1 frozen")
_DL = "https://dl.fbaipublicfiles.com/detr/"


@register_model(**_META, paper_params_m=41.0, reference={"transformers": "facebook/detr-resnet-50"},
                weights={"official": _DL + "detr-r50-e632da11.pth"})
def detr_resnet50(pretrained_backbone: str | bool | None = None, num_classes: int = 91, **kwargs: Any) -> DETR:
    """DETR with a ResNet-50 backbone (Table 1: 41M parameters, 42.0 AP)."""
    return _detr("resnet50", num_classes, pretrained_backbone, kwargs)


@register_model(**_META, paper_params_m=60.0, reference={"transformers": "facebook/detr-resnet-101"},
                weights={"official": _DL + "detr-r101-2c7b67e5.pth"})
def detr_resnet101(pretrained_backbone: str | bool | None = None, num_classes: int = 91, **kwargs: Any) -> DETR:
    """DETR with a ResNet-101 backbone (Table 1: 60M parameters, 43.5 AP)."""
    return _detr("resnet101", num_classes, pretrained_backbone, kwargs)


@register_model(**_META, paper_params_m=41.0, reference={"transformers": "facebook/detr-resnet-50-dc5"},
                weights={"official": _DL + "detr-r50-dc5-f0fb7ef5.pth"})
def detr_resnet50_dc5(pretrained_backbone: str | bool | None = None, num_classes: int = 91, **kwargs: Any) -> DETR:
    """DETR-DC5: ResNet-50 with a dilated last stage (stride 16; Table 1: 41M parameters, 43.3 AP)."""
    return _detr("resnet50", num_classes, pretrained_backbone, kwargs, dc5=True)


@register_model(**_META, paper_params_m=60.0, reference={"transformers": "facebook/detr-resnet-101-dc5"},
                weights={"official": _DL + "detr-r101-dc5-a2e86def.pth"})
def detr_resnet101_dc5(pretrained_backbone: str | bool | None = None, num_classes: int = 91, **kwargs: Any) -> DETR:
    """DETR-DC5-R101: ResNet-101 with a dilated last stage (stride 16; Table 1: 60M parameters, 44.9 AP)."""
    return _detr("resnet101", num_classes, pretrained_backbone, kwargs, dc5=True)
