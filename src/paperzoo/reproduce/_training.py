"""Shared pieces of the training-technique reproductions (section C): data, one training run through the
Trainer, calibration and feature statistics, and plots. Not a reproduction itself (leading underscore)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset, Subset

from ..config import apply_overrides
from ..data import DigitsDataset, ShapesDataset
from ..models.classification.resnet import CifarResNet
from ..train import TrainConfig, Trainer


def scenes(image_size: int = 16, train_size: int = 2000, test_size: int = 1000, preset: str = "medium",
           scale: tuple[float, float] = (0.5, 0.9), seed: int = 0, **knobs: Any) -> tuple[ShapesDataset, ShapesDataset]:
    """Training and test splits of the synthetic scenes (8 shape classes)."""
    kw = dict(image_size=image_size, preset=preset, scale=scale, seed=seed, **knobs)
    return ShapesDataset("train", size=train_size, **kw), ShapesDataset("test", size=test_size, **kw)


class Part(Subset):
    """The first ``n`` samples of a dataset, keeping its attributes (classes, mean, std, transform, ...)."""

    def __init__(self, dataset: Dataset, n: int) -> None:
        super().__init__(dataset, range(min(n, len(dataset))))

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def digits(train_size: int = 400, image_size: int = 16) -> tuple[Dataset, DigitsDataset]:
    """A small training set of real handwritten digits (first ``train_size`` of the 1,257 training images)
    and the 360-image test split: small enough to train to convergence in seconds, hard enough to overfit."""
    return Part(DigitsDataset("train", image_size=image_size), train_size), DigitsDataset("test", image_size=image_size)


def cifar_resnet(depth: int, num_classes: int, seed: int, **kwargs: Any) -> nn.Module:
    """The ResNet paper's CIFAR network of any 6n+2 depth (ResNet-8/14 are shallower than the registered ones)."""
    torch.manual_seed(seed)
    return CifarResNet(depth, num_classes=num_classes, **kwargs)


def train_eval_subset(train: Dataset, n: int = 500) -> Subset:
    return Subset(train, range(min(n, len(train))))


def fit(model: nn.Module, train: Dataset, test: Dataset, out: Path | None, overrides: dict[str, Any] | Sequence[str] = (),
        callbacks: Sequence[Callable] = (), train_subset: Dataset | None = None, batch_transform: Callable | None = None,
        **config: Any) -> tuple[list[dict], Trainer]:
    """Train ``model`` with the one Trainer (``config``: TrainConfig fields; ``overrides``: dotted keys such as
    ``sam.rho``); with ``train_subset`` each epoch's row also gets ``train_eval_acc`` measured in eval mode."""
    cfg = TrainConfig(log_every=10**9, channels_last=True, **config)
    apply_overrides(cfg, overrides)
    hooks = list(callbacks)
    if train_subset is not None:
        hooks.append(lambda trainer, row: row.update(train_eval_acc=trainer.evaluate(train_subset)["acc"]))
    trainer = Trainer(model, train, test, cfg, out=out, quiet=True, callbacks=hooks, batch_transform=batch_transform)
    return trainer.fit(), trainer


@torch.no_grad()
def predictions(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits and labels of ``model`` (eval mode) on ``dataset``."""
    was = model.training
    model.eval()
    logits, labels = [], []
    for start in range(0, len(dataset), batch_size):
        xs, ys = zip(*(dataset[i] for i in range(start, min(start + batch_size, len(dataset)))))
        logits.append(model(torch.stack(xs)).float())
        labels.append(torch.tensor(ys))
    model.train(was)
    return torch.cat(logits), torch.cat(labels)


def calibration(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict[str, float]:
    """Accuracy, negative log-likelihood and expected calibration error (Guo et al., 15 equal-width bins)."""
    prob = logits.softmax(1)
    conf, pred = prob.max(1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    ece = torch.zeros(())
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (conf > lo) & (conf <= hi)
        if inside.any():
            ece += inside.float().mean() * (conf[inside].mean() - correct[inside].mean()).abs()
    return {"acc": float(correct.mean()), "nll": float(F.cross_entropy(logits, labels)), "ece": float(ece),
            "confidence": float(conf.mean())}


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def curves_figure(path: Path, runs: dict[str, list[dict]], keys: Sequence[tuple[str, str]], title: str) -> str:
    """One panel per (row key, axis label); one line per run."""
    pyplot = plt()
    fig, axes = pyplot.subplots(1, len(keys), figsize=(5 * len(keys), 3.6))
    for ax, (key, label) in zip(axes if len(keys) > 1 else [axes], keys):
        for name, history in runs.items():
            rows = [r for r in history if key in r]
            ax.plot([r["epoch"] for r in rows], [r[key] for r in rows], marker=".", label=name)
        ax.set(xlabel="epoch", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot.close(fig)
    return path.name
