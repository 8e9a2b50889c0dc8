"""DETRs with Collaborative Hybrid Assignments Training (Zong et al., 2023, arXiv:2211.12860).

Co-DETR keeps a DETR detector as it is at inference and adds, in training only, two things (Sec. 3, Fig. 3):

* **collaborative hybrid assignments** (Sec. 3.2): the encoder's output, reshaped into a feature map and turned
  into a small feature pyramid {F_1 .. F_J} (for a single-scale DETR: the map itself and stride-2 convolutions of
  it), feeds K auxiliary heads trained with their own **one-to-many** label assignment. Here one head is built,
  ATSS-style (Zhang et al. 2020): one square anchor of side 8 x stride per position; per object the ``topk``
  anchors of each level closest in centre, positives those whose IoU reaches mean + std of the candidates' IoUs and
  whose centre lies inside the object, an anchor claimed by several objects going to the one of highest IoU
  (``atss_assign``); sigmoid focal loss on the classes and GIoU on (l, t, r, b) boxes from the anchor centres
  (scaled by the stride). Its loss is L_enc^i. A second, Faster R-CNN-style head (``rcnn_heads``, ``RCNNAuxHead``)
  runs our RPN and Fast R-CNN RoI head on the same pyramid (IoU 0.7 / 0.3 anchors, IoU 0.5 RoIs); its L_enc is their
  four terms, and its positive boxes are the foreground RoIs.
* **customized positive queries** (Sec. 3.3, eq. 4): per auxiliary head, the boxes of its positive anchors become
  extra decoder queries, Q_i = Linear(PE(B_i^pos)) + Linear(E(F, pos)): the positional part from the box's sine
  encoding, the content part from the pyramid feature at the anchor (for the R-CNN head: the mean of the RoI's
  RoIAlign features). They are decoded in parallel with the main
  queries, each group attending only to itself (a block-diagonal self-attention mask), and supervised
  **one-to-one by the auxiliary assignment** (each query's target is the object its anchor was assigned to, no
  Hungarian matching), at every decoder layer: L_dec^{i,l}.

The total loss (eq. 6): L = sum_l L~_l^dec (the DETR loss) + lambda_1 sum_i L_i^enc + lambda_2 sum_i sum_l L_{i,l}^dec.
``lambda_2 = 2`` by default (the official Co-Deformable-DETR config sets ``lambda_2 = 2.0``); ``lambda_1 = 1``
(the auxiliary heads' loss weights in the official configs were not checked). In training
``model(images, targets)`` returns every term already weighted (``co_total`` shows the weighting), so that their sum
is the objective. Inference is exactly DETR's: with ``aux_heads=0`` a ``CoDETR`` is our ``DETR`` with the same
weights and outputs.

Simplifications (stated): the ATSS-like head has no centerness branch and regresses distances rather than anchor
deltas; the R-CNN head samples 128 RoIs per image from 100 proposals; a single-scale DETR base (not Deformable-DETR).
``co_detr_resnet50`` has both heads (the paper's K = 2); the miniature reproduction builds the ATSS one alone
unless told otherwise.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import box_convert, generalized_box_iou, sigmoid_focal_loss

from ...errors import ConfigError
from ...registry import create_model, register_model
from ._parts.anchors import AnchorGenerator
from ._parts.backbone import freeze_batchnorm
from ._parts.grid import check_targets, image_sizes
from ._parts.poolers import RoIPooler
from ._parts.roi_heads import FastRCNNPredictor, RoIHeads, TwoMLPHead
from ._parts.rpn import RegionProposalNetwork, RPNHead
from ._parts.transform import ImageBatch
from .detr import _META, DETR
from .tsp import box_sine_embedding

__all__ = ["CoDETR", "atss_assign", "atss_loss", "co_total", "group_attention_mask", "level_anchors", "padded_targets",
           "positive_queries"]


def _box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of (..., G, 4) against (P, 4), XYXY: (..., G, P)."""
    lt = torch.maximum(a[..., :, None, :2], b[:, :2])
    rb = torch.minimum(a[..., :, None, 2:], b[:, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[..., None] + area_b - inter).clamp(min=1e-9)


def atss_assign(anchors: Tensor, level_sizes: Sequence[int], gt: Tensor, gt_valid: Tensor, topk: int = 9
                ) -> tuple[Tensor, Tensor]:
    """ATSS's one-to-many assignment, batched. ``anchors`` (P, 4) XYXY, levels concatenated in ``level_sizes``;
    ``gt`` (N, G, 4) XYXY padded, ``gt_valid`` (N, G). Returns the assigned object per anchor (N, P; -1 = negative)
    and the IoU matrix (N, G, P)."""
    n, g = gt.shape[:2]
    p = anchors.shape[0]
    if g == 0:
        return torch.full((n, p), -1, dtype=torch.int64, device=anchors.device), anchors.new_zeros(n, 0, p)
    iou = _box_iou(gt, anchors)
    ac = (anchors[:, :2] + anchors[:, 2:]) / 2
    gc = (gt[..., :2] + gt[..., 2:]) / 2
    dist = torch.cdist(gc, ac[None].expand(n, -1, -1))  # (N, G, P)
    cand = []
    start = 0
    for size in level_sizes:
        k = min(topk, size)
        cand.append(dist[..., start:start + size].topk(k, dim=-1, largest=False).indices + start)
        start += size
    cand = torch.cat(cand, -1)  # (N, G, C)
    cand_iou = iou.gather(2, cand)
    thr = cand_iou.mean(-1, keepdim=True) + cand_iou.std(-1, keepdim=True)
    c = ac[cand]  # (N, G, C, 2)
    inside = (c > gt[..., None, :2]).all(-1) & (c < gt[..., None, 2:]).all(-1)
    ok = (cand_iou >= thr) & inside & gt_valid[..., None]
    pos = torch.zeros_like(iou, dtype=torch.bool).scatter(2, cand, ok)
    best_iou, best = torch.where(pos, iou, torch.full_like(iou, -1.0)).max(1)
    return torch.where(best_iou >= 0, best, torch.full_like(best, -1)), iou


def level_anchors(maps: Sequence[Tensor], strides: Sequence[float], anchor_scale: float) -> tuple[Tensor, Tensor]:
    """One square anchor per position of each pyramid map (XYXY, batch pixels), centred on (i + 0.5) x the level's
    stride, of side ``anchor_scale`` x stride; levels concatenated. Also each anchor's stride."""
    anchors, per_anchor = [], []
    for m, s in zip(maps, strides):
        ys, xs = torch.meshgrid(torch.arange(m.shape[-2], device=m.device), torch.arange(m.shape[-1], device=m.device),
                                indexing="ij")
        c = torch.stack(((xs.flatten() + 0.5) * s, (ys.flatten() + 0.5) * s), -1).to(m.dtype)
        half = anchor_scale * s / 2
        anchors.append(torch.cat((c - half, c + half), -1))
        per_anchor.append(torch.full((len(c),), s, device=m.device, dtype=m.dtype))
    return torch.cat(anchors), torch.cat(per_anchor)


def padded_targets(set_targets: Sequence[Mapping[str, Tensor]], image_wh: Tensor
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The criterion's targets (normalised cxcywh per image) padded to the batch's largest count: ``gt`` (N, G, 4)
    cxcywh, ``labels`` (N, G), ``gt_valid`` (N, G) and ``gt_px`` (N, G, 4) XYXY in pixels of each image's (w, h)."""
    n, g = len(set_targets), max(len(t["labels"]) for t in set_targets)
    gt = image_wh.new_zeros(n, g, 4)
    labels = torch.zeros(n, g, dtype=torch.int64, device=image_wh.device)
    gt_valid = torch.zeros(n, g, dtype=torch.bool, device=image_wh.device)
    for i, t in enumerate(set_targets):  # padding only; every computation on them is batched
        k = len(t["labels"])
        gt[i, :k], labels[i, :k], gt_valid[i, :k] = t["boxes"], t["labels"], True
    gt_px = box_convert(gt, "cxcywh", "xyxy") * image_wh.repeat(1, 2)[:, None]
    return gt, labels, gt_valid, gt_px


def positive_queries(assigned: Tensor, anchors: Tensor, image_wh: Tensor) -> dict[str, Tensor]:
    """The customized positive queries' boxes from one auxiliary head's assignment (N, P; -1 negative): per image
    its positive anchors in anchor order, padded to the batch's largest count M. Returns ``anchor`` (N, M) indices,
    ``target`` (N, M) the object each was assigned to, ``valid`` (N, M), and ``boxes`` (N, M, 4): the anchors as
    (cx, cy, w, h) normalised by each image's (width, height) ``image_wh`` (N, 2), clamped to [0, 1]."""
    pos = assigned >= 0
    n = assigned.shape[0]
    m = max(int(pos.sum(1).max()) if n else 0, 1)
    order = torch.sort((~pos).to(torch.int8), dim=1, stable=True).indices[:, :m]  # positives first, in order
    valid = pos.gather(1, order)
    target = torch.where(valid, assigned.gather(1, order), torch.full_like(order, -1))
    scale = image_wh.repeat(1, 2)[:, None, :].to(anchors.dtype)
    boxes = (box_convert(anchors[order], "xyxy", "cxcywh") / scale).clamp(0, 1)
    return {"anchor": order, "target": target, "valid": valid, "boxes": boxes}


def group_attention_mask(sizes: Sequence[int], valid: Tensor | None = None) -> Tensor:
    """Self-attention mask (N or 1, L, L), True = may attend, for query groups of ``sizes`` laid end to end: a query
    sees its own group only; with ``valid`` (N, L) padded queries are hidden as keys (each still sees itself)."""
    group = torch.cat([torch.full((s,), i) for i, s in enumerate(sizes)])
    mask = (group[:, None] == group[None, :])[None]
    if valid is not None:
        mask = mask.to(valid.device) & valid[:, None, :]
        mask = mask | torch.eye(mask.shape[-1], dtype=torch.bool, device=valid.device)
    return mask


def co_total(detr_terms: Mapping[str, Tensor], aux_terms: Sequence[Mapping[str, Tensor]],
             query_terms: Sequence[Mapping[str, Tensor]], lambda1: float, lambda2: float,
             query_weights: Mapping[str, float]) -> dict[str, Tensor]:
    """Eq. 6 as named, weighted terms: DETR's (already weighted) as they are; head i's ``aux{i}_*`` x lambda_1;
    positive-query group i's ``pos{i}_<term>[_l]`` x lambda_2 x the term's DETR weight (``query_weights``)."""
    out = dict(detr_terms)
    for i, terms in enumerate(aux_terms):
        out.update({f"aux{i}_{k}": lambda1 * v for k, v in terms.items()})
    for i, terms in enumerate(query_terms):
        for k, v in terms.items():
            base = k.rsplit("_", 1)[0] if k[-1].isdigit() else k
            out[f"pos{i}_{k}"] = lambda2 * query_weights[base] * v
    return out


class ATSSHead(nn.Module):
    """A dense head on the pyramid: shared 3x3 conv towers (GroupNorm, ReLU), sigmoid class logits and (l, t, r, b)
    distances (ReLU, times the level's stride) from each anchor's centre."""

    def __init__(self, d: int, num_classes: int, convs: int = 1) -> None:
        super().__init__()

        def tower() -> nn.Sequential:
            return nn.Sequential(*[m for _ in range(convs) for m in (nn.Conv2d(d, d, 3, padding=1),
                                                                     nn.GroupNorm(min(32, d // 4), d), nn.ReLU())])
        self.cls_tower, self.reg_tower = tower(), tower()
        self.cls = nn.Conv2d(d, num_classes, 3, padding=1)
        self.reg = nn.Conv2d(d, 4, 3, padding=1)
        nn.init.constant_(self.cls.bias, -4.595)  # prior 0.01

    def forward(self, maps: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        cls = torch.cat([self.cls(self.cls_tower(m)).flatten(2) for m in maps], 2).transpose(1, 2)
        reg = torch.cat([F.relu(self.reg(self.reg_tower(m))).flatten(2) for m in maps], 2).transpose(1, 2)
        return cls, reg


class RCNNAuxHead(nn.Module):
    """The Faster R-CNN-style auxiliary head (Co-DETR's second one-to-many branch, our detection parts on the encoder
    pyramid): an RPN with 3 anchors per position (aspect ratios 0.5, 1, 2, side ``anchor_scale`` x the level's stride;
    IoU >= 0.7 object, < 0.3 background, each object's best anchor kept; ``rpn_batch`` sampled per image, half
    objects) and a Fast R-CNN RoI head on its ``proposals`` plus the objects (RoIAlign 7x7, two fully connected
    layers, IoU >= 0.5 foreground; ``roi_batch`` sampled per image, a quarter foreground). L_enc is its four terms.
    The foreground RoIs — every proposal the head assigns to an object — are its positive boxes for the queries; their
    content is the mean of their RoIAlign features."""

    def __init__(self, d: int, num_classes: int, levels: int, anchor_scale: float, rpn_batch: int = 256,
                 roi_batch: int = 128, proposals: int = 100, hidden: int = 256) -> None:
        super().__init__()
        self.anchor_scale = anchor_scale
        self.rpn = RegionProposalNetwork(AnchorGenerator(((anchor_scale,),) * levels, ((0.5, 1.0, 2.0),) * levels),
                                         RPNHead(d, 3), batch_size_per_image=rpn_batch,
                                         pre_nms_top_n={"training": 2 * proposals, "testing": 2 * proposals},
                                         post_nms_top_n={"training": proposals, "testing": proposals})
        self.roi = RoIHeads(RoIPooler([str(i) for i in range(levels)], 7, 2), TwoMLPHead(d * 49, hidden),
                            FastRCNNPredictor(hidden, num_classes + 1), batch_size_per_image=roi_batch)
        self._anchors: dict[tuple[float, ...], AnchorGenerator] = {}

    def anchor_generator(self, strides: Sequence[float]) -> AnchorGenerator:
        key = tuple(float(s) for s in strides)
        if key not in self._anchors:
            self._anchors[key] = AnchorGenerator(tuple((self.anchor_scale * s,) for s in key), ((0.5, 1.0, 2.0),) * len(key))
        return self._anchors[key]

    def forward(self, x: Tensor, sizes: Sequence[tuple[int, int]], maps: Sequence[Tensor], strides: Sequence[float],
                gt_px: Tensor, labels: Tensor, gt_valid: Tensor) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """L_enc's terms, and the positive RoIs padded per image: ``boxes`` (N, M, 4) XYXY pixels, ``content``
        (N, M, d), ``target`` (N, M) the object each was assigned to (-1 padding), ``valid`` (N, M)."""
        self.rpn.anchor_generator = self.anchor_generator(strides)
        targets = [{"boxes": gt_px[i][gt_valid[i]], "labels": labels[i][gt_valid[i]] + 1} for i in range(len(x))]
        features = {str(i): m for i, m in enumerate(maps)}
        proposals, rpn_terms = self.rpn(ImageBatch(x, list(sizes)), features, targets)
        rois, roi_labels, targets_fg, matched = self.roi.sample_matched(proposals, targets)
        pooled = self.roi.box_roi_pool(features, rois, sizes)
        cls, reg = self.roi.box_predictor(self.roi.box_head(pooled))
        terms = {**rpn_terms, **self.roi.loss(cls, reg, roi_labels, targets_fg)}
        fg = roi_labels > 0
        image, boxes, content = rois[fg, 0].long(), rois[fg, 1:], pooled[fg].mean((2, 3))
        target = matched[fg]  # the object the RoI head matched it to (the highest IoU, >= 0.5)
        n = len(x)
        counts = torch.bincount(image, minlength=n)
        m = max(int(counts.max()) if len(image) else 0, 1)
        rank = torch.arange(len(image), device=x.device) - (counts.cumsum(0) - counts)[image]  # rois are in image order
        out = {"boxes": boxes.new_zeros(n, m, 4), "content": content.new_zeros(n, m, content.shape[-1]),
               "target": torch.full((n, m), -1, dtype=torch.int64, device=x.device),
               "valid": torch.zeros(n, m, dtype=torch.bool, device=x.device)}
        out["boxes"][image, rank], out["content"][image, rank] = boxes, content
        out["target"][image, rank], out["valid"][image, rank] = target, True
        return terms, out


class CoDETR(DETR):
    """Our DETR plus, in training, ``aux_heads`` ATSS-style one-to-many heads on a pyramid of the encoder's output
    (``pyramid_levels`` levels: the map, then stride-2 convolutions) and their customized positive queries."""

    def __init__(self, backbone: nn.Module, num_classes: int = 91, *, aux_heads: int = 1, rcnn_heads: int = 0,
                 pyramid_levels: int = 2, lambda1: float = 1.0, lambda2: float = 2.0, atss_topk: int = 9,
                 anchor_scale: float = 8.0, head_convs: int = 1, **kwargs: Any) -> None:
        super().__init__(backbone, num_classes, **kwargs)
        if aux_heads < 0 or rcnn_heads < 0 or pyramid_levels < 1:
            raise ConfigError(f"aux_heads and rcnn_heads must be >= 0 and pyramid_levels >= 1, got {aux_heads}, "
                              f"{rcnn_heads}, {pyramid_levels}")
        d = self.input_proj.out_channels
        self.lambda1, self.lambda2, self.atss_topk, self.anchor_scale = lambda1, lambda2, atss_topk, anchor_scale
        self.num_aux = aux_heads + rcnn_heads
        if self.num_aux:
            self.downsample = nn.ModuleList(nn.Sequential(nn.Conv2d(d, d, 3, 2, 1), nn.GroupNorm(min(32, d // 4), d))
                                            for _ in range(pyramid_levels - 1))
            self.aux_heads = nn.ModuleList(ATSSHead(d, num_classes, head_convs) for _ in range(aux_heads))
            self.rcnn_heads = nn.ModuleList(RCNNAuxHead(d, num_classes, pyramid_levels, anchor_scale)
                                            for _ in range(rcnn_heads))
            # one pair of query projections per auxiliary head: the ATSS heads' first, then the R-CNN heads'
            self.query_pos_proj = nn.ModuleList(nn.Linear(d, d) for _ in range(self.num_aux))
            self.query_content_proj = nn.ModuleList(nn.Linear(d, d) for _ in range(self.num_aux))

    # ---------------------------------------------------------------------------------------- the network
    def decode(self, t: Tensor, query_pos: Tensor, enc: dict[str, Tensor], self_mask: Tensor | None = None) -> Tensor:
        """All decoder layers (normed outputs stacked, (layers, N, L, d)); ``self_mask`` (N or 1, L, L) restricts the
        queries' self-attention."""
        hidden = []
        for layer in self.decoder:
            if self_mask is None:
                t = layer(t, query_pos, enc["src"], enc["pos"], enc["keys"])
            else:
                t = _decoder_layer_masked(layer, t, query_pos, enc["src"], enc["pos"], enc["keys"], self_mask)
            hidden.append(self.decoder_norm(t))
        return torch.stack(hidden)

    def heads(self, hs: Tensor) -> dict[str, Any]:
        logits, boxes = self.class_embed(hs), self.bbox_embed(hs).sigmoid()
        out: dict[str, Any] = {"pred_logits": logits[-1], "pred_boxes": boxes[-1]}
        if self.aux_loss:
            out["aux_outputs"] = [{"pred_logits": a, "pred_boxes": b} for a, b in zip(logits[:-1], boxes[:-1])]
        return out

    def forward_features(self, x: Tensor, valid: Tensor) -> dict[str, Any]:
        enc = self.encode(x, valid)
        query_pos = self.query_embed.weight[None].expand(len(x), -1, -1)
        return self.heads(self.decode(torch.zeros_like(query_pos), query_pos, enc))

    def pyramid(self, enc: dict[str, Tensor]) -> tuple[list[Tensor], Tensor, list[int]]:
        """The encoder's output as a map and its stride-2 reductions; one anchor per position (XYXY, batch pixels)
        of side ``anchor_scale`` x stride; also each anchor's stride."""
        n = enc["src"].shape[0]
        h, w = enc["hw"]
        maps = [enc["src"].transpose(1, 2).reshape(n, -1, h, w)]
        for down in self.downsample:
            maps.append(down(maps[-1]))
        return (maps, *level_anchors(maps, [enc["stride"] * 2 ** i for i in range(len(maps))], self.anchor_scale))

    # ------------------------------------------------------------------------------------------- training
    def co_losses(self, x: Tensor, valid: Tensor, set_targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        n = len(x)
        enc = self.encode(x, valid)
        image_wh = torch.stack((valid.any(1).sum(1), valid.any(2).sum(1)), -1).to(x.dtype)  # each image's (w, h)
        gt, labels, gt_valid, gt_px = padded_targets(set_targets, image_wh)
        maps, anchors, strides = self.pyramid(enc)
        sizes = [m.shape[-2] * m.shape[-1] for m in maps]
        feats = torch.cat([m.flatten(2) for m in maps], 2).transpose(1, 2)  # (N, P, d)
        main_pos = self.query_embed.weight[None].expand(n, -1, -1)
        t_parts, pos_parts, groups, group_valid = [torch.zeros_like(main_pos)], [main_pos], [main_pos.shape[1]], \
            [torch.ones(n, main_pos.shape[1], dtype=torch.bool, device=x.device)]
        aux_terms, pq = [], []
        for i, head in enumerate(self.aux_heads):
            cls, reg = head(maps)
            assigned, _ = atss_assign(anchors, sizes, gt_px, gt_valid, self.atss_topk)
            aux_terms.append(self._aux_loss(cls, reg, anchors, strides, assigned, gt_px, labels))
            q = positive_queries(assigned, anchors, image_wh)
            content = feats.gather(1, q["anchor"][..., None].expand(-1, -1, feats.shape[-1]))
            t_parts.append(self.query_content_proj[i](content))
            pos_parts.append(self.query_pos_proj[i](box_sine_embedding(q["boxes"], feats.shape[-1])))
            groups.append(q["anchor"].shape[1])
            group_valid.append(q["valid"])
            pq.append(q)
        level_strides = [float(enc["stride"]) * 2 ** i for i in range(len(maps))]
        sizes_hw = [(int(h), int(w)) for w, h in image_wh.tolist()]
        for j, head in enumerate(self.rcnn_heads):
            i = len(self.aux_heads) + j
            terms, q = head(x, sizes_hw, maps, level_strides, gt_px, labels, gt_valid)
            aux_terms.append(terms)
            boxes = (box_convert(q["boxes"], "xyxy", "cxcywh") / image_wh.repeat(1, 2)[:, None]).clamp(0, 1)
            t_parts.append(self.query_content_proj[i](q["content"]))
            pos_parts.append(self.query_pos_proj[i](box_sine_embedding(boxes, feats.shape[-1])))
            groups.append(q["valid"].shape[1])
            group_valid.append(q["valid"])
            pq.append(q)
        mask = group_attention_mask(groups, torch.cat(group_valid, 1))
        hs = self.decode(torch.cat(t_parts, 1), torch.cat(pos_parts, 1), enc, mask)
        splits = hs.split(groups, 2)
        detr_terms = self.criterion(self.heads(splits[0]), set_targets)
        query_terms = []
        for q, h in zip(pq, splits[1:]):
            logits, boxes = self.class_embed(h), self.bbox_embed(h).sigmoid()
            tgt_lab = labels.gather(1, q["target"].clamp(min=0))
            tgt_box = gt.gather(1, q["target"].clamp(min=0)[..., None].expand(-1, -1, 4))
            terms: dict[str, Tensor] = {}
            layers = len(h)
            for layer in range(layers):
                suffix = "" if layer == layers - 1 else f"_{layer}"
                if suffix and not self.aux_loss:
                    continue
                terms.update({k + suffix: v for k, v in one_to_one_terms(logits[layer], boxes[layer], tgt_lab, tgt_box,
                                                                             q["valid"]).items()})
            query_terms.append(terms)
        return co_total(detr_terms, aux_terms, query_terms, self.lambda1, self.lambda2, self.criterion.weights)

    def _aux_loss(self, cls: Tensor, reg: Tensor, anchors: Tensor, strides: Tensor, assigned: Tensor, gt_px: Tensor,
                  labels: Tensor) -> dict[str, Tensor]:
        return atss_loss(cls, reg, anchors, strides, assigned, gt_px, labels)

    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None):
        return co_forward(self, super().forward, images, targets)


def co_forward(model: nn.Module, base_forward: Any, images: Sequence[Tensor] | Tensor,
               targets: Sequence[dict[str, Tensor]] | None) -> Any:
    """A Co-DETR model's forward: the base detector's (``base_forward``) at inference, without auxiliary heads or on a
    batch without objects; else the collaborative losses."""
    if targets is None or not model.num_aux:
        return base_forward(images, targets)
    sizes = image_sizes(images)
    check_targets(targets, len(sizes), model.num_classes)
    x, valid = model.batch(images)
    st = model.set_targets(targets, sizes)
    if sum(len(t["labels"]) for t in st) == 0:
        return model.loss(model.forward_features(x, valid), targets, sizes)
    return model.co_losses(x, valid, st)


def atss_loss(cls: Tensor, reg: Tensor, anchors: Tensor, strides: Tensor, assigned: Tensor, gt_px: Tensor,
              labels: Tensor) -> dict[str, Tensor]:
    """The ATSS head's L_enc: sigmoid focal loss over all anchors and GIoU on the positives, both over the number of
    positives."""
    pos = assigned >= 0
    num_pos = max(float(pos.sum()), 1.0)
    lab = labels.gather(1, assigned.clamp(min=0))
    onehot = F.one_hot(lab, cls.shape[-1]).to(cls.dtype) * pos[..., None]
    loss_cls = sigmoid_focal_loss(cls, onehot, reduction="sum") / num_pos
    centre = (anchors[:, :2] + anchors[:, 2:]) / 2
    d = reg * strides[:, None]
    pred = torch.cat((centre - d[..., :2], centre + d[..., 2:]), -1)[pos]
    tgt = gt_px.gather(1, assigned.clamp(min=0)[..., None].expand(-1, -1, 4))[pos]
    giou = torch.diag(generalized_box_iou(pred, tgt)) if len(pred) else pred.new_zeros(0)
    return {"loss_cls": loss_cls, "loss_giou": 2.0 * (1 - giou).sum() / num_pos}


def one_to_one_terms(logits: Tensor, boxes: Tensor, labels: Tensor, tgt: Tensor, valid: Tensor,
                     focal_alpha: float | None = None) -> dict[str, Tensor]:
    """L_dec for one group of positive queries at one layer, each query against its own assigned object (no
    matching): cross-entropy, L1 and 1 - GIoU (cxcywh normalised), averaged over the group's real queries. With
    ``focal_alpha`` (a sigmoid classifier, Deformable DETR's criterion) ``loss_ce`` is the sigmoid focal loss (gamma 2)
    of the one-hot targets, summed over the real queries and classes, over their number."""
    num = max(float(valid.sum()), 1.0)
    if focal_alpha is None:
        ce = F.cross_entropy(logits[valid], labels[valid], reduction="sum") / num
    else:
        onehot = F.one_hot(labels[valid], logits.shape[-1]).to(logits.dtype)
        ce = sigmoid_focal_loss(logits[valid], onehot, focal_alpha, 2.0, reduction="sum") / num
    src, dst = boxes[valid], tgt[valid]
    l1 = F.l1_loss(src, dst, reduction="sum") / num
    giou = torch.diag(generalized_box_iou(box_convert(src, "cxcywh", "xyxy"), box_convert(dst, "cxcywh", "xyxy")))
    return {"loss_ce": ce, "loss_bbox": l1, "loss_giou": (1 - giou).sum() / num}


def _decoder_layer_masked(layer: nn.Module, t: Tensor, query_pos: Tensor, memory: Tensor, pos: Tensor, valid: Tensor,
                          self_mask: Tensor) -> Tensor:
    """Our DETR decoder layer with a (N or 1, L, L) self-attention mask (the same weights and post-norm order)."""
    qk = t + query_pos
    t = layer.norm1(t + layer.drop(_attend(layer.self_attn, qk, qk, t, self_mask[:, None])))
    t = layer.norm2(t + layer.drop(layer.cross_attn(t + query_pos, memory + pos, memory, valid)))
    return layer.norm3(t + layer.drop(layer.linear2(layer.drop(F.relu(layer.linear1(t))))))


def _attend(attn: nn.Module, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    n, lq, d = q.shape
    split = lambda t: t.view(n, -1, attn.heads, d // attn.heads).transpose(1, 2)
    out = F.scaled_dot_product_attention(split(attn.q_proj(q)), split(attn.k_proj(k)), split(attn.v_proj(v)),
                                         attn_mask=mask, dropout_p=attn.dropout if attn.training else 0.0)
    return attn.out_proj(out.transpose(1, 2).reshape(n, lq, d))


@register_model(**{**_META, "paper": "co-detr", "recipe": {**_META["recipe"], "lr": 2e-4}})  # the official configs
def co_detr_resnet50(pretrained_backbone: str | bool | None = None, num_classes: int = 91, **kwargs: Any) -> CoDETR:
    """Co-DETR on our DETR-R50 (single scale) with the paper's K = 2 auxiliary heads, one ATSS-style and one Faster
    R-CNN-style, and their positive queries; inference is DETR-R50's."""
    kwargs = {"aux_heads": 1, "rcnn_heads": 1, **kwargs}
    body = create_model("resnet50", pretrained=pretrained_backbone or None, features_only=True, out_indices=(4,))
    freeze_batchnorm(body)
    for module in (body.model.conv1, body.model.bn1, body.model.layer1):  # as our DETR (the official code)
        module.requires_grad_(False)
    return CoDETR(body, num_classes, **kwargs)
