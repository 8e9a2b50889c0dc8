"""RandAugment in miniature: accuracy over the (N, M) grid.

Cubuk et al. (2019) replace a searched augmentation policy by two integers: apply N operations, chosen
uniformly from 14, each at the global magnitude M. Accuracy depends smoothly on (N, M), so a small grid
search on the target task suffices (their Fig. 2-3), and the best setting beats the baseline
augmentation. We train the same small ResNet on few real handwritten digits with no augmentation and
with RandAugment (``randaugment.n``, ``randaugment.m``, applied per sample with the Trainer's seeded
randomness) over a grid of N and M, from several seeds; the grid point is chosen on the validation digits
and judged on the test digits.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..models.classification.resnet import CifarResNet
from ._kit import Data, accuracy, beats, fit, mean, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("A grid over RandAugment's two parameters (N operations at magnitude M) finds settings that beat training "
         "without augmentation, with accuracy varying smoothly over the grid.")


@dataclass
class Config:
    depth: int = 8
    data: Data = field(default_factory=lambda: Data("digits", image_size=16, train_size=150, test_size=None))
    steps: int = 250
    batch_size: int = 32
    lr: float = 0.1
    weight_decay: float = 5e-4
    warmup_fraction: float = 0.05
    ns: tuple[int, ...] = (1, 2)
    ms: tuple[float, ...] = (3.0, 9.0, 15.0)
    seeds: tuple[int, ...] = (0, 1, 2)


SMOKE = dict(data=dict(train_size=64, test_size=64), steps=2, ns=(1,), ms=(9.0,), seeds=(0, 1))
FULL = dict(depth=20, data=dict(train_size=None), steps=4000, ns=(1, 2, 3), ms=(5.0, 10.0, 15.0, 20.0))


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    val = cfg.data.validation()

    def arm(n: int, m: float):
        def one(seed: int):
            r = fit(f"ra_n{n}_m{m:g}", seeded(seed, lambda: CifarResNet(cfg.depth, num_classes=train.num_classes,
                                                                        in_chans=train.in_chans)),
                    train, test, seed=seed, steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr,
                    weight_decay=cfg.weight_decay, warmup_fraction=cfg.warmup_fraction,
                    overrides=[f"randaugment.n={n}", f"randaugment.m={m}"] if n else [])
            r.metrics["val_acc_digits"] = accuracy(r.model, val)
            return r
        return one

    cells = [(0, 0.0)] + [(n, m) for n in cfg.ns for m in cfg.ms]
    runs = run_arms({c: arm(*c) for c in cells}, cfg.seeds)
    acc = {c: [r.acc for r in rs] for c, rs in runs.items()}
    val_acc = {c: mean([r.metrics["val_acc_digits"] for r in rs]) for c, rs in runs.items()}
    grid = cells[1:]
    best = max(grid, key=lambda c: val_acc[c])
    decision = beats(acc[best], acc[(0, 0.0)], a_name=f"RandAugment N={best[0]}, M={best[1]:g}", b_name="no augmentation",
                     metric="test acc (%)", claim="the grid point chosen on validation beats no augmentation on test acc (%)")
    rows = [{"N": n or 0, "M": f"{m:g}" if n else "-", "val acc (%)": val_acc[(n, m)], "test acc (%)": spread(acc[(n, m)]),
             "test acc per seed": per_seed(acc[(n, m)]),
             "final train loss": mean([r.metrics["train_loss"] for r in runs[(n, m)]]),
             "chosen": "yes" if (n, m) == best else ""} for n, m in cells]
    beat = sum(mean(acc[c]) > mean(acc[(0, 0.0)]) for c in grid)
    discussion = (f"{beat} of {len(grid)} grid points beat the baseline on mean test accuracy; grid range "
                  f"{min(mean(acc[c]) for c in grid):.1f}-{max(mean(acc[c]) for c in grid):.1f}% against "
                  f"{mean(acc[(0, 0.0)]):.1f}% without augmentation.")
    figure = plots.heatmap(out, "grid.png", {"RandAugment": [[mean(acc[(n, m)]) for m in cfg.ms] for n in cfg.ns]},
                           xticks=[f"{m:g}" for m in cfg.ms], yticks=[str(n) for n in cfg.ns], xlabel="magnitude M",
                           ylabel="operations N", title=f"mean test accuracy (%), {len(cfg.seeds)} seeds; no augmentation: "
                           f"{mean(acc[(0, 0.0)]):.1f}")
    return Report(
        slug="randaugment", claim=CLAIM,
        setup=(f"ResNet-{cfg.depth} (CIFAR design) on {cfg.data.describe(train, test)}; {cfg.steps} steps of batch "
               f"{cfg.batch_size} (SGD momentum 0.9, lr {cfg.lr}, {100 * cfg.warmup_fraction:g}% warmup, cosine, weight decay "
               f"{cfg.weight_decay}), seeds {list(cfg.seeds)} (a seed fixes initialisation and data order, the same for every "
               f"cell), without augmentation and with RandAugment for N in {list(cfg.ns)} and M in {list(cfg.ms)} (the "
               "paper's 14 operations; M = 10 is AutoAugment's maximum range; colour operations do nothing to grey digits). "
               f"The grid point is chosen by mean accuracy on the {len(val)} validation digits."),
        columns=["N", "M", "val acc (%)", "test acc (%)", "test acc per seed", "final train loss", "chosen"], rows=rows,
        decision=decision, discussion=discussion,
        differences=[
            f"A small ResNet on {len(train)} real digits instead of Wide-ResNet/EfficientNet on CIFAR/ImageNet; a "
            f"{len(cfg.ns)} x {len(cfg.ms)} grid instead of the paper's wider sweep.",
            "The baseline has no augmentation at all (the paper's baseline has flips and crops).",
        ],
        figures=[figure], results={"grid": {f"N={n},M={m:g}": v for (n, m), v in acc.items()}, "chosen": list(best)},
    )
