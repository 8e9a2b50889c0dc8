"""YOLO in miniature: one network pass per image is much faster than a region-proposal detector, at lower accuracy,
most of all on small objects (the paper's Table 1 and Sec. 4.2's error analysis).

The paper's claim is speed from unification: Fast YOLO runs at 155 fps and YOLO at 45 fps against 7 fps for Faster
R-CNN VGG-16, with lower mAP (63.4 vs 73.2 on VOC 2007), and the grid's coarse cells and one class per cell make it
"struggle with small objects" (Sec. 2.4). In miniature a narrow Fast YOLO and a narrow Faster R-CNN (the library's
own, C4 features) are trained on the same scenes per seed; throughput (images per second through ``detect``, both
timed alternately in one process at the same input size and batch) and box AP on small objects (pycocotools'
AP_small) are compared by the kit's rule.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..registry import create_model
from ..tasks import get_task
from ._kit import Data, Recipe, all_of, beats, fit, per_seed, plots, run_arms, seeded, spread
from ._kit.detectors import small_faster_rcnn
from ._kit.drawing import detections_png
from .report import Report

CLAIM = ("A single network pass that regresses boxes and class probabilities on an S x S grid detects in real time, "
         "several times faster than a region-proposal pipeline, at lower accuracy and worst on small objects: Fast YOLO "
         "155 fps and YOLO 45 fps vs 7 fps for Faster R-CNN VGG-16, at 52.7 / 63.4 vs 73.2 mAP on VOC 2007 "
         "(Redmon et al., Table 1, Sec. 2.4).")
CLASSES = ("circle", "triangle", "star")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data(
        kind="detection", image_size=128, train_size=800, test_size=200, preset="easy", scale=(0.1, 0.5),
        knobs={"classes": CLASSES, "min_objects": 1, "max_objects": 4}))
    # Faster R-CNN: the library's detection recipe; YOLO's sum-squared loss: AdamW (SGD at Darknet's 1e-3 trains
    # far slower in a few epochs), both with a short warmup and gradient clipping
    rcnn_recipe: Recipe = field(default_factory=lambda: Recipe(epochs=6, batch_size=8, lr=0.05, weight_decay=1e-4,
                                                               warmup_epochs=0.3))
    yolo_recipe: Recipe = field(default_factory=lambda: Recipe(epochs=6, batch_size=8, optimizer="adamw", lr=1e-3,
                                                               weight_decay=5e-4, warmup_epochs=0.3))
    yolo_width: float = 0.25  # Fast YOLO's filters x 0.25: 4 ... 256
    grid: int = 8  # S (16 px cells at 128 px, about the paper's 64 px cells at 448 px relative to its objects)
    rcnn_width: int = 16  # narrow ResNet-18 (stage widths 16 ... 128)
    timing_batches: int = 5  # batches of 8 test images timed per repeat
    repeats: int = 3  # alternating timing repeats per seed (the fastest counts)
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(image_size=64, train_size=16, test_size=8), rcnn_recipe=dict(epochs=1), yolo_recipe=dict(epochs=1),
             grid=4, rcnn_width=8, timing_batches=1, repeats=1, seeds=(0,))
FULL = dict(data=dict(image_size=448, train_size=16000, test_size=2000, preset="medium", knobs={"max_objects": 8}),
            rcnn_recipe=dict(epochs=12, batch_size=16, lr=0.02), yolo_recipe=dict(epochs=30, batch_size=16),
            yolo_width=1.0, grid=7, rcnn_width=64, seeds=(0, 1, 2))


def small_yolo(num_classes: int, image_size: int, width: float, grid: int):
    """Fast YOLO with its filters scaled by ``width`` and a 256-d hidden FC (the full one has 256 + 4096)."""
    return create_model("fast_yolov1", num_classes=num_classes, width=width, image_size=image_size, grid=grid,
                        hidden=((256, True),), mean=(0.5,) * 3, std=(0.25,) * 3)


@torch.no_grad()
def images_per_second(models: dict[str, torch.nn.Module], dataset, batches: int, repeats: int, batch: int = 8
                      ) -> dict[str, float]:
    """Throughput of each model's ``detect`` on the same ``batches`` x ``batch`` test images, timed alternately
    ``repeats`` times (the fastest repeat counts, the least disturbed by other load)."""
    images = [dataset[i % len(dataset)][0].as_subclass(torch.Tensor) for i in range(batches * batch)]
    chunks = [images[i:i + batch] for i in range(0, len(images), batch)]
    best = {k: float("inf") for k in models}
    for m in models.values():
        m.detect(chunks[0])  # warm up
    for _ in range(repeats):
        for name, m in models.items():
            t0 = time.perf_counter()
            for c in chunks:
                m.detect(c)
            best[name] = min(best[name], time.perf_counter() - t0)
    return {k: len(images) / v for k, v in best.items()}


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    task = get_task("detection")
    k = train.num_classes
    size = cfg.data.image_size
    extra = dict(clip_grad=10.0, eval_every=max(cfg.rcnn_recipe.epochs, cfg.yolo_recipe.epochs))
    speed: dict[int, dict[str, float]] = {}
    trained: dict[int, dict[str, torch.nn.Module]] = {}

    def yolo(seed: int):
        model = seeded(seed, lambda: small_yolo(k, size, cfg.yolo_width, cfg.grid))
        result = fit("fast yolo", model, train, test, seed=seed, recipe=cfg.yolo_recipe, task=task, **extra)
        trained[seed] = {"Fast YOLO": result.model}
        return result

    def rcnn(seed: int):  # runs after the same seed's YOLO (run_arms: seeds outer, arms inner)
        model = seeded(seed, lambda: small_faster_rcnn(k, size, cfg.rcnn_width))
        result = fit("faster r-cnn", model, train, test, seed=seed, recipe=cfg.rcnn_recipe, task=task, **extra)
        trained[seed]["Faster R-CNN"] = result.model
        speed[seed] = images_per_second(trained[seed], test, cfg.timing_batches, cfg.repeats)
        return result

    runs = run_arms({"yolo": yolo, "rcnn": rcnn}, cfg.seeds)
    names = {"yolo": "Fast YOLO", "rcnn": "Faster R-CNN"}
    fps = {names[a]: [speed[s][names[a]] for s in cfg.seeds] for a in names}
    metric = lambda key: {names[a]: [100 * r.metrics[f"val_{key}"] for r in runs[a]] for a in names}  # noqa: E731
    ap, ap50, ap_small = metric("map"), metric("map_50"), metric("map_small")
    y, r = names["yolo"], names["rcnn"]
    decision = all_of(
        [beats(fps[y], fps[r], a_name=y, b_name=r, metric="images/s"),
         beats(ap_small[r], ap_small[y], a_name=r, b_name=y, metric="AP small (%)")],
        claim="one pass is faster in images/s, and the region-proposal detector is more accurate on small objects")
    rows = [{"detector": n, "images/s": spread(fps[n]), "box AP (%)": spread(ap[n]), "AP50 (%)": spread(ap50[n]),
             "AP small (%)": spread(ap_small[n]), "per seed (AP small)": per_seed(ap_small[n])} for n in names.values()]
    last = trained[cfg.seeds[-1]]
    figures = [plots.bars(out, "speed.png", fps, "throughput of detect() at equal input", ylabel="images / s"),
               plots.bars(out, "ap_small.png", ap_small, "box AP on small objects", ylabel="AP small (%)"),
               detections_png(out, "detections.png", last, test)]
    return Report(
        slug="yolo",
        claim=CLAIM,
        setup=(f"Fast YOLO (9 conv layers, filters x {cfg.yolo_width:g}, a {cfg.grid}x{cfg.grid} grid, B = 2, eq. 3's loss) "
               f"against Faster R-CNN (narrow ResNet-18 width {cfg.rcnn_width}, C4, the library's RPN and RoI head), both "
               f"from scratch on {cfg.data.describe(train, test)}. YOLO: {cfg.yolo_recipe.describe()}; Faster R-CNN: "
               f"{cfg.rcnn_recipe.describe()}; seeds {list(cfg.seeds)}. Throughput: detect() on {cfg.timing_batches} "
               f"batches of 8 test images at {size} px, the two detectors timed alternately {cfg.repeats} times in one "
               f"process (fastest repeat), {torch.get_num_threads()} torch thread(s). Box AP by pycocotools."),
        columns=["detector", "images/s", "box AP (%)", "AP50 (%)", "AP small (%)", "per seed (AP small)"],
        rows=rows,
        decision=decision,
        differences=[
            f"{size} px synthetic scenes with {len(CLASSES)} classes and narrow networks trained from scratch for a few "
            "epochs, instead of VOC at 448 px with an ImageNet-pretrained trunk and 135 epochs.",
            "Speed is CPU throughput of both miniatures at equal input, not GPU frames per second of the full networks.",
            "YOLO trains with AdamW instead of SGD with momentum (sum-squared error at Darknet's learning rate is slow to "
            "start in a few epochs); no data augmentation for either detector.",
        ],
        figures=figures,
        results={"images_per_s": fps, "ap": ap, "ap50": ap50, "ap_small": ap_small},
    )
