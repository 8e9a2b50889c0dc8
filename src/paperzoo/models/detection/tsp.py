"""Rethinking Transformer-based Set Prediction for Object Detection (Sun et al., 2021, arXiv:2011.10881).

The paper traces DETR's slow convergence to its decoder's cross-attention and to an unstable bipartite matching, and
keeps the set prediction with an **encoder only** over a few selected features (Sec. 4). This file builds both of
its detectors; ``TSPRCNN`` (Sec. 4.2: the encoder over RPN proposals' RoI features) is documented on its class.
TSP-FCOS (Sec. 4.1, Fig. 3):

* an FCOS backbone: ResNet C3-C5 under an FPN, plus P6 / P7 from stride-2 3x3 convs on P5 (torchvision's
  ``LastLevelP6P7``), strides 8 ... 128; an FCOS head on every level: a classification and an auxiliary (box) tower,
  each 4 x (3x3 conv, GroupNorm 32, ReLU), and a 3x3 conv giving per-class logits;
* the **Feature-of-Interest (FoI) selector**: every position's FoI score is its highest class probability
  (sigmoid) from that head, trained as FCOS's classifier (sigmoid focal loss on FCOS's positive positions); the top
  ``num_fois`` positions of all levels are the FoIs (in training, as the official code does, positions FCOS assigns
  to an object get their score raised to (1 + p) / 2 so that they are preferred);
* each FoI's features, the two towers' outputs concatenated, projected to d and layer-normalised, with a positional
  encoding: the 2-D sine encoding of its map position (DETR's) plus a learned embedding of its pyramid level;
* a post-norm **transformer encoder** (self-attention by ``F.scaled_dot_product_attention``) over the FoIs of an
  image, then per FoI a sigmoid class head, a centerness head and FCOS-style distances (l, t, r, b) =
  ReLU(linear) x scale_level x stride to the four sides of its box, measured from the FoI's position;
* **set prediction** with a Hungarian loss (``TSPMatcher``): each object is matched to one FoI minimising
  -p(class) x 1 + L1 x 5 + (-GIoU) x 2 (DETR's costs, boxes normalised by the image size) plus a large
  ``prior_cost`` whenever the FoI does not lie in the object's **FCOS positive region** (inside the box, within
  1.5 strides of its centre, and on the level whose size range holds the object) — the paper's matching with the
  FCOS prior; then sigmoid focal loss on the classes of all FoIs (targets zero for unmatched FoIs), L1 and GIoU on
  the matched boxes, BCE on their centerness, each normalised by the number of objects.

Detections are the top-scoring (FoI, class) pairs, score sqrt(p_class x p_centerness), without NMS.
``model(images)`` (eval) gives ``{"pred_logits" (N, K, C), "pred_boxes" (N, K, 4) XYXY in the resized batch's pixels,
"pred_centerness" (N, K), "points", "levels"}``; ``detect`` gives detection dicts in each image's pixels;
``model(images, targets)`` gives the named, weighted losses. Labels index the ``num_classes`` sigmoid outputs
directly (COCO's 91 ids as torchvision's FCOS, class 0 unused). Backbone, FPN and FCOS head towers load from
torchvision's ``fcos_resnet50_fpn`` (``source="torchvision"``); the transformer is the paper's own.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import generalized_box_iou, sigmoid_focal_loss

from ...errors import ConfigError
from ...registry import IMAGENET_MEAN, IMAGENET_STD, create_model, register_model
from ...weights import register_converter
from ._coco import COCO_CATEGORIES
from ._parts.backbone import freeze_batchnorm
from ._parts.detector import Detector
from ._parts.fpn import FeaturePyramid
from ._parts.grid import check_targets
from ._parts.transform import DetectionTransform, as_xyxy
from .detr import EncoderLayer, sine_position_embedding

__all__ = ["TSPFCOS", "FCOSBackbone", "TSPMatcher", "centerness", "fcos_positive", "ltrb", "select_fois"]


# ------------------------------------------------------------------------------------------ FCOS formulas
def ltrb(points: Tensor, boxes: Tensor) -> Tensor:
    """FCOS's regression targets (eq. 1 of FCOS): distances (l, t, r, b) = (x - x0, y - y0, x1 - x, y1 - y) from
    each point (..., P, 2) to the sides of each XYXY box (..., M, 4): (..., P, M, 4)."""
    x, y = points[..., :, None, 0], points[..., :, None, 1]
    x0, y0, x1, y1 = boxes[..., None, :, :].unbind(-1)
    return torch.stack((x - x0, y - y0, x1 - x, y1 - y), dim=-1)


def centerness(d: Tensor) -> Tensor:
    """FCOS's centerness (eq. 3 of FCOS): sqrt(min(l, r) / max(l, r) x min(t, b) / max(t, b)) of distances (..., 4);
    0 for points outside the box."""
    d = d.clamp(min=0)
    lr, tb = d[..., [0, 2]], d[..., [1, 3]]
    ratio = (lr.min(-1).values / lr.max(-1).values.clamp(min=1e-12)) * (tb.min(-1).values / tb.max(-1).values.clamp(min=1e-12))
    return ratio.sqrt()


def level_ranges(strides: Sequence[int]) -> list[tuple[float, float]]:
    """FCOS's size range of each level: the largest regression distance must lie in (4 s, 8 s) for stride s, the
    first level starting at 0 and the last open-ended (strides 8 ... 128: 0, 64, 128, 256, 512, inf)."""
    out = [(4.0 * s, 8.0 * s) for s in strides]
    out[0], out[-1] = (0.0, out[0][1]), (out[-1][0], math.inf)
    return out


def fcos_positive(points: Tensor, strides: Tensor, lower: Tensor, upper: Tensor, boxes: Tensor, box_valid: Tensor,
                  radius: float = 1.5) -> Tensor:
    """FCOS's positive region with centre sampling: (N, P, M) True where point p (``points`` (P, 2) with its
    level's ``strides``, ``lower``, ``upper`` (P,)) lies inside box m of image n (``boxes`` (N, M, 4) XYXY, padded,
    ``box_valid`` (N, M)), within ``radius`` strides of its centre (max-norm), and the largest distance to its sides
    in (lower, upper)."""
    d = ltrb(points, boxes)  # (N, P, M, 4)
    centers = (boxes[..., :2] + boxes[..., 2:]) / 2  # (N, M, 2)
    near = (points[None, :, None, :] - centers[:, None]).abs().amax(-1) < radius * strides[None, :, None]
    far = d.amax(-1)
    return (near & (d.amin(-1) > 0) & (far > lower[None, :, None]) & (far < upper[None, :, None])
            & box_valid[:, None, :])


def fcos_assign(positive: Tensor, boxes: Tensor) -> Tensor:
    """FCOS's assignment: each point to the smallest-area box of whose positive region it is part, else -1: (N, P)."""
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])  # (N, M)
    key = torch.where(positive, area[:, None, :], torch.full_like(area[:, None, :], math.inf))
    best, idx = key.min(-1) if key.shape[-1] else (key.new_full(key.shape[:2], math.inf), key.new_zeros(key.shape[:2], dtype=torch.int64))
    return torch.where(torch.isfinite(best), idx, torch.full_like(idx, -1))


