"""EBMs for continual learning in miniature: class-incremental split digits, an energy-based classifier trained
with the contrastive energy over the batch's classes against a softmax classifier on the same splits.

The paper (Li et al., 2020, Table 2): in class-incremental learning without replay (split MNIST: 5 tasks of 2
digits, predicting among every class seen so far), a softmax classifier forgets the earlier tasks almost entirely,
while the EBM, whose objective only contrasts the classes of the current batch, keeps much of them. Here: the real
handwritten digits, 5 tasks of 2 classes, trained one task after another with no replay; three arms with the same
convolutional features — the EBM (in-batch negatives), a softmax classifier, and the EBM with every class as a
negative (the ablation of the paper's key change); average accuracy and forgetting over three seeds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..analysis.continual import ClassSubset, average_accuracy, class_splits, forgetting
from ..models.applications.ebm import ConvFeatures, EBMClassifier
from ..tasks import ClassificationTask
from ..tasks.energy import EnergyTask
from ._kit import (
    Recipe,
    all_of,
    beats,
    fit,
    per_seed,
    plots,
    predictions,
    run_arms,
    seeded,
    spread,
)
from ._kit.data import digits
from .report import Report

CLAIM = ("In class-incremental learning, an energy-based classifier trained with a contrastive energy over only the "
         "classes in the current batch forgets far less than a softmax classifier (split MNIST: 5 tasks of 2 digits; "
         "Li et al., 2020, Table 2).")


class SoftmaxClassifier(nn.Module):
    """The same features h(x) and a linear softmax head over all classes (the baseline)."""

    def __init__(self, num_classes: int, in_chans: int, dim: int, width: int) -> None:
        super().__init__()
        self.features = ConvFeatures(in_chans, dim, width)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


@dataclass
class Config:
    image_size: int = 16
    train_size: int | None = None  # None: all 1,257 training digits
    per_task: int = 2
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=4, batch_size=32, optimizer="adam", lr=1e-3,
                                                          weight_decay=0.0, schedule="constant"))
    dim: int = 256
    width: int = 32
    seeds: tuple[int, ...] = (0, 1, 2)


SMOKE = dict(train_size=120, recipe=dict(epochs=1, batch_size=8), dim=32, width=8, seeds=(0,))
FULL = dict(image_size=28, recipe=dict(epochs=20), seeds=(0, 1, 2, 3, 4))


def run(cfg: Config, out: Path) -> Report:
    train, test = digits(cfg.train_size, None, image_size=cfg.image_size, seed=0)
    splits = class_splits(train.num_classes, cfg.per_task)
    train_labels = [int(train[i][1]) for i in range(len(train))]
    test_labels = [int(test[i][1]) for i in range(len(test))]
    tasks_train = [ClassSubset(train, c, train_labels) for c in splits]
    tasks_test = [ClassSubset(test, c, test_labels) for c in splits]
    k = train.num_classes
    matrices: dict[str, list[list[list[float]]]] = {}

    def arm(label: str, build, task):
        def one(seed: int):
            model = seeded(seed, build)
            acc: list[list[float]] = []
            result = None
            for t, data in enumerate(tasks_train):
                result = fit(label, model, data, None, seed=seed + 1000 * t, recipe=cfg.recipe, task=task)
                seen = torch.tensor([c for s in splits[: t + 1] for c in s])
                row = []
                for i in range(t + 1):
                    logits, labels = predictions(model, tasks_test[i])
                    masked = torch.full_like(logits, float("-inf"))
                    masked[:, seen] = logits[:, seen]  # predict among every class seen so far
                    row.append(100 * float((masked.argmax(1) == labels).float().mean()))
                acc.append(row)
            matrices.setdefault(label, []).append(acc)
            return result
        return one

    runs = run_arms({
        "EBM (in-batch classes)": arm("EBM (in-batch classes)", lambda: EBMClassifier(k, 1, cfg.dim, cfg.width), EnergyTask()),
        "softmax classifier": arm("softmax classifier", lambda: SoftmaxClassifier(k, 1, cfg.dim, cfg.width), ClassificationTask()),
        "EBM (all classes)": arm("EBM (all classes)", lambda: EBMClassifier(k, 1, cfg.dim, cfg.width), EnergyTask(all_classes=True)),
    }, cfg.seeds)
    avg = {a: [average_accuracy(m) for m in ms] for a, ms in matrices.items()}
    forg = {a: [forgetting(m) for m in ms] for a, ms in matrices.items()}
    ebm, soft, _ = list(runs)
    decision = all_of([
        beats(forg[ebm], forg[soft], a_name=ebm, b_name=soft, metric="forgetting (points)", lower_is_better=True,
              claim="the EBM forgets less than the softmax classifier"),
        beats(avg[ebm], avg[soft], a_name=ebm, b_name=soft, metric="average accuracy (%)",
              claim="the EBM's average accuracy after the last task is higher"),
    ], claim="less forgetting than softmax in class-incremental learning")
    rows = [{"classifier": a, "average accuracy (%)": spread(avg[a]), "forgetting (points)": spread(forg[a]),
             "per seed (avg acc)": per_seed(avg[a])} for a in runs]
    final = {a: {f"task {i + 1}": [m[-1][i] for m in ms] for i in range(len(splits))} for a, ms in matrices.items()}
    figures = [plots.bars(out, "average_accuracy.png", avg, "class-incremental split digits: after the last task",
                          ylabel="average accuracy (%)"),
               plots.lines(out, "final_accuracy_per_task.png", final, "accuracy on each task after the last one",
                           xlabel="task", ylabel="accuracy (%)")]
    return Report(
        slug="ebm-cl", claim=CLAIM,
        setup=(f"scikit-learn's digits ({len(train)} training, {len(test)} test images, {cfg.image_size} px) split into "
               f"{len(splits)} tasks of {cfg.per_task} classes {splits}, learned one after another without replay "
               f"({cfg.recipe.describe()} per task). All arms share the features h(x) (two strided convs of width "
               f"{cfg.width}, a {cfg.dim}-d layer); the EBM gates them with a label embedding and maps them to an energy, "
               "the softmax classifier has a linear head. After each task every seen task's test digits are classified "
               f"among all classes seen so far; average accuracy and forgetting from that matrix; seeds {list(cfg.seeds)}. "
               "'EBM (all classes)' is the same EBM with every class as a negative (a softmax over energies)."),
        columns=["classifier", "average accuracy (%)", "forgetting (points)", "per seed (avg acc)"], rows=rows,
        decision=decision,
        differences=["8x8 digits upsampled to 16 px instead of MNIST; a small conv net and a few epochs per task."],
        figures=figures, results={"accuracy_matrices": matrices, "average_accuracy": avg, "forgetting": forg})
