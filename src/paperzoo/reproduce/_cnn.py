"""Shared pieces of the CNN-backbone reproductions: synthetic-scene data, one training run through the
``Trainer``, and the bar chart most of their reports draw. Not a reproduction itself (leading underscore)."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import ShapesDataset
from ..train import TrainConfig, Trainer


@dataclass
class Run:
    name: str
    model: nn.Module
    history: list[dict[str, Any]]
    seconds: float

    @property
    def acc(self) -> float:
        return 100 * self.history[-1]["val_acc"]

    @property
    def params_m(self) -> float:
        return sum(p.numel() for p in self.model.parameters()) / 1e6


def shapes(image_size: int, train_size: int, test_size: int, preset: str = "medium", seed: int = 0,
           scale: tuple[float, float] = (0.4, 0.8), **knobs: Any) -> tuple[ShapesDataset, ShapesDataset]:
    """Training and test scenes (8 shape classes) with the same knobs and disjoint seeds."""
    data = dict(image_size=image_size, preset=preset, seed=seed, scale=scale, **knobs)
    return ShapesDataset("train", size=train_size, **data), ShapesDataset("test", size=test_size, **data)


def train(name: str, model: nn.Module, train_data: Any, test_data: Any, out: Path, *, epochs: int, batch_size: int = 64,
          lr: float = 0.1, weight_decay: float = 5e-5, warmup_epochs: float = 1.0, seed: int = 0, **overrides: Any) -> Run:
    """One run: SGD with momentum 0.9, linear warmup then cosine decay (unless ``overrides`` say otherwise)."""
    trainer_kw = {k: overrides.pop(k) for k in ("task", "optimizer", "scheduler", "batch_transform", "callbacks")
                  if k in overrides}
    cfg = TrainConfig(model=name, epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9,
                      weight_decay=weight_decay, warmup_epochs=warmup_epochs, seed=seed, channels_last=True,
                      log_every=10**9, **overrides)
    t0 = time.perf_counter()
    history = Trainer(model, train_data, test_data, cfg, out=out / "runs" / name, quiet=True, **trainer_kw).fit()
    return Run(name, model, history, time.perf_counter() - t0)


def bar_chart(labels: list[str], values: list[float], out: Path, filename: str, title: str, ylabel: str,
              errors: list[float] | None = None, colors: list[str] | None = None) -> str:
    """A labelled bar chart (value printed on each bar); returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(labels) + 1.5), 3.8))
    bars = ax.bar(range(len(labels)), values, yerr=errors, capsize=4, color=colors or [f"C{i}" for i in range(len(labels))])
    for bar, v in zip(bars, values):
        ax.annotate(f"{v:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()), ha="center", va="bottom", fontsize=9)
    ax.set_xticks(range(len(labels)), labels, rotation=15, ha="right", fontsize=9)
    lo = min(v - (e if errors else 0) for v, e in zip(values, errors or [0] * len(values)))
    ax.set_ylim(max(0.0, lo - 10), min(100.0, max(values) + 5) if ylabel.endswith("(%)") else None)
    ax.set(title=title, ylabel=ylabel)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / filename, dpi=110)
    plt.close(fig)
    return filename


def curves_chart(runs: list[Run], out: Path, filename: str, title: str) -> str:
    """Test accuracy per epoch of several runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8))
    for run in runs:
        ax.plot([r["epoch"] for r in run.history], [100 * r["val_acc"] for r in run.history], "o-", ms=3, label=run.name)
    ax.set(title=title, xlabel="epoch", ylabel="test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / filename, dpi=110)
    plt.close(fig)
    return filename


def flip_shift(max_shift: int) -> Callable[[torch.Tensor, Any, torch.Generator], tuple[torch.Tensor, Any]]:
    """A batch augmentation: random horizontal flips and translations of up to ``max_shift`` pixels
    (reflect-padded), drawn from the trainer's checkpointed generator."""

    def transform(images: torch.Tensor, targets: Any, generator: torch.Generator) -> tuple[torch.Tensor, Any]:
        b, _, h, w = images.shape
        flip = torch.rand(b, generator=generator) < 0.5
        images = torch.where(flip.view(-1, 1, 1, 1).to(images.device), images.flip(3), images)
        if max_shift > 0:
            padded = torch.nn.functional.pad(images, (max_shift,) * 4, mode="reflect")
            dy, dx = torch.randint(0, 2 * max_shift + 1, (2, b, 1), generator=generator).to(images.device)
            rows = (dy + torch.arange(h, device=images.device))[:, None, :, None]
            cols = (dx + torch.arange(w, device=images.device))[:, None, None, :]
            batch = torch.arange(b, device=images.device)[:, None, None, None]
            channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
            images = padded[batch, channel, rows, cols]
        return images.contiguous(memory_format=torch.channels_last), targets

    return transform