def select_fois(scores: Tensor, k: int, valid: Tensor, positive: Tensor | None = None) -> Tensor:
    """The FoI selector: indices (N, k) of the ``k`` highest-scoring valid positions of each image (``scores``,
    ``valid`` (N, P)), best first. With ``positive`` (training), positions assigned to an object score (1 + s) / 2."""
    if positive is not None:
        scores = torch.where(positive, 0.5 * (scores + 1), scores)
    scores = torch.where(valid, scores, torch.full_like(scores, -1.0))
    return scores.topk(min(k, scores.shape[1]), dim=1).indices


# ------------------------------------------------------------------------------------------------ matcher
def top_detections(score: Tensor, boxes: Tensor, resized: Sequence[tuple[int, int]], sizes: Sequence[tuple[int, int]],
                   k: int) -> list[dict[str, Tensor]]:
    """The ``k`` best (query, class) pairs of ``score`` (N, Q, C) per image, their ``boxes`` (N, Q, 4, XYXY in the
    resized input) clipped to that input's (h, w) and scaled to the image's own ``sizes``."""
    _, q, c = score.shape
    top = score.flatten(1).topk(min(k, q * c), dim=1)
    query, labels = top.indices // c, top.indices % c
    picked = boxes.gather(1, query[..., None].expand(-1, -1, 4))
    dets = []
    for b, s, lab, (rh, rw), size in zip(picked, top.values, labels, resized, sizes):
        b = torch.stack((b[:, 0].clamp(0, rw), b[:, 1].clamp(0, rh), b[:, 2].clamp(0, rw), b[:, 3].clamp(0, rh)), 1)
        b = b * torch.tensor([size[1] / rw, size[0] / rh] * 2, device=b.device)
        dets.append({"boxes": b, "scores": s, "labels": lab})
    return dets


