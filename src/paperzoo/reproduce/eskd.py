"""ESKD in miniature: an early-stopped teacher teaches a small student better than the fully trained one.

Cho & Hariharan (2019) find that the fully trained teacher is often not the best teacher: a small student cannot
match its sharp final solution, and distilling from a checkpoint of an early epoch of the teacher's training
(early-stopped KD, section 5, Tables 3-5) gives better students, the more so the smaller the student (their
student-capacity experiment, section 4). Here a CIFAR ResNet-20 teacher (width ``teacher_width``) is trained
within the run with every epoch-end checkpoint kept; students of several widths are then distilled with the same
KD loss (``paperzoo.tasks.distillation.ESKDTask``, T = 4, alpha = 0.9) from the teacher of epoch
``early_epoch`` (``early_stopped_teacher``) and from its final epoch, for the same steps from several seeds.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..registry import create_model
from ..tasks.distillation import ESKDTask, early_stopped_teacher
from ..weights import load_weights
from ._kit import Data, FlipShift, background, beats, fit, mean, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("Distilling a small student from an early-stopped teacher (a checkpoint of an early epoch) gives a better "
         "student than distilling from the fully trained teacher (Cho & Hariharan, section 5).")


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data("digits", image_size=16, train_size=300, test_size=None))
    teacher_width: int = 16
    student_widths: tuple[int, ...] = (2, 4)  # the smallest is the one judged
    teacher_steps: int = 600
    teacher_epochs: int = 10  # trainer epochs the teacher's steps are cut into (one checkpoint each)
    early_epoch: int = 3
    student_steps: int = 400
    batch_size: int = 64
    lr: float = 0.05
    weight_decay: float = 5e-4
    temperature: float = 4.0
    alpha: float = 0.9
    augment_shift: int = 1
    teacher_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)


SMOKE = dict(data=dict(train_size=64, test_size=32), teacher_steps=4, teacher_epochs=2, early_epoch=1, student_steps=2,
             batch_size=16, student_widths=(2,), seeds=(0,))
FULL = dict(data=dict(name="shapes", image_size=32, train_size=50000, test_size=10000), teacher_steps=80000,
            teacher_epochs=200, early_epoch=40, student_steps=80000, batch_size=128, augment_shift=4, seeds=(0, 1))


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    augment = FlipShift(cfg.augment_shift, False, background(test)) if cfg.augment_shift else None
    common = dict(batch_size=cfg.batch_size, warmup_fraction=0.05, batch_transform=augment, optimizer="sgd", lr=cfg.lr,
                  weight_decay=cfg.weight_decay)

    def resnet(width: int) -> torch.nn.Module:
        return create_model("resnet20_cifar", num_classes=train.num_classes, in_chans=train.in_chans, width=width)

    with tempfile.TemporaryDirectory() as tmp:
        teacher_run = fit("teacher", seeded(cfg.teacher_seed, lambda: resnet(cfg.teacher_width)), train, test,
                          seed=cfg.teacher_seed, steps=cfg.teacher_steps, evals=cfg.teacher_epochs, out=tmp,
                          keep_checkpoints=cfg.teacher_epochs + 1, **common)
        early = resnet(cfg.teacher_width)
        load_weights(early, early_stopped_teacher(tmp, cfg.early_epoch))
    teachers = {"early-stopped": early.eval(), "full": teacher_run.model.eval()}
    teacher_acc = {"full": teacher_run.acc,
                   "early-stopped": 100 * teacher_run.history[cfg.early_epoch - 1]["val_acc"]}

    def arm(width: int, which: str):
        return lambda seed: fit(f"student_w{width}_{which}", seeded(seed, lambda: resnet(width)), train, test, seed=seed,
                                steps=cfg.student_steps, task=ESKDTask(teachers[which], cfg.temperature, cfg.alpha), **common)

    arms = {(w, which): arm(w, which) for w in cfg.student_widths for which in teachers}
    runs = run_arms({f"width {w}, {which} teacher": fn for (w, which), fn in arms.items()}, cfg.seeds)
    acc = {label: [r.acc for r in rs] for label, rs in runs.items()}
    small = min(cfg.student_widths)
    decision = beats(acc[f"width {small}, early-stopped teacher"], acc[f"width {small}, full teacher"],
                     a_name=f"width-{small} student of the early-stopped teacher",
                     b_name=f"width-{small} student of the full teacher", metric="test acc (%)")
    rows = [{"network": f"teacher, epoch {cfg.early_epoch} of {cfg.teacher_epochs}", "test acc (%)": f"{teacher_acc['early-stopped']:.1f}", "per seed": f"seed {cfg.teacher_seed}"},
            {"network": f"teacher, epoch {cfg.teacher_epochs} (full)", "test acc (%)": f"{teacher_acc['full']:.1f}", "per seed": f"seed {cfg.teacher_seed}"}]
    rows += [{"network": f"student, {label}", "test acc (%)": spread(v), "per seed": per_seed(v)} for label, v in acc.items()]
    gaps = {w: mean(acc[f"width {w}, early-stopped teacher"]) - mean(acc[f"width {w}, full teacher"]) for w in cfg.student_widths}
    figure = plots.bars(out, "students.png", {label.replace(", ", "\n"): v for label, v in acc.items()},
                        "students of an early-stopped and a fully trained teacher")
    return Report(
        slug="eskd",
        claim=CLAIM,
        setup=(f"{cfg.data.describe(train, test)}; training batches with {augment.describe() if augment else 'no augmentation'}. "
               f"Teacher: CIFAR ResNet-20 of width {cfg.teacher_width}, {cfg.teacher_steps} steps in {cfg.teacher_epochs} "
               f"epochs (a checkpoint at each epoch end, seed {cfg.teacher_seed}); the early-stopped teacher is its epoch-"
               f"{cfg.early_epoch} checkpoint. Students: ResNet-20 of widths {list(cfg.student_widths)}, {cfg.student_steps} "
               f"steps of KD (T = {cfg.temperature:g}, alpha = {cfg.alpha:g}) from either teacher, once per seed "
               f"{list(cfg.seeds)}. SGD momentum 0.9, lr {cfg.lr:g} (cosine after a 5% warmup), weight decay "
               f"{cfg.weight_decay:g}, batch {cfg.batch_size}. The judged arm is the smallest student."),
        columns=["network", "test acc (%)", "per seed"],
        rows=rows,
        decision=decision,
        discussion=("Early-stopped minus full teacher, by student width (means; the capacity experiment, reported, not "
                    "judged): " + ", ".join(f"width {w}: {g:+.1f}" for w, g in gaps.items()) + "."),
        differences=[
            "CIFAR-10 and ImageNet with ResNet/WRN teachers trained for 200 (90) epochs and early-stopped near a third "
            "of training in the paper; here a few hundred digits, a ResNet-20 teacher of a few hundred steps and "
            "narrow ResNet-20 students.",
            "The paper's further variant that also stops the KD term early in the student's training is not used.",
        ],
        figures=[figure],
        results={"accuracy": acc, "teacher_acc": teacher_acc, "gap_by_width": gaps},
    )
