"""Big Transfer in miniature: GroupNorm + Weight Standardization at tiny batches, and transfer vs scratch.

Two experiments on a narrow pre-activation ResNet (``resnetv2.ResNetV2``):

1. Batch size (the paper's Sec. 4.3 and Fig. 4): the network with BatchNorm and with GN+WS is trained at a
   normal and at a tiny batch size (learning rate scaled linearly). BN's statistics become noisy and its
   running estimates stop matching training, so it degrades; GN+WS computes nothing across the batch.
2. Transfer (Sec. 3.3, 4): the GN+WS network is pre-trained on one synthetic task (four shape classes)
   and fine-tuned on another (the other four classes, few examples) with BiT-HyperRule (zero-initialised
   head, SGD momentum 0.9, warmup then /10 steps at 30/60/90%, no weight decay, no MixUp below 20k
   examples); the same network trained from scratch on the few examples is the baseline.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..data import SHAPE_CLASSES
from ..models.classification.resnetv2 import ResNetV2, bit_hyperrule
from ._cnn import bar_chart, shapes, train
from .report import Report

CLAIM = ("GroupNorm with Weight Standardization trains well at tiny per-device batches where BatchNorm degrades, "
         "and a pre-trained BiT model fine-tuned with BiT-HyperRule beats training from scratch, most of all with "
         "few labelled examples.")


@dataclass
class Config:
    image_size: int = 32
    scale: tuple[float, float] = (0.5, 0.9)
    preset: str = "medium"
    widths: tuple[int, ...] = (64, 128, 256, 512)  # stage outputs; bottlenecks are a quarter of these
    stem_width: int = 16
    layers: tuple[int, ...] = (1, 1, 1, 1)
    groups: int = 8  # GroupNorm groups (32 in BiT; the miniature's bottlenecks have only 16-128 channels)
    # experiment 1: batch size
    train_size: int = 1500
    test_size: int = 600
    epochs: int = 4
    batch_sizes: tuple[int, ...] = (64, 4)
    lr: float = 0.05  # at batch 64, scaled linearly
    # experiment 2: transfer
    pretrain_size: int = 4000
    pretrain_epochs: int = 4
    shots: int = 20  # downstream training examples per class
    finetune_batch: int = 16
    hyperrule_scale: float = 0.3  # BiT-HyperRule's 500 steps x this (few examples, small images)
    finetune_lr: float = 0.01
    scratch_lr: float = 0.05
    seed: int = 0


SMOKE = dict(train_size=64, test_size=32, epochs=1, batch_sizes=(16, 8), pretrain_size=64, pretrain_epochs=1,
             shots=4, hyperrule_scale=0.02, image_size=16, widths=(16, 16, 16, 16), stem_width=8, groups=4)
FULL = dict(image_size=128, scale=(0.25, 0.6), train_size=20000, test_size=5000, epochs=30, layers=(3, 4, 6, 3),
            widths=(256, 512, 1024, 2048), stem_width=64, groups=32, batch_sizes=(128, 4), pretrain_size=100000,
            pretrain_epochs=30, hyperrule_scale=1.0, finetune_lr=0.003, finetune_batch=128)

UPSTREAM, DOWNSTREAM = SHAPE_CLASSES[:4], SHAPE_CLASSES[4:]


def build(cfg: Config, num_classes: int, gn_ws: bool) -> ResNetV2:
    norm = functools.partial(torch.nn.GroupNorm, cfg.groups) if gn_ws else torch.nn.BatchNorm2d
    return ResNetV2(cfg.layers, num_classes=num_classes, channels=cfg.widths, stem_width=cfg.stem_width,
                    norm_layer=norm, weight_std=gn_ws)


def run(cfg: Config, out: Path) -> Report:
    rows: list[dict] = []
    # ---- experiment 1: BN vs GN+WS across batch sizes
    train_data, test_data = shapes(cfg.image_size, cfg.train_size, cfg.test_size, cfg.preset, seed=cfg.seed, scale=cfg.scale)
    batch_acc: dict[str, float] = {}
    for gn_ws in (False, True):
        for bs in cfg.batch_sizes:
            torch.manual_seed(cfg.seed)
            name = f"{'GN+WS' if gn_ws else 'BN'}, batch {bs}"
            result = train(f"{'gnws' if gn_ws else 'bn'}_b{bs}", build(cfg, train_data.num_classes, gn_ws), train_data,
                           test_data, out, epochs=cfg.epochs, batch_size=bs, lr=cfg.lr * bs / 64, seed=cfg.seed)
            batch_acc[name] = result.acc
            rows.append({"experiment": "batch size", "model": name, "test acc (%)": result.acc})
    big, tiny = cfg.batch_sizes
    bn_drop = batch_acc[f"BN, batch {big}"] - batch_acc[f"BN, batch {tiny}"]
    gn_drop = batch_acc[f"GN+WS, batch {big}"] - batch_acc[f"GN+WS, batch {tiny}"]

    # ---- experiment 2: pre-train on 4 classes, fine-tune on the other 4 with few examples (BiT-HyperRule)
    up_train, up_test = shapes(cfg.image_size, cfg.pretrain_size, cfg.test_size // 2, cfg.preset, seed=cfg.seed + 1,
                               scale=cfg.scale, classes=UPSTREAM)
    torch.manual_seed(cfg.seed)
    upstream = build(cfg, len(UPSTREAM), gn_ws=True)
    pre = train("upstream", upstream, up_train, up_test, out, epochs=cfg.pretrain_epochs, batch_size=64, lr=cfg.lr,
                seed=cfg.seed)
    down_train, down_test = shapes(cfg.image_size, cfg.shots * len(DOWNSTREAM), cfg.test_size, cfg.preset,
                                   seed=cfg.seed + 2, scale=cfg.scale, classes=DOWNSTREAM)
    rule = bit_hyperrule(len(down_train), (cfg.image_size, cfg.image_size), lr=cfg.finetune_lr,
                         batch_size=cfg.finetune_batch, scale=cfg.hyperrule_scale)
    steps_per_epoch = len(down_train) // rule.batch_size
    epochs = max(1, math.ceil(rule.steps / steps_per_epoch))
    upstream.reset_classifier(len(DOWNSTREAM), zero_init=True)
    opt = torch.optim.SGD(upstream.parameters(), lr=rule.lr, momentum=0.9)
    few_shot = dict(epochs=epochs, batch_size=rule.batch_size, seed=cfg.seed, eval_every=epochs)
    transfer = train("finetune", upstream, down_train, down_test, out, lr=rule.lr, optimizer=opt,
                     scheduler=LambdaLR(opt, lambda s: rule.lr_at(s) / rule.lr), **few_shot)
    torch.manual_seed(cfg.seed)
    scratch = train("scratch", build(cfg, len(DOWNSTREAM), gn_ws=True), down_train, down_test, out, lr=cfg.scratch_lr,
                    warmup_epochs=0.0, **few_shot)
    rows += [
        {"experiment": "transfer", "model": f"upstream ({', '.join(UPSTREAM)})", "test acc (%)": pre.acc},
        {"experiment": "transfer", "model": f"fine-tuned, {cfg.shots}/class ({', '.join(DOWNSTREAM)})", "test acc (%)": transfer.acc},
        {"experiment": "transfer", "model": f"from scratch, {cfg.shots}/class", "test acc (%)": scratch.acc},
    ]
    held = bn_drop > gn_drop and transfer.acc > scratch.acc
    verdict = (f"Going from batch {big} to batch {tiny}, BN loses {bn_drop:+.1f} points and GN+WS {gn_drop:+.1f}. "
               f"Fine-tuning the pre-trained network with BiT-HyperRule ({rule.steps} steps, batch {rule.batch_size}) "
               f"reaches {transfer.acc:.1f}% on the new classes from {cfg.shots} examples each; the same network "
               f"trained from scratch for the same steps reaches {scratch.acc:.1f}%.")
    figures = [
        bar_chart(list(batch_acc), list(batch_acc.values()), out, "batch_size.png", "BN vs GN+WS across batch sizes",
                  "test accuracy (%)", colors=["C0", "C0", "C1", "C1"][: len(batch_acc)]),
        bar_chart(["from scratch", "BiT transfer"], [scratch.acc, transfer.acc], out, "transfer.png",
                  f"{cfg.shots} examples per class", "test accuracy (%)", colors=["C7", "C2"]),
    ]
    return Report(
        slug="bit",
        claim=CLAIM,
        setup=(f"A narrow ResNet-v2 (pre-activation bottlenecks {cfg.layers}, stage widths {cfg.widths}, GroupNorm with "
               f"{cfg.groups} groups + Weight Standardization, or BatchNorm with plain convs). Experiment 1: "
               f"{cfg.train_size} synthetic scenes ({cfg.image_size}x{cfg.image_size}, 8 classes), {cfg.epochs} epochs "
               f"at batch {' and '.join(map(str, cfg.batch_sizes))}, lr {cfg.lr} x batch/64, cosine; "
               f"{cfg.test_size} test scenes. Experiment 2: pre-training on {cfg.pretrain_size} scenes of 4 classes for "
               f"{cfg.pretrain_epochs} epochs, then BiT-HyperRule fine-tuning on {cfg.shots} scenes per class of the "
               f"other 4 classes: zero head, SGD momentum 0.9, lr {rule.lr}, {rule.steps} steps (BiT's 500 x "
               f"{cfg.hyperrule_scale}) with {rule.warmup_steps} warmup steps and /10 at steps {rule.decay_steps}, "
               f"batch {rule.batch_size}, no weight decay, no MixUp (under 20k examples). Scratch: the same network and "
               f"steps, lr {cfg.scratch_lr} with cosine decay."),
        columns=["experiment", "model", "test acc (%)"],
        rows=rows,
        held=held,
        verdict=verdict + f" Held when BN degrades more than GN+WS and transfer beats scratch: {held}.",
        differences=[
            "Narrow ResNet-v2 on 32x32 synthetic scenes; upstream is 1.5k scenes of 4 shape classes, not ImageNet-21k "
            "or JFT-300M.",
            "HyperRule's resolution rule (resize to 160, crop 128 for small images) is not applied: images stay "
            f"{cfg.image_size} px. Its step counts are scaled by {cfg.hyperrule_scale} and the batch is "
            f"{cfg.finetune_batch}, not 512, with a learning rate of {cfg.finetune_lr} instead of 0.003.",
            f"GroupNorm uses {cfg.groups} groups instead of 32 because the miniature is narrow.",
            "One seed per run.",
        ],
        figures=figures,
        results={"batch_size_accuracy": batch_acc, "bn_drop": bn_drop, "gnws_drop": gn_drop,
                 "transfer_acc": transfer.acc, "scratch_acc": scratch.acc, "upstream_acc": pre.acc},
    )