class TSPMatcher(nn.Module):
    """The Hungarian matching of TSP-FCOS: DETR's costs (-p(c) x ``cost_class``, L1 x ``cost_bbox``, -GIoU x
    ``cost_giou``; boxes XYXY normalised by the image size, class probabilities by sigmoid) plus ``prior_cost``
    for every (FoI, object) pair whose FoI lies outside the object's FCOS positive region."""

    def __init__(self, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 prior_cost: float = 1e4) -> None:
        super().__init__()
        self.cost_class, self.cost_bbox, self.cost_giou, self.prior_cost = cost_class, cost_bbox, cost_giou, prior_cost

    @torch.no_grad()
    def cost(self, logits: Tensor, boxes: Tensor, labels: Tensor, gt: Tensor, allowed: Tensor) -> Tensor:
        """(N, K, M) costs of each image's K predictions (``logits`` (N, K, C), ``boxes`` (N, K, 4)) against its
        objects (``labels`` (N, M), ``gt`` (N, M, 4), padded), ``allowed`` (N, K, M) the positive-region prior."""
        prob = logits.sigmoid()
        c_class = -prob.gather(2, labels[:, None, :].expand(-1, prob.shape[1], -1))
        c_bbox = torch.cdist(boxes, gt, p=1)
        n, k, m = c_class.shape
        c_giou = -generalized_box_iou(boxes.flatten(0, 1), gt.flatten(0, 1)).view(n, k, n, m)
        c_giou = c_giou[torch.arange(n), :, torch.arange(n)]  # each image's own block
        return (self.cost_class * c_class + self.cost_bbox * c_bbox + self.cost_giou * c_giou
                + self.prior_cost * (~allowed).to(c_class.dtype))

    @torch.no_grad()
    def forward(self, logits: Tensor, boxes: Tensor, labels: Tensor, gt: Tensor, allowed: Tensor,
                counts: Sequence[int]) -> list[tuple[Tensor, Tensor]]:
        """Per image, (prediction indices, object indices) of the optimal assignment (scipy, one image at a time)."""
        from scipy.optimize import linear_sum_assignment

        if max(counts, default=0) == 0:
            empty = torch.zeros(0, dtype=torch.int64)
            return [(empty, empty) for _ in counts]
        c = self.cost(logits, boxes, labels, gt, allowed).cpu()
        out = []
        for i, m in enumerate(counts):
            rows, cols = linear_sum_assignment(c[i, :, :m].numpy())
            out.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return out


# ------------------------------------------------------------------------------------------------ modules
class FCOSBackbone(nn.Module):
    """ResNet C3-C5 -> FPN P3-P5 -> P6 = conv3x3/2(P5), P7 = conv3x3/2(ReLU(P6)): a list of 5 maps."""

    def __init__(self, body: nn.Module, channels: int = 256) -> None:
        super().__init__()
        self.body = body
        self.fpn = FeaturePyramid(body.out_channels, channels, extra_pool=False)
        self.p6, self.p7 = nn.Conv2d(channels, channels, 3, 2, 1), nn.Conv2d(channels, channels, 3, 2, 1)
        for conv in (self.p6, self.p7):
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)
        self.out_channels = channels

    def forward(self, x: Tensor) -> list[Tensor]:
        maps = list(self.fpn(self.body(x)).values())
        p6 = self.p6(maps[-1])
        return [*maps, p6, self.p7(F.relu(p6))]


