"""Pieces shared by the transformer-era backbone reproductions (vit, deit, swin, swinv2, convnext): the data,
a step-based schedule, one training run through the Trainer, and a bar chart of test accuracies.

Why the transformer miniatures use the real 8x8 digits rather than the synthetic scenes: on rotated,
randomly coloured polygons a ViT/DeiT/Swin of this size trained from scratch sits near chance for hundreds
of steps (a 2-layer width-128 ViT reached 38% after 96k fresh 16x16 scenes; timm's own ViT and a plain
PyTorch loop behave the same), so a CPU budget of minutes cannot train it. On digits the same models
reach about 90% in ~600 steps, so their comparisons measure models that have learned."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..data import DigitsDataset, ShapesDataset
from ..errors import unknown
from ..train import TrainConfig, Trainer


def dataset(name: str, split: str, size: int | None, image_size: int, seed: int = 0, transform: Any = None,
            **knobs: Any) -> DigitsDataset | ShapesDataset:
    """``digits`` (the real 8x8 handwritten digits, resized to ``image_size``; ``size`` keeps the first images of
    the seeded split, ``None`` all of them) or ``shapes`` (synthetic scenes; ``knobs`` such as ``scale`` apply
    to them only)."""
    if name == "digits":
        ds = DigitsDataset(split, image_size=image_size, seed=seed, transform=transform)
        if size is not None:
            ds.images, ds.labels = ds.images[:size], ds.labels[:size]
        return ds
    if name == "shapes":
        return ShapesDataset(split, size=size, image_size=image_size, seed=seed, transform=transform, **knobs)
    raise unknown("dataset", name, ("digits", "shapes"))


class CropFlip:
    """Random crop of the padded image back to its size, and optionally a random horizontal flip. The padding
    is ``fill`` per channel: for a normalised dataset, the value of a black pixel (``background(dataset)``),
    so that a shifted image shows more background rather than a frame of mean-intensity pixels."""

    def __init__(self, pad: int, flip: bool, fill: tuple[float, ...] = (0.0,)) -> None:
        self.pad, self.flip = pad, flip
        self.fill = torch.tensor(fill).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = torch.nn.functional.pad(x - self.fill, (self.pad,) * 4) + self.fill
        i, j = torch.randint(0, 2 * self.pad + 1, (2,)).tolist()
        x = x[:, i:i + h, j:j + w]
        return x.flip(-1) if self.flip and torch.rand(()) < 0.5 else x


def background(ds: DigitsDataset | ShapesDataset) -> tuple[float, ...]:
    """The normalised value of a zero-intensity pixel, per channel."""
    return tuple(-m / s for m, s in zip(ds.mean, ds.std))


def params_m(model: nn.Module) -> float:
    return sum(p.numel() for p in model.parameters()) / 1e6


class Repeated(torch.utils.data.Dataset):
    """``dataset`` ``times`` over (sample ``i`` is ``dataset[i % len(dataset)]``), so that an epoch of a small set
    is many steps long; other attributes (``transform``, ``num_classes``, ...) are the wrapped dataset's."""

    def __init__(self, dataset: torch.utils.data.Dataset, times: int) -> None:
        self.dataset, self.times = dataset, times

    def __len__(self) -> int:
        return len(self.dataset) * self.times

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index % len(self.dataset)]

    def __getattr__(self, name: str) -> Any:
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


def fit(model: nn.Module, train: torch.utils.data.Dataset, test: torch.utils.data.Dataset, out: Path, name: str,
        steps: int, batch_size: int, evals: int = 1, warmup: float = 0.1, task: Any = None,
        train_eval: torch.utils.data.Dataset | None = None, **config: Any) -> list[dict[str, Any]]:
    """Train ``model`` for about ``steps`` optimizer steps of ``batch_size`` with ``TrainConfig(**config)`` and a
    linear warmup over the first ``warmup`` fraction of the steps (quiet, logged under ``out/runs/name``).

    The budget is cut into ``evals`` trainer epochs, each followed by an evaluation; a small training set is
    repeated within an epoch to fill it (the trainer checkpoints at every epoch end, which would otherwise
    dominate the run time of a tiny set). Each history row carries ``passes`` (epochs over ``train``),
    ``val_acc`` on ``test`` and, with ``train_eval``, ``train_eval_acc`` on training samples."""
    times = max(1, math.ceil(steps * batch_size / (evals * len(train))))

    def annotate(trainer: Trainer, row: dict[str, Any]) -> None:
        row["passes"] = trainer.step * batch_size / len(train)
        if train_eval is not None and "val_acc" in row:
            row["train_eval_acc"] = trainer.evaluate(train_eval)["acc"]

    cfg = TrainConfig(epochs=evals, batch_size=batch_size, warmup_epochs=warmup * evals, eval_every=1,
                      log_every=10**9, **config)
    return Trainer(model, Repeated(train, times), test, cfg, task=task, out=out / "runs" / name, quiet=True,
                   callbacks=[annotate]).fit()


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
