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
higher resolution alike. Both models are trained from several seeds. On the synthetic scenes Swins this
small stay near chance within a CPU budget (see ``vit``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..data import DigitsDataset
from ..models.classification.swin import adapt_bias_tables
from ..registry import create_model
from ..weights import load_weights
from ._kit import Data, Part, accuracy, beats, fit, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("With the log-spaced continuous position bias, a Swin model transfers to a larger window size and "
         "resolution without fine-tuning with a much smaller accuracy loss than with V1's bias table "
         "(Liu et al., Swin V2, Table 6).")
MODELS = {"V1 (bias table)": "swin_tiny_patch4_window7_224", "V2 (log-spaced CPB)": "swinv2_tiny_window8_256"}


@dataclass
class Config:
    # image_size is the training resolution
    data: Data = field(default_factory=lambda: Data("digits", image_size=16, train_size=None, test_size=None))
    test_image_size: int = 32
    digit_sizes: tuple[int, int] = (8, 16)  # digits only: side of a training digit on its canvas, drawn uniformly
    test_digit_size: int = 8  # digits only: side of a test digit on the training-size canvas (then enlarged with it)
    steps: int = 600
    batch_size: int = 64
    patch: int = 2
    window: int = 4  # training window; evaluated with window * test_image_size / training image size
    embed_dim: int = 32
    depths: tuple[int, ...] = (2, 2)
    heads: tuple[int, ...] = (2, 4)
    lr: float = 2e-3
    weight_decay: float = 0.05
    seeds: tuple[int, ...] = (0, 1, 2)


SMOKE = dict(data=dict(train_size=128, test_size=64), steps=4, batch_size=32, seeds=(0,))
FULL = dict(data=dict(name="shapes", image_size=256, train_size=50000, test_size=10000), test_image_size=512, patch=4, window=8,
            embed_dim=96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), steps=40000, batch_size=128, lr=1e-3, seeds=(0,))


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
    if cfg.data.name != "digits":
        train, test = cfg.data.splits()
        return train, test, cfg.data.splits(image_size=cfg.test_image_size)[1]
    stats = DigitsDataset("train", image_size=8, seed=cfg.data.seed)
    place = dict(canvas=cfg.data.image_size, mean=stats.mean, std=stats.std)
    test = dict(place, sizes=(cfg.test_digit_size,) * 2)

    def digits(split: str, n: int | None, transform: Place) -> Part:
        return Part(DigitsDataset(split, image_size=8, seed=cfg.data.seed, transform=transform), n)

    return (digits("train", cfg.data.train_size, Place(sizes=cfg.digit_sizes, **place)),
            digits("test", cfg.data.test_size, Place(**test)),
            digits("test", cfg.data.test_size, Place(**test, out=cfg.test_image_size)))


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
    return load_weights(model, adapt_bias_tables(trained.state_dict(), model)).eval().to(memory_format=torch.channels_last)


