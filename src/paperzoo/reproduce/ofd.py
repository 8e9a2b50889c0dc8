"""OFD in miniature: pre-ReLU feature distillation beats KD alone at the same student.

Heo et al. (2019, Tables 2-4) distil through the teacher's pre-ReLU features at the end of each stage, with the
margin-ReLU teacher transform, a 1x1-conv + BN connector on the student and the partial L2 distance, and improve on
Hinton's KD for the same student and teacher (CIFAR-100: e.g. WRN-28-4 -> WRN-16-4, KD 77.3%, OFD 79.6% in their
Table 3). Here a CIFAR ResNet-20 teacher (width ``teacher_width``) is trained within the run; the same narrow
ResNet-20 student is trained for the same steps from several seeds with KD (``KDTask``, T = 4, alpha = 0.9) and
with OFD (``OFDTask``: cross-entropy + the stage-weighted partial L2 / batch / 1000, as the official CIFAR script).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..tasks.distillation import KDTask, OFDTask
from . import kd
from ._kit import beats, fit, mean, per_seed, plots, run_arms, spread
from .report import Report

CLAIM = ("Distilling pre-ReLU features through a margin ReLU, a connector and the partial L2 distance trains a better "
         "student than Hinton's KD alone, with the same teacher and student (Heo et al., Tables 2-4).")
ARMS = ("KD", "OFD")


@dataclass
class Config(kd.Config):
    """KD's setting (the same data, teacher, student and steps) plus OFD's feature-loss weight."""
    feature_weight: float = 1e-3  # the official CIFAR script: loss_distill / batch / 1000


SMOKE, FULL = kd.SMOKE, kd.FULL


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    common = kd.recipe(cfg, test)
    augment = common["batch_transform"]
    teacher_run = kd.train_teacher(cfg, train, test)
    teacher = teacher_run.model.eval()

    def arm(label: str):
        def task():
            return KDTask(teacher, cfg.temperature, cfg.alpha) if label == "KD" else OFDTask(teacher, cfg.feature_weight)
        return lambda seed: fit(f"student_{label.lower()}", kd.student(cfg, train, seed), train, test, seed=seed,
                                steps=cfg.student_steps, task=task(), **common)

    runs = run_arms({label: arm(label) for label in ARMS}, cfg.seeds)
    acc = {label: [r.acc for r in rs] for label, rs in runs.items()}
    decision = beats(acc["OFD"], acc["KD"], a_name="OFD", b_name="KD", metric="test acc (%)")
    rows = [{"model": f"teacher: ResNet-20, width {cfg.teacher_width}", "distillation": "-",
             "test acc (%)": f"{teacher_run.acc:.1f}", "per seed": f"seed {cfg.teacher_seed}"}]
    rows += [{"model": f"student: ResNet-20, width {cfg.student_width}", "distillation": label,
              "test acc (%)": spread(acc[label]), "per seed": per_seed(acc[label])} for label in ARMS]
    figure = plots.bars(out, "test_accuracy.png", {"teacher": [teacher_run.acc], "student\nKD": acc["KD"],
                                                   "student\nOFD": acc["OFD"]}, "OFD vs KD at the same student")
    return Report(
        slug="ofd",
        claim=CLAIM,
        setup=(f"{cfg.data.describe(train, test)}; training batches with {augment.describe() if augment else 'no augmentation'}. "
               f"Teacher: CIFAR ResNet-20 of width {cfg.teacher_width}, {cfg.teacher_steps} steps (seed {cfg.teacher_seed}). "
               f"Students: ResNet-20 of width {cfg.student_width}, {cfg.student_steps} steps, once per seed {list(cfg.seeds)}. "
               f"KD: T = {cfg.temperature:g}, alpha = {cfg.alpha:g}. OFD: CE + {cfg.feature_weight:g} x partial L2 per "
               "sample at the three stage ends before the ReLU (stage weights 1/4, 1/2, 1), margins from the teacher's "
               f"BN, connectors trained with the student. SGD momentum 0.9, lr {cfg.lr:g} (cosine after a 5% warmup), "
               f"weight decay {cfg.weight_decay:g}, batch {cfg.batch_size}."),
        columns=["model", "distillation", "test acc (%)", "per seed"],
        rows=rows,
        decision=decision,
        discussion=f"Teacher {teacher_run.acc:.1f}%; OFD minus KD {mean(acc['OFD']) - mean(acc['KD']):+.1f} points (means).",
        differences=[
            "CIFAR-100 and ImageNet with WRN/ResNet/PyramidNet pairs in the paper; here a few hundred digits at 16x16 and "
            "two widths of the CIFAR ResNet-20.",
            "The official CIFAR script runs the teacher in train mode (batch statistics); here it runs in eval mode.",
        ],
        figures=[figure],
        results={"accuracy": acc, "teacher_acc": teacher_run.acc},
    )
