"""Training mini-batches of the two stages: label boxes by IoU with the ground truth, then sample a balanced set.

* **RPN** (Faster R-CNN, Sec. 3.1.2): an anchor is positive if its IoU with some ground-truth box is >= 0.7, or
  if it is the anchor of highest IoU for some ground-truth box (so that every object has a positive anchor);
  negative if its IoU is < 0.3 for all ground-truth boxes; other anchors are ignored. 256 anchors are sampled
  per image with up to half positives (Sec. 3.1.3).
* **RoI head** (Fast R-CNN, Sec. 2.3): a proposal is foreground if its IoU >= 0.5, background below; the sample
  holds up to 25% foreground.

Images of a batch are labelled together on padded tensors: ``pad_boxes`` stacks the per-image boxes and
``match_boxes`` works on a (batch, ground truth, boxes) IoU matrix where padding never matches. An image without
objects labels everything background. ``sample_balanced`` draws, per image, a random permutation of the
positive and then of the negative candidates, the same generator calls torchvision makes, so the two pick the
same boxes under the same seed.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchvision.ops import box_iou

__all__ = ["BELOW_LOW", "BETWEEN", "match_boxes", "pad_boxes", "sample_balanced"]

BELOW_LOW = -1  # best IoU below the low threshold: background
BETWEEN = -2  # best IoU between the thresholds: ignored


def pad_boxes(boxes: Sequence[Tensor], min_length: int = 1) -> tuple[Tensor, Tensor]:
    """Stack per-image (N_i, 4) boxes into a zero-padded (B, max(N_i, min_length), 4) tensor and its (B, N) mask of
    real entries."""
    counts = torch.tensor([len(b) for b in boxes])
    length = max(int(counts.max()) if len(boxes) else 0, min_length)
    padded = torch.nn.utils.rnn.pad_sequence([b.reshape(-1, 4) for b in boxes], batch_first=True)
    if padded.shape[1] < length:
        padded = torch.nn.functional.pad(padded, (0, 0, 0, length - padded.shape[1]))
    valid = torch.arange(length)[None, :] < counts[:, None]
    return padded, valid.to(padded.device)


def match_boxes(gt_boxes: Tensor, gt_valid: Tensor, boxes: Tensor, high: float, low: float,
                allow_low_quality: bool = False, box_valid: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """For each of ``boxes`` (B, N, 4), the index of its best ground-truth box in ``gt_boxes`` (B, G, 4) where its
    IoU is >= ``high``, ``BETWEEN`` where it lies in [low, high) and ``BELOW_LOW`` below ``low``; with
    ``allow_low_quality``, every box that is the best match of some ground-truth box keeps that match (ties
    included). Returns the matches and the best IoU (B, N); boxes with no real ground truth get IoU -1.
    ``box_valid`` excludes boxes (padding, cross-boundary anchors) from being any ground truth's best."""
    iou = torch.vmap(box_iou)(gt_boxes, boxes)  # (B, G, N)
    iou = iou.masked_fill(~gt_valid[:, :, None], -1.0)
    if box_valid is not None:
        iou = iou.masked_fill(~box_valid[:, None, :], -1.0)
    best, matches = iou.max(dim=1)
    low_quality = None
    if allow_low_quality:
        best_per_gt = iou.amax(dim=2, keepdim=True)
        low_quality = ((iou == best_per_gt) & gt_valid[:, :, None]).any(dim=1)
    out = matches.masked_fill(best < low, BELOW_LOW).masked_fill((best >= low) & (best < high), BETWEEN)
    if low_quality is not None:
        out = torch.where(low_quality, matches, out)
    return out, best


def sample_balanced(labels: Tensor, batch_size_per_image: int, positive_fraction: float) -> tuple[Tensor, Tensor]:
    """Masks (B, N) of the sampled positives (label >= 1) and negatives (label 0); label -1 is never sampled.
    Per image: up to ``batch_size_per_image * positive_fraction`` positives, negatives fill the rest."""
    pos_mask = torch.zeros_like(labels, dtype=torch.bool)
    neg_mask = torch.zeros_like(labels, dtype=torch.bool)
    for i, image_labels in enumerate(labels):  # one pair of permutations per image, in torchvision's order
        positive = torch.where(image_labels >= 1)[0]
        negative = torch.where(image_labels == 0)[0]
        num_pos = min(positive.numel(), int(batch_size_per_image * positive_fraction))
        num_neg = min(negative.numel(), batch_size_per_image - num_pos)
        pos_mask[i, positive[torch.randperm(positive.numel(), device=positive.device)[:num_pos]]] = True
        neg_mask[i, negative[torch.randperm(negative.numel(), device=negative.device)[:num_neg]]] = True
    return pos_mask, neg_mask
