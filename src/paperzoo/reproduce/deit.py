"""DeiT in miniature: distillation through a distillation token beats training without distillation.

The paper (section 5.2, Table 3) trains DeiT students with a convnet teacher (RegNetY-16GF): hard-label
distillation through the distillation token beats no distillation and beats the usual distillation
through the class token. Here a CNN teacher (the paper's CIFAR ResNet-20) is trained first, within the
same run, then three identical width/depth-reduced DeiT students for the same number of steps: without
distillation, with hard distillation through the class token alone, and DeiT⚗ with the distillation token
(``paperzoo.tasks.distillation.DeiTDistillationTask``; evaluation averages its two heads). The data are the
real 8x8 handwritten digits, on which these small transformers learn within a CPU budget (see
``_backbones``); the students train on random crops, the setting in which a teacher's hard label can
differ from the ground truth.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..registry import create_model
from ..train.config import MixUpConfig
from ..tasks.distillation import DeiTDistillationTask
from ._backbones import CropFlip, background, bar_chart, dataset, fit, params_m
from .report import Report

CLAIM = ("Hard-label distillation from a convnet teacher through a dedicated distillation token improves a DeiT "
         "student over training it without distillation (Touvron et al., Table 3).")


@dataclass
class Config:
    data: str = "digits"  # digits (1257 training images) | shapes (synthetic scenes, for FULL)
    image_size: int = 8
    scale: tuple[float, float] = (0.5, 0.9)  # shapes only: object size
    train_size: int | None = None  # None: the whole training split
    test_size: int | None = None  # None: the whole test split (360 digits)
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
    augment_pad: int = 1  # students and teacher: random crops of the image padded with black by this many pixels
    augment_flip: bool = False  # and horizontal flips (off: a mirrored digit is not the same digit)
    mixup: float = 0.0  # students: mixup alpha (DeiT's recipe uses 0.8 with CutMix); 0 = off
    seed: int = 0  # data and teacher
    student_seeds: tuple[int, ...] = (0, 1, 2)  # each student is trained once per seed; the verdict uses the means


SMOKE = dict(train_size=128, test_size=64, teacher_steps=4, student_steps=4, batch_size=32, student_seeds=(0,))
FULL = dict(data="shapes", image_size=32, patch=4, train_size=50000, test_size=10000, teacher_steps=40000,
            student_steps=100000, batch_size=128, dim=192, depth=12, heads=3, lr=1e-3, augment_pad=4, augment_flip=True,
            mixup=0.8)


def _student(cfg: Config, distilled: bool, num_classes: int, in_chans: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    name = "deit_tiny_distilled_patch16_224" if distilled else "deit_tiny_patch16_224"
    return create_model(name, num_classes=num_classes, in_chans=in_chans, img_size=cfg.image_size, patch_size=cfg.patch, embed_dim=cfg.dim,
                        depth=cfg.depth, num_heads=cfg.heads)


def run(cfg: Config, out: Path) -> Report:
    data = dict(image_size=cfg.image_size, scale=cfg.scale, seed=cfg.seed)
    test = dataset(cfg.data, "test", cfg.test_size, **data)
    augment = (CropFlip(cfg.augment_pad, cfg.augment_flip, background(test)) if cfg.augment_pad or cfg.augment_flip
               else None)
    train = dataset(cfg.data, "train", cfg.train_size, **data, transform=augment)
    common = dict(batch_size=cfg.batch_size, seed=cfg.seed, channels_last=True)

    torch.manual_seed(cfg.seed)
    teacher = create_model("resnet20_cifar", num_classes=train.num_classes, in_chans=train.in_chans)
    history = fit(teacher, train, test, out, "teacher_resnet20", steps=cfg.teacher_steps, optimizer="sgd",
                  lr=cfg.teacher_lr, weight_decay=5e-4, **common)
    rows = [{"model": "teacher: ResNet-20", "distillation": "-", "params (M)": params_m(teacher),
             "test acc (%)": 100 * history[-1]["val_acc"], "per seed": "-"}]

    students = [("DeiT (mini)", False, None), ("DeiT (mini)", False, "class token"), ("DeiT⚗ (mini)", True, "distillation token")]
    for label, distilled, via in students:
        accs = []
        for seed in cfg.student_seeds:
            model = _student(cfg, distilled, train.num_classes, train.in_chans, seed)
            task = DeiTDistillationTask(teacher, "hard") if via else None
            name = f"student_{'dist_token' if distilled else 'cls_token' if via else 'none'}_seed{seed}"
            history = fit(model, train, test, out, name, task=task, steps=cfg.student_steps, optimizer="adamw", lr=cfg.lr,
                          weight_decay=cfg.weight_decay, clip_grad=1.0, mixup=MixUpConfig(cfg.mixup),
                          **dict(common, seed=seed))
            accs.append(100 * history[-1]["val_acc"])
        rows.append({"model": label, "distillation": f"hard, via {via}" if via else "none", "params (M)": params_m(model),
                     "test acc (%)": sum(accs) / len(accs), "per seed": " / ".join(f"{a:.1f}" for a in accs)})

    teacher_acc, none_acc, cls_acc, token_acc = (r["test acc (%)"] for r in rows)
    what = "real handwritten digits (10 classes)" if cfg.data == "digits" else "synthetic scenes (8 shape classes)"
    held = token_acc > none_acc
    verdict = (f"Mean over {len(cfg.student_seeds)} student seed(s): DeiT⚗ with the distillation token {token_acc:.1f}% vs {none_acc:.1f}% without distillation "
               f"({token_acc - none_acc:+.1f} points) and {cls_acc:.1f}% with hard distillation through the class token "
               f"({token_acc - cls_acc:+.1f}); teacher {teacher_acc:.1f}%.")
    figure = bar_chart(out, "test_accuracy.png", ["ResNet-20\nteacher", "DeiT\nno distill.", "DeiT\nhard, cls token",
                                                  "DeiT⚗\nhard, dist. token"],
                       [r["test acc (%)"] for r in rows], "DeiT students distilled from a CNN teacher")
    return Report(
        slug="deit",
        claim=CLAIM,
        setup=(f"{len(train)} training and {len(test)} test {what} at {cfg.image_size}x{cfg.image_size}, training "
               f"images randomly cropped after padding with black by {cfg.augment_pad} px{' and flipped' if cfg.augment_flip else ''}"
               f"{f', students with mixup (alpha {cfg.mixup})' if cfg.mixup else ''}. Teacher: ResNet-20, SGD lr "
               f"{cfg.teacher_lr}, {cfg.teacher_steps} steps of batch {cfg.batch_size}. Students: DeiT reduced to width "
               f"{cfg.dim}, depth {cfg.depth}, {cfg.heads} heads, {cfg.patch}x{cfg.patch} patches "
               f"({(cfg.image_size // cfg.patch) ** 2} tokens), AdamW lr {cfg.lr}, weight decay {cfg.weight_decay}, "
               f"{cfg.student_steps} steps (cosine after a 10% warmup), each student once per seed {cfg.student_seeds} (the seed sets "
               "initialisation and data order, shared by the three students); hard distillation loss "
               "1/2 CE(class head, y) + 1/2 CE(distillation head, argmax teacher) as in the paper, the teacher labelling "
               "the same augmented images; DeiT⚗ is evaluated on the average of its two heads."),
        columns=["model", "distillation", "params (M)", "test acc (%)", "per seed"],
        rows=rows,
        held=held,
        verdict=verdict,
        differences=[
            "ImageNet with a RegNetY-16GF teacher and 300 epochs of heavy augmentation (RandAugment, mixup, CutMix, "
            f"repeated augmentation) in the paper; here {what}, a ResNet-20 teacher trained in the same run, random "
            f"crops{' and mixup' if cfg.mixup else ''} only, and a few hundred steps. On the synthetic scenes a DeiT this small stays near chance within a "
            "CPU budget, so the default uses the digits; `data=shapes` (and --full) runs the scenes.",
            "Width/depth-reduced DeiT (the same classes as deit_tiny_(distilled_)patch16_224, other kwargs).",
            "At this scale a student's accuracy moves by several points between seeds, and between two objectives as close "
            "as CE(y) and 1/2 CE(y) + 1/2 CE(teacher's label) from the same seed; compare the per-seed columns before "
            "reading a difference of the means.",
        ],
        figures=[figure],
        results={"gain_token_vs_none": token_acc - none_acc, "gain_token_vs_cls": token_acc - cls_acc},
    )
