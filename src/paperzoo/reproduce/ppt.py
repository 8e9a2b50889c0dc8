"""PPT in miniature: pruning the background tokens keeps the accuracy at a lower cost (the paper's Table 1).

PPT prunes, at a few layers of a TokenPose-style Transformer, the visual tokens the keypoint tokens pay least attention
to, keeping a fraction ``r`` of them; on COCO val (256x192) PPT-S keeps 72.2 AP against TokenPose-S-v1's 72.5 while
its GFLOPs fall from 2.2 to about 2.0 (r = 0.7). In miniature a small TokenPose (no pruning) and the same network
with pruning (r = 0.7 at two layers) are trained alike on the synthetic scenes' corners; the claim tested is that the
pruned network is no worse than the unpruned one by more than a stated tolerance of OKS AP. Its multiply-accumulates
and measured inference time are reported beside (they are lower by construction). The paper's multi-view part
(human-area fusion across views) is not reproduced: paperzoo has no multi-view scenes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..cost import macs
from ..models.pose.ppt import TokenPrunedPoseTransformer
from ._kit import Data, Recipe, about_equal, per_seed, plots, run_arms, seeded, spread
from ._kit.pose import fit_pose, percent, pose_data, pose_task, skeletons
from .report import Report

CLAIM = ("Keeping only the visual tokens the keypoint tokens attend to (human token identification) and pruning the "
         "rest at a few layers keeps the accuracy of the pose Transformer at a lower cost: PPT-S 72.2 AP at ~2.0 GFLOPs "
         "against TokenPose-S-v1's 72.5 AP at 2.2 GFLOPs on COCO val (Ma et al., Table 1).")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: pose_data(image_size=64, train_size=560, test_size=200))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=8, batch_size=16, optimizer="adamw", lr=1e-3,
                                                          weight_decay=0.01, warmup_epochs=0.5))
    crop: int = 64
    dim: int = 64
    depth: int = 6
    heads: int = 4
    keep_ratio: float = 0.7
    prune_at: tuple[int, ...] = (2, 4)
    tolerance: float = 3.0  # OKS AP points the pruned net may trail by and still "keep the accuracy"
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(train_size=16, test_size=8), recipe=dict(epochs=1, batch_size=8), seeds=(0,), dim=32, depth=3,
             prune_at=(1,))
FULL = dict(data=dict(image_size=256, train_size=20000, test_size=2000), recipe=dict(epochs=100, lr=5e-4),
            crop=256, dim=192, depth=12, heads=8, prune_at=(3, 6, 9), seeds=(0, 1, 2))


def _net(cfg: Config, p: int, ratio: float) -> TokenPrunedPoseTransformer:
    patch = (2, 2) if cfg.crop <= 64 else (4, 3)
    return TokenPrunedPoseTransformer(p, (cfg.crop, cfg.crop), patch, cfg.dim, cfg.depth, cfg.heads, 3, ratio,
                                      cfg.prune_at, stem_blocks=1)


@torch.no_grad()
def _seconds_per_batch(model: torch.nn.Module, size: int, batch: int = 16, reps: int = 5) -> float:
    model.eval()
    x = torch.randn(batch, 3, size, size)
    model(x)
    t0 = time.perf_counter()
    for _ in range(reps):
        model(x)
    return (time.perf_counter() - t0) / reps


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    size = (cfg.crop, cfg.crop)
    p = train.max_keypoints
    task = pose_task(train, size)
    pruned, full = f"PPT (keep {cfg.keep_ratio:g})", "TokenPose (no pruning)"
    arms = {
        pruned: lambda seed: fit_pose("ppt", seeded(seed, lambda: _net(cfg, p, cfg.keep_ratio)), train, test, seed=seed,
                                      recipe=cfg.recipe, input_size=size, task=task),
        full: lambda seed: fit_pose("tokenpose", seeded(seed, lambda: _net(cfg, p, 1.0)), train, test, seed=seed,
                                    recipe=cfg.recipe, input_size=size, task=task),
    }
    runs = run_arms(arms, cfg.seeds)
    ap = {k: [percent(r) for r in v] for k, v in runs.items()}
    pck = {k: [percent(r, "val_pck") for r in v] for k, v in runs.items()}
    cost = {k: macs(v[0].model, size) / 1e6 for k, v in runs.items()}
    secs = {k: _seconds_per_batch(v[0].model, cfg.crop) for k, v in runs.items()}
    kept = runs[pruned][0].model.kept
    decision = about_equal(ap[pruned], ap[full], tolerance=cfg.tolerance, one_sided=True, a_name=pruned, b_name=full,
                           metric="OKS AP (%)",
                           claim=(f"pruning to {cfg.keep_ratio:g} of the visual tokens at layers {[i + 1 for i in cfg.prune_at]} "
                                  f"({cost[pruned] / cost[full]:.0%} of the MACs) costs at most {cfg.tolerance:g} OKS AP"))
    rows = [{"network": k, "MMACs / crop": f"{cost[k]:.1f}", "ms / batch of 16": f"{1000 * secs[k]:.1f}",
             "OKS AP (%)": spread(ap[k]), "PCK@0.2 (%)": spread(pck[k]), "per seed (AP)": per_seed(ap[k])} for k in runs]
    figures = [plots.bars(out, "oks_ap.png", ap, "OKS AP on held-out scenes", ylabel="OKS AP (%)"),
               skeletons(out, "skeletons.png", {k: v[0].model for k, v in runs.items()}, test, task)]
    n_tokens = (cfg.crop // 4 // (2 if cfg.crop <= 64 else 4)) * (cfg.crop // 4 // (2 if cfg.crop <= 64 else 3))
    return Report(
        slug="ppt",
        claim=CLAIM,
        setup=(f"Top-down pose on {cfg.data.describe(train, test)}; ground-truth boxes cropped to {cfg.crop}x{cfg.crop}. "
               f"A TokenPose-style net: the HRNet stem with one bottleneck (256 channels at 1/4), {n_tokens} visual tokens "
               f"from 2x2 patches, {p} keypoint tokens, dimension {cfg.dim}, {cfg.depth} layers of {cfg.heads} heads, the "
               f"fixed sine embedding before every layer, heatmaps from the keypoint tokens by a two-layer head; PPT prunes "
               f"to {cfg.keep_ratio:g} of the visual tokens at layers {[i + 1 for i in cfg.prune_at]} (kept: "
               f"{[int(k.shape[1]) for k in kept]}). {cfg.recipe.describe()}, seeds {list(cfg.seeds)}. OKS AP by "
               "pycocotools; MACs by torch's FLOP counter; inference time of a batch of 16 on this machine."),
        columns=list(rows[0]),
        rows=rows,
        decision=decision,
        differences=[
            "Synthetic shapes' corners instead of COCO persons; a 6-layer, 64-dimensional Transformer from scratch instead "
            "of PPT-S's 12 layers of 192 dimensions trained for 300 epochs.",
            "The multi-view human-area fusion of the paper is not implemented or tested.",
            f"Tolerance: the claim counts as held when the pruned net trails by at most {cfg.tolerance:g} AP (the paper: "
            "-0.3 AP).",
        ],
        figures=figures,
        results={"ap": ap, "pck": pck, "mmacs": cost, "seconds_per_batch": secs},
    )
