"""DenseNet in miniature: a small DenseNet-BC against CIFAR ResNets with several times its parameters.

The paper's Table 2 and Fig. 4 show DenseNet-BC reaching a ResNet's CIFAR error with a fraction of the
parameters (e.g. DenseNet-BC L=100, k=12, 0.8M parameters, beats a 1.7M-parameter ResNet-110). Here a
DenseNet-BC (L=40, k=12) is trained with the same recipe as the paper's CIFAR ResNet-20 and ResNet-56
(option-A shortcuts, ``resnet*_cifar``) on small synthetic scenes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..models.classification.densenet import cifar_densenet
from ..registry import create_model
from ._classify import Recipe, fit, macs, n_params, plot_curves, shapes
from .report import Report

CLAIM = ("DenseNet-BC matches the accuracy of ResNets that have several times more parameters, because dense "
         "connections reuse features (Huang et al., Table 2 and Fig. 4).")


@dataclass
class Config:
    densenet_depth: int = 40
    growth_rate: int = 12
    resnets: tuple[int, ...] = (20, 32)
    image_size: int = 16
    train_size: int = 5000
    test_size: int = 2000
    preset: str = "medium"
    scale: tuple[float, float] = (0.6, 0.9)
    tolerance: float = 1.0  # "matches": test error at most this many points above the best ResNet's
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=12, batch_size=64, lr=0.1, weight_decay=1e-4,
                                                          warmup_epochs=2.0))


SMOKE = dict(densenet_depth=10, resnets=(20,), train_size=128, test_size=64, recipe=dict(epochs=1, batch_size=32))
FULL = dict(densenet_depth=100, resnets=(56, 110), image_size=32, scale=(0.25, 0.6), train_size=50000,
            test_size=10000, recipe=dict(epochs=300, batch_size=64))


def run(cfg: Config, out: Path) -> Report:
    train, test = shapes(cfg.image_size, cfg.train_size, cfg.test_size, cfg.preset, cfg.scale)
    models = {f"DenseNet-BC (L={cfg.densenet_depth}, k={cfg.growth_rate})":
              cifar_densenet(cfg.densenet_depth, cfg.growth_rate, bc=True, num_classes=train.num_classes)}
    for depth in cfg.resnets:
        models[f"ResNet-{depth}"] = create_model(f"resnet{depth}_cifar", num_classes=train.num_classes)
    rows, curves = [], {}
    for label, model in models.items():
        res = fit(model, train, test, cfg.recipe, out, label.split(" ")[0])
        curves[label] = res["history"]
        rows.append({"network": label, "params (M)": n_params(model) / 1e6, "MMACs": macs(model, cfg.image_size) / 1e6,
                     "final train loss": res["history"][-1]["train_loss"], "test error (%)": 100 * (1 - res["acc"]),
                     "time (s)": res["time"]})

    dense, resnets = rows[0], rows[1:]
    best = min(resnets, key=lambda r: r["test error (%)"])
    gap = dense["test error (%)"] - best["test error (%)"]
    ratio = best["params (M)"] / dense["params (M)"]
    held = gap <= cfg.tolerance and ratio > 1
    verdict = (f"{dense['network']} ({dense['params (M)']:.2f}M parameters) reaches {dense['test error (%)']:.1f}% test error; "
               + ", ".join(f"{r['network']} ({r['params (M)']:.2f}M) {r['test error (%)']:.1f}%" for r in resnets)
               + f". Against the best ResNet ({best['network']}, {ratio:.1f}x the DenseNet's parameters) the DenseNet is "
               f"{gap:+.1f} points ({'within' if gap <= cfg.tolerance else 'outside'} the {cfg.tolerance:g}-point "
               f"tolerance of 'matches'). Final training losses: DenseNet {dense['final train loss']:.2f}, "
               f"{best['network']} {best['final train loss']:.2f}; the curves show whether either is still far from converged.")
    figure = plot_curves(curves, out, "densenet_vs_resnet.png", "DenseNet-BC vs CIFAR ResNets, test accuracy")
    r = cfg.recipe
    return Report(
        slug="densenet",
        claim=CLAIM,
        setup=(f"DenseNet-BC (L={cfg.densenet_depth}, k={cfg.growth_rate}: three dense blocks of "
               f"{(cfg.densenet_depth - 4) // 6} bottleneck layers, compression 0.5) and the CIFAR ResNets "
               f"{', '.join(f'ResNet-{d}' for d in cfg.resnets)} trained from the same seed on {cfg.train_size} "
               f"synthetic scenes ({cfg.image_size}x{cfg.image_size}, 8 classes) for {r.epochs} epochs with the "
               f"paper's optimiser (SGD, Nesterov momentum 0.9, lr {r.lr}, weight decay {r.weight_decay}, batch "
               f"{r.batch_size}) on a cosine schedule with {r.warmup_epochs:g} warmup epoch, flips and 4-pixel "
               f"shifts. Test error on {cfg.test_size} held-out scenes."),
        columns=["network", "params (M)", "MMACs", "final train loss", "test error (%)", "time (s)"],
        rows=rows,
        held=held,
        verdict=verdict,
        differences=[
            f"A DenseNet-BC of depth {cfg.densenet_depth} (the paper's smallest BC net is L=100) and ResNets of "
            f"depth {'/'.join(map(str, cfg.resnets))} on {cfg.image_size}x{cfg.image_size} synthetic scenes instead "
            "of CIFAR-10's 32x32 photos.",
            f"{r.epochs} epochs on a cosine schedule instead of 300 epochs with steps at 50% and 75%; no dropout.",
            "One seed per network: differences of about a point are within noise.",
        ],
        figures=[figure],
        results={"error_gap_vs_best_resnet": gap, "param_ratio": ratio},
    )
