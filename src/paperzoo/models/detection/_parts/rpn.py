"""The Region Proposal Network (Faster R-CNN, Sec. 3.1): a small network slid over the shared feature maps
that scores k anchors per position for "objectness" and regresses a box from each, so that proposals cost
almost nothing on top of the detector's own convolutions.

Training (Sec. 3.1.2): anchors are labelled by IoU (``sampler.match_boxes``: >= 0.7 or best for some object
positive, < 0.3 negative), 256 are sampled per image with up to half positives, and the loss is

    L = 1/N_cls sum_i L_cls(p_i, p_i*) + lambda 1/N_reg sum_i p_i* L_reg(t_i, t_i*)                   (eq. 1)

with L_cls the log loss on the objectness logit, L_reg the smooth L1 loss on the box offsets of eq. 2 (beta =
1/9, py-faster-rcnn's sigma = 3), both normalised by the sampled count (py-faster-rcnn's and torchvision's
choice; the paper's lambda = 10 with N_reg ~ 2400 anchor positions weighs the terms about the same). The
paper ignores anchors that cross the image boundary in training (Sec. 3.3, ``allowed_border=0``); torchvision's
detectors keep them (``allowed_border=None``).

Inference (Sec. 3.3): boxes are decoded from the top-scoring anchors (``pre_nms_top_n`` per level), clipped to
the image, tiny and low-scoring ones dropped, suppressed by NMS at IoU 0.7 (per level), and the best
``post_nms_top_n`` kept. Proposals are not back-propagated through (the paper's approximate joint training).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from .anchors import AnchorGenerator
from .box_coder import BoxCoder
from .sampler import BELOW_LOW, match_boxes, pad_boxes, sample_balanced
from .transform import ImageBatch

__all__ = ["RPNHead", "RegionProposalNetwork"]


class RPNHead(nn.Module):
    """An n x n (3x3) conv with ReLU over each feature map, then two sibling 1x1 convs (Sec. 3.1, Fig. 3): one
    objectness logit per anchor (the paper's footnote: logistic regression in place of a 2k-way softmax) and 4
    box offsets per anchor. ``depth`` stacks that many 3x3 convs (torchvision's v2 recipe uses 2)."""

    def __init__(self, in_channels: int, num_anchors: int, depth: int = 1) -> None:
        super().__init__()
        self.conv = nn.ModuleList(nn.Conv2d(in_channels, in_channels, 3, padding=1) for _ in range(depth))
        self.objectness = nn.Conv2d(in_channels, num_anchors, 1)
        self.deltas = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward(self, features: Sequence[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        logits, deltas = [], []
        for x in features:
            for conv in self.conv:
                x = F.relu(conv(x), inplace=True)
            logits.append(self.objectness(x))
            deltas.append(self.deltas(x))
        return logits, deltas


def _flatten(logits: Sequence[Tensor], deltas: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """(B, A, H, W) logits and (B, 4A, H, W) deltas per level -> (B, sum HWA) and (B, sum HWA, 4), ordered
    (level, row, column, anchor) like the anchors."""
    flat_logits = [x.permute(0, 2, 3, 1).reshape(x.shape[0], -1) for x in logits]
    flat_deltas = [d.view(d.shape[0], -1, 4, *d.shape[-2:]).permute(0, 3, 4, 1, 2).reshape(d.shape[0], -1, 4)
                   for d in deltas]
    return torch.cat(flat_logits, dim=1), torch.cat(flat_deltas, dim=1)


class RegionProposalNetwork(nn.Module):
    """Anchors + head + proposal selection + training loss. ``forward`` returns the proposals of each image
    (XYXY in the batch's pixels) and, in training, ``{"loss_objectness", "loss_rpn_box_reg"}``."""

    def __init__(
        self,
        anchor_generator: AnchorGenerator,
        head: nn.Module,
        fg_iou_thresh: float = 0.7,
        bg_iou_thresh: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n: Mapping[str, int] | None = None,
        post_nms_top_n: Mapping[str, int] | None = None,
        nms_thresh: float = 0.7,
        score_thresh: float = 0.0,
        min_size: float = 1e-3,
        allowed_border: float | None = None,
        box_loss_beta: float = 1.0 / 9,
    ) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.fg_iou_thresh, self.bg_iou_thresh = fg_iou_thresh, bg_iou_thresh
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self._pre_nms_top_n = dict(pre_nms_top_n or {"training": 2000, "testing": 1000})
        self._post_nms_top_n = dict(post_nms_top_n or {"training": 2000, "testing": 1000})
        self.nms_thresh, self.score_thresh, self.min_size = nms_thresh, score_thresh, min_size
        self.allowed_border = allowed_border
        self.box_loss_beta = box_loss_beta

    def pre_nms_top_n(self) -> int:
        return self._pre_nms_top_n["training" if self.training else "testing"]

    def post_nms_top_n(self) -> int:
        return self._post_nms_top_n["training" if self.training else "testing"]

    def select_proposals(self, boxes: Tensor, logits: Tensor, image_sizes: Sequence[tuple[int, int]],
                         anchors_per_level: Sequence[int]) -> list[Tensor]:
        """Top ``pre_nms_top_n`` per level, clip, drop boxes under ``min_size`` or ``score_thresh``, NMS per level,
        keep the best ``post_nms_top_n``. ``boxes`` (B, N, 4), ``logits`` (B, N)."""
        logits = logits.detach()
        levels = torch.cat([torch.full((n,), i, dtype=torch.int64, device=boxes.device)
                            for i, n in enumerate(anchors_per_level)])
        top, offset = [], 0
        for level_logits in logits.split(list(anchors_per_level), dim=1):
            k = min(self.pre_nms_top_n(), level_logits.shape[1])
            top.append(level_logits.topk(k, dim=1).indices + offset)
            offset += level_logits.shape[1]
        top_idx = torch.cat(top, dim=1)
        batch_idx = torch.arange(boxes.shape[0], device=boxes.device)[:, None]
        scores = torch.sigmoid(logits[batch_idx, top_idx])
        boxes, levels = boxes[batch_idx, top_idx], levels[top_idx]
        proposals = []
        for b, s, lvl, size in zip(boxes, scores, levels, image_sizes):  # NMS runs per image, as torchvision's
            b = clip_boxes_to_image(b, size)
            keep = remove_small_boxes(b, self.min_size)
            b, s, lvl = b[keep], s[keep], lvl[keep]
            keep = torch.where(s >= self.score_thresh)[0]
            b, s, lvl = b[keep], s[keep], lvl[keep]
            keep = batched_nms(b, s, lvl, self.nms_thresh)[: self.post_nms_top_n()]
            proposals.append(b[keep])
        return proposals

    def anchor_labels(self, anchors: Tensor, targets: Sequence[Mapping[str, Tensor]], image_sizes: Sequence[tuple[int, int]]
                      ) -> tuple[Tensor, Tensor, Tensor]:
        """Per anchor: label 1 (object) / 0 (background) / -1 (ignored), (B, N); the matched ground-truth index
        (B, N); and the padded ground-truth boxes (B, G, 4)."""
        gt, gt_valid = pad_boxes([t["boxes"].to(anchors.dtype) for t in targets])
        batch = anchors.expand(len(targets), *anchors.shape)
        inside = None
        if self.allowed_border is not None:  # Sec. 3.3: cross-boundary anchors do not contribute to the loss
            sizes = torch.tensor(image_sizes, dtype=anchors.dtype, device=anchors.device)  # (B, 2) = (h, w)
            border = self.allowed_border
            inside = ((batch[..., 0] >= -border) & (batch[..., 1] >= -border)
                      & (batch[..., 2] < sizes[:, None, 1] + border) & (batch[..., 3] < sizes[:, None, 0] + border))
        matches, _ = match_boxes(gt, gt_valid, batch, self.fg_iou_thresh, self.bg_iou_thresh,
                                 allow_low_quality=True, box_valid=inside)
        # matched (>= 0): object; BELOW_LOW: background; BETWEEN: ignored
        labels = torch.where(matches >= 0, 1.0, torch.where(matches == BELOW_LOW, 0.0, -1.0)).to(anchors.dtype)
        if inside is not None:
            labels = labels.masked_fill(~inside, -1.0)
        return labels, matches.clamp(min=0), gt

    def loss(self, logits: Tensor, deltas: Tensor, anchors: Tensor, labels: Tensor, matches: Tensor, gt: Tensor
             ) -> dict[str, Tensor]:
        pos, neg = sample_balanced(labels, self.batch_size_per_image, self.positive_fraction)
        pos_idx = torch.where(pos.flatten())[0]
        sampled = torch.cat([pos_idx, torch.where(neg.flatten())[0]])
        b, a = pos_idx // labels.shape[1], pos_idx % labels.shape[1]
        targets = self.box_coder.encode(gt[b, matches[b, a]], anchors[a])
        box_loss = F.smooth_l1_loss(deltas.reshape(-1, 4)[pos_idx], targets, beta=self.box_loss_beta, reduction="sum")
        if sampled.numel() == 0:  # no anchor to learn from (e.g. every anchor crosses the border): zero, not NaN
            zero = logits.sum() * 0.0
            return {"loss_objectness": zero, "loss_rpn_box_reg": zero + box_loss}
        objectness = F.binary_cross_entropy_with_logits(logits.flatten()[sampled], labels.flatten()[sampled])
        return {"loss_objectness": objectness, "loss_rpn_box_reg": box_loss / sampled.numel()}

    def forward(self, images: ImageBatch, features: Mapping[str, Tensor],
                targets: Sequence[Mapping[str, Tensor]] | None = None) -> tuple[list[Tensor], dict[str, Tensor]]:
        maps = list(features.values())
        level_logits, level_deltas = self.head(maps)
        anchors = self.anchor_generator(images.tensors.shape[-2:], maps)
        anchors_per_level = [x[0].numel() for x in level_logits]
        logits, deltas = _flatten(level_logits, level_deltas)
        boxes = self.box_coder.decode(deltas.detach(), anchors)
        proposals = self.select_proposals(boxes, logits, images.image_sizes, anchors_per_level)
        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("the RPN needs targets in training mode")
            labels, matches, gt = self.anchor_labels(anchors, targets, images.image_sizes)
            losses = self.loss(logits, deltas, anchors, labels, matches, gt)
        return proposals, losses
