"""HRFormer in miniature: the transformer version of HRNet needs fewer parameters for the same accuracy (Table 3).

The paper replaces HRNet's residual units with local-window transformer blocks whose FFN has a depthwise convolution,
and reports that the result matches or beats HRNet with far fewer parameters and FLOPs: on COCO val at 256x192
HRFormer-S (7.8M, 2.8 GFLOPs) reaches 74.0 AP against 74.4 for HRNet-W32 (28.5M, 7.1 GFLOPs), and HRFormer-B (43.2M)
75.6 against 75.1 for HRNet-W48 (63.6M). In miniature both nets share the layout (stem, first stage, three
multi-resolution stages of one module each, two units per branch, widths 8-64, heatmaps from the 1/4 branch); the
HRFormer's units are window-attention blocks (4x4 windows on the 16x16 map: the paper's 7x7 on 64x48). The claim
tested is that the HRFormer, with fewer parameters, is not worse than the HRNet by more than a stated tolerance of
OKS AP; both are trained from scratch on the synthetic scenes' corners for the same number of steps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..cost import macs
from ..models.pose.hrformer import HRFormer
from ._kit import Data, Recipe, about_equal, per_seed, plots, run_arms, seeded, spread
from ._kit.pose import fit_pose, percent, pose_data, pose_task, skeletons
from .hrnet import n_params, small_hrnet
from .report import Report

CLAIM = ("A high-resolution transformer (HRNet's multi-resolution layout with local-window self-attention and a "
         "depthwise-convolution FFN) matches HRNet with far fewer parameters: HRFormer-S has 7.8M parameters and 74.0 AP "
         "on COCO val (256x192) against HRNet-W32's 28.5M and 74.4 AP (Yuan et al., Table 3).")


def small_hrformer(width: int, num_keypoints: int, size: tuple[int, int], window: int) -> HRFormer:
    return HRFormer(width, (1, 2, 4, 8), (1, 1, 1), 2, num_keypoints, window=window, stage1=(1, 16), input_size=size)


@dataclass
class Config:
    data: Data = field(default_factory=lambda: pose_data(image_size=64, train_size=600, test_size=200))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=6, batch_size=16, optimizer="adamw", lr=2e-3,
                                                          weight_decay=0.01, warmup_epochs=0.5))
    crop: int = 64
    width: int = 8  # both nets: branch widths 8, 16, 32, 64
    window: int = 4
    tolerance: float = 3.0  # OKS AP points the HRFormer may trail by and still count as "the same accuracy"
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(train_size=16, test_size=8), recipe=dict(epochs=1, batch_size=8), seeds=(0,))
FULL = dict(data=dict(image_size=256, train_size=20000, test_size=2000), recipe=dict(epochs=60, lr=5e-4),
            crop=256, width=32, window=7, seeds=(0, 1, 2))


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    size = (cfg.crop, cfg.crop)
    p = train.max_keypoints
    task = pose_task(train, size)
    former, hrnet = "HRFormer", "HRNet"
    arms = {
        former: lambda seed: fit_pose("hrformer", seeded(seed, lambda: small_hrformer(cfg.width, p, size, cfg.window)), train,
                                      test, seed=seed, recipe=cfg.recipe, input_size=size, task=task),
        hrnet: lambda seed: fit_pose("hrnet", seeded(seed, lambda: small_hrnet(cfg.width, p, size, 2)), train, test,
                                     seed=seed, recipe=cfg.recipe, input_size=size, task=task),
    }
    runs = run_arms(arms, cfg.seeds)
    ap = {k: [percent(r) for r in v] for k, v in runs.items()}
    pck = {k: [percent(r, "val_pck") for r in v] for k, v in runs.items()}
    sizes = {k: n_params(v[0].model) for k, v in runs.items()}
    cost = {k: macs(v[0].model, size) / 1e6 for k, v in runs.items()}
    decision = about_equal(ap[former], ap[hrnet], tolerance=cfg.tolerance, one_sided=True, a_name=former, b_name=hrnet,
                           metric="OKS AP (%)",
                           claim=(f"the HRFormer ({sizes[former] / sizes[hrnet]:.0%} of the HRNet's parameters) is no worse "
                                  f"than the HRNet by more than {cfg.tolerance:g} OKS AP"))
    rows = [{"network": k, "params (M)": f"{sizes[k] / 1e6:.3f}", "MMACs / crop": f"{cost[k]:.1f}",
             "OKS AP (%)": spread(ap[k]), "PCK@0.2 (%)": spread(pck[k]), "per seed (AP)": per_seed(ap[k])} for k in runs]
    figures = [plots.bars(out, "oks_ap.png", ap, "OKS AP on held-out scenes", ylabel="OKS AP (%)"),
               skeletons(out, "skeletons.png", {k: v[0].model for k, v in runs.items()}, test, task)]
    return Report(
        slug="hrformer",
        claim=CLAIM,
        setup=(f"Top-down pose on {cfg.data.describe(train, test)}; ground-truth boxes cropped to {cfg.crop}x{cfg.crop}, "
               f"{p} corner slots as Gaussian heatmaps at {cfg.crop // 4}x{cfg.crop // 4}. Both nets: HRNet's stem and "
               f"first stage, three stages of one module, two units per branch, widths {cfg.width}-{8 * cfg.width}; HRNet's "
               f"units are residual blocks, HRFormer's are {cfg.window}x{cfg.window}-window attention blocks (heads 1-8) "
               f"with the depthwise FFN (ratio 4). {cfg.recipe.describe()}, seeds {list(cfg.seeds)}. OKS AP by pycocotools."),
        columns=list(rows[0]),
        rows=rows,
        decision=decision,
        differences=[
            "Synthetic shapes' corners instead of COCO persons; nets of a few hundred thousand parameters from scratch "
            "instead of ImageNet-pretrained 7.8M-43.2M ones trained for 210 epochs.",
            f"Tolerance: the claim counts as held when the HRFormer trails by at most {cfg.tolerance:g} AP (the paper: -0.4 "
            "AP at a quarter of the parameters for S vs W32, +0.5 AP for B vs W48).",
            f"{cfg.window}x{cfg.window} windows on 16x16 maps instead of 7x7 on 64x48.",
        ],
        figures=figures,
        results={"ap": ap, "pck": pck, "params": sizes, "mmacs": cost},
    )
