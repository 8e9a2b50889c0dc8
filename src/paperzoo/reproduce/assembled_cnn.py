"""Assembled techniques in miniature: network tweaks stacked one by one (the paper's Table 3 ablation).

Starting from a narrow ResNet-50, the Assemble-ResNet tweaks are added cumulatively: ResNet-D (deep stem,
average-pool shortcuts), selective-kernel convs (two 3x3 paths, r = 2), anti-aliased strided blocks (the SK
conv at stride 1, then a 3x3 binomial blur with stride 2) and finally Big-Little stages (``assembled.py``).
The regularisers of the paper's second half (label smoothing, mixup, DropBlock, AutoAugment, distillation)
are training options reproduced elsewhere; every network here gets the same plain recipe, from several
seeds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from ..models.classification.assembled import ASSEMBLED_SK, BigLittleResNet
from ..models.classification.resnet import Bottleneck, ResNet
from ..models.classification.sknet import SelectiveKernelBottleneck
from ._kit import Data, Recipe, all_of, at_least, beats, fit, mean, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("Network tweaks that each help a little (ResNet-D, selective kernels, anti-aliasing, Big-Little) keep "
         "helping when stacked: Assemble-ResNet-50's accuracy rises step by step (Table 3).")

STEPS = ("ResNet", "+ D", "+ SK", "+ AA", "+ BL")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data(image_size=32, train_size=6000, test_size=1000))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=5, batch_size=64, lr=0.05, weight_decay=5e-5,
                                                          warmup_epochs=1.0))
    widths: tuple[int, ...] = (16, 32, 64, 128)
    layers: tuple[int, ...] = (2, 2, 2, 1)
    sk_min_units: int = 8  # L of the SK attention, scaled with the widths (32 at full width)
    steps_needed: int = 3  # of the 4 stacking steps, at least this many must help
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(train_size=64, test_size=32), recipe=dict(epochs=1), widths=(8, 8, 8, 8), seeds=(0,))
FULL = dict(data=dict(image_size=224, scale=(0.25, 0.6), train_size=50000, test_size=10000),
            recipe=dict(epochs=90, batch_size=256), widths=(64, 128, 256, 512), layers=(3, 4, 6, 3), sk_min_units=32,
            seeds=(0, 1, 2))


def build(step: int, cfg: Config, num_classes: int) -> nn.Module:
    """The network after ``step`` tweaks (0 = plain ResNet ... 4 = Assemble-ResNet with Big-Little)."""
    sk = dict(ASSEMBLED_SK, rd_min=cfg.sk_min_units)
    if step == 4:
        return BigLittleResNet(cfg.layers, num_classes=num_classes, channels=cfg.widths, stem_width=cfg.widths[0],
                               sk_kwargs=sk, aa_layer="blur", zero_init_last=False)
    kw: dict = dict(num_classes=num_classes, channels=cfg.widths, stem_width=cfg.widths[0])
    if step >= 1:
        kw.update(stem_type="deep", stem_width=cfg.widths[0] // 2, avg_down=True)
    if step >= 2:
        kw.update(block_args=dict(sk_kwargs=sk))
    if step >= 3:
        kw.update(aa_layer="blur")
    return ResNet(SelectiveKernelBottleneck if step >= 2 else Bottleneck, cfg.layers, **kw)


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()

    def arm(step: int):
        return lambda seed: fit(f"step{step}", seeded(seed, lambda: build(step, cfg, train.num_classes)), train, test,
                                seed=seed, recipe=cfg.recipe)

    runs = run_arms({label: arm(step) for step, label in enumerate(STEPS)}, cfg.seeds)
    acc = {label: [r.acc for r in rs] for label, rs in runs.items()}
    m = "test acc (%)"
    steps = [beats(acc[b], acc[a], a_name=b.lstrip("+ "), b_name=a, metric=m, claim=f"adding {b.lstrip('+ ')} to {a} helps")
             for a, b in zip(STEPS, STEPS[1:])]
    decision = all_of([beats(acc[STEPS[-1]], acc[STEPS[0]], a_name="Assemble-ResNet (all four)", b_name="ResNet", metric=m),
                       at_least(cfg.steps_needed, steps, f"at least {cfg.steps_needed} of the 4 stacking steps help")],
                      "the tweaks add up when stacked")
    rows = [{"network": label, "params (M)": runs[label][0].params_m, "test acc (%)": spread(acc[label]),
             "per seed": per_seed(acc[label]),
             "gain over previous": mean(acc[label]) - mean(acc[STEPS[i - 1]]) if i else 0.0} for i, label in enumerate(STEPS)]
    figure = plots.bars(out, "stacking.png", acc, "Stacking network tweaks (cumulative)")
    return Report(
        slug="assembled-cnn",
        claim=CLAIM,
        setup=(f"A narrow ResNet-50 (blocks {cfg.layers}, widths {cfg.widths}) with the tweaks added cumulatively: "
               f"ResNet-D; selective-kernel bottlenecks (two 3x3 paths, d = max(C/2, {cfg.sk_min_units})); anti-aliased "
               "strided blocks (3x3 binomial blur after the SK conv, and after the stem's max pool); Big-Little stages "
               "(alpha 2, beta 4, the authors' layout, with its own stem and 3x3 average-pool shortcuts). Trained on "
               f"{cfg.data.describe(train, test)}: {cfg.recipe.describe()}, seeds {list(cfg.seeds)} (a seed fixes "
               "initialisation and data order)."),
        columns=["network", "params (M)", "test acc (%)", "per seed", "gain over previous"],
        rows=rows,
        decision=decision,
        differences=[
            "A narrow ResNet-50 on 32x32 synthetic scenes instead of ResNet-50 on ImageNet (600 epochs with "
            "regularisers and distillation in the paper).",
            "The ResNet-based AA step also blurs the stem's max pool (as resnetblur does); the authors' Big-Little "
            "network blurs only the strided blocks.",
            "Single steps of a point or two are within this miniature's seed-to-seed spread.",
        ],
        figures=[figure],
        results={"accuracy": acc},
    )
