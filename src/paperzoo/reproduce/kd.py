"""KD in miniature: a small student distilled from a larger teacher beats the same student trained alone.

The paper (Hinton, Vinyals & Dean, 2015, section 3 on MNIST) trains a large net, then a small one on the
large one's soft targets at a high temperature: the distilled small net makes far fewer errors (74 test
errors) than the same small net trained on the hard labels alone (146). Here the teacher is the CIFAR
ResNet-20 (width 16), trained first within the run; the student is the same ResNet-20 design at a quarter of
the width (width 4, ~16x fewer parameters), trained for the same steps from several seeds on the hard labels
alone and with ``paperzoo.tasks.distillation.KDTask`` (T = 4, alpha = 0.9 on the T^2-scaled soft term). The
data are a few hundred real handwritten digits, where the teacher's soft targets carry the most information
a small training set does not.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..registry import create_model
from ..tasks.distillation import KDTask
from ._kit import Data, FlipShift, background, beats, fit, mean, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("A small network trained on a larger teacher's temperature-softened class probabilities (with the T^2-scaled "
         "soft loss mixed with the hard-label loss) generalises better than the same small network trained on the "
         "labels alone (Hinton et al., section 3).")
ARMS = ("student alone", "student with KD")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data("digits", image_size=16, train_size=300, test_size=None))
    teacher_width: int = 16
    student_width: int = 4
    teacher_steps: int = 500
    student_steps: int = 500
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    temperature: float = 4.0
    alpha: float = 0.9  # weight of the T^2-scaled soft term; the hard-label term gets 1 - alpha
    augment_shift: int = 1  # random shifts of up to this many pixels (black borders), teacher and students alike
    teacher_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)


SMOKE = dict(data=dict(train_size=64, test_size=32), teacher_steps=3, student_steps=3, batch_size=16, seeds=(0,))
FULL = dict(data=dict(name="shapes", image_size=32, train_size=50000, test_size=10000), teacher_steps=30000,
            student_steps=30000, batch_size=128, augment_shift=4, seeds=(0, 1))


def _resnet20(width: int, train) -> torch.nn.Module:
    return create_model("resnet20_cifar", num_classes=train.num_classes, in_chans=train.in_chans, width=width)


def recipe(cfg: Config, test) -> dict:
    """The teacher's and every student's training settings (SGD, 5% warmup, the configured shifts)."""
    augment = FlipShift(cfg.augment_shift, False, background(test)) if cfg.augment_shift else None
    return dict(batch_size=cfg.batch_size, warmup_fraction=0.05, batch_transform=augment, optimizer="sgd", lr=cfg.lr,
                weight_decay=cfg.weight_decay)


def train_teacher(cfg: Config, train, test):
    """The wide ResNet-20 teacher's ``Run``, trained on the labels from ``teacher_seed``."""
    return fit("teacher_resnet20", seeded(cfg.teacher_seed, lambda: _resnet20(cfg.teacher_width, train)), train, test,
               seed=cfg.teacher_seed, steps=cfg.teacher_steps, **recipe(cfg, test))


def student(cfg: Config, train, seed: int) -> torch.nn.Module:
    return seeded(seed, lambda: _resnet20(cfg.student_width, train))


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    common = recipe(cfg, test)
    augment = common["batch_transform"]
    teacher_run = train_teacher(cfg, train, test)
    teacher = teacher_run.model

    def arm(kd: bool):
        return lambda seed: fit(f"student_{'kd' if kd else 'alone'}", student(cfg, train, seed), train, test, seed=seed,
                                steps=cfg.student_steps, task=KDTask(teacher, cfg.temperature, cfg.alpha) if kd else None,
                                **common)

    runs = run_arms({ARMS[0]: arm(False), ARMS[1]: arm(True)}, cfg.seeds)
    acc = {label: [r.acc for r in rs] for label, rs in runs.items()}
    decision = beats(acc[ARMS[1]], acc[ARMS[0]], a_name="student with KD", b_name="student alone", metric="test acc (%)")
    rows = [{"model": f"teacher: ResNet-20, width {cfg.teacher_width}", "training": "labels",
             "params (M)": f"{teacher_run.params_m:.3f}", "test acc (%)": f"{teacher_run.acc:.1f}",
             "per seed": f"seed {cfg.teacher_seed}"}]
    rows += [{"model": f"student: ResNet-20, width {cfg.student_width}",
              "training": "labels" if label == ARMS[0] else f"KD (T={cfg.temperature:g}, alpha={cfg.alpha:g})",
              "params (M)": f"{runs[label][0].params_m:.3f}", "test acc (%)": spread(acc[label]), "per seed": per_seed(acc[label])}
             for label in ARMS]
    figure = plots.bars(out, "test_accuracy.png", {"teacher": [teacher_run.acc], "student\nalone": acc[ARMS[0]],
                                                   "student\nwith KD": acc[ARMS[1]]}, "KD: a small student and its teacher")
    return Report(
        slug="kd",
        claim=CLAIM,
        setup=(f"{cfg.data.describe(train, test)}; training batches with {augment.describe() if augment else 'no augmentation'}. "
               f"Teacher: CIFAR ResNet-20 of width {cfg.teacher_width}, {cfg.teacher_steps} steps (seed {cfg.teacher_seed}). "
               f"Students: the same design at width {cfg.student_width}, {cfg.student_steps} steps each, once per seed "
               f"{list(cfg.seeds)} (the seed sets initialisation and data order, shared by both arms). SGD momentum 0.9, lr "
               f"{cfg.lr:g} (cosine after a 5% warmup), weight decay {cfg.weight_decay:g}, batch {cfg.batch_size}. KD loss: "
               f"{cfg.alpha:g} T^2 KL(softmax(v/T) || softmax(z/T)) + {1 - cfg.alpha:g} CE(z, y) with T = {cfg.temperature:g}, "
               "the teacher labelling the same augmented images."),
        columns=["model", "training", "params (M)", "test acc (%)", "per seed"],
        rows=rows,
        decision=decision,
        discussion=(f"Teacher {teacher_run.acc:.1f}%; the distilled student closes "
                    f"{mean(acc[ARMS[1]]) - mean(acc[ARMS[0]]):+.1f} points (means) of the gap."),
        differences=[
            "MNIST (60k digits, a 2x1200 teacher and 2x800 student MLP, T = 20) in the paper; here a few hundred 8x8 digits "
            "upsampled to 16x16, convolutional teacher and student, T = 4, and a few hundred steps.",
            "The paper's further experiments (omitted digit class, speech, specialist ensembles) are not reproduced.",
        ],
        figures=[figure],
        results={"accuracy": acc, "teacher_acc": teacher_run.acc},
    )
