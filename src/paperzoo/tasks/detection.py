"""Object detection, instance segmentation and keypoint detection with torchvision's call convention.

A detector takes a list of CHW images in [0, 1] (of any sizes; it normalises, resizes and batches them
itself): in train mode ``model(images, targets)`` returns a dict of named losses, which are summed; in eval mode
``model.detect(images)`` returns one dict per image with ``boxes`` (XYXY pixels of that image), ``scores``,
``labels`` (and ``masks``, ``keypoints`` for the other two tasks). Metrics are COCO's, by pycocotools: box AP
(``map``, ``map_50``, ``map_75``, ``map_small/medium/large``, ...), mask AP (``mask_map``, ...) and keypoint AP
(``kp_map``, ...; OKS sigmas settable). Crowd regions are left out of the loss and count as "ignore" in AP.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .base import Task, register_task


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside DDP / torch.compile wrappers (whose ``detect`` we call)."""
    from ..weights import _inner

    return _inner(model)[0]


def training_targets(targets: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, torch.Tensor]]:
    """The objects a detector learns from: crowd regions dropped, only ``keys`` kept, tv_tensors unwrapped."""
    out = []
    for t in targets:
        keep = ~t["iscrowd"].bool() if "iscrowd" in t else torch.ones(len(t["labels"]), dtype=torch.bool, device=t["labels"].device)
        out.append({k: t[k].as_subclass(torch.Tensor)[keep] for k in keys if k in t})
    return out


@register_task("detection")
class DetectionTask(Task):
    """Boxes and labels; COCO box AP."""

    data = "detection"
    iou_types: tuple[str, ...] = ("bbox",)
    target_keys: tuple[str, ...] = ("boxes", "labels")
    # built-in scenes for detection: a few objects of several sizes on a 128 px image
    data_defaults: dict[str, Any] = {"image_size": 128, "min_objects": 1, "max_objects": 4, "scale": (0.12, 0.5)}
    # torchvision's detection reference recipe, scaled to a batch of 8 (0.02 for 16 images): SGD, momentum 0.9,
    # weight decay 1e-4 on every parameter but biases and norms, a linear warmup, gradient clipping for safety
    recipe: dict[str, Any] = {"lr": 0.01, "batch_size": 8, "weight_decay": 1e-4, "warmup_epochs": 0.5, "clip_grad": 10.0}

    def collate(self, samples: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
        return [s[0] for s in samples], [s[1] for s in samples]

    def model_targets(self, targets: Sequence[dict[str, Any]]) -> list[dict[str, torch.Tensor]]:
        return training_targets(targets, self.target_keys)

    def loss(self, model: nn.Module, batch: tuple[list[torch.Tensor], list[dict[str, Any]]]) -> tuple[torch.Tensor, dict[str, Any]]:
        images, targets = batch
        losses = model([im.as_subclass(torch.Tensor) for im in images], self.model_targets(targets))
        total = sum(losses.values())
        return total, {k: v.detach() for k, v in losses.items()}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: tuple[list[torch.Tensor], Any]) -> list[dict[str, torch.Tensor]]:
        return unwrap(model).detect([im.as_subclass(torch.Tensor) for im in batch[0]])

    def evaluator(self):
        from ..metrics import CocoEvaluator

        return CocoEvaluator(self.iou_types)


@register_task("instances")
class InstanceSegmentationTask(DetectionTask):
    """Boxes, labels and a mask per object; COCO box and mask AP."""

    data = "instances"
    iou_types = ("bbox", "segm")
    target_keys = ("boxes", "labels", "masks")


@register_task("keypoints")
class KeypointDetectionTask(DetectionTask):
    """Boxes, labels and keypoints per object (torchvision's Keypoint R-CNN convention: targets carry
    ``keypoints`` as (N, P, 3) with visibility, predictions (N, P, 3) and ``keypoints_scores``); COCO keypoint AP
    with OKS sigmas from ``sigmas`` or the training data's ``keypoint_sigmas``."""

    data = "keypoints"
    iou_types = ("keypoints",)
    target_keys = ("boxes", "labels", "keypoints")

    def __init__(self, sigmas: Sequence[float] | None = None) -> None:
        self.sigmas = tuple(sigmas) if sigmas is not None else None

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> KeypointDetectionTask:
        return cls(sigmas=getattr(data, "keypoint_sigmas", None))

    def setup(self, trainer) -> None:
        if self.sigmas is None:
            self.sigmas = getattr(trainer.train_data, "keypoint_sigmas", None)

    def model_targets(self, targets: Sequence[dict[str, Any]]) -> list[dict[str, torch.Tensor]]:
        merged = []
        for t in targets:
            t = dict(t)
            kp = t["keypoints"].as_subclass(torch.Tensor)
            t["keypoints"] = torch.cat([kp, t["visibility"].to(kp.dtype)[..., None]], -1)
            merged.append(t)
        return training_targets(merged, self.target_keys)

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: tuple[list[torch.Tensor], Any]) -> list[dict[str, torch.Tensor]]:
        out = super().predict(model, batch)
        for o in out:
            if o.get("keypoints") is not None and o["keypoints"].shape[-1] == 3:
                o["keypoints"] = o["keypoints"][..., :2]
            if "keypoints_scores" in o:
                o["keypoint_scores"] = o.pop("keypoints_scores")
        return out

    def evaluator(self):
        from ..metrics import CocoEvaluator

        return CocoEvaluator(self.iou_types, kpt_oks_sigmas=self.sigmas)
