"""Ranking Neural Checkpoints in miniature: do transferability scores rank a zoo of checkpoints as fine-tuning does?

The paper (Li et al., 2021) builds zoos of pre-trained checkpoints, fine-tunes every one on each target task and
asks which cheap score, computed on the target's training data without fine-tuning, ranks them best (Kendall's
tau with the fine-tuned accuracies); NLEEP (a Gaussian mixture on PCA-reduced features, then LEEP) ranks best,
ahead of LEEP and of a linear probe (Tables 2-4). Here the zoo is small CNNs of four widths pre-trained on the
synthetic scenes for 1 and for 5 epochs, plus two at their random initialisation; the target is the real
handwritten digits. Per seed the zoo is trained, scored and fine-tuned anew.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from ..analysis.nleep import (
    h_score,
    kendall_tau,
    knn_accuracy,
    leep,
    linear_probe,
    nleep,
)
from ._kit import Data, Recipe, all_of, beats, fit, per_seed, plots, seeded, spread
from ._kit.data import digits
from .report import Report

CLAIM = ("NLEEP, LEEP over a Gaussian mixture fitted to a checkpoint's PCA-reduced features, ranks pre-trained "
         "checkpoints by their fine-tuned accuracy on a target task better than LEEP and a linear probe "
         "(Li et al., 2021, Tables 2-4: Kendall's tau).")
SCORES = ("NLEEP", "LEEP", "linear probe", "kNN", "H-score")


class TinyNet(nn.Module):
    """Three conv-BN-ReLU stages (widths w, 2w, 4w; the last two with stride 2), global pooling, a linear head."""

    def __init__(self, width: int, num_classes: int) -> None:
        super().__init__()
        layers, cin = [], 3
        for i, cout in enumerate((width, 2 * width, 4 * width)):
            layers += [nn.Conv2d(cin, cout, 3, 2 if i else 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


class ThreeChannels(Dataset):
    """A one-channel dataset (the digits) repeated to three channels, with the wrapped dataset's attributes."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        x, y = self.dataset[i]
        return x.expand(3, -1, -1), y

    def __getattr__(self, name: str):
        if name == "dataset":
            raise AttributeError(name)
        return getattr(self.dataset, name)


@dataclass
class Config:
    source: Data = field(default_factory=lambda: Data(image_size=16, train_size=1500, test_size=200, preset="medium"))
    target_train: int = 300
    widths: tuple[int, ...] = (4, 8, 16, 32)
    pretrain: Recipe = field(default_factory=lambda: Recipe(epochs=5, batch_size=64, lr=0.1, weight_decay=5e-4))
    early: int = 1  # the early checkpoint of each run: after this many epochs
    finetune: Recipe = field(default_factory=lambda: Recipe(epochs=8, batch_size=32, lr=0.05, weight_decay=5e-4))
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(source=dict(train_size=64, test_size=16), target_train=60, widths=(4, 8), pretrain=dict(epochs=2),
             finetune=dict(epochs=1), seeds=(0,))
FULL = dict(source=dict(image_size=32, train_size=20000), target_train=1257, widths=(8, 16, 32, 64, 128),
            pretrain=dict(epochs=30), finetune=dict(epochs=30), seeds=(0, 1, 2))


