"""DeiT in miniature: distillation through a distillation token beats training without distillation.

The paper (section 5.2, Table 3) trains DeiT students with a convnet teacher (RegNetY-16GF): hard-label
distillation through the distillation token beats no distillation and beats the usual distillation
through the class token. Here a CNN teacher (the paper's CIFAR ResNet-20) is trained first, within the
same run, then three identical width/depth-reduced DeiT students for the same number of steps, from
several seeds: without distillation, with hard distillation through the class token alone, and DeiT⚗
with the distillation token (``paperzoo.tasks.distillation.DeiTDistillationTask``; evaluation averages its two
heads). The data are the real 8x8 handwritten digits, on which these small transformers learn within a
CPU budget (see ``vit``); the students train on randomly shifted digits, the setting in which a
teacher's hard label can differ from the ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..registry import create_model
from ..tasks.distillation import DeiTDistillationTask
from ._kit import Data, FlipShift, background, beats, fit, mean, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("Hard-label distillation from a convnet teacher through a dedicated distillation token improves a DeiT "
         "student over training it without distillation (Touvron et al., Table 3).")
STUDENTS = {"DeiT, no distillation": (False, None), "DeiT, hard, via class token": (False, "class token"),
            "DeiT⚗, hard, via distillation token": (True, "distillation token")}


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data("digits", image_size=8, train_size=None, test_size=None))
    teacher_steps: int = 600
    student_steps: int = 600
    batch_size: int = 64
    dim: int = 64
    depth: int = 4
    heads: int = 4
    patch: int = 2
    lr: float = 3e-3
    weight_decay: float = 0.05
    teacher_lr: float = 0.1
    augment_shift: int = 1  # students and teacher: random shifts by up to this many pixels, black borders
    augment_flip: bool = False  # and horizontal flips (off: a mirrored digit is not the same digit)
    mixup: float = 0.0  # students: mixup alpha (DeiT's recipe uses 0.8 with CutMix); 0 = off
    teacher_seed: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)  # each student is trained once per seed


SMOKE = dict(data=dict(train_size=128, test_size=64), teacher_steps=4, student_steps=4, batch_size=32, seeds=(0,))
FULL = dict(data=dict(name="shapes", image_size=32, train_size=50000, test_size=10000), patch=4, teacher_steps=40000,
            student_steps=100000, batch_size=128, dim=192, depth=12, heads=3, lr=1e-3, augment_shift=4, augment_flip=True,
            mixup=0.8, seeds=(0,))


def _student(cfg: Config, distilled: bool, num_classes: int, in_chans: int) -> torch.nn.Module:
    name = "deit_tiny_distilled_patch16_224" if distilled else "deit_tiny_patch16_224"
    return create_model(name, num_classes=num_classes, in_chans=in_chans, img_size=cfg.data.image_size, patch_size=cfg.patch,
                        embed_dim=cfg.dim, depth=cfg.depth, num_heads=cfg.heads)


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    augment = FlipShift(cfg.augment_shift, cfg.augment_flip, background(test)) if cfg.augment_shift or cfg.augment_flip else None
    common = dict(batch_size=cfg.batch_size, warmup_fraction=0.1, batch_transform=augment)
    teacher_run = fit("teacher_resnet20", seeded(cfg.teacher_seed, lambda: create_model(
        "resnet20_cifar", num_classes=train.num_classes, in_chans=train.in_chans)), train, test, seed=cfg.teacher_seed,
        steps=cfg.teacher_steps, optimizer="sgd", lr=cfg.teacher_lr, weight_decay=5e-4, **common)
    teacher = teacher_run.model

    def arm(label: str):
        distilled, via = STUDENTS[label]
        return lambda seed: fit(f"student_{'dist_token' if distilled else 'cls_token' if via else 'none'}", seeded(
            seed, lambda: _student(cfg, distilled, train.num_classes, train.in_chans)), train, test, seed=seed,
            task=DeiTDistillationTask(teacher, "hard") if via else None, steps=cfg.student_steps, optimizer="adamw",
            lr=cfg.lr, weight_decay=cfg.weight_decay, clip_grad=1.0, overrides=[f"mixup.alpha={cfg.mixup}"], **common)

    runs = run_arms({label: arm(label) for label in STUDENTS}, cfg.seeds)
    acc = {label: [r.acc for r in rs] for label, rs in runs.items()}
    none, cls, token = STUDENTS
    decision = beats(acc[token], acc[none], a_name="DeiT⚗ (distillation token)", b_name="no distillation",
                     metric="test acc (%)")
    rows = [{"model": "teacher: ResNet-20", "distillation": "-", "params (M)": teacher_run.params_m,
             "test acc (%)": f"{teacher_run.acc:.1f}", "per seed": f"seed {cfg.teacher_seed}"}]
    rows += [{"model": label.split(",")[0], "distillation": label.split(", ", 1)[1], "params (M)": runs[label][0].params_m,
              "test acc (%)": spread(acc[label]), "per seed": per_seed(acc[label])} for label in STUDENTS]
    discussion = (f"Hard distillation through the class token alone: {spread(acc[cls])}% "
                  f"({mean(acc[token]) - mean(acc[cls]):+.1f} points for the distillation token, means; reported, not "
                  f"judged); teacher {teacher_run.acc:.1f}%.")
    figure = plots.bars(out, "test_accuracy.png", {"ResNet-20\nteacher": [teacher_run.acc], "DeiT\nno distill.": acc[none],
                                                   "DeiT\nhard, cls token": acc[cls], "DeiT⚗\nhard, dist. token": acc[token]},
                        "DeiT students distilled from a CNN teacher")
    return Report(
        slug="deit",
        claim=CLAIM,
        setup=(f"{cfg.data.describe(train, test)}; training batches with {augment.describe() if augment else 'no augmentation'}"
               f"{f', students with mixup (alpha {cfg.mixup})' if cfg.mixup else ''}. Teacher: ResNet-20, SGD lr "
               f"{cfg.teacher_lr}, {cfg.teacher_steps} steps of batch {cfg.batch_size} (seed {cfg.teacher_seed}). Students: "
               f"DeiT reduced to width {cfg.dim}, depth {cfg.depth}, {cfg.heads} heads, {cfg.patch}x{cfg.patch} patches "
               f"({(cfg.data.image_size // cfg.patch) ** 2} tokens), AdamW lr {cfg.lr}, weight decay {cfg.weight_decay}, "
               f"{cfg.student_steps} steps (cosine after a 10% warmup), each student once per seed {list(cfg.seeds)} (the "
               "seed sets initialisation and data order, shared by the three students); hard distillation loss "
               "1/2 CE(class head, y) + 1/2 CE(distillation head, argmax teacher) as in the paper, the teacher labelling "
               "the same augmented images; DeiT⚗ is evaluated on the average of its two heads."),
        columns=["model", "distillation", "params (M)", "test acc (%)", "per seed"],
        rows=rows,
        decision=decision,
        discussion=discussion,
        differences=[
            "ImageNet with a RegNetY-16GF teacher and 300 epochs of heavy augmentation (RandAugment, mixup, CutMix, "
            "repeated augmentation) in the paper; here digits, a ResNet-20 teacher trained in the same run, random "
            f"shifts{' and mixup' if cfg.mixup else ''} only, and a few hundred steps. On the synthetic scenes a DeiT "
            "this small stays near chance within a CPU budget, so the default uses the digits; `data.name=shapes` (and "
            "--full) runs the scenes.",
            "Width/depth-reduced DeiT (the same classes as deit_tiny_(distilled_)patch16_224, other kwargs).",
        ],
        figures=[figure],
        results={"accuracy": acc, "teacher_acc": teacher_run.acc},
    )
