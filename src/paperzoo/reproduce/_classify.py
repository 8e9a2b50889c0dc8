"""Plumbing shared by the classification-backbone reproductions: the synthetic-scenes data, one training
run through the ``Trainer`` with a fixed recipe, model cost, and the accuracy-curves figure."""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data import ShapesDataset
from ..train import TrainConfig, Trainer


@dataclass
class Recipe:
    """The training recipe every model of one reproduction shares."""

    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    weight_decay: float = 5e-4
    warmup_epochs: float = 1.0
    optimizer: str = "sgd"
    label_smoothing: float = 0.0
    augment: bool = True  # random flips and shifts of up to 4 pixels
    seed: int = 0


def shapes(image_size: int, train_size: int, test_size: int, preset: str = "medium",
           scale: tuple[float, float] = (0.5, 0.9), seed: int = 0) -> tuple[ShapesDataset, ShapesDataset]:
    """Training and held-out synthetic scenes (8 shape classes)."""
    kw = dict(image_size=image_size, preset=preset, seed=seed, scale=scale)
    return ShapesDataset("train", size=train_size, **kw), ShapesDataset("test", size=test_size, **kw)


def flip_shift(max_shift: int = 4) -> Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """The usual CIFAR-style augmentation as a batch transform: random horizontal flips and translations of
    up to ``max_shift`` pixels (reflection at the borders), drawn from the trainer's generator."""

    def transform(images: torch.Tensor, targets: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        n, _, h, w = images.shape
        flip = torch.rand(n, generator=generator) < 0.5
        shift = torch.randint(-max_shift, max_shift + 1, (n, 2), generator=generator).float()
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = torch.where(flip, -1.0, 1.0)
        theta[:, 1, 1] = 1.0
        theta[:, 0, 2] = 2 * shift[:, 0] / w
        theta[:, 1, 2] = 2 * shift[:, 1] / h
        grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
        out = F.grid_sample(images, grid, mode="nearest", padding_mode="reflection", align_corners=False)
        return out.contiguous(memory_format=torch.channels_last), targets

    return transform


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs(model: nn.Module, image_size: int, in_chans: int = 3) -> float:
    """Multiply-accumulates of one image's forward pass (conv and linear layers)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, in_chans, image_size, image_size))
    model.train(was_training)
    return counter.get_total_flops() / 2


def match_cost(target: float, candidates: Sequence[float], cost: Callable[[float], float]) -> float:
    """The candidate whose ``cost`` is closest to ``target`` on a log scale, for a cost that does not decrease
    along the sorted ``candidates`` (a width, depth or resolution against its MACs): a bisection, so only
    a few networks are built."""
    seen: dict[float, float] = {}

    def cached(c: float) -> float:
        if c not in seen:
            seen[c] = cost(c)
        return seen[c]

    lo, hi = 0, len(candidates) - 1
    while lo < hi:  # the first candidate whose cost reaches the target (or the last one)
        mid = (lo + hi) // 2
        if cached(candidates[mid]) < target:
            lo = mid + 1
        else:
            hi = mid
    near = candidates[max(lo - 1, 0): lo + 1]
    return min(near, key=lambda c: abs(math.log(cached(c) / target)))


def small_input_init(model: nn.Module, std: float = 0.01) -> nn.Module:
    """Initialisation that lets ImageNet-style mobile networks train on 16-48 px inputs, applied to every
    network of a comparison alike: the last BatchNorm of each block with an identity shortcut (``has_skip``)
    starts at zero, so residual blocks begin as identities (deep stacks of BN over 1x1-4x4 feature maps
    otherwise amplify batch noise into exploding gradients at these sizes), and the classifier is drawn from
    N(0, std) (the TF initialisation U(+-1/sqrt(classes)) gives logits of several units with 8 classes)."""
    for block in model.modules():
        if getattr(block, "has_skip", False):
            norms = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
            nn.init.zeros_(norms[-1].weight)
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear):
        nn.init.normal_(classifier.weight, 0.0, std)
        nn.init.zeros_(classifier.bias)
    return model


def fit(model: nn.Module, train: torch.utils.data.Dataset, test: torch.utils.data.Dataset, recipe: Recipe,
        out: Path, name: str, batch_transform: Callable | None = None,
        callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = ()) -> dict[str, Any]:
    """Train ``model`` with ``recipe`` (cosine schedule after a linear warmup); return its epoch history,
    final test accuracy and wall time."""
    torch.manual_seed(recipe.seed)
    tcfg = TrainConfig(model=name, epochs=recipe.epochs, batch_size=recipe.batch_size, optimizer=recipe.optimizer,
                       lr=recipe.lr, momentum=0.9, nesterov=recipe.optimizer == "sgd", weight_decay=recipe.weight_decay,
                       warmup_epochs=recipe.warmup_epochs, label_smoothing=recipe.label_smoothing, schedule="cosine",
                       seed=recipe.seed, channels_last=True, log_every=10**9)
    if batch_transform is None and recipe.augment:
        batch_transform = flip_shift()
    t0 = time.perf_counter()
    history = Trainer(model, train, test, tcfg, out=out / "runs" / name, quiet=True, batch_transform=batch_transform,
                      callbacks=list(callbacks)).fit()
    return {"history": history, "acc": history[-1]["val_acc"], "time": time.perf_counter() - t0}


def plot_curves(curves: dict[str, list[dict[str, Any]]], out: Path, filename: str, title: str,
                x_key: str = "epoch") -> str:
    """Test accuracy per epoch (or per cumulative second with ``x_key="time"``) of several runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, (label, history) in enumerate(curves.items()):
        xs = [r["epoch"] for r in history] if x_key == "epoch" else _cumulative([r["time"] for r in history])
        ax.plot(xs, [100 * r["val_acc"] for r in history], "-o", ms=3, color=f"C{i}", label=label)
    ax.set(xlabel="epoch" if x_key == "epoch" else "training time (s)", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / filename, dpi=110)
    plt.close(fig)
    return filename


def plot_accuracy_vs_macs(series: dict[str, list[tuple[float, float, str]]], out: Path, filename: str,
                          title: str) -> str:
    """Test accuracy against multiply-adds: one colour per series of (MMACs, accuracy %, label) points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    for i, (name, points) in enumerate(series.items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], "-o" if len(points) > 1 else "o", color=f"C{i}", label=name)
        for x, y, text in points:
            ax.annotate(text, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set(xlabel="multiply-adds per image (M)", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / filename, dpi=110)
    plt.close(fig)
    return filename


def _cumulative(values: Sequence[float]) -> list[float]:
    total, out = 0.0, []
    for v in values:
        total += v
        out.append(total)
    return out
