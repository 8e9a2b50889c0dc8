"""PPT in miniature: pruning the background tokens keeps the accuracy at a lower cost (the paper's Table 1).

PPT prunes, at a few layers of a TokenPose-style Transformer, the visual tokens the keypoint tokens pay least attention
to, keeping a fraction ``r`` of them; on COCO val (256x192) PPT-S keeps 72.2 AP against TokenPose-S-v1's 72.5 while
its GFLOPs fall from 2.2 to about 2.0 (r = 0.7). In miniature a small TokenPose (no pruning) and the same network
with pruning (r = 0.7 at two layers) are trained alike on the synthetic scenes' corners; the claim tested is that the
pruned network is no worse than the unpruned one by more than a stated tolerance of OKS AP. Its multiply-accumulates
and measured inference time are reported beside (they are lower by construction).

Multi-view (the paper's human area fusion, Table 5): each scene is rendered as two views that share the camera and
the keypoints, each with its own occluder (a box of noise over part of the object). The same PPT is trained on the
pairs twice: with the two views' keypoint and kept human tokens fused in the last ``depth - fuse_from`` layers, and
with the views kept apart (view A alone decides); view A's keypoints are scored by OKS AP. Fusion should help, since
what the occluder hides in one view is visible in the other.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision import tv_tensors

from ..cost import macs
from ..models.pose._heatmap import TopDownPose
from ..models.pose.ppt import TokenPrunedPoseTransformer
from ..tasks.generative import save_grid
from ._kit import Data, Recipe, about_equal, all_of, beats, per_seed, plots, run_arms, seeded, spread
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
    occluder: float = 0.7  # multi-view: each view's occluder, as a fraction of the object's width and height
    fuse_from: int = 4  # multi-view: the layers from here on see both views (the paper: 10 of 12)
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(train_size=16, test_size=8), recipe=dict(epochs=1, batch_size=8), seeds=(0,), dim=32, depth=3,
             prune_at=(1,), fuse_from=2)
FULL = dict(data=dict(image_size=256, train_size=20000, test_size=2000), recipe=dict(epochs=100, lr=5e-4),
            crop=256, dim=192, depth=12, heads=8, prune_at=(3, 6, 9), fuse_from=10, seeds=(0, 1, 2))


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
    pruning = about_equal(ap[pruned], ap[full], tolerance=cfg.tolerance, one_sided=True, a_name=pruned, b_name=full,
                          metric="OKS AP (%)",
                          claim=(f"pruning to {cfg.keep_ratio:g} of the visual tokens at layers {[i + 1 for i in cfg.prune_at]} "
                                 f"({cost[pruned] / cost[full]:.0%} of the MACs) costs at most {cfg.tolerance:g} OKS AP"))
    two_train, two_test = TwoViews(train, cfg.occluder, cfg.seeds[0]), TwoViews(test, cfg.occluder, 10_000 + cfg.seeds[0])
    fused, apart = f"two views, fused from layer {cfg.fuse_from + 1}", "two views, kept apart"
    mv_arms = {name: (lambda f: lambda seed: fit_pose("multi-view ppt", seeded(seed, lambda: TwoViewPose(_net(cfg, p, cfg.keep_ratio), f)),
                                                      two_train, two_test, seed=seed, recipe=cfg.recipe, input_size=size,
                                                      task=task))(f)
               for name, f in ((fused, cfg.fuse_from), (apart, cfg.depth))}
    mv_runs = run_arms(mv_arms, cfg.seeds)
    mv_ap = {k: [percent(r) for r in v] for k, v in mv_runs.items()}
    mv_pck = {k: [percent(r, "val_pck") for r in v] for k, v in mv_runs.items()}
    fusion = beats(mv_ap[fused], mv_ap[apart], a_name=fused, b_name=apart, metric="OKS AP (%) of view A")
    decision = all_of([pruning, fusion], claim="pruning keeps the accuracy at a lower cost, and multi-view fusion of the "
                                                "human tokens helps")
    save_grid(torch.cat([torch.stack([two_test[i][0][:3] for i in range(8)]),
                         torch.stack([two_test[i][0][3:] for i in range(8)])]), out / "two_views.png", nrow=8)
    rows = [{"network": k, "MMACs / crop": f"{cost[k]:.1f}", "ms / batch of 16": f"{1000 * secs[k]:.1f}",
             "OKS AP (%)": spread(ap[k]), "PCK@0.2 (%)": spread(pck[k]), "per seed (AP)": per_seed(ap[k])} for k in runs]
    rows += [{"network": k, "MMACs / crop": "", "ms / batch of 16": "", "OKS AP (%)": spread(mv_ap[k]),
              "PCK@0.2 (%)": spread(mv_pck[k]), "per seed (AP)": per_seed(mv_ap[k])} for k in mv_runs]
    figures = [plots.bars(out, "oks_ap.png", ap, "OKS AP on held-out scenes", ylabel="OKS AP (%)"),
               skeletons(out, "skeletons.png", {k: v[0].model for k, v in runs.items()}, test, task), "two_views.png"]
    n_tokens = (cfg.crop // 4 // (2 if cfg.crop <= 64 else 4)) * (cfg.crop // 4 // (2 if cfg.crop <= 64 else 3))
    return Report(
        slug="ppt",
        claim=CLAIM,
        setup=(f"Top-down pose on {cfg.data.describe(train, test)}; ground-truth boxes cropped to {cfg.crop}x{cfg.crop}. "
               f"A TokenPose-style net: the HRNet stem with one bottleneck (256 channels at 1/4), {n_tokens} visual tokens "
               f"from 2x2 patches, {p} keypoint tokens, dimension {cfg.dim}, {cfg.depth} layers of {cfg.heads} heads, the "
               f"fixed sine embedding before every layer, heatmaps from the keypoint tokens by a "
               f"{'two-layer' if len(runs[full][0].model.mlp_head) == 4 else 'one-layer (TokenPose: dim > hidden / 2)'} "
               f"head; PPT prunes "
               f"to {cfg.keep_ratio:g} of the visual tokens at layers {[i + 1 for i in cfg.prune_at]} (kept: "
               f"{[int(k.shape[1]) for k in kept]}). {cfg.recipe.describe()}, seeds {list(cfg.seeds)}. OKS AP by "
               "pycocotools; MACs by torch's FLOP counter; inference time of a batch of 16 on this machine. Multi-view: "
               f"the same scenes, each as two views with their own occluder of {cfg.occluder:g} x the object's width and "
               f"height (two_views.png: view A above, view B below); the same PPT and recipe, the views fused from layer "
               f"{cfg.fuse_from + 1} of {cfg.depth} or kept apart; OKS AP of view A's keypoints."),
        columns=list(rows[0]),
        rows=rows,
        decision=decision,
        differences=[
            "Synthetic shapes' corners instead of COCO persons; a 6-layer, 64-dimensional Transformer from scratch instead "
            "of PPT-S's 12 layers of 192 dimensions trained for 300 epochs.",
            "Multi-view: two renderings from the same camera with different occluders instead of Human3.6M's and "
            "Ski-Pose's calibrated cameras, so there are no ray directions and the 3-D position embedding is not used; "
            "the paper fine-tunes a COCO-trained PPT, here both arms train from scratch.",
            f"Tolerance: the claim counts as held when the pruned net trails by at most {cfg.tolerance:g} AP (the paper: "
            "-0.3 AP).",
        ],
        figures=figures,
        results={"ap": ap, "pck": pck, "mmacs": cost, "seconds_per_batch": secs, "multiview_ap": mv_ap,
                 "multiview_pck": mv_pck},
    )


# ------------------------------------------------------------------------------------------- multi-view
class TwoViews(Dataset):
    """Each scene rendered as two views (6 channels: view A, then view B) that share the camera and the keypoints but
    not the occluder: in each view one box of random-colour noise, ``occluder`` of the object's width and height, hides
    a different part of the object (placed at random inside the object's box, fixed per scene and view)."""

    def __init__(self, base: Dataset, occluder: float, seed: int) -> None:
        self.base, self.occluder, self.seed = base, occluder, seed

    def __len__(self) -> int:
        return len(self.base)

    def __getattr__(self, name: str):  # the scenes' metadata (sigmas, categories, mean, ...)
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def view(self, image: torch.Tensor, box: torch.Tensor, index: int, v: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 2 * index + v)
        x0, y0, x1, y1 = box.tolist()
        w, h = max(1, round((x1 - x0) * self.occluder)), max(1, round((y1 - y0) * self.occluder))
        left = int(x0 + torch.rand((), generator=g) * max(0.0, x1 - x0 - w))
        top = int(y0 + torch.rand((), generator=g) * max(0.0, y1 - y0 - h))
        out = image.clone()
        out[:, top: top + h, left: left + w] = torch.rand(image.shape[0], h, w, generator=g)
        return out

    def __getitem__(self, i: int):
        image, target = self.base[i]
        plain = image.as_subclass(torch.Tensor)
        box = target["boxes"].as_subclass(torch.Tensor)[0]
        views = torch.cat([self.view(plain, box, i, 0), self.view(plain, box, i, 1)])
        return tv_tensors.Image(views), target


class TwoViewPose(TopDownPose, nn.Module):
    """PPT on the two views of a crop (N, 6, H, W): view A's heatmaps. ``fuse_from`` < depth fuses the views' human
    tokens in the last layers (human area fusion); ``fuse_from`` = depth keeps them apart (view A alone decides)."""

    def __init__(self, net: TokenPrunedPoseTransformer, fuse_from: int) -> None:
        super().__init__()
        self.net, self.fuse_from = net, fuse_from
        self.num_keypoints, self.pose_input_size = net.num_keypoints, net.pose_input_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.forward_views([x[:, :3], x[:, 3:]], fuse_from=self.fuse_from)[:, 0]
