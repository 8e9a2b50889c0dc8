"""Big Transfer in miniature: GroupNorm + Weight Standardization at tiny batches, and transfer vs scratch.

Two experiments on a narrow pre-activation ResNet (``resnetv2.ResNetV2``):

1. Batch size (the paper's Sec. 4.3 and Fig. 4): the network with BatchNorm and with GN+WS is trained at a
   normal and at a tiny batch size (learning rate scaled linearly). BN's statistics become noisy and its
   running estimates stop matching training, so it degrades; GN+WS computes nothing across the batch.
2. Transfer (Sec. 3.3, 4): the GN+WS network is pre-trained on one synthetic task (four shape classes)
   and fine-tuned on another (the other four classes, few examples) with BiT-HyperRule (zero-initialised
   head, SGD momentum 0.9, warmup then /10 steps at 30/60/90%, no weight decay, no MixUp below 20k
   examples); the same network trained from scratch on the few examples is the baseline.

Every run is repeated over several seeds (each seed pre-trains its own upstream network).
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR

from ..data import SHAPE_CLASSES
from ..models.classification.resnetv2 import ResNetV2, bit_hyperrule
from ._kit import Data, Recipe, all_of, beats, fit, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("GroupNorm with Weight Standardization trains well at tiny per-device batches where BatchNorm degrades, "
         "and a pre-trained BiT model fine-tuned with BiT-HyperRule beats training from scratch, most of all with "
         "few labelled examples.")


@dataclass
class Config:
    widths: tuple[int, ...] = (64, 128, 256, 512)  # stage outputs; bottlenecks are a quarter of these
    stem_width: int = 16
    layers: tuple[int, ...] = (1, 1, 1, 1)
    groups: int = 8  # GroupNorm groups (32 in BiT; the miniature's bottlenecks have only 16-128 channels)
    # experiment 1: batch size
    data: Data = field(default_factory=lambda: Data(image_size=32, train_size=1500, test_size=600))
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
    seeds: tuple[int, ...] = (0, 1, 2)


SMOKE = dict(data=dict(image_size=16, train_size=64, test_size=32), epochs=1, batch_sizes=(16, 8), pretrain_size=64,
             pretrain_epochs=1, shots=4, hyperrule_scale=0.02, widths=(16, 16, 16, 16), stem_width=8, groups=4, seeds=(0,))
FULL = dict(data=dict(image_size=128, scale=(0.25, 0.6), train_size=20000, test_size=5000), epochs=30, layers=(3, 4, 6, 3),
            widths=(256, 512, 1024, 2048), stem_width=64, groups=32, batch_sizes=(128, 4), pretrain_size=100000,
            pretrain_epochs=30, hyperrule_scale=1.0, finetune_lr=0.003, finetune_batch=128, seeds=(0,))

UPSTREAM, DOWNSTREAM = SHAPE_CLASSES[:4], SHAPE_CLASSES[4:]


def build(cfg: Config, num_classes: int, gn_ws: bool) -> ResNetV2:
    norm = functools.partial(torch.nn.GroupNorm, cfg.groups) if gn_ws else torch.nn.BatchNorm2d
    return ResNetV2(cfg.layers, num_classes=num_classes, channels=cfg.widths, stem_width=cfg.stem_width,
                    norm_layer=norm, weight_std=gn_ws)


def run(cfg: Config, out: Path) -> Report:
    # ---- experiment 1: BN vs GN+WS across batch sizes
    train, test = cfg.data.splits()
    recipe = Recipe(epochs=cfg.epochs, weight_decay=5e-5, warmup_epochs=1.0)
    names = {(gn, b): f"{'GN+WS' if gn else 'BN'}, batch {b}" for gn in (False, True) for b in cfg.batch_sizes}

    def batch_arm(gn: bool, b: int):
        return lambda seed: fit(f"{'gnws' if gn else 'bn'}_b{b}", seeded(seed, lambda: build(cfg, train.num_classes, gn)),
                                train, test, seed=seed, recipe=recipe, batch_size=b, lr=cfg.lr * b / 64)

    runs = run_arms({names[k]: batch_arm(*k) for k in names}, cfg.seeds)
    acc = {n: [r.acc for r in rs] for n, rs in runs.items()}
    big, tiny = cfg.batch_sizes
    drop = {gn: [x - y for x, y in zip(acc[names[(gn, big)]], acc[names[(gn, tiny)]])] for gn in (False, True)}

    # ---- experiment 2: pre-train on 4 classes, fine-tune on the other 4 with few examples (BiT-HyperRule)
    up = dataclasses.replace(cfg.data, train_size=cfg.pretrain_size, test_size=cfg.data.test_size // 2, seed=cfg.data.seed + 1,
                             knobs={**cfg.data.knobs, "classes": UPSTREAM})
    down = dataclasses.replace(cfg.data, train_size=cfg.shots * len(DOWNSTREAM), seed=cfg.data.seed + 2,
                               knobs={**cfg.data.knobs, "classes": DOWNSTREAM})
    up_train, up_test = up.splits()
    down_train, down_test = down.splits()
    rule = bit_hyperrule(len(down_train), (cfg.data.image_size,) * 2, lr=cfg.finetune_lr, batch_size=cfg.finetune_batch,
                         scale=cfg.hyperrule_scale)
    epochs = max(1, math.ceil(rule.steps / (len(down_train) // rule.batch_size)))
    few_shot = dict(epochs=epochs, batch_size=rule.batch_size, eval_every=epochs)
    upstream_acc: list[float] = []

    def transfer(seed: int):
        model = seeded(seed, lambda: build(cfg, len(UPSTREAM), gn_ws=True))
        upstream_acc.append(fit("upstream", model, up_train, up_test, seed=seed, recipe=recipe, epochs=cfg.pretrain_epochs,
                                lr=cfg.lr).acc)
        model.reset_classifier(len(DOWNSTREAM), zero_init=True)
        opt = torch.optim.SGD(model.parameters(), lr=rule.lr, momentum=0.9)
        return fit("finetune", model, down_train, down_test, seed=seed, lr=rule.lr, weight_decay=0.0, optimizer=opt,
                   scheduler=LambdaLR(opt, lambda s: rule.lr_at(s) / rule.lr), **few_shot)

    def scratch(seed: int):
        return fit("scratch", seeded(seed, lambda: build(cfg, len(DOWNSTREAM), gn_ws=True)), down_train, down_test, seed=seed,
                   recipe=recipe, lr=cfg.scratch_lr, warmup_epochs=0.0, **few_shot)

    few = run_arms({"BiT transfer": transfer, "from scratch": scratch}, cfg.seeds)
    few_acc = {n: [r.acc for r in rs] for n, rs in few.items()}
    decision = all_of([
        beats(drop[False], drop[True], a_name="BN", b_name="GN+WS", metric=f"accuracy lost from batch {big} to {tiny} (points)",
              claim=f"BatchNorm loses more accuracy than GN+WS from batch {big} to batch {tiny}"),
        beats(few_acc["BiT transfer"], few_acc["from scratch"], a_name="BiT transfer", b_name="from scratch",
              metric=f"test acc with {cfg.shots} examples per class (%)"),
    ], "GN+WS is robust to tiny batches and BiT transfer beats training from scratch")
    rows = [{"experiment": "batch size", "model": n, "test acc (%)": spread(v), "per seed": per_seed(v)} for n, v in acc.items()]
    rows += [{"experiment": "transfer", "model": f"upstream ({', '.join(UPSTREAM)})", "test acc (%)": spread(upstream_acc),
              "per seed": per_seed(upstream_acc)},
             {"experiment": "transfer", "model": f"fine-tuned, {cfg.shots}/class ({', '.join(DOWNSTREAM)})",
              "test acc (%)": spread(few_acc["BiT transfer"]), "per seed": per_seed(few_acc["BiT transfer"])},
             {"experiment": "transfer", "model": f"from scratch, {cfg.shots}/class",
              "test acc (%)": spread(few_acc["from scratch"]), "per seed": per_seed(few_acc["from scratch"])}]
    discussion = (f"Accuracy lost from batch {big} to batch {tiny}: BN {spread(drop[False])}, GN+WS {spread(drop[True])} "
                  f"points. BiT-HyperRule fine-tuning ran {rule.steps} steps of batch {rule.batch_size}; the scratch network "
                  "the same steps.")
    figures = [plots.bars(out, "batch_size.png", acc, "BN vs GN+WS across batch sizes",
                          colors=["C0", "C0", "C1", "C1"][:len(acc)]),
               plots.bars(out, "transfer.png", {"from scratch": few_acc["from scratch"], "BiT transfer": few_acc["BiT transfer"]},
                          f"{cfg.shots} examples per class", colors=["C7", "C2"])]
    return Report(
        slug="bit",
        claim=CLAIM,
        setup=(f"A narrow ResNet-v2 (pre-activation bottlenecks {cfg.layers}, stage widths {cfg.widths}, GroupNorm with "
               f"{cfg.groups} groups + Weight Standardization, or BatchNorm with plain convs), seeds {list(cfg.seeds)}. "
               f"Experiment 1: {cfg.data.describe(train, test)}, {cfg.epochs} epochs at batch "
               f"{' and '.join(map(str, cfg.batch_sizes))}, SGD momentum 0.9, lr {cfg.lr} x batch/64, 1-epoch warmup, "
               f"cosine. Experiment 2: pre-training on {cfg.pretrain_size} scenes of 4 classes for {cfg.pretrain_epochs} "
               f"epochs, then BiT-HyperRule fine-tuning on {cfg.shots} scenes per class of the other 4 classes: zero head, "
               f"SGD momentum 0.9, lr {rule.lr}, {rule.steps} steps (BiT's 500 x {cfg.hyperrule_scale}) with "
               f"{rule.warmup_steps} warmup steps and /10 at steps {rule.decay_steps}, batch {rule.batch_size}, no weight "
               f"decay, no MixUp (under 20k examples). Scratch: the same network and steps, lr {cfg.scratch_lr} with cosine "
               "decay."),
        columns=["experiment", "model", "test acc (%)", "per seed"],
        rows=rows,
        decision=decision,
        discussion=discussion,
        differences=[
            f"Narrow ResNet-v2 on {cfg.data.image_size}x{cfg.data.image_size} synthetic scenes; upstream is "
            f"{cfg.pretrain_size} scenes of 4 shape classes, not ImageNet-21k or JFT-300M.",
            "HyperRule's resolution rule (resize to 160, crop 128 for small images) is not applied: images stay "
            f"{cfg.data.image_size} px. Its step counts are scaled by {cfg.hyperrule_scale} and the batch is "
            f"{cfg.finetune_batch}, not 512, with a learning rate of {cfg.finetune_lr} instead of 0.003.",
            f"GroupNorm uses {cfg.groups} groups instead of 32 because the miniature is narrow.",
        ],
        figures=figures,
        results={"batch_size_accuracy": acc, "drop": {"BN": drop[False], "GN+WS": drop[True]}, "transfer": few_acc,
                 "upstream_acc": upstream_acc},
    )
