"""RAFT in miniature: comparable to BYOL, and no collapse without a predictor.

Shi et al. (2020) train RAFT -- align two views, run away from the mean teacher -- on CIFAR-10 and report linear
evaluation comparable to BYOL's; unlike BYOL, which collapses when its predictor is removed, RAFT's run-away term
keeps the representation from collapsing without a predictor (their Tables 1-2). Here a CIFAR ResNet-20 on
synthetic scenes of three shape classes (BYOL's miniature, ``reproduce/byol.py``) is trained with BYOL (``BYOLTask``) and RAFT (``RAFTTask``, alpha = beta = 1), each with and without
the predictor, for the same steps from several seeds (same initialisation, augmentation pair and mean teacher), and
scored by a linear probe on frozen features.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..registry import create_model
from ..tasks.byol import BYOLTask
from ..tasks.raft import RAFTTask
from ..tasks.ssl import Views, byol_pipelines, frozen_scores
from ._kit import Data, about_equal, all_of, beats, fit, mean, per_seed, plots, seeded, spread
from .report import Report

CLAIM = ("RAFT (align two views, run away from the mean teacher) learns a representation comparable to BYOL's, and "
         "without a predictor it does not collapse as BYOL does (Shi et al., Tables 1-2).")
ARMS = ("random init", "BYOL", "RAFT", "BYOL without predictor", "RAFT without predictor")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data("shapes", image_size=16, train_size=2000, test_size=1000,
                                                    knobs={"classes": ["circle", "triangle", "square"]}))
    width: int = 8
    steps: int = 500  # four trained arms x two seeds of two augmented views per sample: ~7 min on 2 threads
    batch_size: int = 32
    lr: float = 5e-3
    weight_decay: float = 1e-6
    hidden_dim: int = 512
    out_dim: int = 64
    alpha: float = 1.0
    beta: float = 1.0
    tau_base: float = 0.99  # BYOL's miniature: the paper's 0.996 is for hundreds of epochs
    crop_scale: tuple[float, float] = (0.2, 1.0)
    tolerance: float = 3.0  # percentage points within which RAFT counts as comparable to BYOL
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(data=dict(train_size=64, test_size=32), steps=2, batch_size=16, hidden_dim=32, out_dim=8, seeds=(0,))
FULL = dict(data=dict(name="shapes", image_size=32, train_size=50000, test_size=10000), width=16, steps=40000, batch_size=256,
            hidden_dim=4096, out_dim=256, crop_scale=(0.08, 1.0))


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    size, channels = cfg.data.image_size, train.in_chans

    def network(seed: int) -> torch.nn.Module:
        return seeded(seed, lambda: create_model("resnet20_cifar", num_classes=train.num_classes, in_chans=channels,
                                                 width=cfg.width))

    def task(label: str):
        views = Views(byol_pipelines(size, channels, tuple(cfg.crop_scale)), train.mean, train.std)
        predictor = "without" not in label
        if label.startswith("RAFT"):
            return RAFTTask(views, cfg.hidden_dim, cfg.out_dim, cfg.tau_base, predictor=predictor, alpha=cfg.alpha,
                            beta=cfg.beta)
        return BYOLTask(views, cfg.hidden_dim, cfg.out_dim, cfg.tau_base, predictor=predictor)

    probe: dict[str, list[float]] = {a: [] for a in ARMS}
    for seed in cfg.seeds:
        probe[ARMS[0]].append(frozen_scores(network(seed), train, test)["probe_acc"])
        for label in ARMS[1:]:
            r = fit(f"ssl_{label}", network(seed), train, None, seed=seed, task=task(label), steps=cfg.steps, evals=1,
                    batch_size=cfg.batch_size, optimizer="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay,
                    warmup_fraction=0.05)
            probe[label].append(frozen_scores(r.model, train, test)["probe_acc"])
    decision = all_of([
        about_equal(probe["RAFT"], probe["BYOL"], tolerance=cfg.tolerance, a_name="RAFT", b_name="BYOL",
                    metric="linear-probe acc (%)", one_sided=True),
        beats(probe["RAFT without predictor"], probe["BYOL without predictor"], a_name="RAFT without predictor",
              b_name="BYOL without predictor", metric="linear-probe acc (%)"),
    ], CLAIM)
    rows = [{"method": a, "linear probe (%)": spread(probe[a]), "per seed": per_seed(probe[a])} for a in ARMS]
    figure = plots.bars(out, "linear_probe.png", {a.replace(" without", "\nwithout"): v for a, v in probe.items()},
                        "RAFT and BYOL, with and without predictor")
    return Report(
        slug="raft",
        claim=CLAIM,
        setup=(f"{cfg.data.describe(train, test)}. Network: CIFAR ResNet-20 of width {cfg.width}; projector and predictor "
               f"-> {cfg.hidden_dim} -> BN -> ReLU -> {cfg.out_dim}; BYOL's augmentation pair (crop area "
               f"{cfg.crop_scale[0]:g}-{cfg.crop_scale[1]:g}) and mean teacher (tau {cfg.tau_base:g} -> 1). RAFT: alpha = "
               f"{cfg.alpha:g}, beta = {cfg.beta:g}. {cfg.steps} AdamW steps of batch {cfg.batch_size}, lr {cfg.lr:g} "
               f"(cosine after a 5% warmup), each arm once per seed {list(cfg.seeds)}. Score: logistic regression on "
               f"frozen pooled features (training -> test images). 'Comparable' means RAFT no more than "
               f"{cfg.tolerance:g} points below BYOL."),
        columns=["method", "linear probe (%)", "per seed"],
        rows=rows,
        decision=decision,
        discussion=(f"Random initialisation: {mean(probe[ARMS[0]]):.1f}% (reported, not judged)."),
        differences=[
            f"CIFAR-10 with a ResNet-18 for hundreds of epochs in the paper; here {len(train)} synthetic scenes at "
            f"{size}x{size}, a small CIFAR ResNet-20 and {cfg.steps} steps (mean-teacher tau_base {cfg.tau_base:g}).",
            "An earlier default on the real digits (150 steps) was inconclusive: RAFT without predictor 57.9 +- 8.62 vs "
            "BYOL without predictor 74.7 +- 8.81.",
            "The paper's equivalence of BYOL and RAFT under its conditions (linear predictor) is not reproduced here; "
            "tests/tasks/test_raft.py checks the bound of BYOL's loss by the alignment and cross-model terms.",
        ],
        figures=[figure],
        results={"probe_acc": probe},
    )
