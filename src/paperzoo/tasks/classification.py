"""Image classification: cross-entropy on class indices or soft targets (mixup/CutMix), label smoothing,
and accuracy / top-5 / mean loss as the metrics."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import SumEvaluator, Task, register_task


def stack_classification(samples: Sequence[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, Any]:
    """Stack images; integer targets become one tensor, tensor targets are stacked, others kept as a list."""
    images = torch.stack([s[0] for s in samples])
    targets = [s[1] for s in samples]
    if isinstance(targets[0], (int, np.integer)):
        return images, torch.tensor([int(t) for t in targets])
    if isinstance(targets[0], torch.Tensor):
        return images, torch.stack(targets)
    return images, targets


class AccuracyEvaluator(SumEvaluator):
    """Mean cross-entropy, top-1 accuracy and (with more than 5 classes) top-5 accuracy over a split."""

    def update(self, logits: torch.Tensor, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        targets = batch[1]
        logits = logits.float()
        self.add("loss", F.cross_entropy(logits, targets, reduction="sum"))
        self.add("acc", (logits.argmax(1) == targets).sum())
        if logits.shape[1] > 5:
            self.add("top5", (logits.topk(5, dim=1).indices == targets[:, None]).any(1).sum())
        self.count += len(targets)


@register_task("classification")
class ClassificationTask(Task):
    """Cross-entropy on class indices or on soft targets (mixup/cutmix), with optional label smoothing."""

    data = "classification"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> ClassificationTask:
        return cls(cfg.label_smoothing)

    def collate(self, samples: Sequence[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, Any]:
        return stack_classification(samples)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, targets = batch
        logits = model(images)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
        hard = targets.argmax(1) if targets.ndim == 2 else targets
        return loss, {"acc": (logits.argmax(1) == hard).float().mean()}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: tuple[torch.Tensor, Any]) -> torch.Tensor:
        return model(batch[0])

    def evaluator(self) -> AccuracyEvaluator:
        return AccuracyEvaluator()
