"""MobileNet in miniature: depthwise-separable vs full convolutions (the paper's Table 4).

The same 28-layer network is built twice at a reduced width: once with the paper's depthwise-separable
layers, once with a full 3x3 convolution in place of each depthwise + pointwise pair ("Conv MobileNet").
Both are trained with one recipe; the claim is about the same accuracy at about 8x fewer multiply-adds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..models.classification.mobilenet import MobileNetV1
from ._classify import Recipe, fit, macs, n_params, plot_curves, shapes
from .report import Report

CLAIM = ("Depthwise-separable convolutions cost about 8-9x fewer multiply-adds than full convolutions for nearly "
         "the same accuracy: 70.6% vs 71.7% ImageNet top-1 at 569M vs 4866M mult-adds (Howard et al., Table 4).")


@dataclass
class Config:
    width: float = 0.25
    image_size: int = 32
    train_size: int = 4000
    test_size: int = 2000
    preset: str = "medium"
    scale: tuple[float, float] = (0.5, 0.9)
    tolerance: float = 2.0  # "about the same": at most this many points below the full-conv net
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=40, batch_size=64, lr=0.1, weight_decay=4e-5,
                                                          warmup_epochs=1.0))


SMOKE = dict(train_size=128, test_size=64, recipe=dict(epochs=1, batch_size=32))
FULL = dict(width=1.0, image_size=224, train_size=50000, test_size=5000, recipe=dict(epochs=90, batch_size=128))


def run(cfg: Config, out: Path) -> Report:
    train, test = shapes(cfg.image_size, cfg.train_size, cfg.test_size, cfg.preset, cfg.scale)
    rows, curves = [], {}
    for label, full in (("MobileNet (depthwise-separable)", False), ("Conv MobileNet (full 3x3)", True)):
        model = MobileNetV1(cfg.width, full_conv=full, num_classes=train.num_classes)
        res = fit(model, train, test, cfg.recipe, out, "full_conv" if full else "separable")
        curves[label] = res["history"]
        rows.append({"network": label, "params (M)": n_params(model) / 1e6, "MMACs": macs(model, cfg.image_size) / 1e6,
                     "final train loss": res["history"][-1]["train_loss"], "test accuracy (%)": 100 * res["acc"],
                     "time (s)": res["time"]})
    sep, full = rows
    ratio = full["MMACs"] / sep["MMACs"]
    gap = full["test accuracy (%)"] - sep["test accuracy (%)"]
    held = gap <= cfg.tolerance and ratio >= 7
    verdict = (f"The separable net needs {ratio:.1f}x fewer multiply-adds ({sep['MMACs']:.2f}M vs {full['MMACs']:.2f}M) and "
               f"{full['params (M)'] / sep['params (M)']:.1f}x fewer parameters; its test accuracy is "
               f"{sep['test accuracy (%)']:.1f}% vs {full['test accuracy (%)']:.1f}% ({-gap:+.1f} points, "
               f"{'within' if gap <= cfg.tolerance else 'outside'} the {cfg.tolerance:g}-point tolerance of 'about the same').")
    figure = plot_curves(curves, out, "separable_vs_full.png", f"MobileNet x{cfg.width:g}: separable vs full convolutions")
    r = cfg.recipe
    return Report(
        slug="mobilenet",
        claim=CLAIM,
        setup=(f"MobileNet v1 (Table 1) at width multiplier {cfg.width:g} and the same network with full 3x3 convs, trained "
               f"from the same seed on {cfg.train_size} synthetic scenes ({cfg.image_size}x{cfg.image_size}, 8 classes) for "
               f"{r.epochs} epochs: SGD with Nesterov momentum 0.9, lr {r.lr} (cosine, {r.warmup_epochs:g}-epoch warmup), "
               f"weight decay {r.weight_decay}, batch {r.batch_size}, flips and 4-pixel shifts. Test accuracy on "
               f"{cfg.test_size} held-out scenes; multiply-adds per {cfg.image_size}x{cfg.image_size} image."),
        columns=["network", "params (M)", "MMACs", "final train loss", "test accuracy (%)", "time (s)"],
        rows=rows,
        held=held,
        verdict=verdict,
        differences=[
            f"Width x{cfg.width:g} and {cfg.image_size}x{cfg.image_size} synthetic scenes with 8 classes instead of the "
            "full network on 224x224 ImageNet; the cost ratio depends only on the layer shapes and matches the paper's.",
            "SGD on a cosine schedule for a few epochs instead of asynchronous RMSprop; no label smoothing or "
            "Inception-style augmentation; one seed per network.",
        ],
        figures=[figure],
        results={"mac_ratio": ratio, "accuracy_gap": gap},
    )
