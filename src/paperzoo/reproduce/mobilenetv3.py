"""MobileNetV3 in miniature: h-swish vs ReLU (sec. 5.2, Table 5) and squeeze-and-excite on vs off (sec. 5.3).

A width-reduced MobileNetV3-Small (Table 2) is trained three times with one recipe and several seeds: as
the paper builds it (ReLU in the early rows, h-swish in the rows marked HS, SE in the rows marked SE), with
ReLU everywhere (``act_layer="relu"``), and without any SE block (``se=False``). The paper's network
should beat both ablations at almost the same multiply-adds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..models.classification.mobilenetv3 import MobileNetV3
from ._kit import (Data, FlipShift, Recipe, all_of, beats, fit, macs, mean, per_seed, plots, run_arms, seeded,
                   small_input_init, spread)
from .report import Report

CLAIM = ("h-swish in the deeper layers is more accurate than ReLU at almost no extra cost (Howard et al., sec. 5.2 "
         "and Table 5), and squeeze-and-excite in the bottlenecks adds accuracy for few multiply-adds (sec. 5.3).")

# label: (act_layer override, SE on)
VARIANTS = {"h-swish + SE (paper)": (None, True), "ReLU + SE": ("relu", True), "h-swish, no SE": (None, False)}


@dataclass
class Config:
    width: float = 0.5
    data: Data = field(default_factory=lambda: Data(image_size=32, train_size=4000, test_size=2000))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=10, batch_size=64, lr=0.03, nesterov=True, weight_decay=1e-5,
                                                          warmup_epochs=1.0))
    max_shift: int = 4
    seeds: tuple[int, ...] = (0, 1, 2)


SMOKE = dict(data=dict(train_size=128, test_size=64), recipe=dict(epochs=1, batch_size=32), seeds=(0,))
FULL = dict(width=1.0, data=dict(image_size=224, train_size=50000, test_size=5000), seeds=(0, 1, 2),
            recipe=dict(epochs=90, batch_size=128))


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    augment = FlipShift(cfg.max_shift)

    def arm(act: str | None, se: bool):
        return lambda seed: fit(f"{act or 'hswish'}_{'se' if se else 'nose'}", seeded(seed, lambda: small_input_init(
            MobileNetV3(small=True, width=cfg.width, act_layer=act, se=se, num_classes=train.num_classes))), train, test,
            seed=seed, recipe=cfg.recipe, batch_transform=augment)

    runs = run_arms({label: arm(*v) for label, v in VARIANTS.items()}, cfg.seeds)
    acc = {label: [r.acc for r in rs] for label, rs in runs.items()}
    cost = {label: macs(rs[0].model, cfg.data.image_size) / 1e6 for label, rs in runs.items()}
    paper, relu, no_se = VARIANTS
    m = "test acc (%)"
    decision = all_of([beats(acc[paper], acc[relu], a_name="h-swish", b_name="ReLU", metric=m),
                       beats(acc[paper], acc[no_se], a_name="with SE", b_name="without SE", metric=m)],
                      "h-swish beats ReLU and SE adds accuracy")
    rows = [{"network": label, "params (M)": runs[label][0].params_m, "MMACs": cost[label],
             "test accuracy (%)": spread(acc[label]), "per seed": per_seed(acc[label]),
             "mean final train loss": mean([r.metrics["train_loss"] for r in runs[label]]),
             "time (s)": sum(r.seconds for r in runs[label])} for label in VARIANTS]
    discussion = f"The SE blocks cost {cost[paper] - cost[no_se]:.3f} MMACs of {cost[paper]:.2f}."
    figure = plots.bars(out, "hswish_se_ablation_acc.png", acc, f"MobileNetV3-Small x{cfg.width:g}: h-swish and SE ablations")
    curves = plots.curves(out, "hswish_se_ablation.png", {n: [r.history for r in rs] for n, rs in runs.items()},
                          f"MobileNetV3-Small x{cfg.width:g}: h-swish and SE ablations")
    return Report(
        slug="mobilenetv3",
        claim=CLAIM,
        setup=(f"MobileNetV3-Small (Table 2) at width multiplier {cfg.width:g} in three versions (the paper's; ReLU in "
               f"place of every h-swish; no SE blocks), trained on {cfg.data.describe(train, test)}: "
               f"{cfg.recipe.describe()}, {augment.describe()}, seeds {list(cfg.seeds)} (a seed fixes initialisation and "
               "data order)."),
        columns=["network", "params (M)", "MMACs", "test accuracy (%)", "per seed", "mean final train loss", "time (s)"],
        rows=rows,
        decision=decision,
        discussion=discussion,
        differences=[
            f"MobileNetV3-Small at width x{cfg.width:g} on {cfg.data.image_size}x{cfg.data.image_size} synthetic scenes "
            "with 8 classes instead of Large/Small at 224x224 on ImageNet; the paper's h-swish ablation (Table 5) is on "
            "MobileNetV3-Large, and it compares h-swish placements and latency as well, which a CPU miniature cannot.",
            f"{cfg.recipe.epochs} epochs of SGD on a cosine schedule instead of RMSprop for hundreds of epochs, so the "
            "networks are far from converged.",
            f"At {cfg.data.image_size}x{cfg.data.image_size} the SE blocks pool feature maps of 8x8 down to 1x1 pixels, "
            "whose receptive fields already cover the image, so the global context SE adds is small compared with 224x224.",
            "All versions start with the last BN of each residual block at zero and a N(0, 0.01) classifier "
            "(``small_input_init``), which mobile networks need to train at 32x32 in this budget.",
        ],
        figures=[figure, curves],
        results={"accuracy": acc},
    )
