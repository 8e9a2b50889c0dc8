"""Co-Deformable-DETR: Co-DETR's collaborative hybrid assignments (Zong et al., 2023, arXiv:2211.12860) on our
Deformable DETR, the paper's main setting.

The detector at inference is our ``DeformableDETR`` unchanged; training adds, as in ``co_detr.py`` (whose parts are
reused here), two things:

* **collaborative hybrid assignments** (Sec. 3.2): the deformable encoder's output over all levels is split back into
  its levels, each reshaped to a map (N, d, H_l, W_l): that is the auxiliary heads' feature pyramid {F_1 .. F_J}, with
  no extra convolution (the official code appends one more stride-2 level for the heads; we do not). K auxiliary heads
  with one-to-many assignments run on it: the ATSS-style ``ATSSHead`` (``atss_assign``, L_enc = focal + GIoU) and the
  Faster R-CNN-style ``RCNNAuxHead`` (RPN + RoI head, its four terms); their losses are L_enc^i.
* **customized positive queries** (Sec. 3.3, eq. 4): per head, each positive box B (ATSS: its positive anchors; R-CNN:
  its foreground RoIs), as (cx, cy, w, h) normalised by the image, becomes one extra decoder query with position
  Linear(PE(B)) (``box_sine_embedding``, as co_detr.py; the official code runs a two-stage-style Linear + LayerNorm on
  the sine embedding of the 4-d box), content Linear(pooled encoder feature at B) (the pyramid feature at the anchor,
  or the mean of the RoI's RoIAlign features), and **reference point the box's centre** (our Deformable DETR's
  reference points are 2-d (x, y); the official code, built on box refinement, passes the whole normalised box).
  The groups are decoded with the main queries under a block-diagonal ``self_mask`` (no group sees another group nor
  the main queries, and the main queries see none of them) and each query is supervised **one-to-one by the object
  its box was assigned to** (no Hungarian matching) at every decoder layer, with Deformable DETR's own terms: sigmoid
  focal loss (alpha 0.25, gamma 2), L1 and GIoU, weighted 2 / 5 / 2 as the main loss: L_dec^{i,l}.

Total loss (eq. 6): L = sum_l L~_l^dec (Deformable DETR's) + lambda_1 sum_i L_i^enc + lambda_2 sum_i sum_l L_{i,l}^dec,
lambda_1 = 1, lambda_2 = 2 (the paper's). ``model(images, targets)`` returns every term weighted (``co_total``'s names:
Deformable DETR's terms as they are, ``aux{i}_*`` and ``pos{i}_*``). With ``aux_heads=rcnn_heads=0`` it is our
``DeformableDETR`` (same weights, outputs and losses).

Stated differences: no extra pyramid level; centres as reference points; the base has no box refinement nor two
stages (Deformable DETR's first configuration); the anchors of level l sit at (i + 0.5) x the level's stride
(the padded batch's width over the map's).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.ops import box_convert

from ...errors import ConfigError
from ...registry import create_model, register_model
from ._parts.backbone import freeze_batchnorm
from .co_detr import (
    ATSSHead,
    RCNNAuxHead,
    atss_assign,
    atss_loss,
    co_forward,
    co_total,
    group_attention_mask,
    level_anchors,
    one_to_one_terms,
    padded_targets,
    positive_queries,
)
from .deformable_detr import DeformableDETR
from .detr import _META
from .tsp import box_sine_embedding

__all__ = ["CoDeformableDETR"]


class CoDeformableDETR(DeformableDETR):
    """Our Deformable DETR plus, in training, ``aux_heads`` ATSS-style and ``rcnn_heads`` Faster R-CNN-style
    one-to-many heads on the encoder's output split into its levels, and their customized positive queries."""

    def __init__(self, backbone: nn.Module, num_classes: int = 91, *, aux_heads: int = 1, rcnn_heads: int = 0,
                 lambda1: float = 1.0, lambda2: float = 2.0, atss_topk: int = 9, anchor_scale: float = 8.0,
                 head_convs: int = 1, **kwargs: Any) -> None:
        super().__init__(backbone, num_classes, **kwargs)
        if aux_heads < 0 or rcnn_heads < 0:
            raise ConfigError(f"aux_heads and rcnn_heads must be >= 0, got {aux_heads}, {rcnn_heads}")
        d, levels = self.level_embed.shape[1], self.level_embed.shape[0]
        self.lambda1, self.lambda2, self.atss_topk, self.anchor_scale = lambda1, lambda2, atss_topk, anchor_scale
        self.num_aux = aux_heads + rcnn_heads
        if self.num_aux:
            self.aux_heads = nn.ModuleList(ATSSHead(d, num_classes, head_convs) for _ in range(aux_heads))
            self.rcnn_heads = nn.ModuleList(RCNNAuxHead(d, num_classes, levels, anchor_scale)
                                            for _ in range(rcnn_heads))
            # one pair of query projections per auxiliary head: the ATSS heads' first, then the R-CNN heads'
            self.query_pos_proj = nn.ModuleList(nn.Linear(d, d) for _ in range(self.num_aux))
            self.query_content_proj = nn.ModuleList(nn.Linear(d, d) for _ in range(self.num_aux))

    def pyramid(self, enc: dict[str, Any]) -> tuple[list[Tensor], Tensor, Tensor]:
        """The encoder's output split into its levels, each (N, d, H_l, W_l); the ATSS anchors of every position
        (XYXY, batch pixels, side ``anchor_scale`` x stride) and each anchor's stride."""
        src = enc["src"]
        n, _, d = src.shape
        maps = [m.transpose(1, 2).reshape(n, d, h, w)
                for m, (h, w) in zip(src.split([h * w for h, w in enc["shapes"]], 1), enc["shapes"])]
        return (maps, *level_anchors(maps, enc["strides"], self.anchor_scale))

    def _group(self, i: int, boxes: Tensor, content: Tensor, target: Tensor, valid: Tensor) -> dict[str, Tensor]:
        """Head i's positive queries (eq. 4) from its positive ``boxes`` (N, M, 4) normalised cxcywh and their pooled
        ``content`` (N, M, d): decoder input, positional embedding and reference points (the boxes' centres)."""
        return {"t": self.query_content_proj[i](content),
                "pos": self.query_pos_proj[i](box_sine_embedding(boxes, content.shape[-1])),
                "reference": boxes[..., :2], "boxes": boxes, "target": target, "valid": valid}

    def hybrid_branch(self, x: Tensor, enc: dict[str, Any], image_wh: Tensor, gt_px: Tensor, labels: Tensor,
                      gt_valid: Tensor) -> tuple[list[dict[str, Tensor]], list[dict[str, Tensor]]]:
        """Every auxiliary head on the split pyramid: its L_enc terms and its group of positive queries."""
        maps, anchors, strides = self.pyramid(enc)
        feats = enc["src"]  # the pyramid's positions, flattened in anchor order
        level_sizes = [h * w for h, w in enc["shapes"]]
        aux_terms, groups = [], []
        for i, head in enumerate(self.aux_heads):
            cls, reg = head(maps)
            assigned, _ = atss_assign(anchors, level_sizes, gt_px, gt_valid, self.atss_topk)
            aux_terms.append(atss_loss(cls, reg, anchors, strides, assigned, gt_px, labels))
            q = positive_queries(assigned, anchors, image_wh)
            content = feats.gather(1, q["anchor"][..., None].expand(-1, -1, feats.shape[-1]))
            groups.append(self._group(i, q["boxes"], content, q["target"], q["valid"]))
        sizes_hw = [(int(h), int(w)) for w, h in image_wh.tolist()]
        for j, head in enumerate(self.rcnn_heads):
            terms, q = head(x, sizes_hw, maps, enc["strides"], gt_px, labels, gt_valid)
            aux_terms.append(terms)
            boxes = (box_convert(q["boxes"], "xyxy", "cxcywh") / image_wh.repeat(1, 2)[:, None]).clamp(0, 1)
            groups.append(self._group(len(self.aux_heads) + j, boxes, q["content"], q["target"], q["valid"]))
        return aux_terms, groups

    def co_losses(self, x: Tensor, valid: Tensor, set_targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        n = len(x)
        enc = self.encode(x, valid)
        image_wh = torch.stack((valid.any(1).sum(1), valid.any(2).sum(1)), -1).to(x.dtype)  # each image's (w, h)
        gt, labels, gt_valid, gt_px = padded_targets(set_targets, image_wh)
        aux_terms, groups = self.hybrid_branch(x, enc, image_wh, gt_px, labels, gt_valid)
        t, query_pos, reference = self.queries(n)
        sizes = [t.shape[1]] + [g["valid"].shape[1] for g in groups]
        main_valid = torch.ones(n, t.shape[1], dtype=torch.bool, device=x.device)
        keep = torch.cat([main_valid] + [g["valid"] for g in groups], 1)
        mask = group_attention_mask(sizes, keep)[:, None]  # (N, 1, L, L)
        refs = [reference] + [g["reference"] for g in groups]
        hs = self.decode(torch.cat([t] + [g["t"] for g in groups], 1),
                         torch.cat([query_pos] + [g["pos"] for g in groups], 1), torch.cat(refs, 1), enc, mask)
        splits = hs.split(sizes, 2)
        detr_terms = self.criterion(self.heads(splits[0], reference), set_targets)
        query_terms = [self._query_terms(self.heads(h, r), g, labels, gt)
                       for h, r, g in zip(splits[1:], refs[1:], groups)]
        return co_total(detr_terms, aux_terms, query_terms, self.lambda1, self.lambda2, self.criterion.weights)

    def _query_terms(self, out: dict[str, Any], group: dict[str, Tensor], labels: Tensor, gt: Tensor
                     ) -> dict[str, Tensor]:
        """L_dec^{i,l} (unweighted) at every decoder layer: each positive query against its assigned object."""
        idx = group["target"].clamp(min=0)
        tgt_lab, tgt_box = labels.gather(1, idx), gt.gather(1, idx[..., None].expand(-1, -1, 4))
        alpha = self.criterion.focal_alpha
        terms = one_to_one_terms(out["pred_logits"], out["pred_boxes"], tgt_lab, tgt_box, group["valid"], alpha)
        for layer, aux in enumerate(out.get("aux_outputs", [])):
            terms.update({f"{k}_{layer}": v for k, v in one_to_one_terms(aux["pred_logits"], aux["pred_boxes"], tgt_lab,
                                                                         tgt_box, group["valid"], alpha).items()})
        return terms

    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None):
        return co_forward(self, super().forward, images, targets)


