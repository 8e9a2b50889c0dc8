"""Pieces shared by the transformer-era backbone reproductions (vit, deit, swin, swinv2, convnext): the
synthetic data, one training run through the Trainer, and a bar chart of test accuracies."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import ShapesDataset
from ..train import TrainConfig, Trainer


def scenes(split: str, size: int, image_size: int, scale: tuple[float, float], preset: str = "medium", seed: int = 0,
           transform: Any = None) -> ShapesDataset:
    return ShapesDataset(split, size=size, image_size=image_size, scale=scale, preset=preset, seed=seed, transform=transform)


def params_m(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


def fit(model: nn.Module, train: torch.utils.data.Dataset, test: torch.utils.data.Dataset, out: Path, name: str,
        task: Any = None, train_eval: torch.utils.data.Dataset | None = None, **config: Any) -> list[dict[str, Any]]:
    """Train ``model`` with ``TrainConfig(**config)`` (quiet, logged under ``out/runs/name``); the history's
    rows carry ``val_acc`` on ``test`` and, with ``train_eval``, ``train_eval_acc`` on training samples."""
    def score_train(trainer: Trainer, row: dict[str, Any]) -> None:
        if "val_acc" in row:
            row["train_eval_acc"] = trainer.evaluate(train_eval)["acc"]

    cfg = TrainConfig(log_every=10**9, **config)
    callbacks = [score_train] if train_eval is not None else []
    return Trainer(model, train, test, cfg, task=task, out=out / "runs" / name, quiet=True, callbacks=callbacks).fit()


def bar_chart(out: Path, filename: str, labels: list[str], values: list[float], title: str, ylabel: str = "test accuracy (%)",
              colors: list[str] | None = None) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4.5, 1.3 * len(labels)), 3.6))
    bars = ax.bar(range(len(values)), values, color=colors or [f"C{i}" for i in range(len(values))])
    for bar, v in zip(bars, values):
        ax.text(bar.get_x() + bar.get_width() / 2, v, f"{v:.1f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(labels)), labels, rotation=15 if len(labels) > 4 else 0, fontsize=8)
    ax.set(ylabel=ylabel, title=title)
    ax.set_ylim(min(values) - 10 if min(values) > 10 else 0, min(100, max(values) + 8))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / filename, dpi=110)
    plt.close(fig)
    return filename
