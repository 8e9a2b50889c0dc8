"""Small detectors for the detection miniatures, assembled from the shared detection parts.

A narrow ResNet-18 (stage widths ``w, 2w, 4w, 8w``) feeds either one map at stride 16 (C4, the Faster R-CNN
paper's single-scale setting) or an FPN over C2-C5 (P2-P6). Everything else is the library's own Faster R-CNN:
anchors, RPN, RoI heads, samplers, losses. ``FixedProposals`` replaces the RPN by the non-learned baseline it
was invented to beat: sliding windows, i.e. every anchor box of the grid (or an evenly spaced subset of them).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import box_iou, clip_boxes_to_image

from ...models.detection._parts.anchors import AnchorGenerator
from ...models.detection._parts.backbone import BackboneWithFPN
from ...models.detection._parts.fpn import FeaturePyramid
from ...models.detection._parts.poolers import RoIPooler
from ...models.detection._parts.roi_heads import FastRCNNPredictor, TwoMLPHead
from ...models.detection.faster_rcnn import FasterRCNN
from ...registry import create_model

RATIOS = (0.5, 1.0, 2.0)


class FixedProposals(nn.Module):
    """Sliding-window proposals: the anchor boxes of every position (clipped to the image), the same for every
    image, without learning; with ``top_n`` an evenly spaced subset of ``top_n`` of them. Returns no loss."""

    def __init__(self, anchor_generator: AnchorGenerator, top_n: int | None = None) -> None:
        super().__init__()
        self.anchor_generator = anchor_generator
        self.top_n = top_n

    def forward(self, images, features: Mapping[str, Tensor], targets=None) -> tuple[list[Tensor], dict[str, Tensor]]:
        anchors = self.anchor_generator(images.tensors.shape[-2:], list(features.values()))
        if self.top_n is not None and self.top_n < len(anchors):
            anchors = anchors[torch.linspace(0, len(anchors) - 1, self.top_n, device=anchors.device).round().long()]
        return [clip_boxes_to_image(anchors, size) for size in images.image_sizes], {}


def small_faster_rcnn(num_classes: int, image_size: int, width: int = 16, fpn: bool = False, head_dim: int = 128,
                      test_proposals: int = 50, rois_per_image: int = 64) -> FasterRCNN:
    """A Faster R-CNN on a narrow ResNet-18 for ``image_size`` px scenes (no resizing: min = max = the image size).

    Single-scale: C4 (stride 16), anchors 8-64 px x 3 ratios at every position (12 per position). FPN: P2-P6 with
    one anchor size per level (8-128 px) x 3 ratios, RoIs assigned to P2-P5 by the paper's eq. 1 with the canonical
    size scaled from 224 px at ImageNet resolution to these small scenes (36 px, ~224 x 128 / 800)."""
    widths = (width, 2 * width, 4 * width, 8 * width)
    if fpn:
        body = create_model("resnet18", features_only=True, out_indices=(1, 2, 3, 4), as_dict=True, channels=widths,
                            stem_width=width)
        backbone: nn.Module = BackboneWithFPN(body, FeaturePyramid(body.out_channels, 4 * width))
        anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), (RATIOS,) * 5)
        pool = RoIPooler(["0", "1", "2", "3"], output_size=7, sampling_ratio=2, canonical_size=36.0)
    else:
        backbone = create_model("resnet18", features_only=True, out_indices=(3,), as_dict=True, channels=widths,
                                stem_width=width)
        backbone.out_channels = backbone.out_channels[0]
        anchors = AnchorGenerator(((8, 16, 32, 64),), (RATIOS,))
        pool = RoIPooler(["0"], output_size=7, sampling_ratio=2)
    return FasterRCNN(
        backbone, num_classes, min_size=image_size, max_size=image_size, image_mean=(0.5,) * 3, image_std=(0.25,) * 3,
        rpn_anchor_generator=anchors, box_roi_pool=pool, box_head=TwoMLPHead(backbone.out_channels * 49, head_dim),
        box_predictor=FastRCNNPredictor(head_dim, num_classes), rpn_batch_size_per_image=128,
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=test_proposals, box_batch_size_per_image=rois_per_image, box_detections_per_img=20)


@torch.no_grad()
def proposal_recall(model: FasterRCNN, dataset, counts: Sequence[int], iou: float = 0.5, batch: int = 16) -> dict[int, float]:
    """Recall of the ground-truth boxes of ``dataset`` by the first N proposals of ``model``'s proposal stage (its RPN,
    ranked by objectness after NMS, or fixed windows), for each N in ``counts``: the paper's Fig. 2 measure. An RPN
    is asked for max(counts) proposals after NMS for this (its test-time setting is restored afterwards)."""
    was = model.training
    model.eval()
    kept = getattr(model.rpn, "_post_nms_top_n", None)
    if kept is not None:
        model.rpn._post_nms_top_n = {**kept, "testing": max(counts)}
    hit = {n: 0 for n in counts}
    total = 0
    for start in range(0, len(dataset), batch):
        images, targets = zip(*(dataset[i] for i in range(start, min(start + batch, len(dataset)))))
        batch_images, _ = model.transform([im.as_subclass(Tensor) for im in images])
        features = model.backbone(batch_images.tensors)
        if isinstance(features, Tensor):
            features = {"0": features}
        proposals, _ = model.rpn(batch_images, features)
        for props, t in zip(proposals, targets):
            gt = t["boxes"].as_subclass(Tensor)
            total += len(gt)
            if not len(gt):
                continue
            for n in counts:
                if len(props):
                    hit[n] += int((box_iou(gt, props[:n]).max(1).values >= iou).sum())
    model.train(was)
    if kept is not None:
        model.rpn._post_nms_top_n = kept
    return {n: hit[n] / max(total, 1) for n in counts}