@register_model(**{**_META, "paper": "co-detr", "recipe": {**_META["recipe"], "lr": 2e-4},
                   "notes": "Co-DETR on deformable_detr_resnet50 (inference is Deformable DETR's): K = 2 auxiliary "
                            "heads (ATSS- and Faster R-CNN-style) on the encoder's output split into its 4 levels (no "
                            "extra level), positive queries with the boxes' centres as reference points, lambda_1 = 1, "
                            "lambda_2 = 2; num_classes sigmoid outputs; the loss dict's terms come weighted"})
def co_deformable_detr_resnet50(pretrained_backbone: str | bool | None = None, num_classes: int = 91,
                                **kwargs: Any) -> CoDeformableDETR:
    """Co-Deformable-DETR with a ResNet-50 (C3-C5 + one extra level), the paper's K = 2 auxiliary heads (one
    ATSS-style, one Faster R-CNN-style) and their positive queries; inference is deformable_detr_resnet50's."""
    kwargs = {"aux_heads": 1, "rcnn_heads": 1, **kwargs}
    body = create_model("resnet50", pretrained=pretrained_backbone or None, features_only=True, out_indices=(2, 3, 4))
    freeze_batchnorm(body)
    for module in (body.model.conv1, body.model.bn1, body.model.layer1):  # as deformable_detr_resnet50
        module.requires_grad_(False)
    return CoDeformableDETR(body, num_classes, **kwargs)
