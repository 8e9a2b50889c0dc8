"""Faster R-CNN in miniature: learned region proposals against fixed sliding windows (the paper's Table 2 and Fig. 2).

The paper's point is that a Region Proposal Network, sharing the detector's features, gives better proposals than a
method that does not learn (Selective Search, EdgeBoxes): Fast R-CNN with 300 RPN proposals beats it with 2,000
Selective Search proposals, and the RPN's recall stays high as the number of proposals falls. In miniature the
non-learned proposals are sliding windows: every anchor box of the grid, the same for every image. Two detectors
with the same backbone and RoI head are trained per seed, one with its RPN and one with the fixed windows; the
RPN detector is tested with 50 proposals, the fixed one with an evenly spaced 50 of its windows and with all of
them. Box AP comes from pycocotools.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..tasks import get_task
from ..train import evaluate
from ._kit import Data, Recipe, all_of, beats, fit, per_seed, plots, run_arms, seeded, spread
from ._kit.detectors import FixedProposals, proposal_recall, small_faster_rcnn
from .report import Report

CLAIM = ("Proposals from a Region Proposal Network that shares the detector's features beat proposals that are not "
         "learned, with far fewer boxes: Fast R-CNN with 300 RPN proposals reaches 59.9% mAP on VOC 2007 against "
         "58.7% with 2,000 Selective Search proposals, and RPN recall holds up as the number of proposals drops "
         "(Ren et al., Table 2, Fig. 2).")
CLASSES = ("circle", "triangle", "star")
COUNTS = (1, 5, 10, 20, 50, 100, 300)


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data(
        kind="detection", image_size=96, train_size=1000, test_size=200, preset="easy", scale=(0.12, 0.5),
        knobs={"classes": CLASSES, "min_objects": 1, "max_objects": 4}))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=4, batch_size=8, lr=0.05, weight_decay=1e-4,
                                                          warmup_epochs=0.3))
    width: int = 16  # narrow ResNet-18: stage widths 16, 32, 64, 128
    proposals: int = 50  # RPN proposals at test time (the paper: 300 at ~600 px)
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(image_size=64, train_size=16, test_size=8), recipe=dict(epochs=1), width=8, seeds=(0,))
FULL = dict(data=dict(image_size=512, train_size=20000, test_size=2000, preset="medium", knobs={"max_objects": 8}),
            recipe=dict(epochs=12, batch_size=16, lr=0.02), width=64, proposals=300, seeds=(0, 1, 2))


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    task = get_task("detection")
    k = train.num_classes
    extra = dict(clip_grad=10.0, eval_every=cfg.recipe.epochs)  # COCO evaluation once, at the end
    windows: dict[int, int] = {}

    def rpn(seed: int):
        model = seeded(seed, lambda: small_faster_rcnn(k, cfg.data.image_size, cfg.width, test_proposals=cfg.proposals))
        return fit("rpn", model, train, test, seed=seed, recipe=cfg.recipe, task=task, **extra)

    def fixed(seed: int):
        model = seeded(seed, lambda: small_faster_rcnn(k, cfg.data.image_size, cfg.width))
        model.rpn = FixedProposals(model.rpn.anchor_generator)  # every window, in training and at test
        result = fit("fixed windows", model, train, test, seed=seed, recipe=cfg.recipe, task=task, **extra)
        model.rpn.top_n = cfg.proposals  # the same detector with an evenly spaced subset of its windows
        result.metrics["subset"] = evaluate(model, test, task, batch_size=16)
        model.rpn.top_n = None
        grid = -(-cfg.data.image_size // 16)  # C4's map: stride 16
        windows[seed] = len(model.rpn.anchor_generator((cfg.data.image_size,) * 2, [torch.zeros(1, 1, grid, grid)]))
        return result

    runs = run_arms({"rpn": rpn, "fixed": fixed}, cfg.seeds)
    n_windows = max(windows.values()) if windows else 0
    def per_arm(metric: str) -> dict[str, list[float]]:  # percent per seed for each proposal method
        return {f"RPN, {cfg.proposals} proposals": [100 * r.metrics[f"val_{metric}"] for r in runs["rpn"]],
                f"windows, {cfg.proposals} of them": [100 * r.metrics["subset"][metric] for r in runs["fixed"]],
                f"windows, all {n_windows}": [100 * r.metrics[f"val_{metric}"] for r in runs["fixed"]]}

    ap, ap50 = per_arm("map"), per_arm("map_50")
    rpn_name, few, many = list(ap)
    decision = all_of(
        [beats(ap[rpn_name], ap[few], a_name=rpn_name, b_name=few, metric="box AP (%)"),
         beats(ap[rpn_name], ap[many], a_name=rpn_name, b_name=many, metric="box AP (%)")],
        claim=f"{cfg.proposals} RPN proposals beat fixed windows, both {cfg.proposals} of them and all {n_windows}")

    recall_rpn = [proposal_recall(r.model, test, COUNTS) for r in runs["rpn"]]
    recall_fixed = []
    for r in runs["fixed"]:
        per_n = {}
        for n in COUNTS:
            r.model.rpn.top_n = n
            per_n[n] = proposal_recall(r.model, test, (n,))[n]
        r.model.rpn.top_n = None
        recall_fixed.append(per_n)
    curves = {"RPN": {n: [rc[n] * 100 for rc in recall_rpn] for n in COUNTS},
              "sliding windows": {n: [rc[n] * 100 for rc in recall_fixed] for n in COUNTS}}
    rows = [{"proposals": name, "box AP (%)": spread(ap[name]), "AP50 (%)": spread(ap50[name]), "per seed (AP)": per_seed(ap[name])}
            for name in ap]
    recall_rows = [{"proposals per image": n,
                    "RPN recall (%)": spread([rc[n] * 100 for rc in recall_rpn]),
                    "windows recall (%)": spread([rc[n] * 100 for rc in recall_fixed])} for n in COUNTS]
    figures = [plots.bars(out, "proposals_ap.png", ap, "box AP by proposal method", ylabel="box AP (%)"),
               plots.lines(out, "proposal_recall.png", curves, "recall of ground-truth boxes at IoU 0.5",
                           xlabel="proposals per image", ylabel="recall (%)", xscale="log")]
    return Report(
        slug="faster-rcnn",
        claim=CLAIM,
        setup=(f"Faster R-CNN on a narrow ResNet-18 (stage widths {cfg.width}-{8 * cfg.width}, C4 features at stride 16, "
               f"12 anchors per position: 8-64 px x 3 ratios, RoIAlign 7x7, a 2x{128}-unit box head) trained from scratch on "
               f"{cfg.data.describe(train, test)}: {cfg.recipe.describe()}, seeds {list(cfg.seeds)}. Per seed, one detector "
               f"learns its RPN jointly (approximate joint training) and is tested with its top {cfg.proposals} proposals "
               f"after NMS; the other is trained and tested on fixed sliding windows (all {n_windows} anchor boxes of the "
               f"grid), and also tested with an evenly spaced {cfg.proposals} of them. Box AP@[.5:.95] and AP50 by pycocotools "
               "on the held-out scenes; recall of the ground-truth boxes by the first N proposals (the RPN's ranked by "
               "objectness, the windows evenly spaced)."),
        columns=["proposals", "box AP (%)", "AP50 (%)", "per seed (AP)"],
        rows=rows,
        tables=[{"title": "Proposal recall at IoU 0.5 (the paper's Fig. 2)", "columns": list(recall_rows[0]),
                 "rows": recall_rows}],
        decision=decision,
        differences=[
            "Sliding windows (the anchor grid) stand in for Selective Search and EdgeBoxes, which are not learned either "
            "but adapt to each image; the windows do not, which makes them a weaker baseline than the paper's.",
            f"{cfg.data.image_size} px synthetic scenes with {len(CLASSES)} shape classes, a narrow backbone trained from scratch "
            "and a few thousand steps, instead of VOC/COCO images at 600 px and an ImageNet-pretrained VGG-16/ZF.",
            f"{cfg.proposals} RPN proposals instead of 300 (fewer objects per image, a 6x6 feature grid).",
        ],
        figures=figures,
        results={"ap": ap, "ap50": ap50, "recall_rpn": recall_rpn, "recall_windows": recall_fixed, "windows": n_windows},
    )
