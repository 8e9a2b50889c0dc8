"""MicroNet in miniature: accuracy at extremely low multiply-adds against MobileNetV3-Small scaled down.

The paper fixes the input size and compares MicroNet M0-M3 with MobileNetV3 shrunk to the same MAdds,
where MobileNetV3 degrades fast (65.4% at 44M, 49.8% at 12M MAdds) and MicroNet keeps accuracy through
Micro-Factorized convolutions (width at low connectivity) and Dynamic Shift-Max (more nonlinearity per
layer). Here each chosen MicroNet is paired with a MobileNetV3-Small whose width multiplier is picked so
that its *measured* MACs at the miniature's input size match; all networks train with one recipe.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..models.classification.mobilenetv3 import MobileNetV3
from ..registry import create_model
from ._classify import (Recipe, fit, macs, match_cost, n_params, plot_accuracy_vs_macs, plot_curves, shapes,
                        small_input_init)
from .report import Report

CLAIM = ("At extremely low MAdds MicroNet is far more accurate than MobileNetV3 scaled down to the same cost: "
         "59.4% vs 49.8% ImageNet top-1 at 12M MAdds (Li et al., abstract, sec. 1 and Fig. 1).")


@dataclass
class Config:
    variants: tuple[str, ...] = ("m0", "m1", "m2")
    image_size: int = 32
    train_size: int = 3000
    test_size: int = 2000
    preset: str = "medium"
    scale: tuple[float, float] = (0.5, 0.9)
    noise: float = 3.0  # accuracy differences up to this many points count as ties (one seed per network)
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=10, batch_size=64, lr=0.03, weight_decay=3e-5,
                                                          warmup_epochs=1.0))


SMOKE = dict(variants=("m0",), train_size=128, test_size=64, recipe=dict(epochs=1, batch_size=32))
FULL = dict(variants=("m0", "m1", "m2", "m3"), image_size=224, train_size=50000, test_size=5000,
            recipe=dict(epochs=90, batch_size=128))


def matched_width(target: float, image_size: int) -> float:
    """The MobileNetV3-Small width multiplier (0.05 steps) whose MACs are closest to ``target``."""
    return match_cost(target, [round(0.05 * k, 2) for k in range(1, 31)],
                      lambda w: macs(MobileNetV3(small=True, width=w, num_classes=8), image_size))


def run(cfg: Config, out: Path) -> Report:
    train, test = shapes(cfg.image_size, cfg.train_size, cfg.test_size, cfg.preset, cfg.scale)
    rows, curves, pairs = [], {}, []
    for variant in cfg.variants:
        name = f"micronet_{variant}"
        width = matched_width(macs(create_model(name, num_classes=train.num_classes), cfg.image_size), cfg.image_size)
        pair = []
        for label, build in ((f"MicroNet-{variant.upper()}", lambda: create_model(name, num_classes=train.num_classes)),
                             (f"MobileNetV3-Small x{width:.2f}",
                              lambda: MobileNetV3(small=True, width=width, num_classes=train.num_classes))):
            torch.manual_seed(cfg.recipe.seed)
            model = small_input_init(build())
            res = fit(model, train, test, cfg.recipe, out, label.replace(" ", "_"))
            curves[label] = res["history"]
            row = {"budget": variant.upper(), "network": label, "params (M)": n_params(model) / 1e6,
                   "MMACs": macs(model, cfg.image_size) / 1e6, "final train loss": res["history"][-1]["train_loss"],
                   "test accuracy (%)": 100 * res["acc"], "time (s)": res["time"]}
            rows.append(row)
            pair.append(row)
        pairs.append(pair)

    gaps = [m["test accuracy (%)"] - v3["test accuracy (%)"] for m, v3 in pairs]
    held = True if all(g > cfg.noise for g in gaps) else False if any(g < -cfg.noise for g in gaps) else None
    verdict = ("; ".join(f"{m['network']} {m['test accuracy (%)']:.1f}% at {m['MMACs']:.2f}M MACs vs {v3['network']} "
                         f"{v3['test accuracy (%)']:.1f}% at {v3['MMACs']:.2f}M ({g:+.1f} points)"
                         for (m, v3), g in zip(pairs, gaps))
               + f". With one seed per network, gaps within ±{cfg.noise:g} points count as ties: MicroNet is "
               + ("ahead at every budget." if held else "behind at some budget." if held is False else
                  "not clearly ahead at every budget (inconclusive)."))
    series = {"MicroNet": [(m["MMACs"], m["test accuracy (%)"], m["budget"]) for m, _ in pairs],
              "MobileNetV3-Small (width-scaled)": [(v3["MMACs"], v3["test accuracy (%)"], v3["network"].split()[-1])
                                                   for _, v3 in pairs]}
    figures = [plot_accuracy_vs_macs(series, out, "micronet_vs_mobilenetv3.png",
                                     f"Accuracy at extremely low MACs ({cfg.image_size}x{cfg.image_size} inputs)"),
               plot_curves(curves, out, "micronet_curves.png", "MicroNet vs MobileNetV3-Small, test accuracy")]
    r = cfg.recipe
    return Report(
        slug="micronet",
        claim=CLAIM,
        setup=(f"MicroNet {', '.join(v.upper() for v in cfg.variants)} (the official configurations) and, for each, "
               f"MobileNetV3-Small (Table 2 of its paper) with the width multiplier whose MACs at {cfg.image_size}x"
               f"{cfg.image_size} match best. All trained from the same seed on {cfg.train_size} synthetic scenes "
               f"({cfg.image_size}x{cfg.image_size}, 8 classes) for {r.epochs} epochs: SGD with Nesterov momentum 0.9, "
               f"lr {r.lr} (cosine, {r.warmup_epochs:g}-epoch warmup), weight decay {r.weight_decay}, batch "
               f"{r.batch_size}, flips and 4-pixel shifts. Test accuracy on {cfg.test_size} held-out scenes; MACs "
               "of conv and linear layers per image."),
        columns=["budget", "network", "params (M)", "MMACs", "final train loss", "test accuracy (%)", "time (s)"],
        rows=rows,
        held=held,
        verdict=verdict,
        differences=[
            f"{cfg.image_size}x{cfg.image_size} inputs instead of 224x224: the budgets are 0.4-1.5M MACs rather than "
            "4-12M, and the fully connected heads, whose cost does not shrink with the input, are a much larger "
            "share of them; MobileNetV3-Small is shrunk by its width multiplier only.",
            "8 synthetic classes instead of ImageNet's 1000, so the 1000-way classifier that dominates the paper's "
            "smallest budgets is absent.",
            f"{r.epochs} epochs of SGD on a cosine schedule instead of 600, one seed per network; all networks start "
            "with zeroed last BN in residual blocks and a N(0, 0.01) classifier (``small_input_init``).",
        ],
        figures=figures,
        results={"gaps": dict(zip(cfg.variants, gaps))},
    )
