"""Class-incremental learning: splits of a labelled dataset into tasks of disjoint classes, and the two numbers
continual-learning papers report — average accuracy and forgetting — from the accuracy matrix.

``acc[t][i]`` is the accuracy on task i's test data after training on tasks 0..t (predicting among every class
seen so far). Average accuracy = mean_i acc[T-1][i]; forgetting (Chaudhry et al., 2018) = mean over i < T-1 of
max_{t < T-1} acc[t][i] - acc[T-1][i].
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from ..errors import ConfigError


def class_splits(num_classes: int, per_task: int) -> list[tuple[int, ...]]:
    """Classes 0..K-1 in order, ``per_task`` to a task (split MNIST: 10 classes, 2 per task -> 5 tasks)."""
    if per_task < 1 or num_classes % per_task:
        raise ConfigError(f"class_splits: {num_classes} classes do not split into tasks of {per_task}")
    return [tuple(range(s, s + per_task)) for s in range(0, num_classes, per_task)]


class ClassSubset(Dataset):
    """The samples of ``dataset`` whose label is in ``classes`` (its other attributes pass through)."""

    def __init__(self, dataset: Dataset, classes: Sequence[int], labels: Sequence[int] | torch.Tensor | None = None) -> None:
        self.dataset = dataset
        labels = torch.as_tensor(labels if labels is not None else [int(dataset[i][1]) for i in range(len(dataset))])
        self.indices = torch.nonzero(torch.isin(labels, torch.tensor(list(classes)))).flatten().tolist()
        self.classes_in_task = tuple(classes)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int):
        return self.dataset[self.indices[i]]

    def __getattr__(self, name: str):
        if name in ("dataset", "indices"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def average_accuracy(acc: Sequence[Sequence[float]]) -> float:
    """Mean accuracy over all tasks after the last one."""
    last = acc[-1]
    return sum(last) / len(last)


def forgetting(acc: Sequence[Sequence[float]]) -> float:
    """Mean drop from each earlier task's best accuracy to its final accuracy (the last task excluded)."""
    t = len(acc)
    if t < 2:
        return 0.0
    drops = [max(acc[s][i] for s in range(i, t - 1)) - acc[t - 1][i] for i in range(t - 1)]
    return sum(drops) / len(drops)
