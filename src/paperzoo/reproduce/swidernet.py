"""SWideRNet in miniature: trading width for depth at matched compute.

SWideRNet scales a wide residual backbone by a width multiplier (w1 for the stem and first stage, w2 for the rest)
and a depth multiplier l, and the paper's thesis (it revisits wide residual networks) is that width is a
compute-efficient axis for dense prediction. In miniature two SWideRNet + Panoptic-DeepLab nets of about the same
FLOPs (a 3x3-conv trunk's cost grows like w^2 * l) are trained from scratch on the synthetic scenes' class masks
with the semantic head's cross-entropy, two seeds each: a wide-shallow one (w2 doubled) and a narrow-deep one
(l about five times larger); mean IoU on held-out scenes decides. FLOPs are measured with torch's FlopCounterMode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.segmentation.swidernet import PanopticDeepLab
from ..tasks import get_task
from ._kit import Data, Recipe, beats, fit, per_seed, plots, run_arms, seeded, spread
from ._kit.segmentation import first_images, label_maps, overlays, scores
from .report import Report

CLAIM = ("Scaling a wide residual backbone's width is a compute-efficient way to improve dense prediction "
         "(SWideRNet, Chen et al. 2020): at matched compute, the wider-shallower SWideRNet should segment better than "
         "as well as the narrower-deeper one.")
CLASSES = ("circle", "triangle", "star")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data(
        kind="segmentation", image_size=64, train_size=320, test_size=150, preset="easy", scale=(0.25, 0.6),
        knobs={"classes": CLASSES, "min_objects": 1, "max_objects": 3}))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=6, batch_size=16, optimizer="adamw", lr=2e-3,
                                                          weight_decay=1e-4, warmup_epochs=0.5))
    w1: float = 0.0625
    wide: tuple[float, float] = (0.125, 0.34)  # (w2, l): 1 block per stage
    deep: tuple[float, float] = (0.0625, 1.67)  # (w2, l): 5/5/10/5/2 blocks (0.030 GFLOPs at 64 px, as wide)
    decoder: int = 32
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(image_size=32, train_size=16, test_size=8), recipe=dict(epochs=1, batch_size=8), seeds=(0,),
             decoder=16)
FULL = dict(data=dict(image_size=128, train_size=4000, test_size=500), recipe=dict(epochs=30), seeds=(0, 1, 2))


def _gflops(model: torch.nn.Module, size: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(torch.zeros(1, 3, size, size))
    model.train()
    return fc.get_total_flops() / 1e9


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    k = train.num_classes
    task = get_task("segmentation", num_classes=k)
    arms = {f"wide (w2={cfg.wide[0]}, l={cfg.wide[1]})": cfg.wide, f"deep (w2={cfg.deep[0]}, l={cfg.deep[1]})": cfg.deep}

    def build(w2: float, depth: float) -> PanopticDeepLab:
        return PanopticDeepLab(k, cfg.w1, w2, depth, decoder=cfg.decoder, instance_decoder=cfg.decoder // 2)

    def arm(w2: float, depth: float):
        def train_one(seed: int):
            return fit(f"swidernet_{w2}_{depth}", seeded(seed, lambda: build(w2, depth)), train, test, seed=seed,
                       recipe=cfg.recipe, task=task, eval_every=cfg.recipe.epochs)
        return train_one

    flops = {name: _gflops(build(*wd), cfg.data.image_size) for name, wd in arms.items()}
    runs = run_arms({name: arm(*wd) for name, wd in arms.items()}, cfg.seeds)
    miou = {name: [scores(*label_maps(r.model, test, task), k)["miou"] for r in rs] for name, rs in runs.items()}
    wide, deep = list(arms)
    decision = beats(miou[wide], miou[deep], a_name="wide", b_name="deep", metric="mean IoU (%)")
    rows = [{"net": name, "mean IoU (%)": spread(miou[name]), "per seed": per_seed(miou[name]),
             "GFLOPs": round(flops[name], 3), "params": runs[name][0].params} for name in arms]
    images = first_images(test, 6)
    maps = {"ground truth": label_maps(runs[wide][0].model, test, task)[1][:6]}
    for name, rs in runs.items():
        maps[name] = label_maps(rs[0].model, test, task)[0][:6]
    figures = [plots.bars(out, "swidernet_miou.png", miou, "mean IoU at matched compute", ylabel="mean IoU (%)"),
               overlays(out, "swidernet_overlays.png", images, maps, k, title="held-out scenes, seed 0")]
    return Report(
        slug="swidernet",
        claim=CLAIM,
        setup=(f"SWideRNet-(w1={cfg.w1}, w2, l) + Panoptic-DeepLab (decoder {cfg.decoder} channels), trained from "
               f"scratch on {cfg.data.describe(train, test)}: {cfg.recipe.describe()}, seeds {list(cfg.seeds)}; "
               f"semantic cross-entropy only. Mean IoU over the {k} classes on the held-out scenes; FLOPs per "
               f"{cfg.data.image_size} px image: " + ", ".join(f"{n}: {flops[n]:.3f} G" for n in arms) + "."),
        columns=["net", "mean IoU (%)", "per seed", "GFLOPs", "params"],
        rows=rows,
        decision=decision,
        differences=[
            "Mean IoU of the semantic head instead of PQ on COCO/Cityscapes: the center and offset heads are built "
            "but not trained here (no center/offset losses yet).",
            "Two hand-picked points of equal compute instead of the paper's grid over (w1, w2, l); no ImageNet "
            "pre-training; tiny widths (1/16 to 1/8 of the paper's channels) at low resolution.",
        ],
        figures=figures,
        results={"miou": miou, "gflops": flops},
    )
