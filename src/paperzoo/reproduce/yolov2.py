"""YOLOv2 in miniature: anchor priors from k-means with the 1 - IoU distance fit the boxes better than hand-picked
priors of the same count, and better than k-means with the Euclidean distance (the paper's Table 1).

The measure is Table 1's: the average IoU of each ground-truth box with its closest prior, shapes aligned at one
centre. Priors are fit on the training scenes' boxes and measured on held-out scenes, over several data seeds
(each seed draws new scenes and a new k-means initialisation). Hand-picked priors are Faster R-CNN's recipe (3 sizes
x ratios 1:2, 1:1, 2:1) with the sizes spread over the scenes' object range.

The second part is multi-scale training (Sec. 2, Table 3: one network detects at 288 ... 544 px). A narrow YOLOv2 is
trained twice per seed on the same scenes with the same k-means priors: at one input size, and with a new size from
a range around it every 10 batches. Both are then evaluated (pycocotools box AP) at every size of the range; the
measure is the mean AP at the sizes other than the single-scale one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..models.detection.yolov2 import kmeans_anchors, mean_best_iou
from ..registry import create_model
from ..tasks import get_task
from ._kit import Data, Recipe, all_of, beats, fit, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("Priors chosen by k-means with the distance 1 - IoU give a higher average IoU with the ground-truth boxes "
         "than hand-picked anchors: 5 clusters reach 61.0 against 60.9 for 9 hand-picked anchor boxes, 9 clusters 67.2, "
         "and the IoU distance beats Euclidean k-means (58.7 with 5 clusters) on VOC 2007 (Redmon & Farhadi, Table 1). "
         "Multi-scale training (a new input size from 320 ... 608 every 10 batches) lets the same network detect at "
         "different resolutions (Table 3: 69.0 mAP at 288 px up to 78.6 at 544 px).")
DET_CLASSES = ("circle", "triangle", "star")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data(
        kind="detection", image_size=64, train_size=1500, test_size=500, preset="medium", scale=(0.06, 0.6),
        knobs={"min_objects": 1, "max_objects": 6}))
    hand_sizes: tuple[float, ...] = (0.1, 0.2, 0.4)  # hand-picked anchor sides, fractions of the image
    # k-means costs seconds per seed and the IoU-vs-Euclidean gap is small (2.3 points in Table 1), so 10 data seeds
    seeds: tuple[int, ...] = tuple(range(10))
    # multi-scale training: scenes at the single-scale size; the range the multi-scale arm draws from (step 32)
    det_data: Data = field(default_factory=lambda: Data(
        kind="detection", image_size=128, train_size=800, test_size=200, preset="easy", scale=(0.1, 0.5),
        knobs={"classes": DET_CLASSES, "min_objects": 1, "max_objects": 4}))
    sizes: tuple[int, ...] = (96, 128, 160, 192)
    det_recipe: Recipe = field(default_factory=lambda: Recipe(epochs=4, batch_size=8, optimizer="adamw", lr=1e-3,
                                                              weight_decay=5e-4, warmup_epochs=0.3))
    det_width: float = 0.25  # Darknet-19's filters x 0.25
    det_anchors: int = 5
    det_seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(train_size=40, test_size=20), seeds=(0, 1),
             det_data=dict(image_size=64, train_size=16, test_size=8), sizes=(32, 64, 96), det_recipe=dict(epochs=1),
             det_width=0.125, det_seeds=(0,))
FULL = dict(data=dict(train_size=20000, test_size=5000), seeds=(0, 1, 2, 3, 4),
            det_data=dict(image_size=416, train_size=8000, test_size=1000, preset="medium", knobs={"max_objects": 8}),
            sizes=tuple(range(320, 609, 32)), det_recipe=dict(epochs=30, batch_size=16), det_width=1.0,
            det_seeds=(0, 1, 2))


def shapes_of(dataset) -> torch.Tensor:
    """(w, h) of every box in ``dataset`` as fractions of its image."""
    out = []
    for i in range(len(dataset)):
        image, target = dataset[i]
        b = target["boxes"].as_subclass(torch.Tensor).float()
        size = torch.tensor([image.shape[-1], image.shape[-2]], dtype=torch.float32)
        out.append((b[:, 2:] - b[:, :2]) / size)
    wh = torch.cat(out)
    return wh[(wh > 0).all(1)]


def hand_picked(sizes: tuple[float, ...]) -> torch.Tensor:
    """Faster R-CNN's anchors: each size at ratios (h/w) 0.5, 1, 2, area kept."""
    return torch.tensor([[s / math.sqrt(r), s * math.sqrt(r)] for s in sizes for r in (0.5, 1.0, 2.0)])