@torch.no_grad()
def outputs(model: TinyNet, dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features, source-class probabilities and labels of ``dataset`` under ``model`` in eval mode."""
    model.eval()
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))
    f = model.features(torch.stack(xs))
    return f, model.fc(f).softmax(1), torch.tensor(ys)


def zoo(cfg: Config, seed: int, source_train: Dataset, source_test: Dataset) -> dict[str, TinyNet]:
    k = source_train.num_classes
    out: dict[str, TinyNet] = {}
    for w in cfg.widths:
        if w in (cfg.widths[0], cfg.widths[-1]):
            out[f"w{w} random init"] = seeded(seed, lambda w=w: TinyNet(w, k))
        model = seeded(seed, lambda w=w: TinyNet(w, k))
        fit(f"w{w}", model, source_train, source_test, seed=seed, recipe=Recipe(**{**cfg.pretrain.__dict__, "epochs": cfg.early}),
            eval_every=10**6)
        out[f"w{w} {cfg.early} ep"] = copy.deepcopy(model)
        fit(f"w{w}", model, source_train, source_test, seed=seed + 100,
            recipe=Recipe(**{**cfg.pretrain.__dict__, "epochs": cfg.pretrain.epochs - cfg.early}), eval_every=10**6)
        out[f"w{w} {cfg.pretrain.epochs} ep"] = model
    return out


def run(cfg: Config, out: Path) -> Report:
    source_train, source_test = cfg.source.splits()
    d_train, d_test = digits(cfg.target_train, None, image_size=cfg.source.image_size, seed=0)
    target_train, target_test = ThreeChannels(d_train), ThreeChannels(d_test)
    taus: dict[str, list[float]] = {s: [] for s in SCORES}
    tables = []
    for seed in cfg.seeds:
        checkpoints = zoo(cfg, seed, source_train, source_test)
        rows, acc, scores = [], [], {s: [] for s in SCORES}
        for name, model in checkpoints.items():
            f, probs, y = outputs(model, target_train)
            values = {"NLEEP": nleep(f, y, seed=seed), "LEEP": leep(probs, y), "linear probe": linear_probe(f, y, seed=seed),
                      "kNN": knn_accuracy(f, y), "H-score": h_score(f, y)}
            tuned = copy.deepcopy(model)
            tuned.fc = nn.Linear(tuned.fc.in_features, target_train.num_classes)
            r = fit(name, tuned, target_train, target_test, seed=seed, recipe=cfg.finetune, eval_every=cfg.finetune.epochs)
            acc.append(100 * r.metrics["val_acc"])
            for s in SCORES:
                scores[s].append(values[s])
            rows.append({"checkpoint": name, "fine-tuned acc (%)": f"{acc[-1]:.1f}", **{s: f"{values[s]:.3f}" for s in SCORES}})
        for s in SCORES:
            taus[s].append(kendall_tau(scores[s], acc))
        tables.append({"title": f"Seed {seed}: every checkpoint's scores and fine-tuned accuracy",
                       "columns": list(rows[0]), "rows": rows})
    finite = {s: [0.0 if math.isnan(t) else t for t in v] for s, v in taus.items()}  # an undefined tau (all tied) counts as 0
    decision = all_of([
        beats(finite["NLEEP"], finite["LEEP"], a_name="NLEEP", b_name="LEEP", metric="Kendall tau"),
        beats(finite["NLEEP"], finite["linear probe"], a_name="NLEEP", b_name="linear probe", metric="Kendall tau"),
    ], claim="NLEEP ranks the checkpoints by fine-tuned accuracy better than LEEP and a linear probe")
    rows = [{"score": s, "Kendall tau with fine-tuned accuracy": spread(finite[s], 2), "per seed": per_seed(finite[s], 2)}
            for s in SCORES]
    figures = [plots.bars(out, "kendall_tau.png", finite, "rank correlation with fine-tuned accuracy", ylabel="Kendall tau")]
    n = len(cfg.widths) * 2 + 2
    return Report(
        slug="checkpoint-ranking", claim=CLAIM,
        setup=(f"A zoo of {n} checkpoints: small CNNs of widths {list(cfg.widths)} pre-trained on "
               f"{cfg.source.describe(source_train, source_test)} ({cfg.pretrain.describe()}), kept after {cfg.early} and "
               f"{cfg.pretrain.epochs} epochs, plus the narrowest and widest at random initialisation. Target: "
               f"{cfg.target_train} real handwritten digits (three-channel, {cfg.source.image_size} px); each checkpoint is "
               f"scored on them (NLEEP: PCA to 80% variance and a full-covariance Gaussian mixture of 10 components; LEEP: "
               f"the source head's 8-way softmax; a 3-fold logistic-regression probe; leave-one-out 5-NN; H-score), then "
               f"fine-tuned end to end with a new head ({cfg.finetune.describe()}) and tested on the 361 test digits. "
               f"Kendall's tau-b per seed, seeds {list(cfg.seeds)}."),
        columns=["score", "Kendall tau with fine-tuned accuracy", "per seed"], rows=rows, decision=decision,
        tables=tables,
        differences=[f"{n} tiny checkpoints instead of the paper's zoos of ImageNet models; one target task (digits) "
                     "instead of nine; a few epochs of fine-tuning per checkpoint."],
        figures=figures, results={"tau": taus})
