"""Swin V2 in miniature: transferring to a larger window and resolution with the log-spaced continuous
position bias, against V1's parameterised bias table.

The paper's Table 6 (and Fig. 1): a model trained at one resolution/window and evaluated at larger ones
without fine-tuning degrades much less with the log-spaced CPB (the bias MLP is simply re-evaluated at the
new relative coordinates) than with V1's learned bias table, which must be bi-cubically interpolated to the
new window size. Here a reduced Swin V1 and a reduced Swin V2 are trained on the real handwritten digits
with 4x4 windows and evaluated, unchanged, on the same test images at twice the resolution with 8x8
windows (the token map doubles, the windows double with it), and with the training window for
reference. As ImageNet training does with random-resized crops, the training digits are drawn at
random sizes on their canvas, so that the test digits, twice as large in tokens at the
higher resolution, stay within the sizes seen in training; without this both variants collapse at the
higher resolution alike. On the synthetic scenes Swins this small stay near chance within a CPU budget
(see ``_backbones``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..models.classification.swin import adapt_bias_tables
from ..data import DigitsDataset
from ..registry import create_model
from ..train import evaluate
from ..weights import load_weights
from ._backbones import bar_chart, dataset, fit, params_m
from .report import Report

CLAIM = ("With the log-spaced continuous position bias, a Swin model transfers to a larger window size and "
         "resolution without fine-tuning with a much smaller accuracy loss than with V1's bias table "
         "(Liu et al., Swin V2, Table 6).")
MODELS = {"V1 (bias table)": "swin_tiny_patch4_window7_224", "V2 (log-spaced CPB)": "swinv2_tiny_window8_256"}


@dataclass
class Config:
    data: str = "digits"  # digits (1257 training images) | shapes (synthetic scenes, for FULL)
    train_image_size: int = 16
    test_image_size: int = 32
    digit_sizes: tuple[int, int] = (8, 16)  # digits only: side of a training digit on its canvas, drawn uniformly
    test_digit_size: int = 8  # digits only: side of a test digit on the training-size canvas (then enlarged with it)
    scale: tuple[float, float] = (0.5, 0.9)  # shapes only: object size
    train_size: int | None = None  # None: the whole training split
    test_size: int | None = None  # None: the whole test split (360 digits)
    steps: int = 600
    batch_size: int = 64
    patch: int = 2
    window: int = 4  # training window; evaluated with window * test_image_size / train_image_size
    embed_dim: int = 32
    depths: tuple[int, ...] = (2, 2)
    heads: tuple[int, ...] = (2, 4)
    lr: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0


SMOKE = dict(train_size=128, test_size=64, steps=4, batch_size=32)
FULL = dict(data="shapes", train_image_size=256, test_image_size=512, patch=4, window=8, embed_dim=96, depths=(2, 2, 6, 2),
            heads=(3, 6, 12, 24), train_size=50000, test_size=10000, steps=40000, batch_size=128, lr=1e-3)


class Place:
    """Resize a normalised image to a side drawn uniformly from ``sizes`` (inclusive) and centre it on a
    ``canvas`` x ``canvas`` blank (zero-intensity) canvas; then resize the canvas to ``out`` pixels if given."""

    def __init__(self, canvas: int, sizes: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...],
                 out: int | None = None) -> None:
        self.canvas, self.sizes, self.out = canvas, sizes, out
        self.blank = torch.tensor([-m / s for m, s in zip(mean, std)]).view(-1, 1, 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(self.sizes[0], self.sizes[1] + 1, ()))
        top = (self.canvas - k) // 2
        image = self.blank.expand(x.shape[0], self.canvas, self.canvas).clone()
        image[:, top:top + k, top:top + k] = F.interpolate(x[None], size=(k, k), mode="bilinear", align_corners=False)[0]
        if self.out is not None:
            image = F.interpolate(image[None], size=(self.out, self.out), mode="bilinear", align_corners=False)[0]
        return image


def _datasets(cfg: Config) -> tuple[Dataset, Dataset, Dataset]:
    """Training set, test set at the training resolution, the same test images at ``test_image_size``."""
    if cfg.data != "digits":
        data = dict(scale=cfg.scale, seed=cfg.seed)
        return (dataset(cfg.data, "train", cfg.train_size, cfg.train_image_size, **data),
                dataset(cfg.data, "test", cfg.test_size, cfg.train_image_size, **data),
                dataset(cfg.data, "test", cfg.test_size, cfg.test_image_size, **data))
    stats = DigitsDataset("train", image_size=8, seed=cfg.seed)
    place = dict(canvas=cfg.train_image_size, mean=stats.mean, std=stats.std)
    test = dict(place, sizes=(cfg.test_digit_size,) * 2)
    return (dataset("digits", "train", cfg.train_size, 8, cfg.seed, Place(sizes=cfg.digit_sizes, **place)),
            dataset("digits", "test", cfg.test_size, 8, cfg.seed, Place(**test)),
            dataset("digits", "test", cfg.test_size, 8, cfg.seed, Place(**test, out=cfg.test_image_size)))


def _build(name: str, cfg: Config, image_size: int, window: int, num_classes: int, in_chans: int) -> torch.nn.Module:
    kwargs = dict(num_classes=num_classes, in_chans=in_chans, img_size=image_size, patch_size=cfg.patch, window_size=window,
                  embed_dim=cfg.embed_dim, depths=cfg.depths, num_heads=cfg.heads)
    if name.startswith("swinv2"):
        kwargs["pretrained_window_sizes"] = (cfg.window,) * len(cfg.depths)
    return create_model(name, **kwargs)


def _transfer(trained: torch.nn.Module, name: str, cfg: Config, image_size: int, window: int, num_classes: int,
              in_chans: int) -> torch.nn.Module:
    """The trained weights in a model built for another resolution and window (V1 tables are resized)."""
    model = _build(name, cfg, image_size, window, num_classes, in_chans)
    return load_weights(model, adapt_bias_tables(trained.state_dict(), model)).eval()


def run(cfg: Config, out: Path) -> Report:
    train, test_small, test_large = _datasets(cfg)
    classes = dict(num_classes=train.num_classes, in_chans=train.in_chans)
    big_window = cfg.window * cfg.test_image_size // cfg.train_image_size
    rows = []
    for label, name in MODELS.items():
        torch.manual_seed(cfg.seed)
        model = _build(name, cfg, cfg.train_image_size, cfg.window, **classes)
        fit(model, train, test_small, out, name.split("_")[0], steps=cfg.steps, batch_size=cfg.batch_size,
            optimizer="adamw", lr=cfg.lr, weight_decay=cfg.weight_decay, clip_grad=1.0, seed=cfg.seed, channels_last=True)
        acc = {"trained": evaluate(model, test_small)["acc"]}
        for window in (cfg.window, big_window):
            moved = _transfer(model, name, cfg, cfg.test_image_size, window, **classes)
            acc[window] = evaluate(moved, test_large)["acc"]
        rows.append({"model": label, "params (M)": params_m(model),
                     f"{cfg.train_image_size}px, window {cfg.window} (trained) (%)": 100 * acc["trained"],
                     f"{cfg.test_image_size}px, window {cfg.window} (%)": 100 * acc[cfg.window],
                     f"{cfg.test_image_size}px, window {big_window} (%)": 100 * acc[big_window],
                     "drop to larger window (points)": 100 * (acc["trained"] - acc[big_window])})
    drop_v1, drop_v2 = (r["drop to larger window (points)"] for r in rows)
    what = "real handwritten digits (10 classes)" if cfg.data == "digits" else "synthetic scenes (8 shape classes)"
    held = drop_v2 < drop_v1
    verdict = (f"Evaluated at {cfg.test_image_size}x{cfg.test_image_size} with {big_window}x{big_window} windows, V1 loses "
               f"{drop_v1:.1f} points of test accuracy and V2 {drop_v2:.1f} "
               f"({'log-CPB transfers better' if held else 'log-CPB does not transfer better here'}).")
    columns = ["model", "params (M)", *[k for k in rows[0] if k.endswith("(%)")], "drop to larger window (points)"]
    labels, values = [], []
    for r in rows:
        for k in columns[2:-1]:
            labels.append(f"{r['model'].split(' ')[0]}\n{k.replace(' (%)', '').replace(' (trained)', '*')}")
            values.append(r[k])
    figure = bar_chart(out, "transfer.png", labels, values,
                       f"Train {cfg.train_image_size}px/window {cfg.window}, test larger (* = training setting)",
                       colors=["C0"] * 3 + ["C1"] * 3)
    return Report(
        slug="swinv2",
        claim=CLAIM,
        setup=(f"Reduced Swin V1 and V2 (C={cfg.embed_dim}, depths {cfg.depths}, heads {cfg.heads}, {cfg.patch}x{cfg.patch} "
               f"patches) trained identically on {len(train)} {what} at {cfg.train_image_size}x{cfg.train_image_size} "
               f"with {cfg.window}x{cfg.window} windows for {cfg.steps} steps of batch {cfg.batch_size} (AdamW lr {cfg.lr}, "
               "cosine after a 10% warmup). The trained weights "
               f"are then loaded, without fine-tuning, into models for {cfg.test_image_size}x{cfg.test_image_size} inputs "
               f"with {cfg.window}x{cfg.window} and {big_window}x{big_window} windows: V1's bias tables bi-cubically "
               "resized by the weight converter, V2's CPB MLP re-evaluated on log-spaced coordinates normalised by the "
               f"training window (pretrained_window_sizes). All evaluated on the same {len(test_small)} test images, "
               + (f"each an 8x8 digit drawn {cfg.test_digit_size} px wide at the centre of the training canvas, then "
                  "resized (bilinear) with the canvas. Training digits are drawn at random sides of "
                  f"{cfg.digit_sizes[0]}-{cfg.digit_sizes[1]} px at the centre of the "
                  f"{cfg.train_image_size}x{cfg.train_image_size} canvas, so the enlarged test digits "
                  f"({cfg.test_digit_size * cfg.test_image_size // cfg.train_image_size} px) lie in the range seen in "
                  "training." if cfg.data == "digits" else "rendered at each resolution.")),
        columns=columns,
        rows=rows,
        held=held,
        verdict=verdict,
        differences=[
            "The paper trains SwinV2 at 256x256 (window 8) on ImageNet and tests up to 640x640 (window 20); here "
            f"{cfg.train_image_size}->{cfg.test_image_size} px {what} with two-stage width-reduced models "
            "(same classes as swin_tiny_patch4_window7_224 / swinv2_tiny_window8_256, other kwargs). "
            + ("The digits are upsampled 8x8 images, so the higher resolution adds no detail; the random training "
               "scales stand in for ImageNet's random-resized crops." if cfg.data == "digits" else ""),
            "The paper's Table 6 changes only the position bias inside V1; here the V2 model also has res-post-norm "
            "and cosine attention, so the comparison is V1 against V2 as a whole.",
            "One seed per model.",
        ],
        figures=[figure],
        results={"drop_v1": drop_v1, "drop_v2": drop_v2},
    )
