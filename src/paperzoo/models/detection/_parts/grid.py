"""What single-shot grid detectors (YOLO v1, YOLOv2) share: images of any size to one square batch, target
checks, and class-wise NMS over a whole batch at once.

The network sees every image resized (without keeping its aspect ratio, as Darknet does) to one square input;
targets and detections are expressed in [0, 1] of the image, so they need only the image's own width and height
to go back to its pixels.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import batched_nms

from ....errors import DataError
from .transform import as_xyxy

__all__ = ["check_targets", "image_sizes", "nms_per_image", "normalized_targets", "postprocess", "square_batch"]


def image_sizes(images: Sequence[Tensor] | Tensor) -> list[tuple[int, int]]:
    """Each image's (height, width)."""
    if isinstance(images, Tensor) and images.dim() == 4:
        return [(int(images.shape[-2]), int(images.shape[-1]))] * len(images)
    return [(int(im.shape[-2]), int(im.shape[-1])) for im in images]


def square_batch(images: Sequence[Tensor] | Tensor, size: int, mean: Sequence[float], std: Sequence[float]
                 ) -> tuple[Tensor, list[tuple[int, int]]]:
    """Images (a list of CHW in [0, 1] or an NCHW tensor) resized bilinearly to ``size`` x ``size`` and normalised;
    also each image's original (height, width)."""
    if isinstance(images, Tensor) and images.dim() == 4:
        sizes = [(int(images.shape[-2]), int(images.shape[-1]))] * len(images)
        x = images if images.shape[-2:] == (size, size) else F.interpolate(images, (size, size), mode="bilinear",
                                                                              align_corners=False)
    else:
        images = list(images)
        if not images:
            raise DataError("no images given")
        for i, im in enumerate(images):
            if im.dim() != 3:
                raise DataError(f"image {i} must be a (C, H, W) tensor, got shape {tuple(im.shape)}")
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        x = torch.cat([F.interpolate(im[None], (size, size), mode="bilinear", align_corners=False)
                       if im.shape[-2:] != (size, size) else im[None] for im in images])
    m = torch.as_tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s, sizes


def check_targets(targets: Sequence[dict[str, Tensor]] | None, n_images: int, num_classes: int | None,
                  first: int = 0) -> None:
    """One clear error for targets a detector cannot learn from: labels must lie in ``first``..num_classes-1
    (``first=1``: 0 is the background class; ``num_classes=None``: labels are not checked)."""
    if targets is None:
        raise DataError("targets are needed for the loss (training mode): one dict of 'boxes' and 'labels' per image")
    if len(targets) != n_images:
        raise DataError(f"{n_images} images but {len(targets)} targets")
    for i, t in enumerate(targets):
        if "boxes" not in t or "labels" not in t:
            raise DataError(f"target {i} lacks 'boxes' or 'labels' (has {sorted(t)})")
        boxes = as_xyxy(t["boxes"])
        if boxes.dim() != 2 or boxes.shape[-1] != 4:
            raise DataError(f"target {i}: boxes must have shape (N, 4), got {tuple(boxes.shape)}")
        if len(t["labels"]) != len(boxes):
            raise DataError(f"target {i}: {len(boxes)} boxes but {len(t['labels'])} labels")
        bad = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
        if bad.any():
            raise DataError(f"target {i}: box {boxes[bad][0].tolist()} has no positive width and height")
        labels = torch.as_tensor(t["labels"])
        if len(labels) and num_classes is not None and (labels.min() < first or labels.max() >= num_classes):
            note = " (0 is background)" if first == 1 else ""
            raise DataError(f"target {i}: labels must lie in {first}..{num_classes - 1}{note}, "
                            f"got {labels.min().item()}..{labels.max().item()}")


def normalized_targets(targets: Sequence[dict[str, Tensor]], sizes: Sequence[tuple[int, int]]
                       ) -> tuple[Tensor, Tensor, Tensor]:
    """All objects of a batch at once: (image index (M,), XYXY boxes in [0, 1] of their image (M, 4), labels (M,))."""
    boxes = [as_xyxy(t["boxes"]).float() for t in targets]
    device = boxes[0].device if boxes else torch.device("cpu")
    scale = torch.tensor([[w, h, w, h] for h, w in sizes], dtype=torch.float32, device=device)
    counts = torch.tensor([len(b) for b in boxes], device=device)
    image = torch.repeat_interleave(torch.arange(len(boxes), device=device), counts)
    xyxy = (torch.cat(boxes) / scale[image]).clamp(0, 1) if len(image) else torch.zeros(0, 4, device=device)
    labels = torch.cat([torch.as_tensor(t["labels"], device=device).long() for t in targets])
    return image, xyxy, labels


def postprocess(boxes: Tensor, scores: Tensor, sizes: Sequence[tuple[int, int]], score_thresh: float = 0.01,
                nms_thresh: float = 0.5, detections_per_img: int = 100, first_class: int = 0) -> list[dict[str, Tensor]]:
    """Detections of a batch from every box's class scores, all images in one NMS call.

    ``boxes`` (N, A, 4) XYXY in [0, 1], ``scores`` (N, A, C): each (box, class) pair scoring above ``score_thresh``
    is a candidate; non-maximum suppression at IoU ``nms_thresh`` runs per image and class (one
    ``batched_nms`` with the key image x C + class), and the best ``detections_per_img`` stay. Boxes are clipped to
    the image and returned in its pixels; classes below ``first_class`` are never reported.
    """
    n, _, c = scores.shape
    scale = torch.tensor([[w, h, w, h] for h, w in sizes], dtype=boxes.dtype, device=boxes.device)
    boxes = boxes.clamp(0, 1) * scale[:, None]
    if first_class:
        scores = scores.clone()
        scores[..., :first_class] = 0
    image, anchor, label = (scores > score_thresh).nonzero(as_tuple=True)
    return nms_per_image(image, boxes[image, anchor], scores[image, anchor, label], label, n, c, nms_thresh,
                         detections_per_img)


def nms_per_image(image: Tensor, boxes: Tensor, scores: Tensor, labels: Tensor, n_images: int, num_classes: int,
                  nms_thresh: float, detections_per_img: int) -> list[dict[str, Tensor]]:
    """Candidates of a whole batch (``image`` index, XYXY ``boxes``, ``scores``, ``labels``) -> per image, NMS per
    class at ``nms_thresh`` (one ``batched_nms`` keyed image x C + class) and the best ``detections_per_img``,
    sorted by score."""
    keep = batched_nms(boxes, scores, image * num_classes + labels, nms_thresh)  # sorted by score, descending
    order = torch.sort(image[keep], stable=True).indices  # by image, scores still descending within each
    keep = keep[order]
    kept_image = image[keep]
    counts = torch.bincount(kept_image, minlength=n_images)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(keep), device=keep.device) - starts[kept_image]
    keep = keep[rank < detections_per_img]
    per_image = torch.bincount(image[keep], minlength=n_images).tolist()
    return [{"boxes": b, "scores": s, "labels": l}
            for b, s, l in zip(boxes[keep].split(per_image), scores[keep].split(per_image), labels[keep].split(per_image))]
