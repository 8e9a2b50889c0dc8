"""Dense targets through torchvision's transforms.v2, and batching of images of different sizes.

A dense sample is ``(image, target)`` with the target's spatial parts as tv_tensors (``BoundingBoxes`` in XYXY
pixels, ``Mask``, ``KeyPoints``), so every v2 transform — flips, crops, resizes, affine warps, RandAugment's
geometric operations — moves boxes, masks and keypoints with the image. After a transform, ``sanitize`` keeps
the target consistent: boxes clamped to the image, objects that left it (or shrank to nothing) dropped with all
their per-object entries, keypoints outside the image marked not labelled.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

# Per-object entries of a dense target that are plain tensors (masks and keypoints are tv_tensors, which
# SanitizeBoundingBoxes filters by type): indexed together with the boxes when objects are dropped.
OBJECT_KEYS = ("labels", "visibility", "area", "iscrowd")


def _object_fields(inputs: Any) -> tuple[torch.Tensor, ...]:
    """``labels_getter`` of ``SanitizeBoundingBoxes``: the plain per-object tensors of the sample's target."""
    target = next((x for x in (inputs if isinstance(inputs, (tuple, list)) else (inputs,)) if isinstance(x, dict)), None)
    if target is None:
        return ()
    return tuple(target[k] for k in OBJECT_KEYS if isinstance(target.get(k), torch.Tensor))


class SanitizeInstances(v2.SanitizeBoundingBoxes):
    """torchvision's ``SanitizeBoundingBoxes`` for the dense sample format, to end a pipeline: boxes are clamped to
    the image first; objects whose box is narrower or lower than ``min_size`` (or smaller than ``min_area``) are
    dropped together with their labels, masks, keypoints, visibility, area and iscrowd; keypoints outside the image
    become not labelled (visibility 0). ``area`` stays the annotation's own (COCO's convention)."""

    def __init__(self, min_size: float = 1.0, min_area: float = 1.0) -> None:
        super().__init__(min_size=min_size, min_area=min_area, labels_getter=_object_fields)
        self.clamp = v2.ClampBoundingBoxes()

    def forward(self, *inputs: Any) -> Any:
        out = super().forward(self.clamp(*inputs))
        target = next((x for x in (out if isinstance(out, (tuple, list)) else (out,)) if isinstance(x, dict)), None)
        if target is None:
            return out
        kp, vis = target.get("keypoints"), target.get("visibility")
        if isinstance(kp, tv_tensors.KeyPoints) and isinstance(vis, torch.Tensor):
            h, w = kp.canvas_size
            inside = (kp[..., 0] >= 0) & (kp[..., 0] < w) & (kp[..., 1] >= 0) & (kp[..., 1] < h)
            target["visibility"] = torch.where(inside.as_subclass(torch.Tensor), vis, 0)
        return out

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.KeyPoints) and inpt.shape[0] == params["valid"].shape[0]:
            return tv_tensors.wrap(inpt[params["valid"]], like=inpt)
        return super().transform(inpt, params)


def sanitize(target: dict[str, Any], min_size: float = 1.0) -> dict[str, Any]:
    """``SanitizeInstances`` on a target dict alone (what RandAugment calls after its geometric operations)."""
    if not isinstance(target.get("boxes"), tv_tensors.BoundingBoxes):
        return target
    return SanitizeInstances(min_size=min_size)(dict(target))


def detection_train_transforms(flip: float = 0.5) -> v2.Compose:
    """The usual detection augmentation for the built-in scenes: a random horizontal flip (boxes, masks and
    keypoints follow), then ``sanitize``."""
    return v2.Compose([v2.RandomHorizontalFlip(flip), SanitizeInstances()])


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
