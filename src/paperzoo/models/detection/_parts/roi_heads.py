"""The detection stage on top of the proposals: Fast R-CNN's RoI head (Girshick, 2015), as Faster R-CNN uses it
(Sec. 3.2: the RPN and Fast R-CNN share the convolutional features).

Each proposal is pooled to a fixed-size feature (``poolers.RoIPooler``), passed through a box head (VGG-16's fc6
and fc7; for FPN two 1024-d layers, "2fc"), and a predictor gives K + 1 class scores and a class-specific box
refinement per proposal (Fast R-CNN, Sec. 2.2). Training (Fast R-CNN, Sec. 2.3): the ground-truth boxes join the
proposals, proposals are labelled foreground at IoU >= 0.5 and background below (``bg_iou_low`` = 0.1 gives Fast
R-CNN's [0.1, 0.5) background interval, the rest ignored), a mini-batch with up to 25% foreground is sampled, and
the loss is the multi-task loss of Fast R-CNN's eq. 1: cross-entropy plus smooth L1 on the true class's box
offsets (eq. 2 of Faster R-CNN) for the foreground, divided by the sample size. Inference: softmax scores,
per-class boxes clipped to the image, scores above ``score_thresh``, NMS per class, the best
``detections_per_img`` kept.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from ....layers import ConvNormAct
from .box_coder import BoxCoder
from .sampler import BELOW_LOW, BETWEEN, match_boxes, pad_boxes, sample_balanced

__all__ = ["ConvFCHead", "FastRCNNPredictor", "RoIHeads", "TwoMLPHead", "to_rois"]


class TwoMLPHead(nn.Module):
    """Two fully-connected layers with ReLU (``fc6``, ``fc7``) on the flattened pooled feature; ``dropout`` after
    each, as VGG-16's fc6/fc7 are trained in Fast R-CNN."""

    def __init__(self, in_features: int, representation_size: int = 1024, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc6 = nn.Linear(in_features, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        x = F.dropout(F.relu(self.fc6(x.flatten(1)), inplace=True), self.dropout, self.training)
        return F.dropout(F.relu(self.fc7(x), inplace=True), self.dropout, self.training)


class ConvFCHead(nn.Module):
    """Convs (3x3, norm, ReLU) then fully-connected layers with ReLU: torchvision's "4conv1fc" head of
    ``fasterrcnn_resnet50_fpn_v2`` (Li et al., 2021, "Benchmarking Detection Transfer Learning with ViTs")."""

    def __init__(self, in_channels: int, resolution: int, conv_dims: Sequence[int] = (256, 256, 256, 256),
                 fc_dims: Sequence[int] = (1024,), norm_layer: Callable[[int], nn.Module] | None = nn.BatchNorm2d) -> None:
        super().__init__()
        convs, c = [], in_channels
        for out in conv_dims:
            convs.append(ConvNormAct(c, out, 3, bias=norm_layer is None, norm_layer=norm_layer, act_layer="relu"))
            c = out
        self.convs = nn.Sequential(*convs)
        dims = [c * resolution * resolution, *fc_dims]
        self.fcs = nn.ModuleList(nn.Linear(i, o) for i, o in itertools.pairwise(dims))
        for m in self.convs.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        x = self.convs(x).flatten(1)
        for fc in self.fcs:
            x = F.relu(fc(x), inplace=True)
        return x


class FastRCNNPredictor(nn.Module):
    """The two sibling outputs of Fast R-CNN (Sec. 2.2): ``cls_score`` (K + 1 classes, background at 0) and
    ``bbox_pred`` (4 offsets per class)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes)
        self.bbox_pred = nn.Linear(in_features, num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(1)
        return self.cls_score(x), self.bbox_pred(x)


def to_rois(boxes: Sequence[Tensor]) -> Tensor:
    """Per-image (N_i, 4) boxes -> one (sum N_i, 5) tensor of (image index, x1, y1, x2, y2)."""
    flat = torch.cat(list(boxes))
    index = torch.repeat_interleave(torch.arange(len(boxes), device=flat.device),
                                    torch.tensor([len(b) for b in boxes], device=flat.device))
    return torch.cat([index[:, None].to(flat.dtype), flat], dim=1)


class RoIHeads(nn.Module):
    """Pool, head, predictor; the training sample and loss; per-class NMS at inference. ``forward`` returns the
    detections of each image (in the batch's pixels) and, in training, ``{"loss_classifier", "loss_box_reg"}``."""

    def __init__(
        self,
        box_roi_pool: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        bbox_reg_weights: Sequence[float] | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        bg_iou_low: float = 0.0,
        box_loss_beta: float = 1.0 / 9,
    ) -> None:
        super().__init__()
        self.box_roi_pool, self.box_head, self.box_predictor = box_roi_pool, box_head, box_predictor
        self.fg_iou_thresh, self.bg_iou_thresh, self.bg_iou_low = fg_iou_thresh, bg_iou_thresh, bg_iou_low
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.box_coder = BoxCoder(bbox_reg_weights or (10.0, 10.0, 5.0, 5.0))
        self.score_thresh, self.nms_thresh, self.detections_per_img = score_thresh, nms_thresh, detections_per_img
        self.box_loss_beta = box_loss_beta

    def sample(self, proposals: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]]) -> tuple[Tensor, Tensor, Tensor]:
        """The training RoIs (K, 5) in image order, their labels (K,) and the regression targets of the
        foreground ones (in order)."""
        return self.sample_matched(proposals, targets)[:3]

    def sample_matched(self, proposals: Sequence[Tensor], targets: Sequence[Mapping[str, Tensor]]
                       ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``sample``'s three, and each sampled RoI's matched object (K,): its index among its image's targets
        (the highest IoU) for foreground RoIs, negative for the others."""
        dtype = proposals[0].dtype
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        boxes, valid = pad_boxes([torch.cat([p, g]) for p, g in zip(proposals, gt_boxes)])
        gt, gt_valid = pad_boxes(gt_boxes)
        gt_labels = torch.zeros(gt_valid.shape, dtype=torch.int64, device=gt.device)
        gt_labels[gt_valid] = torch.cat([t["labels"].to(torch.int64) for t in targets])
        matches, best = match_boxes(gt, gt_valid, boxes, self.fg_iou_thresh, self.bg_iou_thresh, box_valid=valid)
        labels = gt_labels.gather(1, matches.clamp(min=0))
        labels = labels.masked_fill(matches == BELOW_LOW, 0).masked_fill(matches == BETWEEN, -1)
        if self.bg_iou_low > 0:  # Fast R-CNN: background only from [bg_iou_low, bg_iou_thresh), in images with objects
            labels = labels.masked_fill((best < self.bg_iou_low) & gt_valid.any(dim=1, keepdim=True), -1)
        labels = labels.masked_fill(~valid, -1)
        pos, neg = sample_balanced(labels, self.batch_size_per_image, self.positive_fraction)
        b, j = torch.where(pos | neg)
        rois = torch.cat([b[:, None].to(dtype), boxes[b, j]], dim=1)
        sampled_labels = labels[b, j]
        fg = torch.where(sampled_labels > 0)[0]
        targets_fg = self.box_coder.encode(gt[b[fg], matches[b[fg], j[fg]]], boxes[b[fg], j[fg]])
        return rois, sampled_labels, targets_fg, matches[b, j]

    def loss(self, class_logits: Tensor, box_regression: Tensor, labels: Tensor, targets_fg: Tensor) -> dict[str, Tensor]:
        fg = torch.where(labels > 0)[0]
        deltas = box_regression.reshape(class_logits.shape[0], -1, 4)[fg, labels[fg]]
        box_loss = F.smooth_l1_loss(deltas, targets_fg, beta=self.box_loss_beta, reduction="sum")
        if labels.numel() == 0:  # nothing sampled: zero, not NaN
            zero = class_logits.sum() * 0.0
            return {"loss_classifier": zero, "loss_box_reg": zero + box_loss}
        return {"loss_classifier": F.cross_entropy(class_logits, labels), "loss_box_reg": box_loss / labels.numel()}

    def postprocess(self, class_logits: Tensor, box_regression: Tensor, rois: Tensor, counts: Sequence[int],
                    image_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        num_classes = class_logits.shape[-1]
        boxes = self.box_coder.decode(box_regression.reshape(rois.shape[0], -1, 4), rois[:, None, 1:])
        scores = F.softmax(class_logits, -1)
        classes = torch.arange(num_classes, device=class_logits.device)
        out = []
        for b, s, size in zip(boxes.split(list(counts)), scores.split(list(counts)), image_sizes):  # NMS per image
            b = clip_boxes_to_image(b, size)[:, 1:].reshape(-1, 4)  # every class but background is a candidate
            lab = classes.view(1, -1).expand_as(s)[:, 1:].reshape(-1)
            s = s[:, 1:].reshape(-1)
            keep = torch.where(s > self.score_thresh)[0]
            b, s, lab = b[keep], s[keep], lab[keep]
            keep = remove_small_boxes(b, min_size=1e-2)
            b, s, lab = b[keep], s[keep], lab[keep]
            keep = batched_nms(b, s, lab, self.nms_thresh)[: self.detections_per_img]
            out.append({"boxes": b[keep], "labels": lab[keep], "scores": s[keep]})
        return out

    def forward(self, features: Mapping[str, Tensor], proposals: Sequence[Tensor], image_sizes: Sequence[tuple[int, int]],
                targets: Sequence[Mapping[str, Tensor]] | None = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("the RoI head needs targets in training mode")
            rois, labels, targets_fg = self.sample(proposals, targets)
        else:
            rois = to_rois(proposals)
        x = self.box_head(self.box_roi_pool(features, rois, image_sizes))
        class_logits, box_regression = self.box_predictor(x)
        if self.training:
            return [], self.loss(class_logits, box_regression, labels, targets_fg)
        counts = [len(p) for p in proposals]
        return self.postprocess(class_logits, box_regression, rois, counts, image_sizes), {}