def run(cfg: Config, out: Path) -> Report:
    train, test_small, test_large = _datasets(cfg)
    classes = dict(num_classes=train.num_classes, in_chans=train.in_chans)
    size = cfg.data.image_size
    big_window = cfg.window * cfg.test_image_size // size
    accs: dict[str, dict[str, list[float]]] = {label: {"trained": [], "same window": [], "larger window": []} for label in MODELS}

    def arm(label: str):
        name = MODELS[label]

        def one(seed: int):
            r = fit(name.split("_")[0], seeded(seed, lambda: _build(name, cfg, size, cfg.window, **classes)), train,
                    test_small, seed=seed, steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adamw", lr=cfg.lr,
                    weight_decay=cfg.weight_decay, clip_grad=1.0, warmup_fraction=0.1)
            accs[label]["trained"].append(r.acc)
            for key, window in (("same window", cfg.window), ("larger window", big_window)):
                accs[label][key].append(accuracy(_transfer(r.model, name, cfg, cfg.test_image_size, window, **classes),
                                                 test_large))
            return r
        return one

    runs = run_arms({label: arm(label) for label in MODELS}, cfg.seeds)
    drop = {label: [t - b for t, b in zip(a["trained"], a["larger window"])] for label, a in accs.items()}
    v1, v2 = MODELS
    decision = beats(drop[v2], drop[v1], a_name="V2 (log-CPB)", b_name="V1 (bias table)", lower_is_better=True,
                     metric=f"accuracy lost at {cfg.test_image_size}px with {big_window}x{big_window} windows (points)",
                     claim="log-spaced CPB loses less accuracy than V1's bias table when window and resolution grow")
    cols = {"trained": f"{size}px, window {cfg.window} (trained) (%)",
            "same window": f"{cfg.test_image_size}px, window {cfg.window} (%)",
            "larger window": f"{cfg.test_image_size}px, window {big_window} (%)"}
    rows = [{"model": label, "params (M)": runs[label][0].params_m, **{cols[k]: spread(v) for k, v in accs[label].items()},
             "drop to larger window (points)": spread(drop[label]), "drop per seed": per_seed(drop[label])} for label in MODELS]
    bars = {f"{label.split(' ')[0]}\n{k}": v for label in MODELS for k, v in accs[label].items()}
    figure = plots.bars(out, "transfer.png", bars,
                        f"Train {size}px/window {cfg.window}, test larger", colors=["C0"] * 3 + ["C1"] * 3)
    digits = cfg.data.name == "digits"
    return Report(
        slug="swinv2",
        claim=CLAIM,
        setup=(f"Reduced Swin V1 and V2 (C={cfg.embed_dim}, depths {cfg.depths}, heads {cfg.heads}, {cfg.patch}x{cfg.patch} "
               f"patches) trained identically on {len(train)} training images at {size}x{size} with "
               f"{cfg.window}x{cfg.window} windows for {cfg.steps} steps of batch {cfg.batch_size} (AdamW lr {cfg.lr}, "
               f"cosine after a 10% warmup), seeds {list(cfg.seeds)}. The trained weights are then loaded, without "
               f"fine-tuning, into models for {cfg.test_image_size}x{cfg.test_image_size} inputs with {cfg.window}x"
               f"{cfg.window} and {big_window}x{big_window} windows: V1's bias tables bi-cubically resized by the weight "
               "converter, V2's CPB MLP re-evaluated on log-spaced coordinates normalised by the training window "
               f"(pretrained_window_sizes). All evaluated on the same {len(test_small)} test images, "
               + (f"each an 8x8 digit drawn {cfg.test_digit_size} px wide at the centre of the training canvas, then "
                  "resized (bilinear) with the canvas. Training digits are drawn at random sides of "
                  f"{cfg.digit_sizes[0]}-{cfg.digit_sizes[1]} px at the centre of the {size}x{size} canvas, so the enlarged "
                  f"test digits ({cfg.test_digit_size * cfg.test_image_size // size} px) lie in the range seen in training."
                  if digits else "rendered at each resolution.")),
        columns=["model", "params (M)", *cols.values(), "drop to larger window (points)", "drop per seed"],
        rows=rows,
        decision=decision,
        differences=[
            "The paper trains SwinV2 at 256x256 (window 8) on ImageNet and tests up to 640x640 (window 20); here "
            f"{size}->{cfg.test_image_size} px with two-stage width-reduced models (same classes as "
            "swin_tiny_patch4_window7_224 / swinv2_tiny_window8_256, other kwargs). "
            + ("The digits are upsampled 8x8 images, so the higher resolution adds no detail; the random training "
               "scales stand in for ImageNet's random-resized crops." if digits else ""),
            "The paper's Table 6 changes only the position bias inside V1; here the V2 model also has res-post-norm "
            "and cosine attention, so the comparison is V1 against V2 as a whole.",
        ],
        figures=[figure],
        results={"accuracy": accs, "drop": drop},
    )
