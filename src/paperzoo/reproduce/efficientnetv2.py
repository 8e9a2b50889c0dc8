"""EfficientNetV2 in miniature: progressive learning with adaptive regularisation (sec. 5, Algorithm 1).

Training is split into M stages; stage i uses image size S_i and regularisation Phi_i, both interpolated
linearly from (S_0, Phi_0) to (S_e, Phi_e), so that early epochs run on small, cheap images with weak
regularisation. Here a width- and depth-reduced EfficientNetV2-S is trained twice with one recipe: at the
final size with the final regularisation throughout, and progressively. ``Progressive`` implements the
schedule for the one ``Trainer``: as a batch transform it resizes each batch to the stage's size
(``F.interpolate``, antialiased) and applies the stage's mixup; as an epoch-end callback it moves to the
next stage and sets the network's dropout. Both runs are evaluated at the final size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..data.mixing import MixUp
from ..models.classification.efficientnetv2 import S, EfficientNetV2
from ..train import Trainer
from ._kit import (Data, FlipShift, Recipe, about_equal, all_of, beats, fit, macs, mean, per_seed, plots, run_arms, seeded,
                   small_input_init, spread)
from .report import Report

CLAIM = ("Progressive learning - small images with weak regularisation early, growing together to the final size "
         "and strength (Algorithm 1) - trains faster than training at the final size throughout, for the same or "
         "better accuracy (Tan & Le, sec. 5 and Table 12).")


@dataclass(frozen=True)
class Stage:
    size: int
    dropout: float
    mixup: float  # mixup alpha; 0 = off


def stages(start: int, end: int, dropout: tuple[float, float], mixup: tuple[float, float], count: int) -> list[Stage]:
    """Algorithm 1's linear interpolation of image size and regularisation over ``count`` stages (sizes
    rounded to multiples of 4)."""
    def lerp(a: float, b: float, i: int) -> float:
        return a + (b - a) * i / max(count - 1, 1)

    return [Stage(4 * round(lerp(start, end, i) / 4), lerp(*dropout, i), lerp(*mixup, i)) for i in range(count)]


class Progressive:
    """The per-stage image size and regularisation, as a batch transform plus an epoch-end callback."""

    def __init__(self, model: nn.Module, plan: list[Stage], epochs: int, num_classes: int) -> None:
        self.model, self.plan, self.num_classes = model, plan, num_classes
        self.epochs_per_stage = -(-epochs // len(plan))  # ceil
        self.augment = {s.size: FlipShift(max(1, s.size // 8)) for s in plan}
        self.enter(0)

    def enter(self, epoch: int) -> None:
        self.stage = self.plan[min(epoch // self.epochs_per_stage, len(self.plan) - 1)]
        self.model.drop_rate = self.stage.dropout

    def __call__(self, images: torch.Tensor, targets: torch.Tensor,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.stage.size
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        images, targets = self.augment[size](images, targets, generator)
        if self.stage.mixup > 0:
            images, targets = MixUp(self.stage.mixup, self.num_classes)(images, targets, generator)
        return images, targets

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        row.update(image_size=self.stage.size, dropout=self.stage.dropout, mixup=self.stage.mixup)
        self.enter(row["epoch"])  # the number of epochs done: the next epoch's index


@dataclass
class Config:
    width: float = 0.25  # EfficientNetV2-S (Table 4) with every width and depth scaled
    depth: float = 0.25
    output_stride: int = 32
    start_size: int = 24
    num_stages: int = 4
    dropout: tuple[float, float] = (0.1, 0.3)
    mixup: tuple[float, float] = (0.0, 0.2)
    data: Data = field(default_factory=lambda: Data(image_size=48, train_size=3000, test_size=2000))  # image_size: the final size
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=12, batch_size=64, lr=0.03, nesterov=True, weight_decay=1e-5,
                                                          warmup_epochs=1.0))
    tolerance: float = 1.5  # "similar accuracy": progressive at most this many points below fixed-size
    speedup: float = 1.1  # "faster": fixed-size training time at least this multiple of progressive
    seeds: tuple[int, ...] = (0, 1, 2)


SMOKE = dict(start_size=16, num_stages=2, data=dict(image_size=24, train_size=128, test_size=64),
             recipe=dict(epochs=2, batch_size=32), seeds=(0,))
FULL = dict(width=1.0, depth=1.0, start_size=128, data=dict(image_size=300, train_size=50000, test_size=5000), seeds=(0,),
            recipe=dict(epochs=100, batch_size=128))


def _training_gmacs(history: list[dict[str, Any]], model: nn.Module, train_size: int, default_size: int) -> float:
    """Forward multiply-adds of all training images, per epoch at that epoch's size (backward ~2x more)."""
    cost: dict[int, float] = {}
    for row in history:
        size = row.get("image_size", default_size)
        cost.setdefault(size, macs(model, size))
    return sum(cost[row.get("image_size", default_size)] for row in history) * train_size / 1e9


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    size = cfg.data.image_size
    final = Stage(size, cfg.dropout[1], cfg.mixup[1])
    plans = {"fixed size": [final], "progressive": stages(cfg.start_size, size, cfg.dropout, cfg.mixup, cfg.num_stages)}

    def arm(label: str):
        def one(seed: int):
            model = seeded(seed, lambda: small_input_init(EfficientNetV2(S, 24, width=cfg.width, depth=cfg.depth,
                                                                         output_stride=cfg.output_stride,
                                                                         num_classes=train.num_classes)))
            schedule = Progressive(model, plans[label], cfg.recipe.epochs, train.num_classes)
            return fit(label.split()[0], model, train, test, seed=seed, recipe=cfg.recipe, batch_transform=schedule,
                       callbacks=[schedule.on_epoch_end])
        return one

    runs = run_arms({label: arm(label) for label in plans}, cfg.seeds)  # seeds outer: load changes hit both alike
    acc = {label: [r.acc for r in rs] for label, rs in runs.items()}
    seconds = {label: [sum(row["time"] for row in r.history) for r in rs] for label, rs in runs.items()}
    gmacs = {label: _training_gmacs(rs[0].history, rs[0].model, len(train), size) for label, rs in runs.items()}
    fixed, prog = plans
    decision = all_of([
        beats(seconds[prog], seconds[fixed], a_name="progressive", b_name="fixed size", lower_is_better=True,
              margin=(1 - 1 / cfg.speedup) * mean(seconds[fixed]), metric="training time (s)",
              claim=f"progressive learning trains at least {cfg.speedup:g}x faster"),
        about_equal(acc[prog], acc[fixed], tolerance=cfg.tolerance, one_sided=True, a_name="progressive",
                    b_name="fixed size", metric="test acc (%)"),
    ], "progressive learning is faster at similar accuracy")
    rows = [{"training": label, "image sizes": " -> ".join(str(s.size) for s in plan),
             "dropout": " -> ".join(f"{s.dropout:.2g}" for s in plan), "mixup alpha": " -> ".join(f"{s.mixup:.2g}" for s in plan),
             "params (M)": runs[label][0].params_m, "training GMACs (fwd)": gmacs[label],
             "training time (s)": spread(seconds[label]), "test accuracy (%)": spread(acc[label]),
             "per seed": per_seed(acc[label])}
            for label, plan in plans.items()]
    discussion = (f"Forward multiply-adds of training: progressive {gmacs[prog] / gmacs[fixed]:.2f}x the fixed-size run's "
                  "(the load-independent measure of the work saved); wall-clock times on a shared CPU vary by some 10%.")
    last = plans[prog][-1]
    k = next((i for i, row in enumerate(runs[prog][0].history) if row["image_size"] == last.size), 0)  # first final-size epoch
    if k > 0:
        at = {label: mean([100 * r.history[k - 1]["val_acc"] for r in runs[label]]) for label in plans}
        discussion += (f" After epoch {k}, the last one on images smaller than {last.size} px, the progressive network "
                       f"scored {at[prog]:.1f}% at the final size against {at[fixed]:.1f}% for fixed-size training: "
                       "features learned on smaller images transfer only partly to the larger test images.")
    figures = [plots.curves(out, "progressive_vs_fixed_time.png", {n: [r.history for r in rs] for n, rs in runs.items()},
                            "Test accuracy against training time", x="time"),
               plots.curves(out, "progressive_vs_fixed_epochs.png", {n: [r.history for r in rs] for n, rs in runs.items()},
                            "Test accuracy per epoch")]
    r = cfg.recipe
    return Report(
        slug="efficientnetv2",
        claim=CLAIM,
        setup=(f"EfficientNetV2-S (Table 4) at width x{cfg.width:g} and depth x{cfg.depth:g}, trained each way on "
               f"{cfg.data.describe(train, test)}: {r.describe()}, flips and shifts of 1/8 of the side, seeds "
               f"{list(cfg.seeds)}; at {size} px with dropout {cfg.dropout[1]:g} and mixup alpha {cfg.mixup[1]:g} "
               f"throughout, or in {cfg.num_stages} equal stages whose size, dropout and mixup grow linearly from "
               f"({cfg.start_size} px, {cfg.dropout[0]:g}, {cfg.mixup[0]:g}) (batches resized with antialiased bilinear "
               f"interpolation). Test accuracy at {size} px; training time is the sum of the epochs' training loops "
               "(evaluation excluded)."),
        columns=["training", "image sizes", "dropout", "mixup alpha", "params (M)", "training GMACs (fwd)",
                 "training time (s)", "test accuracy (%)", "per seed"],
        rows=rows,
        decision=decision,
        discussion=discussion,
        differences=[
            f"A width x{cfg.width:g}, depth x{cfg.depth:g} EfficientNetV2-S on {cfg.start_size}-{size} px synthetic scenes "
            "for a few epochs instead of EfficientNetV2-S/M/L at 128-380 px on ImageNet for 350 epochs; at these sizes "
            "per-batch overheads weigh more, so time falls less than pixels do.",
            "Regularisation is dropout and mixup; the paper also grows RandAugment's magnitude, left out because "
            "per-image augmentation would dominate CPU time here.",
            "The scenes' objects fill 50-90% of the image, so their size in pixels doubles from the first stage to "
            "the last; ImageNet training (random-resized crops) shows objects at many scales, which makes features "
            "transfer across image sizes more easily, and the paper's last stage alone is 87 epochs long.",
            "The fixed-size baseline uses the final (strongest) regularisation throughout, as a network trained at "
            "the final size would; both networks start with zeroed last BN in residual blocks and a N(0, 0.01) "
            "classifier (``small_input_init``).",
        ],
        figures=figures,
        results={"accuracy": acc, "training_seconds": seconds, "training_gmacs": gmacs},
    )
