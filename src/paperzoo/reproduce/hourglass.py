"""Stacked Hourglass in miniature: stacking hourglasses and supervising every stack give better PCK (Sec. 5.2, Fig. 9).

The paper's ablation (Sec. 5.2) trains networks of 2, 4 and 8 stacks, with and without intermediate supervision, and
reports that accuracy on MPII rises with the number of stacks and that supervising every stack beats supervising the
last one only (their Fig. 9: 87.4% -> 88.1% PCKh going from 2 to 8 stacks at matched depth; intermediate supervision
adds to every configuration). In miniature, three arms train for the same number of steps on the synthetic scenes'
shape corners: one hourglass, two stacked hourglasses with intermediate supervision, and the same two-stack network
with the loss on its last output only. PCK@0.2 (box-normalised) and OKS AP on held-out scenes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..cost import macs
from ..models.pose.hourglass import StackedHourglass
from ._kit import Data, Recipe, all_of, beats, per_seed, plots, run_arms, seeded, spread
from ._kit.pose import fit_pose, percent, pose_data, pose_task, skeletons
from .report import Report

CLAIM = ("Stacking hourglasses, each predicting heatmaps that are supervised and fed back into the next stack, improves "
         "accuracy: more stacks do better, and intermediate supervision beats supervising the final output only "
         "(Newell et al., Sec. 5.2, Fig. 9 on MPII).")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: pose_data(image_size=64, train_size=640, test_size=200))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=6, batch_size=16, optimizer="adam", lr=2e-3,
                                                          weight_decay=0.0, warmup_epochs=0.3))
    crop: int = 64  # crop side (16x16 features inside the hourglasses, heatmaps at 1/4)
    features: int = 32  # the paper: 256
    depth: int = 3  # hourglass levels, 16 -> 2 (the paper: 4 levels, 64 -> 4)
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(train_size=16, test_size=8), recipe=dict(epochs=1, batch_size=8), seeds=(0,), features=16)
FULL = dict(data=dict(image_size=256, train_size=20000, test_size=2000), recipe=dict(epochs=100, lr=2.5e-4),
            crop=256, features=256, depth=4, seeds=(0, 1, 2))


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    size = (cfg.crop, cfg.crop)
    p = train.max_keypoints
    full = pose_task(train, size)
    last_only = pose_task(train, size)
    last_only.intermediate = False

    def net(stacks: int):
        return lambda: StackedHourglass(stacks, p, features=cfg.features, depth=cfg.depth, input_size=size)

    def arm(name: str, stacks: int, task):
        return lambda seed: fit_pose(name, seeded(seed, net(stacks)), train, test, seed=seed, recipe=cfg.recipe,
                                     input_size=size, task=task)

    one, two, two_last = "1 stack", "2 stacks, every stack supervised", "2 stacks, last output supervised"
    runs = run_arms({one: arm("1 stack", 1, full), two: arm("2 stacks", 2, full), two_last: arm("2 stacks last", 2, last_only)},
                    cfg.seeds)
    pck = {k: [percent(r, "val_pck") for r in v] for k, v in runs.items()}
    ap = {k: [percent(r) for r in v] for k, v in runs.items()}
    decision = all_of(
        [beats(pck[two], pck[one], a_name=two, b_name=one, metric="PCK@0.2 (%)"),
         beats(pck[two], pck[two_last], a_name=two, b_name=two_last, metric="PCK@0.2 (%)")],
        claim="two supervised stacks beat one stack, and beat the same two stacks supervised at the end only, on PCK")
    cost = {k: (v[0].params / 1e6, macs(v[0].model, size) / 1e6) for k, v in runs.items()}
    rows = [{"network": k, "params (M)": f"{cost[k][0]:.3f}", "MMACs / crop": f"{cost[k][1]:.1f}",
             "PCK@0.2 (%)": spread(pck[k]), "OKS AP (%)": spread(ap[k]), "per seed (PCK)": per_seed(pck[k])} for k in runs]
    figures = [plots.bars(out, "pck.png", pck, "PCK@0.2 on held-out scenes", ylabel="PCK@0.2 (%)"),
               skeletons(out, "skeletons.png", {k: v[0].model for k, v in runs.items()}, test, full)]
    return Report(
        slug="hourglass",
        claim=CLAIM,
        setup=(f"Top-down pose on {cfg.data.describe(train, test)}; ground-truth boxes cropped to {cfg.crop}x{cfg.crop}, "
               f"{p} corner slots as Gaussian heatmaps at {cfg.crop // 4}x{cfg.crop // 4}. Hourglasses of {cfg.features} "
               f"features and {cfg.depth} levels of residual modules, the paper's stem, heatmaps and features remapped into "
               f"the stream between stacks. {cfg.recipe.describe()} for every arm (equal training), seeds {list(cfg.seeds)}. "
               "PCK at 0.2 of the box's longer side, OKS AP@[.5:.95] by pycocotools."),
        columns=list(rows[0]),
        rows=rows,
        decision=decision,
        differences=[
            "Synthetic shapes' corners instead of MPII's 16 joints; PCK@0.2 of the box instead of PCKh@0.5.",
            f"1 and 2 stacks of {cfg.features}-feature, {cfg.depth}-level hourglasses on {cfg.crop}x{cfg.crop} crops instead of "
            "2-8 stacks of 256 features on 256x256 inputs; minutes of training instead of days.",
            "The stacked net is compared with one stack at equal training, not at equal parameters (the paper's Fig. 9 "
            "also matches the total number of residual modules).",
        ],
        figures=figures,
        results={"pck": pck, "ap": ap, "params_m": {k: v[0] for k, v in cost.items()},
                 "mmacs": {k: v[1] for k, v in cost.items()}},
    )