def multiscale(cfg: Config) -> tuple[dict[str, list[float]], dict[str, dict[int, list[float]]], list[int], int]:
    """Per arm: the mean box AP (%) over the sizes other than the single-scale one, per seed; the AP at every size;
    those other sizes; and the number of training boxes the priors came from. The only evaluation is the one at
    every size after the last epoch (the trainer gets no validation set of its own)."""
    train, test = cfg.det_data.splits()
    base = cfg.det_data.image_size
    grid = base // 32
    fit_wh = shapes_of(train)
    task = get_task("detection")
    table: dict[str, dict[int, list[float]]] = {"single-scale": {s: [] for s in cfg.sizes},
                                                "multi-scale": {s: [] for s in cfg.sizes}}

    def at_sizes(arm: str):
        def measure(trainer, row) -> None:  # after the last epoch: box AP at every size of the range
            if row["epoch"] < cfg.det_recipe.epochs:
                return
            model = trainer.model
            for size in cfg.sizes:
                model.image_size = size
                ap = 100 * trainer.evaluate(test)["map"]
                row[f"map_at_{size}"] = ap
                table[arm][size].append(ap)
            model.image_size = base
        return measure

    def arm(name: str, sizes: tuple[int, ...] | None):
        def one(seed: int):
            priors = kmeans_anchors(fit_wh, cfg.det_anchors, seed=seed) * grid  # in cells of the base grid
            model = seeded(seed, lambda: create_model("yolov2", num_classes=train.num_classes, width=cfg.det_width,
                                                      image_size=base, anchors=priors.tolist(), multiscale=sizes))
            return fit(f"yolov2 {name}", model, train, None, seed=seed, recipe=cfg.det_recipe, task=task,
                       clip_grad=10.0, callbacks=[at_sizes(name)])
        return one

    run_arms({"single-scale": arm("single-scale", None), "multi-scale": arm("multi-scale", cfg.sizes)}, cfg.det_seeds)
    off = [s for s in cfg.sizes if s != base]
    means = {a: [sum(table[a][s][i] for s in off) / len(off) for i in range(len(cfg.det_seeds))] for a in table}
    return means, table, off, len(fit_wh)


