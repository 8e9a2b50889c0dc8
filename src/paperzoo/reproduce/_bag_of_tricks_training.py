"""The training half of "Bag of Tricks" (He et al., 2018) as a ladder: each trick added in turn.

The paper's Tables 4 and 6 start from a baseline (step decay, no warmup, weight decay on every parameter,
BN gammas initialised to 1) and add, one at a time, linear warmup, zero-gamma, no bias decay, cosine
decay, label smoothing and mixup, reporting top-1 accuracy after each. ``run_training_ladder`` trains
the same network once per rung through the Trainer, with the same seed, and returns the table and a
figure; the bag-of-tricks reproduction (reproduce/bag_of_tricks.py, with the ResNet-B/C/D tweaks) calls it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from ..train.tricks import PAPER_LABEL_SMOOTHING, PAPER_MIXUP_ALPHA, PAPER_WARMUP_FRACTION
from ._training import cifar_resnet, fit, plt, scenes


@dataclass
class LadderConfig:
    depth: int = 14  # CIFAR ResNet used when no model_fn is given
    image_size: int = 16
    train_size: int = 4000
    test_size: int = 1000
    epochs: int = 16
    batch_size: int = 64
    lr: float = 0.2  # a high rate, as after the paper's linear scaling to a large batch
    weight_decay: float = 5e-4
    seed: int = 0


LADDER_SMOKE = dict(depth=8, train_size=96, test_size=32, epochs=1)


def ladder(epochs: int) -> list[tuple[str, list[str]]]:
    """(rung name, cumulative config overrides): the baseline, then one trick more per rung."""
    rungs = [
        ("baseline (step decay)", ["schedule=step", "milestones=0.25,0.5,0.75", "decay_bias_and_norm=true"]),
        ("+ linear warmup", [f"warmup_epochs={max(PAPER_WARMUP_FRACTION * epochs, 0.5):g}"]),
        ("+ zero gamma", ["zero_gamma=true"]),
        ("+ no bias decay", ["decay_bias_and_norm=false"]),
        ("+ cosine decay", ["schedule=cosine"]),
        ("+ label smoothing", [f"label_smoothing={PAPER_LABEL_SMOOTHING}"]),
        ("+ mixup", [f"mixup.alpha={PAPER_MIXUP_ALPHA}"]),
    ]
    out, acc = [], []
    for name, overrides in rungs:
        acc = acc + overrides
        out.append((name, list(acc)))
    return out


def run_training_ladder(out: Path, cfg: LadderConfig | None = None,
                        model_fn: Callable[[int], nn.Module] | None = None) -> dict[str, Any]:
    """Train one model per rung; returns {"rows": [...], "figure": PNG name, "setup": text}."""
    cfg = cfg or LadderConfig()
    train, test = scenes(cfg.image_size, cfg.train_size, cfg.test_size, seed=cfg.seed)
    rows = []
    for name, overrides in ladder(cfg.epochs):
        model = model_fn(train.num_classes) if model_fn else cifar_resnet(cfg.depth, train.num_classes, cfg.seed)
        history, _ = fit(model, train, test, None, overrides, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                         weight_decay=cfg.weight_decay, seed=cfg.seed)
        accs = [100 * r["val_acc"] for r in history]
        rows.append({"refinement": name, "test acc (%)": accs[-1], "mean of last 3 epochs (%)": sum(accs[-3:]) / len(accs[-3:])})
    for prev, row in zip([None, *rows], rows):
        row["change (points)"] = 0.0 if prev is None else row["test acc (%)"] - prev["test acc (%)"]
    return {"rows": rows, "figure": _plot(rows, out),
            "setup": (f"{'the given model' if model_fn else f'ResNet-{cfg.depth} (CIFAR design)'} trained {len(rows)} times from "
                      f"the same initialisation on {cfg.train_size} synthetic {cfg.image_size}x{cfg.image_size} scenes for "
                      f"{cfg.epochs} epochs (SGD momentum 0.9, lr {cfg.lr}, batch {cfg.batch_size}, weight decay "
                      f"{cfg.weight_decay}); each rung adds one trick to the previous rung's recipe.")}


def _plot(rows: list[dict], out: Path) -> str:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6.4, 3.6))
    ax.plot(range(len(rows)), [r["test acc (%)"] for r in rows], marker="o")
    ax.set_xticks(range(len(rows)), [r["refinement"] for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="test accuracy (%)", title="bag of tricks: training refinements added in turn")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "training_ladder.png", dpi=110)
    pyplot.close(fig)
    return "training_ladder.png"
