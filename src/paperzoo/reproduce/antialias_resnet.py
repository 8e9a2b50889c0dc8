"""Anti-aliased ResNets in miniature: shift consistency and accuracy with low-pass filters.

Three versions of one narrow ResNet are trained identically: the plain network, BlurPool placements
(Zhang, 2019: blur after the ReLU that follows each formerly strided conv, and after the stem's max pool;
timm's resnetblur) and the placements of Vasconcelos et al. (2020: blur right after each strided conv,
and before each strided 1x1 projection shortcut, which cannot learn a low-pass filter itself).
Shift consistency (Zhang's metric) is the fraction of test scenes classified the same way from two
random crops that differ by a few pixels. Each version is trained from several seeds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._kit import Data, Recipe, all_of, beats, fit, mean, narrow_resnet50, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("Low-pass filtering before every subsampling step of a ResNet makes its predictions more consistent under "
         "small input shifts and improves accuracy, more so with filters where the network cannot learn them "
         "(strided convs and 1x1 projection shortcuts).")

VARIANTS: dict[str, dict] = {
    "ResNet": dict(),
    "BlurPool (Zhang)": dict(aa_layer="blur"),
    "blur after conv + shortcut (paper)": dict(aa_layer="blur", aa_after_conv=True, aa_shortcut=True),
}


@dataclass
class Config:
    data: Data = field(default_factory=lambda: Data(image_size=32, train_size=8000, test_size=1000, scale=(0.45, 0.8)))
    max_shift: int = 4  # scenes are rendered this much larger on each side; training and tests use random crops
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=5, batch_size=64, lr=0.05, weight_decay=5e-5,
                                                          warmup_epochs=1.0))
    widths: tuple[int, ...] = (16, 32, 64, 128)
    layers: tuple[int, ...] = (1, 1, 1, 1)
    consistency_pairs: int = 5
    seeds: tuple[int, ...] = (0, 1, 2)


SMOKE = dict(data=dict(train_size=64, test_size=32), recipe=dict(epochs=1), max_shift=2, widths=(8, 8, 8, 8),
             consistency_pairs=1, seeds=(0,))
FULL = dict(data=dict(image_size=224, scale=(0.25, 0.6), train_size=50000, test_size=10000), max_shift=32,
            recipe=dict(epochs=90, batch_size=256), widths=(64, 128, 256, 512), layers=(3, 4, 6, 3), seeds=(0, 1, 2))


class _Crop:
    """Crop ``size`` pixels at a random offset (training) or at the centre (``random=False``)."""

    def __init__(self, size: int, random: bool) -> None:
        self.size, self.random = size, random

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        margin = x.shape[-1] - self.size
        dy, dx = torch.randint(0, margin + 1, (2,)).tolist() if self.random else (margin // 2, margin // 2)
        return x[:, dy:dy + self.size, dx:dx + self.size]


@torch.no_grad()
def shift_consistency(model: torch.nn.Module, images: torch.Tensor, size: int, pairs: int, seed: int = 0) -> float:
    """P(same top-1 class) for two random ``size`` crops of the same (larger) image, over ``pairs`` draws."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    margin = images.shape[-1] - size
    agree = []
    for _ in range(pairs):
        preds = []
        for _ in range(2):
            dy, dx = torch.randint(0, margin + 1, (2,), generator=g).tolist()
            crop = images[:, :, dy:dy + size, dx:dx + size].contiguous(memory_format=torch.channels_last)
            preds.append(model(crop).argmax(1))
        agree.append((preds[0] == preds[1]).float().mean().item())
    return 100 * mean(agree)


def run(cfg: Config, out: Path) -> Report:
    size = cfg.data.image_size
    full = size + 2 * cfg.max_shift
    train, test = cfg.data.splits(image_size=full)
    train.transform = _Crop(size, random=True)
    test_images = torch.stack([test[i][0] for i in range(len(test))])
    test.transform = _Crop(size, random=False)
    consistency: dict[str, list[float]] = {label: [] for label in VARIANTS}

    def arm(label: str):
        def one(seed: int):
            r = fit(label.split()[0].lower(), seeded(seed, lambda: narrow_resnet50(train.num_classes, cfg.widths, cfg.layers,
                                                                                   **VARIANTS[label])),
                    train, test, seed=seed, recipe=cfg.recipe)
            consistency[label].append(shift_consistency(r.model, test_images, size, cfg.consistency_pairs, seed))
            return r
        return one

    runs = run_arms({label: arm(label) for label in VARIANTS}, cfg.seeds)
    acc = {label: [r.acc for r in rs] for label, rs in runs.items()}
    base, zhang, paper = VARIANTS
    decision = all_of([
        beats(consistency[paper], consistency[base], a_name="paper's placements", b_name="plain ResNet",
              metric="shift consistency (%)"),
        beats(acc[paper], acc[base], a_name="paper's placements", b_name="plain ResNet", metric="test acc (%)"),
    ], "the paper's low-pass placements improve shift consistency and accuracy")
    rows = [{"network": label, "params (M)": runs[label][0].params_m, "test acc (%)": spread(acc[label]),
             "shift consistency (%)": spread(consistency[label]), "consistency per seed": per_seed(consistency[label])}
            for label in VARIANTS]
    discussion = (f"BlurPool (Zhang's placements): consistency {spread(consistency[zhang])}%, accuracy {spread(acc[zhang])}% "
                  "(reported, not judged).")
    figures = [plots.bars(out, "consistency.png", consistency,
                          f"Same prediction for two crops up to {2 * cfg.max_shift} px apart", ylabel="shift consistency (%)"),
               plots.bars(out, "accuracy.png", acc, "Test accuracy (centre crop)")]
    return Report(
        slug="antialias-resnet",
        claim=CLAIM,
        setup=(f"A narrow ResNet-50 (bottleneck blocks {cfg.layers}, widths {cfg.widths}) in three versions, trained on "
               f"random {size}x{size} crops of {cfg.data.describe(train, test).replace(f'{size}x{size}', f'{full}x{full}')}: "
               f"{cfg.recipe.describe()}, seeds {list(cfg.seeds)} (a seed fixes initialisation and data order). Accuracy on "
               f"centre crops of the test scenes; consistency over {cfg.consistency_pairs} pairs of random crops per scene. "
               "The filters are 3x3 binomial ([1, 2, 1] / 4 per axis) with stride 2."),
        columns=["network", "params (M)", "test acc (%)", "shift consistency (%)", "consistency per seed"],
        rows=rows,
        decision=decision,
        discussion=discussion,
        differences=[
            "A narrow one-block-per-stage ResNet-50 on 32x32 crops of synthetic scenes instead of ResNet-50 on "
            "ImageNet; the paper mainly reports robustness to corruptions (ImageNet-C) and few-shot transfer, which "
            "are not measured here.",
            "The paper also mentions smooth activations at key locations; we keep ReLU everywhere.",
        ],
        figures=figures,
        results={"accuracy": acc, "consistency": consistency},
    )