def run(cfg: Config, out: Path) -> Report:
    arms = {"k-means IoU, 5": ("iou", 5), "k-means IoU, 9": ("iou", 9), "k-means Euclidean, 5": ("euclidean", 5),
            "hand-picked, 9": None}
    values: dict[str, list[float]] = {a: [] for a in arms}
    priors: dict[str, list[list[float]]] = {}
    train_boxes = 0
    for seed in cfg.seeds:
        train, test = replace(cfg.data, seed=seed).splits()
        fit_wh, test_wh = shapes_of(train), shapes_of(test)
        train_boxes = len(fit_wh)
        for name, how in arms.items():
            anchors = hand_picked(cfg.hand_sizes) if how is None else kmeans_anchors(fit_wh, how[1], seed=seed, distance=how[0])
            values[name].append(100 * mean_best_iou(test_wh, anchors))
            if seed == cfg.seeds[0]:
                priors[name] = [[round(float(v), 3) for v in a] for a in anchors]
    off_ap, ap_by_size, off, det_boxes = multiscale(cfg)
    base = cfg.det_data.image_size
    decision = all_of(
        [beats(values["k-means IoU, 9"], values["hand-picked, 9"], a_name="k-means IoU, 9", b_name="hand-picked, 9",
               metric="avg IoU (%)"),
         beats(values["k-means IoU, 5"], values["k-means Euclidean, 5"], a_name="k-means IoU, 5",
               b_name="k-means Euclidean, 5", metric="avg IoU (%)"),
         beats(off_ap["multi-scale"], off_ap["single-scale"], a_name="multi-scale", b_name="single-scale",
               metric=f"box AP (%) at {off} px")],
        claim="k-means priors beat hand-picked ones of the same count, the IoU distance beats the Euclidean one, and "
              "multi-scale training detects better than single-scale training at the other input sizes")
    rows = [{"priors": n, "avg IoU (%)": spread(values[n]), "per seed": per_seed(values[n]),
             f"priors (w, h) of seed {cfg.seeds[0]}": "; ".join(f"{w:.2f}x{h:.2f}" for w, h in priors[n])}
            for n in arms]
    rows += [{"priors": f"YOLOv2, {a} training", "avg IoU (%)": "", "per seed": per_seed(off_ap[a]),
              f"priors (w, h) of seed {cfg.seeds[0]}": "box AP (%) at " + ", ".join(
                  f"{s} px {spread(ap_by_size[a][s])}" for s in cfg.sizes)} for a in off_ap]
    figures = [plots.bars(out, "avg_iou.png", values, "average IoU of each box with its closest prior",
                          ylabel="avg IoU (%)"),
               plots.lines(out, "multiscale.png", ap_by_size, f"YOLOv2 box AP by test size (single scale: {base} px)",
                           xlabel="test input size (px)", ylabel="box AP (%)")]
    return Report(
        slug="yolov2",
        claim=CLAIM,
        setup=(f"Box shapes (w, h as fractions of the image) of {cfg.data.describe()}; per seed new scenes (about "
               f"{train_boxes} training boxes) and a new k-means initialisation. Priors are fit on the training boxes "
               f"(k-means until assignments stop changing) and scored on the held-out boxes by the average IoU with the "
               f"closest prior, shapes aligned at one centre. Hand-picked: sides {list(cfg.hand_sizes)} of the image x "
               f"ratios 1:2, 1:1, 2:1. Seeds {list(cfg.seeds)}. Multi-scale training: YOLOv2 (Darknet-19 filters x "
               f"{cfg.det_width:g}, the paper's passthrough, {cfg.det_anchors} k-means IoU priors from the {det_boxes} "
               f"training boxes) on {cfg.det_data.describe()}, trained at {base} px or with a new size from "
               f"{list(cfg.sizes)} every 10 batches; {cfg.det_recipe.describe()}; seeds {list(cfg.det_seeds)}. Both are "
               f"evaluated at every size (pycocotools box AP); the 'per seed' of those rows is the mean AP at {off} px."),
        columns=["priors", "avg IoU (%)", "per seed", f"priors (w, h) of seed {cfg.seeds[0]}"],
        rows=rows,
        decision=decision,
        differences=[
            "Box shapes of synthetic scenes (a few shape classes, sizes drawn uniformly) instead of VOC 2007+2012.",
            "The priors are compared by Table 1's avg IoU only; the detector's mAP with each set of priors is not measured.",
            "On these boxes the IoU distance's gain over the Euclidean one is small (Table 1: 2.3 points), so the priors "
            "are fit over 10 data seeds; an earlier run over 3 seeds was inconclusive on that sub-claim (+0.83 against "
            "a band of 1.01).",
            f"Multi-scale training on {cfg.det_data.image_size} px synthetic scenes with sizes {list(cfg.sizes)} (the "
            "paper: VOC at 320 ... 608, tested at 288 ... 544), a narrow network from scratch for a few epochs with AdamW "
            "and no augmentation; compared against single-scale training of the same network, which the paper does not "
            "report.",
        ],
        figures=figures,
        results={"avg_iou": values, "priors": priors, "multiscale_off_size_ap": off_ap,
                 "multiscale_ap_by_size": {a: {str(k): v for k, v in t.items()} for a, t in ap_by_size.items()}},
    )
