"""Tasks tell the one Trainer what a loss and a metric are; the loop itself never changes.

A task has ``loss(model, images, targets) -> (loss, logs)`` for a training step and
``evaluate(model, images, targets) -> {name: sum}`` plus ``"count"`` for validation, whose sums are
reduced over batches (and processes) and divided by the count.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ClassificationTask:
    """Cross-entropy on class indices or on soft targets (mixup/cutmix), with optional label smoothing."""

    def __init__(self, label_smoothing: float = 0.0) -> None:
        self.label_smoothing = label_smoothing

    def loss(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        logits = model(images)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.label_smoothing)
        hard = targets.argmax(1) if targets.ndim == 2 else targets
        return loss, {"acc": (logits.argmax(1) == hard).float().mean()}

    @torch.no_grad()
    def evaluate(self, model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = model(images).float()
        out = {
            "loss": F.cross_entropy(logits, targets, reduction="sum"),
            "acc": (logits.argmax(1) == targets).sum().float(),
            "count": torch.tensor(float(len(targets)), device=logits.device),
        }
        if logits.shape[1] > 5:
            top5 = logits.topk(5, dim=1).indices
            out["top5"] = (top5 == targets[:, None]).any(1).sum().float()
        return out
