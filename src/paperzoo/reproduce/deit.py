"""DeiT in miniature: distillation through a distillation token beats training without distillation.

The paper (section 5.2, Table 3) trains DeiT students with a convnet teacher (RegNetY-16GF): hard-label
distillation through the distillation token beats no distillation and beats the usual distillation
through the class token. Here a CNN teacher (the paper's CIFAR ResNet-20) is trained first, within the
same run, then three identical width/depth-reduced DeiT students for the same number of steps: without
distillation, with hard distillation through the class token alone, and DeiT⚗ with the distillation token
(``paperzoo.train.distill.DeiTDistillationTask``; evaluation averages its two heads).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..registry import create_model
from ..train.distill import DeiTDistillationTask
from ._backbones import bar_chart, fit, params_m, scenes
from .report import Report

CLAIM = ("Hard-label distillation from a convnet teacher through a dedicated distillation token improves a DeiT "
         "student over training it without distillation (Touvron et al., Table 3).")


@dataclass
class Config:
    image_size: int = 16
    scale: tuple[float, float] = (0.5, 0.9)
    train_size: int = 2000
    test_size: int = 1000
    teacher_epochs: int = 20
    student_epochs: int = 20
    batch_size: int = 64
    dim: int = 64
    depth: int = 4
    heads: int = 4
    patch: int = 2
    lr: float = 1e-3
    weight_decay: float = 0.05
    teacher_lr: float = 0.1
    seed: int = 0


SMOKE = dict(train_size=128, test_size=64, teacher_epochs=1, student_epochs=1, batch_size=32)
FULL = dict(image_size=32, patch=4, train_size=50000, test_size=10000, teacher_epochs=100, student_epochs=300,
            batch_size=128, dim=192, depth=12, heads=3)


def _student(cfg: Config, distilled: bool, num_classes: int) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    name = "deit_tiny_distilled_patch16_224" if distilled else "deit_tiny_patch16_224"
    return create_model(name, num_classes=num_classes, img_size=cfg.image_size, patch_size=cfg.patch, embed_dim=cfg.dim,
                        depth=cfg.depth, num_heads=cfg.heads)


def run(cfg: Config, out: Path) -> Report:
    data = dict(image_size=cfg.image_size, scale=cfg.scale, seed=cfg.seed)
    train, test = scenes("train", cfg.train_size, **data), scenes("test", cfg.test_size, **data)
    common = dict(batch_size=cfg.batch_size, seed=cfg.seed, channels_last=True)

    torch.manual_seed(cfg.seed)
    teacher = create_model("resnet20_cifar", num_classes=train.num_classes)
    history = fit(teacher, train, test, out, "teacher_resnet20", epochs=cfg.teacher_epochs, optimizer="sgd",
                  lr=cfg.teacher_lr, weight_decay=5e-4, warmup_epochs=1, eval_every=cfg.teacher_epochs, **common)
    rows = [{"model": "teacher: ResNet-20", "distillation": "-", "params (M)": params_m(teacher),
             "test acc (%)": 100 * history[-1]["val_acc"]}]

    students = [("DeiT (mini)", False, None), ("DeiT (mini)", False, "class token"), ("DeiT⚗ (mini)", True, "distillation token")]
    for label, distilled, via in students:
        model = _student(cfg, distilled, train.num_classes)
        task = DeiTDistillationTask(teacher, "hard") if via else None
        history = fit(model, train, test, out, f"student_{'dist_token' if distilled else 'cls_token' if via else 'none'}",
                      task=task, epochs=cfg.student_epochs, optimizer="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay,
                      warmup_epochs=2, clip_grad=1.0, eval_every=cfg.student_epochs, **common)
        rows.append({"model": label, "distillation": f"hard, via {via}" if via else "none", "params (M)": params_m(model),
                     "test acc (%)": 100 * history[-1]["val_acc"]})

    teacher_acc, none_acc, cls_acc, token_acc = (r["test acc (%)"] for r in rows)
    held = token_acc > none_acc
    verdict = (f"DeiT⚗ with the distillation token: {token_acc:.1f}% vs {none_acc:.1f}% without distillation "
               f"({token_acc - none_acc:+.1f} points) and {cls_acc:.1f}% with hard distillation through the class token "
               f"({token_acc - cls_acc:+.1f}); teacher {teacher_acc:.1f}%.")
    figure = bar_chart(out, "test_accuracy.png", ["ResNet-20\nteacher", "DeiT\nno distill.", "DeiT\nhard, cls token",
                                                  "DeiT⚗\nhard, dist. token"],
                       [r["test acc (%)"] for r in rows], "DeiT students distilled from a CNN teacher")
    return Report(
        slug="deit",
        claim=CLAIM,
        setup=(f"{cfg.train_size} training and {cfg.test_size} test synthetic scenes at {cfg.image_size}x{cfg.image_size} "
               f"(8 shape classes). Teacher: ResNet-20, SGD lr {cfg.teacher_lr}, {cfg.teacher_epochs} epochs. Students: "
               f"DeiT reduced to width {cfg.dim}, depth {cfg.depth}, {cfg.heads} heads, {cfg.patch}x{cfg.patch} patches "
               f"({(cfg.image_size // cfg.patch) ** 2} tokens), AdamW lr {cfg.lr}, weight decay {cfg.weight_decay}, "
               f"{cfg.student_epochs} epochs, same seed and data order; hard distillation loss "
               "1/2 CE(class head, y) + 1/2 CE(distillation head, argmax teacher) as in the paper; DeiT⚗ is evaluated on "
               "the average of its two heads."),
        columns=["model", "distillation", "params (M)", "test acc (%)"],
        rows=rows,
        held=held,
        verdict=verdict,
        differences=[
            "ImageNet with a RegNetY-16GF teacher and 300 epochs of heavy augmentation (RandAugment, mixup, CutMix, "
            "repeated augmentation) in the paper; here small synthetic images, a ResNet-20 teacher trained in the same "
            "run, no augmentation, and a few epochs.",
            "Width/depth-reduced DeiT (the same classes as deit_tiny_(distilled_)patch16_224, other kwargs).",
            "One seed per student; differences of a point or two are within seed noise at this scale.",
        ],
        figures=[figure],
        results={"gain_token_vs_none": token_acc - none_acc, "gain_token_vs_cls": token_acc - cls_acc},
    )
