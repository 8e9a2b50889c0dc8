"""ResNet in miniature: the degradation experiment of the paper's CIFAR-10 figure (Fig. 6).

Plain nets of 20 and 56 layers and their residual twins (identical but for the option-A shortcuts) are
trained with the same recipe on synthetic scenes. The paper's finding: the deeper plain net has *higher
training error* than the shallower one (degradation, an optimisation problem since the deeper net could
copy the shallower one), while with shortcuts the deeper net has lower error.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..data import ShapesDataset
from ..registry import create_model
from ..train import TrainConfig, Trainer
from .report import Report

CLAIM = ("Deeper plain networks have higher training error than shallower ones (the degradation problem), "
         "while residual networks of the same depths get better with depth (He et al., Fig. 6).")


@dataclass
class Config:
    depths: tuple[int, ...] = (20, 56)
    image_size: int = 16
    scale: tuple[float, float] = (0.6, 0.9)  # object size / image side: large enough to tell shapes apart at 16 px
    train_size: int = 4000
    test_size: int = 1000
    train_eval_size: int = 1000  # training samples scored in eval mode after each epoch
    preset: str = "medium"
    epochs: int = 16
    batch_size: int = 64
    lr: float = 0.1
    warmup_epochs: float = 2.0
    weight_decay: float = 1e-4
    seed: int = 0
    channels_last: bool = True


SMOKE = dict(depths=(20, 32), train_size=256, test_size=64, train_eval_size=64, epochs=1)
FULL = dict(image_size=32, scale=(0.25, 0.6), train_size=50000, test_size=10000, epochs=160, batch_size=128,
            warmup_epochs=1.0, depths=(20, 32, 44, 56, 110))


def _train_error(subset: torch.utils.data.Dataset):
    def callback(trainer: Trainer, row: dict[str, Any]) -> None:
        row["train_eval_acc"] = trainer.evaluate(subset)["acc"]

    return callback


def run(cfg: Config, out: Path) -> Report:
    data = dict(image_size=cfg.image_size, preset=cfg.preset, seed=cfg.seed, scale=cfg.scale)
    train = ShapesDataset("train", size=cfg.train_size, **data)
    test = ShapesDataset("test", size=cfg.test_size, **data)
    train_eval = torch.utils.data.Subset(train, range(min(cfg.train_eval_size, len(train))))
    curves: dict[str, list[dict[str, Any]]] = {}
    rows = []
    for kind in ("plain", "resnet"):
        for depth in cfg.depths:
            name = f"{kind}{depth}_cifar"
            torch.manual_seed(cfg.seed)
            model = create_model(name, num_classes=train.num_classes)
            tcfg = TrainConfig(model=name, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, momentum=0.9,
                               weight_decay=cfg.weight_decay, decay_bias_and_norm=True, schedule="step",
                               warmup_epochs=cfg.warmup_epochs,
                               milestones=(0.5, 0.75), seed=cfg.seed, channels_last=cfg.channels_last, log_every=10**9)
            history = Trainer(model, train, test, tcfg, out=out / "runs" / name, quiet=True,
                              callbacks=[_train_error(train_eval)]).fit()
            curves[name] = history
            last = history[-1]
            rows.append({"model": name, "depth": depth, "shortcuts": kind == "resnet",
                         "params (M)": sum(p.numel() for p in model.parameters()) / 1e6,
                         "train error (%)": 100 * (1 - last["train_eval_acc"]),
                         "test error (%)": 100 * (1 - last["val_acc"]),
                         "final train loss": last["train_loss"]})

    err = {r["model"]: r["train error (%)"] for r in rows}
    shallow, deep = min(cfg.depths), max(cfg.depths)
    plain_gap = err[f"plain{deep}_cifar"] - err[f"plain{shallow}_cifar"]
    res_gap = err[f"resnet{deep}_cifar"] - err[f"resnet{shallow}_cifar"]
    degraded = plain_gap > 0
    res_better = res_gap < 0
    held = degraded and res_better
    verdict = (
        f"Training error of plain-{deep} minus plain-{shallow}: {plain_gap:+.1f} points "
        f"({'degradation reproduced' if degraded else 'no degradation seen'}). "
        f"ResNet-{deep} minus ResNet-{shallow}: {res_gap:+.1f} points "
        f"({'the deeper residual net is better' if res_better else 'the deeper residual net is not better'}). "
        f"Test error follows: " + ", ".join(f"{r['model']} {r['test error (%)']:.1f}%" for r in rows) + "."
    )
    figure = _plot(curves, cfg, out)
    return Report(
        slug="resnet",
        claim=CLAIM,
        setup=(f"{len(rows)} networks (plain and residual, depths {', '.join(map(str, cfg.depths))}; the paper's "
               f"CIFAR architectures with 16-32-64 filters and option-A shortcuts) trained from the same seed on "
               f"{cfg.train_size} synthetic scenes ({cfg.image_size}x{cfg.image_size}, preset '{cfg.preset}', 8 shape "
               f"classes) for {cfg.epochs} epochs: SGD, momentum 0.9, lr {cfg.lr} after a {cfg.warmup_epochs:g}-epoch "
               f"linear warmup, divided by 10 at 50% and 75% of training, weight decay {cfg.weight_decay}, batch "
               f"{cfg.batch_size}. Training error is measured in eval "
               f"mode on {cfg.train_eval_size} training images after every epoch; test error on {cfg.test_size} "
               "held-out scenes."),
        columns=["model", "depth", "shortcuts", "params (M)", "final train loss", "train error (%)", "test error (%)"],
        rows=rows,
        held=held,
        verdict=verdict,
        differences=[
            f"Synthetic {cfg.image_size}x{cfg.image_size} scenes with 8 classes instead of CIFAR-10's 32x32 photos, "
            "and no crop/flip augmentation (objects are already randomly placed).",
            f"{cfg.epochs} epochs of {cfg.train_size // cfg.batch_size} steps instead of 64k iterations; the paper's "
            "curves separate early, which is what a CPU budget can show.",
            "All four nets warm up linearly over the first epochs; the paper warms up only ResNet-110 (at lr 0.01). "
            "Without it, lr 0.1 from the first step made ResNet-56 diverge within our few hundred steps.",
            "One seed per network; the paper also reports single runs for these curves.",
        ],
        figures=[figure],
        results={"train_error_gap_plain": plain_gap, "train_error_gap_resnet": res_gap,
                 "curves": {k: [{kk: vv for kk, vv in r.items() if kk != "kind"} for r in v] for k, v in curves.items()}},
    )


def _plot(curves: dict[str, list[dict[str, Any]]], cfg: Config, out: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, kind, title in zip(axes, ("plain", "resnet"), ("plain networks", "ResNets")):
        for i, depth in enumerate(cfg.depths):
            h = curves[f"{kind}{depth}_cifar"]
            ep = [r["epoch"] for r in h]
            color = f"C{i}"
            ax.plot(ep, [100 * (1 - r["train_eval_acc"]) for r in h], "-", color=color, label=f"{kind}-{depth} train")
            ax.plot(ep, [100 * (1 - r["val_acc"]) for r in h], "--", color=color, label=f"{kind}-{depth} test")
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("error (%)")
    fig.suptitle("Degradation in miniature: thin = train (eval mode), dashed = test")
    fig.tight_layout()
    fig.savefig(out / "error_curves.png", dpi=110)
    plt.close(fig)
    return "error_curves.png"