def _tower(channels: int, convs: int) -> nn.Sequential:
    """convs x (3x3 conv, GroupNorm, ReLU): 32 groups at FCOS's 256 channels, fewer (4 channels or more each) on
    narrow miniatures, whose 1x1 P7 would leave one value per group."""
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(math.gcd(32, max(channels // 4, 1)), channels),
                   nn.ReLU()]
    return nn.Sequential(*layers)


class TSPFCOS(Detector, nn.Module):
    """TSP-FCOS around an ``FCOSBackbone`` (5 maps of strides ``strides``)."""

    def __init__(self, backbone: FCOSBackbone, num_classes: int = 91, *, strides: Sequence[int] = (8, 16, 32, 64, 128),
                 num_fois: int = 700, d_model: int = 256, heads: int = 8, enc_layers: int = 6, ffn: int = 1024,
                 dropout: float = 0.1, tower_convs: int = 4, min_size: int = 800, max_size: int = 1333,
                 center_radius: float = 1.5, cost_class: float = 1.0, cost_bbox: float = 5.0, cost_giou: float = 2.0,
                 prior_cost: float = 1e4, loss_weights: dict[str, float] | None = None,
                 detections_per_img: int = 100, prior_prob: float = 0.01) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        if num_fois < 1:
            raise ConfigError(f"num_fois must be >= 1, got {num_fois}")
        c = backbone.out_channels
        self.transform = DetectionTransform(min_size, max_size, IMAGENET_MEAN, IMAGENET_STD, size_divisible=32)
        self.backbone = backbone
        self.cls_tower, self.bbox_tower = _tower(c, tower_convs), _tower(c, tower_convs)
        self.foi_logits = nn.Conv2d(c, num_classes, 3, padding=1)  # FCOS's classifier: the FoI scores
        self.level_embed = nn.Parameter(torch.ones(len(strides), d_model))
        self.enc_proj, self.enc_norm = nn.Linear(2 * c, d_model), nn.LayerNorm(d_model)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, heads, ffn, dropout) for _ in range(enc_layers))
        self.class_embed, self.ctr_embed, self.bbox_embed = nn.Linear(d_model, num_classes), nn.Linear(d_model, 1), nn.Linear(d_model, 4)
        self.scales = nn.Parameter(torch.ones(len(strides)))
        self.num_classes, self.strides, self.num_fois = num_classes, tuple(strides), num_fois
        self.center_radius, self.detections_per_img = center_radius, detections_per_img
        self.matcher = TSPMatcher(cost_class, cost_bbox, cost_giou, prior_cost)
        self.weights = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0, "loss_ctr": 1.0, "loss_foi": 1.0,
                        **(loss_weights or {})}
        bias = -math.log((1 - prior_prob) / prior_prob)
        for m in [*self.cls_tower, *self.bbox_tower, self.foi_logits]:
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        for layer in self.encoder:
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        for m in (self.class_embed, self.ctr_embed):
            nn.init.normal_(m.weight, std=0.01)
            nn.init.zeros_(m.bias)
        nn.init.constant_(self.foi_logits.bias, bias)
        nn.init.constant_(self.class_embed.bias, bias)
        nn.init.constant_(self.bbox_embed.bias, 1.0)  # boxes of a stride's size at the start, not ReLU's dead zone

    # -- geometry of the pyramid
    def points(self, maps: Sequence[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Each position's image point (s // 2 + s x, as FCOS), its level index and stride, all levels in order."""
        pts, lvl = [], []
        for i, (f, s) in enumerate(zip(maps, self.strides)):
            h, w = f.shape[-2:]
            ys, xs = torch.meshgrid(torch.arange(h, device=f.device), torch.arange(w, device=f.device), indexing="ij")
            pts.append(torch.stack((xs.flatten(), ys.flatten()), 1).float() * s + s // 2)
            lvl.append(torch.full((h * w,), i, device=f.device))
        levels = torch.cat(lvl)
        return torch.cat(pts), levels, torch.tensor(self.strides, device=levels.device, dtype=torch.float32)[levels]

    def ranges(self, levels: Tensor) -> tuple[Tensor, Tensor]:
        r = torch.tensor(level_ranges(self.strides), device=levels.device)[levels]
        return r[:, 0], r[:, 1]

    # -- network
    def features(self, x: Tensor, valid: Tensor) -> dict[str, Tensor]:
        """Per position of all levels (N, P, ...): FCOS class logits, the towers' concatenated features, positional
        encodings, validity; and the points, levels and strides (P, ...)."""
        maps = self.backbone(x)
        logits, feats, pos, masks = [], [], [], []
        for i, f in enumerate(maps):
            ct, bt = self.cls_tower(f), self.bbox_tower(f)
            logits.append(self.foi_logits(ct).flatten(2).transpose(1, 2))
            feats.append(torch.cat((ct, bt), 1).flatten(2).transpose(1, 2))
            mask = F.interpolate(valid[None].float(), size=f.shape[-2:])[0].bool()
            d = self.level_embed.shape[1]
            pos.append(sine_position_embedding(mask, d // 2).to(f.dtype).flatten(2).transpose(1, 2) + self.level_embed[i])
            masks.append(mask.flatten(1))
        points, levels, strides = self.points(maps)
        return {"foi_logits": torch.cat(logits, 1), "feats": torch.cat(feats, 1), "pos": torch.cat(pos, 1),
                "valid": torch.cat(masks, 1), "points": points, "levels": levels, "strides": strides}

    def head(self, f: dict[str, Tensor], idx: Tensor) -> dict[str, Tensor]:
        """The encoder over the selected FoIs ``idx`` (N, k) and the set prediction heads."""
        take = lambda t: t.gather(1, idx[..., None].expand(-1, -1, t.shape[-1]))
        src = self.enc_norm(self.enc_proj(take(f["feats"])))
        pos = take(f["pos"])
        for layer in self.encoder:
            src = layer(src, pos, None)
        points, levels, strides = f["points"][idx], f["levels"][idx], f["strides"][idx]
        dist = F.relu(self.bbox_embed(src)) * (self.scales[levels] * strides)[..., None]
        boxes = torch.cat((points - dist[..., :2], points + dist[..., 2:]), -1)
        return {"pred_logits": self.class_embed(src), "pred_boxes": boxes, "pred_centerness": self.ctr_embed(src)[..., 0],
                "points": points, "levels": levels}

    # -- losses
    def padded_targets(self, targets: Sequence[dict[str, Tensor]], device: torch.device
                       ) -> tuple[Tensor, Tensor, Tensor, list[int]]:
        counts = [len(t["labels"]) for t in targets]
        m = max(max(counts, default=0), 1)
        boxes = torch.zeros(len(targets), m, 4, device=device)
        boxes[..., 2:] = 1.0
        labels = torch.zeros(len(targets), m, dtype=torch.int64, device=device)
        valid = torch.zeros(len(targets), m, dtype=torch.bool, device=device)
        for i, t in enumerate(targets):  # padding only; every computation below is batched
            boxes[i, : counts[i]] = as_xyxy(t["boxes"]).to(device, torch.float32)
            labels[i, : counts[i]] = torch.as_tensor(t["labels"], device=device).long()
            valid[i, : counts[i]] = True
        return boxes, labels, valid, counts

    def loss(self, f: dict[str, Tensor], out: dict[str, Tensor], idx: Tensor, boxes: Tensor, labels: Tensor,
             box_valid: Tensor, counts: Sequence[int], positive: Tensor, sizes: Sequence[tuple[int, int]]
             ) -> dict[str, Tensor]:
        num_boxes = max(float(sum(counts)), 1.0)
        # FoI classifier: FCOS's classification loss on every valid position
        assigned = fcos_assign(positive, boxes)
        foi_t = torch.zeros_like(f["foi_logits"])
        pos_mask = assigned >= 0
        foi_t[pos_mask] = F.one_hot(labels.gather(1, assigned.clamp(min=0))[pos_mask], self.num_classes).to(foi_t.dtype)
        loss_foi = (sigmoid_focal_loss(f["foi_logits"], foi_t, reduction="none").sum(-1) * f["valid"]).sum() / max(
            float(pos_mask.sum()), 1.0)
        # the Hungarian matching with the positive-region prior
        scale = torch.tensor([[w, h, w, h] for h, w in sizes], dtype=torch.float32, device=idx.device)[:, None]
        pred, gt = out["pred_boxes"] / scale, boxes / scale
        allowed = positive.gather(1, idx[..., None].expand(-1, -1, positive.shape[-1]))
        matches = self.matcher(out["pred_logits"], pred, labels, gt, allowed, counts)
        img = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(matches)]).to(idx.device)
        q = torch.cat([q for q, _ in matches]).to(idx.device)
        j = torch.cat([j for _, j in matches]).to(idx.device)
        cls_t = torch.zeros_like(out["pred_logits"])
        cls_t[img, q, labels[img, j]] = 1.0
        loss_ce = sigmoid_focal_loss(out["pred_logits"], cls_t, reduction="sum") / num_boxes
        src, tgt = pred[img, q], gt[img, j]
        loss_bbox = F.l1_loss(src, tgt, reduction="sum") / num_boxes
        loss_giou = (1 - torch.diag(generalized_box_iou(src, tgt))).sum() / num_boxes
        ctr_t = centerness(ltrb(out["points"][img, q][:, None], boxes[img, j][:, None])[:, 0, 0])
        loss_ctr = F.binary_cross_entropy_with_logits(out["pred_centerness"][img, q], ctr_t, reduction="sum") / num_boxes
        terms = {"loss_ce": loss_ce, "loss_bbox": loss_bbox, "loss_giou": loss_giou, "loss_ctr": loss_ctr,
                 "loss_foi": loss_foi}
        return {name: v * self.weights[name] for name, v in terms.items()}

    # -- entry points
    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None):
        images = list(images)
        if targets is not None:
            check_targets(targets, len(images), self.num_classes)
        batch, scaled = self.transform(images, targets)
        x = batch.tensors
        hs = torch.tensor([s[0] for s in batch.image_sizes], device=x.device)
        ws = torch.tensor([s[1] for s in batch.image_sizes], device=x.device)
        valid = (torch.arange(x.shape[-2], device=x.device)[None, :, None] < hs[:, None, None]) & \
                (torch.arange(x.shape[-1], device=x.device)[None, None, :] < ws[:, None, None])
        f = self.features(x, valid)
        scores = f["foi_logits"].sigmoid().amax(-1).detach()
        if targets is None:
            idx = select_fois(scores, self.num_fois, f["valid"])
            out = self.head(f, idx)
            out["image_sizes"] = batch.image_sizes
            return out
        boxes, labels, box_valid, counts = self.padded_targets(scaled, x.device)
        lower, upper = self.ranges(f["levels"])
        positive = fcos_positive(f["points"], f["strides"], lower, upper, boxes, box_valid, self.center_radius)
        idx = select_fois(scores, self.num_fois, f["valid"], positive.any(-1))
        out = self.head(f, idx)
        return self.loss(f, out, idx, boxes, labels, box_valid, counts, positive, batch.image_sizes)

    def postprocess(self, out: dict[str, Any], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """The top (FoI, class) pairs by sqrt(p_class x p_centerness), boxes clipped and in each image's pixels."""
        score = (out["pred_logits"].sigmoid() * out["pred_centerness"].sigmoid()[..., None]).sqrt()
        return top_detections(score, out["pred_boxes"], out["image_sizes"], sizes, self.detections_per_img)


# ------------------------------------------------------------------------------------------- converters
@register_converter("tsp", "torchvision")
def _from_torchvision(state_dict: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """torchvision -> ours where they coincide. TSP-RCNN from ``fasterrcnn_resnet50_fpn``: backbone, RPN and the
    fc6/fc7 box head (its predictor has no place here). TSP-FCOS from ``fcos_resnet50_fpn``: the ResNet body (through the faster_rcnn key
    map), FPN ``inner_blocks``/``layer_blocks``, ``extra_blocks.p6/p7``, the head's classification and regression
    towers and ``cls_logits`` (our FoI scores). FCOS's own box and centerness convs have no place in TSP-FCOS and
    are dropped; the transformer and the set-prediction heads are not in torchvision's model."""
    from .faster_rcnn import _from_torchvision as rcnn_map

    if isinstance(model, TSPRCNN):  # fasterrcnn_resnet50_fpn: backbone, RPN and the fc box head coincide
        keep = {k: v for k, v in state_dict.items() if k.startswith(("backbone.", "rpn.", "roi_heads.box_head."))}
        return {k.replace("roi_heads.box_head.", "box_head.", 1): v for k, v in rcnn_map(keep, _RCNNView(model)).items()}
    body_fpn = {k: v for k, v in state_dict.items() if k.startswith(("backbone.body.", "backbone.fpn.inner_blocks.",
                                                                    "backbone.fpn.layer_blocks."))}
    out = rcnn_map(body_fpn, _RCNNView(model))
    for key, value in state_dict.items():
        if key.startswith("backbone.fpn.extra_blocks."):
            out["backbone." + key[len("backbone.fpn.extra_blocks."):]] = value
        elif key.startswith("head.classification_head.conv."):
            out["cls_tower." + key[len("head.classification_head.conv."):]] = value
        elif key.startswith("head.regression_head.conv."):
            out["bbox_tower." + key[len("head.regression_head.conv."):]] = value
        elif key.startswith("head.classification_head.cls_logits."):
            out["foi_logits." + key[len("head.classification_head.cls_logits."):]] = value
    return out


class _RCNNView:
    """What the faster_rcnn key map reads of a model: its backbone (and no box head with convs)."""

    def __init__(self, model: nn.Module) -> None:
        self.backbone = model.backbone
        self.roi_heads = type("NoHeads", (), {"box_head": None})()
        self._model = model

    def state_dict(self) -> dict[str, Tensor]:
        return self._model.state_dict()


# ---------------------------------------------------------------------------------------------- builders
def fcos_backbone(name: str = "resnet50", pretrained: str | bool | None = None, frozen_bn: bool | None = None,
                  channels: int = 256, **body_kwargs: Any) -> FCOSBackbone:
    """A registered ResNet's C3-C5 under the FCOS pyramid (BatchNorm frozen when pretrained, as torchvision)."""
    body = create_model(name, pretrained=pretrained or None, features_only=True, out_indices=(2, 3, 4), as_dict=True,
                        **body_kwargs)
    if bool(pretrained) if frozen_bn is None else frozen_bn:
        freeze_batchnorm(body)
    return FCOSBackbone(body, channels)


@register_model(paper="tsp", task="detection", num_classes=91, categories=COCO_CATEGORIES, input_size=(3, 800, 800),
                classifier=("class_embed", "foi_logits"), reference={"torchvision": "fcos_resnet50_fpn"},
                notes="labels index the sigmoid classes directly (COCO: 91 ids, 0 unused); losses come weighted; "
                      "no NMS at inference")
def tsp_fcos_resnet50_fpn(pretrained_backbone: str | bool | None = None, num_classes: int = 91, **kwargs: Any) -> TSPFCOS:
    """TSP-FCOS on ResNet-50-FPN (P3-P7): the FoI selector over FCOS's head, 700 FoIs, a 6-layer encoder (d 256,
    8 heads, FFN 1024), set prediction with the FCOS-prior Hungarian matching."""
    return TSPFCOS(fcos_backbone("resnet50", pretrained_backbone), num_classes, **kwargs)


# ------------------------------------------------------------------------------------------------ TSP-RCNN
def box_sine_embedding(boxes: Tensor, dim: int, temperature: float = 10000.0) -> Tensor:
    """Sine encoding of boxes (..., 4) normalised to [0, 1]: each coordinate x 2 pi at ``dim // 4`` frequencies
    temperature^(2i / (dim / 4)), sin on even and cos on odd features, the four coordinates concatenated: (..., dim)."""
    f = dim // 4
    dim_t = temperature ** (2 * torch.div(torch.arange(f, device=boxes.device), 2, rounding_mode="floor").float() / f)
    x = boxes[..., None] * 2 * math.pi / dim_t
    return torch.stack((x[..., 0::2].sin(), x[..., 1::2].cos()), -1).flatten(-3)


def rcnn_prior(iou: Tensor, valid: Tensor, box_valid: Tensor, threshold: float = 0.5) -> Tensor:
    """TSP-RCNN's matching prior: (N, K, M) True where object m is proposal k's Faster R-CNN assignment, its
    highest-IoU object with IoU >= ``threshold`` (``iou`` (N, K, M); ``valid`` (N, K) and ``box_valid`` (N, M)
    mark real proposals and objects). Each proposal may take at most one object."""
    iou = iou.masked_fill(~box_valid[:, None, :], -1.0)
    best = iou.argmax(-1, keepdim=True) if iou.shape[-1] else torch.zeros_like(iou[..., :1], dtype=torch.int64)
    own = torch.zeros_like(iou, dtype=torch.bool).scatter_(-1, best, True) if iou.shape[-1] else iou.bool()
    return own & (iou >= threshold) & valid[..., None] & box_valid[:, None, :]


class TSPRCNN(Detector, nn.Module):
    """TSP-RCNN (Sec. 4.2): an RPN's proposals (our Faster R-CNN parts: ResNet-FPN P2-P6, RPN, RoIAlign 7x7 and the
    2 x 1024 fc box head), each RoI's feature projected to d plus a sine encoding of its normalised box (projected),
    layer-normalised, a transformer encoder over the proposals of an image (padded ones masked), then per proposal
    sigmoid class logits and class-agnostic box deltas on the proposal (Faster R-CNN's coder, weights 10/10/5/5).
    The matching (as the official code's): an object may only take a proposal that Faster R-CNN's rule assigns to it
    (its highest-IoU object, IoU >= ``prior_iou``, ``rcnn_prior``), the one of lowest cost -p(class) + 2 x (1 - GIoU)
    (solved as a Hungarian problem with ``prior_cost`` outside the prior; objects without a proposal stay
    unmatched); losses: sigmoid focal loss on the classes, L1 and GIoU on matched boxes, and the RPN's. The RoI
    feature comes from torchvision's 2 x 1024 fc head where the official code configures its own convs/fcs."""

    def __init__(self, frcnn: nn.Module, num_classes: int = 91, *, d_model: int = 256, heads: int = 8,
                 enc_layers: int = 6, ffn: int = 1024, dropout: float = 0.1, prior_iou: float = 0.5,
                 cost_class: float = 1.0, cost_bbox: float = 0.0, cost_giou: float = 2.0, prior_cost: float = 1e4,
                 loss_weights: dict[str, float] | None = None, detections_per_img: int = 100,
                 nms_thresh: float | None = None, prior_prob: float = 0.01) -> None:
        super().__init__()
        from ._parts.box_coder import BoxCoder

        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")

        self.transform, self.backbone, self.rpn = frcnn.transform, frcnn.backbone, frcnn.rpn
        self.box_roi_pool, self.box_head = frcnn.roi_heads.box_roi_pool, frcnn.roi_heads.box_head
        self.input_proj = nn.Linear(self.box_head.fc7.out_features, d_model)
        self.pos_proj, self.input_norm = nn.Linear(d_model, d_model), nn.LayerNorm(d_model)
        self.encoder = nn.ModuleList(EncoderLayer(d_model, heads, ffn, dropout) for _ in range(enc_layers))
        self.class_embed, self.bbox_embed = nn.Linear(d_model, num_classes), nn.Linear(d_model, 4)
        self.coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
        self.num_classes, self.prior_iou, self.detections_per_img, self.nms_thresh = (num_classes, prior_iou,
                                                                                     detections_per_img, nms_thresh)
        self.matcher = TSPMatcher(cost_class, cost_bbox, cost_giou, prior_cost)
        self.weights = {"loss_ce": 1.0, "loss_bbox": 5.0, "loss_giou": 2.0, **(loss_weights or {})}
        for layer in self.encoder:
            for p in layer.parameters():
                if p.dim() > 1:
                    nn.init.xavier_uniform_(p)
        nn.init.normal_(self.class_embed.weight, std=0.01)
        nn.init.constant_(self.class_embed.bias, -math.log((1 - prior_prob) / prior_prob))
        nn.init.normal_(self.bbox_embed.weight, std=0.001)
        nn.init.zeros_(self.bbox_embed.bias)

    def head(self, features: dict[str, Tensor], proposals: Sequence[Tensor], sizes: Sequence[tuple[int, int]]
             ) -> dict[str, Tensor]:
        n, k = len(proposals), max(max(len(p) for p in proposals), 1)
        device = features[next(iter(features))].device
        props = torch.zeros(n, k, 4, device=device)
        props[..., 2:] = 1.0
        valid = torch.zeros(n, k, dtype=torch.bool, device=device)
        for i, p in enumerate(proposals):  # padding only
            props[i, : len(p)], valid[i, : len(p)] = p, True
        image = torch.arange(n, device=device)[:, None].expand(n, k)
        rois = torch.cat((image.reshape(-1, 1).to(props.dtype), props.reshape(-1, 4)), 1)
        x = self.box_head(self.box_roi_pool(features, rois, sizes)).view(n, k, -1)
        scale = torch.tensor([[w, h, w, h] for h, w in sizes], dtype=props.dtype, device=device)[:, None]
        pos = self.pos_proj(box_sine_embedding(props / scale, self.input_proj.out_features))
        src = self.input_norm(self.input_proj(x) + pos)
        for layer in self.encoder:
            src = layer(src, pos, valid)
        boxes = self.coder.decode(self.bbox_embed(src).reshape(-1, 4), props.reshape(-1, 4)).view(n, k, 4)
        return {"pred_logits": self.class_embed(src), "pred_boxes": boxes, "proposals": props, "valid": valid,
                "image_sizes": list(sizes)}

    def loss(self, out: dict[str, Tensor], targets: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
        from torchvision.ops import box_iou

        boxes, labels, box_valid, counts = TSPFCOS.padded_targets(self, targets, out["pred_logits"].device)
        num_boxes = max(float(sum(counts)), 1.0)
        n, k, _ = out["proposals"].shape
        iou = box_iou(out["proposals"].flatten(0, 1), boxes.flatten(0, 1)).view(n, k, n, -1)[torch.arange(n), :, torch.arange(n)]
        allowed = rcnn_prior(iou, out["valid"], box_valid, self.prior_iou)
        scale = torch.tensor([[w, h, w, h] for h, w in out["image_sizes"]], dtype=boxes.dtype, device=boxes.device)[:, None]
        pred, gt = out["pred_boxes"] / scale, boxes / scale
        logits = out["pred_logits"].masked_fill(~out["valid"][..., None], -1e4)  # padding is never matched cheaply
        matches = self.matcher(logits, pred, labels, gt, allowed, counts)
        img = torch.cat([torch.full_like(q, i) for i, (q, _) in enumerate(matches)]).to(pred.device)
        q = torch.cat([q for q, _ in matches]).to(pred.device)
        j = torch.cat([j for _, j in matches]).to(pred.device)
        keep = allowed[img, q, j]  # an object without a proposal of its own stays unmatched (the official rule)
        img, q, j = img[keep], q[keep], j[keep]
        cls_t = torch.zeros_like(out["pred_logits"])
        cls_t[img, q, labels[img, j]] = 1.0
        focal = sigmoid_focal_loss(out["pred_logits"], cls_t, reduction="none").sum(-1)
        loss_ce = (focal * out["valid"]).sum() / num_boxes
        src, tgt = pred[img, q], gt[img, j]
        terms = {"loss_ce": loss_ce, "loss_bbox": F.l1_loss(src, tgt, reduction="sum") / num_boxes,
                 "loss_giou": (1 - torch.diag(generalized_box_iou(src, tgt))).sum() / num_boxes}
        return {name: v * self.weights[name] for name, v in terms.items()}

    def forward(self, images: Sequence[Tensor] | Tensor, targets: Sequence[dict[str, Tensor]] | None = None):
        images = list(images)
        if targets is not None:
            check_targets(targets, len(images), self.num_classes)
            targets = [dict(t, boxes=as_xyxy(t["boxes"]), labels=torch.as_tensor(t["labels"]).long()) for t in targets]
        batch, scaled = self.transform(images, targets)
        features = self.backbone(batch.tensors)
        proposals, rpn_losses = self.rpn(batch, features, scaled)
        proposals = [p.detach() for p in proposals]
        if targets is not None:  # the objects join the proposals in training (detectron2's and torchvision's rule)
            proposals = [torch.cat((p, t["boxes"].to(p))) for p, t in zip(proposals, scaled)]
        out = self.head(features, proposals, batch.image_sizes)
        if targets is None:
            return out
        return {**self.loss(out, scaled), **rpn_losses}

    def postprocess(self, out: dict[str, Any], sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """The top (proposal, class) pairs by class probability (optionally class-wise NMS), in each image's pixels."""
        score = out["pred_logits"].sigmoid() * out["valid"][..., None]
        dets = top_detections(score, out["pred_boxes"], out["image_sizes"], sizes, self.detections_per_img)
        if self.nms_thresh is None:
            return dets
        from torchvision.ops import batched_nms

        keeps = [batched_nms(d["boxes"], d["scores"], d["labels"], self.nms_thresh) for d in dets]
        return [{k: v[keep] for k, v in d.items()} for d, keep in zip(dets, keeps)]


@register_model(paper="tsp", task="detection", num_classes=91, categories=COCO_CATEGORIES, input_size=(3, 800, 800),
                classifier=("class_embed",), reference={"torchvision": "fasterrcnn_resnet50_fpn"},
                notes="labels index the sigmoid classes directly (COCO: 91 ids, 0 unused); 700 proposals; losses "
                      "come weighted (the RPN's included)")
def tsp_rcnn_resnet50_fpn(pretrained_backbone: str | bool | None = None, num_classes: int = 91,
                          min_size: int = 800, max_size: int = 1333, proposals: int = 700, **kwargs: Any) -> TSPRCNN:
    """TSP-RCNN on ResNet-50-FPN: torchvision-layout backbone, RPN (``proposals`` after NMS), RoIAlign and fc head,
    a 6-layer encoder over the proposals, set prediction with the IoU-prior Hungarian matching."""
    from .faster_rcnn import FasterRCNN, _resnet_fpn

    frcnn = FasterRCNN(_resnet_fpn(pretrained_backbone, None, None), 2, min_size=min_size, max_size=max_size,
                       rpn_post_nms_top_n_train=proposals, rpn_post_nms_top_n_test=proposals)
    return TSPRCNN(frcnn, num_classes, **kwargs)
