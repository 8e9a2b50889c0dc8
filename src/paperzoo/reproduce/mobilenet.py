"""MobileNet in miniature: depthwise-separable vs full convolutions (the paper's Table 4).

The same 28-layer network is built twice at a reduced width: once with the paper's depthwise-separable
layers, once with a full 3x3 convolution in place of each depthwise + pointwise pair ("Conv MobileNet").
Both are trained with one recipe, from several seeds; the claim is about the same accuracy at about 8x
fewer multiply-adds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..models.classification.mobilenet import MobileNetV1
from ._kit import Data, FlipShift, Recipe, about_equal, fit, macs, mean, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("Depthwise-separable convolutions cost about 8-9x fewer multiply-adds than full convolutions for nearly "
         "the same accuracy: 70.6% vs 71.7% ImageNet top-1 at 569M vs 4866M mult-adds (Howard et al., Table 4).")
ARMS = {"MobileNet (depthwise-separable)": False, "Conv MobileNet (full 3x3)": True}


@dataclass
class Config:
    width: float = 0.25
    data: Data = field(default_factory=lambda: Data(image_size=32, train_size=2000, test_size=2000))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=40, batch_size=64, lr=0.1, nesterov=True, weight_decay=4e-5,
                                                          warmup_epochs=1.0))
    max_shift: int = 4
    tolerance: float = 2.0  # "about the same": the accuracies within this many points
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(train_size=128, test_size=64), recipe=dict(epochs=1, batch_size=32))
FULL = dict(width=1.0, data=dict(image_size=224, train_size=50000, test_size=5000), recipe=dict(epochs=90, batch_size=128),
            seeds=(0,))


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    augment = FlipShift(cfg.max_shift)

    def arm(full: bool):
        return lambda seed: fit("full_conv" if full else "separable", seeded(seed, lambda: MobileNetV1(
            cfg.width, full_conv=full, num_classes=train.num_classes)), train, test, seed=seed, recipe=cfg.recipe,
            batch_transform=augment)

    runs = run_arms({label: arm(full) for label, full in ARMS.items()}, cfg.seeds)
    acc = {label: [r.acc for r in rs] for label, rs in runs.items()}
    cost = {label: macs(rs[0].model, cfg.data.image_size) / 1e6 for label, rs in runs.items()}
    sep, full = ARMS
    decision = about_equal(acc[sep], acc[full], tolerance=cfg.tolerance, a_name="separable", b_name="full conv",
                           metric="test acc (%)", claim=f"the separable net's accuracy is within {cfg.tolerance:g} points "
                                                        "of the full-conv net's")
    rows = [{"network": label, "params (M)": runs[label][0].params_m, "MMACs": cost[label],
             "final train loss": mean([r.metrics["train_loss"] for r in runs[label]]), "test accuracy (%)": spread(acc[label]),
             "per seed": per_seed(acc[label]), "time (s)": mean([r.seconds for r in runs[label]])} for label in ARMS]
    ratio = cost[full] / cost[sep]
    discussion = (f"The separable net needs {ratio:.1f}x fewer multiply-adds ({cost[sep]:.2f}M vs {cost[full]:.2f}M per "
                  f"image) and {runs[full][0].params / runs[sep][0].params:.1f}x fewer parameters; the cost ratio depends "
                  "only on the layer shapes (the paper: 8.6x).")
    figure = plots.bars(out, "separable_vs_full_acc.png", acc, f"MobileNet x{cfg.width:g}: separable vs full convolutions")
    curves = plots.curves(out, "separable_vs_full.png", {n: [r.history for r in rs] for n, rs in runs.items()},
                          f"MobileNet x{cfg.width:g}: separable vs full convolutions")
    return Report(
        slug="mobilenet",
        claim=CLAIM,
        setup=(f"MobileNet v1 (Table 1) at width multiplier {cfg.width:g} and the same network with full 3x3 convs, trained "
               f"on {cfg.data.describe(train, test)}: {cfg.recipe.describe()}, {augment.describe()}, seeds "
               f"{list(cfg.seeds)} (a seed fixes initialisation and data order). Multiply-adds per "
               f"{cfg.data.image_size}x{cfg.data.image_size} image."),
        columns=["network", "params (M)", "MMACs", "final train loss", "test accuracy (%)", "per seed", "time (s)"],
        rows=rows,
        decision=decision,
        discussion=discussion,
        differences=[
            f"Width x{cfg.width:g} and {cfg.data.image_size}x{cfg.data.image_size} synthetic scenes with 8 classes instead "
            "of the full network on 224x224 ImageNet; the cost ratio depends only on the layer shapes and matches the paper's.",
            "SGD on a cosine schedule for a few epochs instead of asynchronous RMSprop; no label smoothing or "
            "Inception-style augmentation.",
        ],
        figures=[figure, curves],
        results={"mac_ratio": ratio, "accuracy": acc},
    )
