"""Semantic segmentation: per-pixel cross-entropy (label 255 ignored), mean IoU and pixel accuracy.

Models follow torchvision's convention: ``model(images)`` gives logits (B, C, H, W) or ``{"out": logits}`` (plus
``"aux"`` for an auxiliary head, weighted 0.5 as torchvision's reference recipe does); logits smaller than the
image are upsampled bilinearly. Images of different sizes are padded into one batch; padded pixels are ignored.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import pad_images
from .base import Task, register_task

IGNORE = 255


def _logits(out: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
    if isinstance(out, dict):
        return out["out"], out.get("aux")
    return out, None


@register_task("segmentation")
class SemanticSegmentationTask(Task):
    """A class per pixel; mean IoU and pixel accuracy."""

    data = "segmentation"
    data_defaults: dict[str, Any] = {"image_size": 64, "min_objects": 1, "max_objects": 3}

    def __init__(self, num_classes: int | None = None, aux_weight: float = 0.5) -> None:
        self.num_classes, self.aux_weight = num_classes, aux_weight

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> SemanticSegmentationTask:
        return cls(num_classes=getattr(data, "num_classes", None))

    def setup(self, trainer) -> None:
        if self.num_classes is None:
            self.num_classes = getattr(trainer.train_data, "num_classes", None)

    def collate(self, samples: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, torch.Tensor]:
        images, _ = pad_images([s[0].as_subclass(torch.Tensor) for s in samples])
        masks, _ = pad_images([s[1]["mask"].as_subclass(torch.Tensor).long() for s in samples], fill=IGNORE)
        return images, masks

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        images, masks = batch
        out, aux = _logits(model(images))

        def ce(logits: torch.Tensor) -> torch.Tensor:
            if logits.shape[-2:] != masks.shape[-2:]:
                logits = F.interpolate(logits, size=masks.shape[-2:], mode="bilinear", align_corners=False)
            return F.cross_entropy(logits.float(), masks, ignore_index=IGNORE)

        main = ce(out)
        logs = {"loss_out": main.detach()}
        if aux is None:
            return main, logs
        extra = ce(aux)
        logs["loss_aux"] = extra.detach()
        return main + self.aux_weight * extra, logs

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        out, _ = _logits(model(batch[0]))
        if out.shape[-2:] != batch[0].shape[-2:]:
            out = F.interpolate(out.float(), size=batch[0].shape[-2:], mode="bilinear", align_corners=False)
        return out.argmax(1)

    def evaluator(self):
        from ..metrics import MeanIoU

        if self.num_classes is None:
            raise ValueError("the segmentation task needs num_classes (from the data or the task's arguments)")
        return MeanIoU(self.num_classes, ignore_index=IGNORE)
