"""Dense targets through torchvision's transforms.v2, and batching of images of different sizes.

A dense sample is ``(image, target)`` with the target's spatial parts as tv_tensors (``BoundingBoxes`` in XYXY
pixels, ``Mask``, ``KeyPoints``), so every v2 transform — flips, crops, resizes, affine warps, RandAugment's
geometric operations — moves boxes, masks and keypoints with the image. After a transform, ``sanitize`` keeps
the target consistent: boxes clamped to the image, objects that left it (or shrank to nothing) dropped with all
their per-object entries, keypoints outside the image marked not labelled, areas recomputed.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

# Per-object entries of a dense target: indexed together when objects are dropped.
OBJECT_KEYS = ("boxes", "labels", "masks", "keypoints", "visibility", "area", "iscrowd")


def _rewrap(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return tv_tensors.wrap(value, like=like) if isinstance(like, tv_tensors.TVTensor) else value


def sanitize(target: dict[str, Any], min_size: float = 1.0) -> dict[str, Any]:
    """Clamp boxes to the image; drop objects whose box is narrower or lower than ``min_size`` pixels or whose
    mask became empty; mark keypoints outside the image as not labelled (visibility 0); recompute ``area`` (the
    mask's pixel count where there are masks, else the box's)."""
    boxes = target.get("boxes")
    if not isinstance(boxes, tv_tensors.BoundingBoxes):
        return target
    boxes = TF.clamp_bounding_boxes(boxes)
    keep = ((boxes[:, 2] - boxes[:, 0]) >= min_size) & ((boxes[:, 3] - boxes[:, 1]) >= min_size)
    masks = target.get("masks")
    if masks is not None and len(masks):
        keep &= masks.flatten(1).any(1)
    out = dict(target)
    out["boxes"] = boxes
    for key in OBJECT_KEYS:
        if key in out and isinstance(out[key], torch.Tensor):
            out[key] = _rewrap(out[key][keep], out[key])
    if "keypoints" in out and "visibility" in out:
        kp, (h, w) = out["keypoints"], out["keypoints"].canvas_size
        inside = (kp[..., 0] >= 0) & (kp[..., 0] < w) & (kp[..., 1] >= 0) & (kp[..., 1] < h)
        out["visibility"] = torch.where(inside, out["visibility"], torch.zeros_like(out["visibility"]))
    if "area" in out:
        b = out["boxes"]
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        if "masks" in out:
            area = out["masks"].flatten(1).sum(1).to(torch.float32)
        out["area"] = area.as_subclass(torch.Tensor).to(torch.float32)
    return out


class Sanitize(v2.Transform):
    """``sanitize`` as a v2 transform, to end a pipeline: ``v2.Compose([..., Sanitize()])``."""

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        image, target = sample
        return image, sanitize(target)


def detection_train_transforms(flip: float = 0.5) -> v2.Compose:
    """The usual detection augmentation for the built-in scenes: a random horizontal flip (boxes, masks and
    keypoints follow), then ``sanitize``."""
    return v2.Compose([v2.RandomHorizontalFlip(flip), Sanitize()])


def pad_images(images: Sequence[torch.Tensor], size_divisible: int = 1, fill: float = 0.0) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Batch CHW images of different sizes: pad each at the bottom and right to the largest height and width
    (rounded up to a multiple of ``size_divisible``). Returns the batch and each image's (height, width)."""
    sizes = [tuple(int(s) for s in im.shape[-2:]) for im in images]
    h = max(s[0] for s in sizes)
    w = max(s[1] for s in sizes)
    h = -(-h // size_divisible) * size_divisible
    w = -(-w // size_divisible) * size_divisible
    batch = images[0].new_full((len(images), *images[0].shape[:-2], h, w), fill)
    for i, im in enumerate(images):
        batch[i, ..., : im.shape[-2], : im.shape[-1]].copy_(im)
    return batch, sizes
