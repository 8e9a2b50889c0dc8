"""ViT in miniature: a Transformer lacks a CNN's inductive biases, so it needs more data (or augmentation).

The paper (section 4.3, Fig. 3-4) finds that ViT underperforms ResNets of similar cost when trained on
ImageNet alone and overtakes them only with ImageNet-21k or JFT-300M: locality and translation
equivariance must be learned from data. Here a width/depth-reduced ViT (the paper's architecture:
patch embedding, class token, learned positions, pre-norm blocks) and the paper's CIFAR ResNet-20 are
trained for the same number of steps on a small and on a larger set of real handwritten digits, and the
ViT once more on the small set with random-translation augmentation.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..registry import create_model
from ._backbones import CropFlip, background, bar_chart, dataset, fit, params_m
from .report import Report

CLAIM = ("Without a CNN's inductive biases, a Vision Transformer trained on little data generalises worse than a "
         "ResNet of similar size; the gap closes as the training set grows (Dosovitskiy et al., section 4.3, Fig. 3-4).")


@dataclass
class Config:
    data: str = "digits"  # digits (1257 training images) | shapes (synthetic scenes, for FULL)
    image_size: int = 8
    scale: tuple[float, float] = (0.5, 0.9)  # shapes only: object size
    train_sizes: tuple[int, ...] = (250, 500, 1257)
    test_size: int | None = None  # None: the whole test split (360 digits)
    train_eval_size: int = 250
    steps: int = 600  # optimizer steps per run, whatever the training-set size
    batch_size: int = 64
    vit_dim: int = 64
    vit_depth: int = 4
    vit_heads: int = 4
    vit_patch: int = 2
    vit_lr: float = 3e-3
    vit_weight_decay: float = 0.05
    cnn_lr: float = 0.1
    cnn_weight_decay: float = 5e-4
    augment_pad: int = 1  # augmented ViT run: random crop after padding with black by this many pixels
    augment_flip: bool = False  # and horizontal flips (off: a mirrored digit is not the same digit)
    seed: int = 0


SMOKE = dict(train_sizes=(64, 128), test_size=64, train_eval_size=64, steps=4, batch_size=32)
FULL = dict(data="shapes", image_size=32, vit_patch=4, train_sizes=(5000, 50000), test_size=10000, steps=20000,
            batch_size=128, vit_dim=192, vit_depth=12, vit_heads=3, vit_lr=1e-3, augment_pad=4, augment_flip=True)


def _model(kind: str, cfg: Config, num_classes: int, in_chans: int) -> torch.nn.Module:
    torch.manual_seed(cfg.seed)
    if kind == "resnet":
        return create_model("resnet20_cifar", num_classes=num_classes, in_chans=in_chans)
    return create_model("vit_tiny_patch16_224", num_classes=num_classes, in_chans=in_chans, img_size=cfg.image_size,
                        patch_size=cfg.vit_patch, embed_dim=cfg.vit_dim, depth=cfg.vit_depth, num_heads=cfg.vit_heads)


def _recipe(kind: str, cfg: Config) -> dict[str, Any]:
    common = dict(steps=cfg.steps, batch_size=cfg.batch_size, seed=cfg.seed, channels_last=True)
    if kind == "resnet":  # the paper's ResNet baselines: SGD with momentum
        return dict(common, optimizer="sgd", lr=cfg.cnn_lr, momentum=0.9, weight_decay=cfg.cnn_weight_decay)
    return dict(common, optimizer="adamw", lr=cfg.vit_lr, weight_decay=cfg.vit_weight_decay, clip_grad=1.0)


def run(cfg: Config, out: Path) -> Report:
    data = dict(image_size=cfg.image_size, seed=cfg.seed, scale=cfg.scale)
    test = dataset(cfg.data, "test", cfg.test_size, **data)
    runs = [(kind, n, False) for n in cfg.train_sizes for kind in ("resnet", "vit")] + [("vit", min(cfg.train_sizes), True)]
    rows = []
    for kind, n, augment in runs:
        crop = CropFlip(cfg.augment_pad, cfg.augment_flip, background(test)) if augment else None
        train = dataset(cfg.data, "train", n, **data, transform=crop)
        n = len(train)
        train_eval = torch.utils.data.Subset(dataset(cfg.data, "train", n, **data), range(min(cfg.train_eval_size, n)))
        model = _model(kind, cfg, test.num_classes, test.in_chans)
        name = f"{kind}_{n}{'_aug' if augment else ''}"
        last = fit(model, train, test, out, name, train_eval=train_eval, **_recipe(kind, cfg))[-1]
        rows.append({"model": "ResNet-20" if kind == "resnet" else "ViT (mini)", "train images": n,
                     "augmentation": "random crop" if augment else "none", "params (M)": params_m(model),
                     "epochs": last["passes"], "train acc (%)": 100 * last["train_eval_acc"], "test acc (%)": 100 * last["val_acc"]})

    acc = {(r["model"], r["train images"], r["augmentation"]): r["test acc (%)"] for r in rows}
    small, large = min(r["train images"] for r in rows), max(r["train images"] for r in rows)
    gap_small = acc[("ResNet-20", small, "none")] - acc[("ViT (mini)", small, "none")]
    gap_large = acc[("ResNet-20", large, "none")] - acc[("ViT (mini)", large, "none")]
    aug_gain = acc[("ViT (mini)", small, "random crop")] - acc[("ViT (mini)", small, "none")]
    held = gap_small > 0 and gap_large < gap_small
    verdict = (f"ResNet-20 minus ViT test accuracy: {gap_small:+.1f} points with {small} training images, {gap_large:+.1f} "
               f"with {large} ({'the gap closes with more data' if gap_large < gap_small else 'the gap does not close'}"
               f"{'' if gap_small > 0 else '; the CNN is not ahead on little data'}). Augmentation changes the ViT's "
               f"small-data accuracy by {aug_gain:+.1f} points.")
    labels = [f"{r['model']}\n{r['train images']} img{' +aug' if r['augmentation'] != 'none' else ''}" for r in rows]
    figure = bar_chart(out, "test_accuracy.png", labels, [r["test acc (%)"] for r in rows],
                       "ViT vs ResNet-20: test accuracy by training-set size",
                       colors=["C0" if r["model"] == "ResNet-20" else "C1" for r in rows])
    what = ("real 8x8 handwritten digits (10 classes)" if cfg.data == "digits" else
            f"synthetic {cfg.image_size}x{cfg.image_size} scenes (8 shape classes)")
    return Report(
        slug="vit",
        claim=CLAIM,
        setup=(f"ResNet-20 ({rows[0]['params (M)']:.2f}M params) and a reduced ViT ({rows[1]['params (M)']:.2f}M: width "
               f"{cfg.vit_dim}, depth {cfg.vit_depth}, {cfg.vit_heads} heads, {cfg.vit_patch}x{cfg.vit_patch} patches, i.e. "
               f"{(cfg.image_size // cfg.vit_patch) ** 2} tokens) trained on {what} at {cfg.image_size}x{cfg.image_size} with "
               f"{', '.join(str(r['train images']) for r in rows if r['model'] == 'ResNet-20')} training images, each for "
               f"about {cfg.steps} steps of batch {cfg.batch_size} (so the epochs over the data scale inversely with its size). ResNet: SGD lr "
               f"{cfg.cnn_lr}, momentum 0.9; ViT: AdamW lr {cfg.vit_lr}, weight decay {cfg.vit_weight_decay}, gradient "
               f"clipping 1; both cosine after a linear warmup over the first 10% of the steps. The augmented ViT run "
               f"uses random crops of the image padded with black by {cfg.augment_pad} px{' and flips' if cfg.augment_flip else ''}. "
               f"Test accuracy on {len(test)} held-out images; train accuracy on up to {cfg.train_eval_size} training "
               "images in eval mode."),
        columns=["model", "train images", "augmentation", "params (M)", "epochs", "train acc (%)", "test acc (%)"],
        rows=rows,
        held=held,
        verdict=verdict,
        differences=[
            "The paper's data scales are ImageNet (1.3M), ImageNet-21k (14M) and JFT-300M with pre-training and "
            f"fine-tuning; here {small} vs {large} {what}, trained from scratch. On the synthetic scenes (rotated, "
            "randomly coloured polygons) a ViT this small stays near chance for the few thousand steps a CPU allows, "
            "so the default uses the digits; `data=shapes` (and --full) runs the scenes.",
            "A width/depth-reduced ViT (same class as vit_tiny_patch16_224, other kwargs) instead of ViT-B/L/H, and the "
            "paper's CIFAR ResNet-20 instead of BiT ResNets.",
            "Equal step budgets for all set sizes, so the larger set is seen for fewer epochs; one seed per run.",
        ],
        figures=[figure],
        results={"gap_small": gap_small, "gap_large": gap_large, "augmentation_gain": aug_gain},
    )
