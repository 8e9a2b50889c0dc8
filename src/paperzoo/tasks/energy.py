"""The contrastive energy objective of EBMs for continual learning (Li et al., 2020, Eq. 5-6).

For a batch with labels y_1..y_B, the negatives of each sample are the classes present in that batch only:
loss = mean_i [E(x_i, y_i) + log sum_{y in C_B} exp(-E(x_i, y))], C_B = set(y_1..y_B). Classes absent from the
batch (the old tasks' classes, in class-incremental learning) get no gradient at all. ``all_classes=True`` is the
ablation that contrasts with every class, i.e. a softmax over all outputs. Prediction: minimum energy over all
classes (the model returns -E); the metrics are the classification task's.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import register_task
from .classification import ClassificationTask


def batch_classes(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K,) bool: which classes occur in the batch (the negatives' set C_B)."""
    return torch.zeros(num_classes, dtype=torch.bool, device=labels.device).index_fill_(0, labels, True)


def contrastive_energy_loss(energies: torch.Tensor, labels: torch.Tensor, all_classes: bool = False) -> torch.Tensor:
    """Eq. 5-6 on (B, K) energies: -log softmax(-E) of the true label over the batch's classes (or all classes)."""
    logits = -energies
    if not all_classes:
        logits = logits.masked_fill(~batch_classes(labels, energies.shape[1])[None, :], float("-inf"))
    return torch.nn.functional.cross_entropy(logits, labels)


@register_task("energy")
class EnergyTask(ClassificationTask):
    """Energy-based classification with the in-batch contrastive energy (the model gives -E for all classes)."""

    def __init__(self, all_classes: bool = False) -> None:
        super().__init__()
        self.all_classes = all_classes

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> EnergyTask:
        return cls()

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, labels = batch
        energies = -model(images)
        loss = contrastive_energy_loss(energies.float(), labels, self.all_classes)
        return loss, {"acc": (energies.argmin(1) == labels).float().mean()}
