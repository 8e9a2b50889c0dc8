"""DenseNet in miniature: a small DenseNet-BC against CIFAR ResNets with several times its parameters.

The paper's Table 2 and Fig. 4 show DenseNet-BC reaching a ResNet's CIFAR error with a fraction of the
parameters (e.g. DenseNet-BC L=100, k=12, 0.8M parameters, beats a 1.7M-parameter ResNet-110). Here a
DenseNet-BC (L=40, k=12) is trained with the same recipe as the paper's CIFAR ResNet-20 and ResNet-32
(option-A shortcuts, ``resnet*_cifar``), from several seeds, on small synthetic scenes, and compared with
the better of the ResNets that have more parameters.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from ..models.classification.densenet import cifar_densenet
from ..registry import create_model
from ._kit import Data, FlipShift, Recipe, about_equal, fit, macs, mean, params, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("DenseNet-BC matches the accuracy of ResNets that have several times more parameters, because dense "
         "connections reuse features (Huang et al., Table 2 and Fig. 4).")


@dataclass
class Config:
    densenet_depth: int = 40
    growth_rate: int = 12
    resnets: tuple[int, ...] = (20, 32)
    data: Data = field(default_factory=lambda: Data(image_size=16, train_size=2500, test_size=1000, preset="hard",
                                                    scale=(0.5, 0.9)))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=12, batch_size=64, lr=0.1, nesterov=True, weight_decay=1e-4,
                                                          warmup_epochs=2.0))
    max_shift: int = 4
    tolerance: float = 2.0  # "matches": test error at most this many points above the best larger ResNet's
    seeds: tuple[int, ...] = (0, 1)


SMOKE = dict(densenet_depth=10, resnets=(20,), data=dict(train_size=128, test_size=64), recipe=dict(epochs=1, batch_size=32),
             seeds=(0,))
FULL = dict(densenet_depth=100, resnets=(56, 110), data=dict(image_size=32, preset="medium", scale=(0.25, 0.6),
                                                              train_size=50000, test_size=10000),
            recipe=dict(epochs=300, batch_size=64), seeds=(0,))


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    dense = f"DenseNet-BC (L={cfg.densenet_depth}, k={cfg.growth_rate})"
    builders = {dense: lambda: cifar_densenet(cfg.densenet_depth, cfg.growth_rate, bc=True, num_classes=train.num_classes)}
    for depth in cfg.resnets:
        builders[f"ResNet-{depth}"] = (lambda d=depth: create_model(f"resnet{d}_cifar", num_classes=train.num_classes))
    sizes = {label: params(build()) for label, build in builders.items()}
    larger = [label for label in builders if label != dense and sizes[label] > sizes[dense]]
    if not larger:
        raise ConfigError(f"densenet: no ResNet in {cfg.resnets} has more parameters than {dense}; the claim compares "
                          "with larger ones")
    augment = FlipShift(cfg.max_shift)

    def arm(label: str):
        return lambda seed: fit(label.split(" ")[0], seeded(seed, builders[label]), train, test, seed=seed,
                                recipe=cfg.recipe, batch_transform=augment)

    runs = run_arms({label: arm(label) for label in builders}, cfg.seeds)
    err = {label: [100 - r.acc for r in rs] for label, rs in runs.items()}
    best = min(larger, key=lambda label: mean(err[label]))
    decision = about_equal(err[dense], err[best], tolerance=cfg.tolerance, one_sided=True, lower_is_better=True,
                           a_name=dense, b_name=best, metric="test error (%)",
                           claim=f"{dense} is no worse than {best} ({sizes[best] / sizes[dense]:.1f}x its parameters) by "
                                 f"more than {cfg.tolerance:g} points of test error")
    rows = [{"network": label, "params (M)": sizes[label] / 1e6, "MMACs": macs(runs[label][0].model, cfg.data.image_size) / 1e6,
             "final train loss": mean([r.metrics["train_loss"] for r in runs[label]]), "test error (%)": spread(err[label]),
             "per seed": per_seed(err[label]), "time (s)": mean([r.seconds for r in runs[label]])} for label in builders]
    discussion = (f"The comparison is with the better (by mean test error) of the ResNets larger than the DenseNet: {best}. "
                  f"Final training losses: DenseNet {rows[0]['final train loss']:.2f}, {best} "
                  f"{mean([r.metrics['train_loss'] for r in runs[best]]):.2f}; the curves show whether either is still far "
                  "from converged.")
    figure = plots.bars(out, "densenet_vs_resnet_error.png", err, "DenseNet-BC vs CIFAR ResNets", ylabel="test error (%)")
    curves = plots.curves(out, "densenet_vs_resnet.png", {n: [r.history for r in rs] for n, rs in runs.items()},
                          "DenseNet-BC vs CIFAR ResNets, test accuracy")
    return Report(
        slug="densenet",
        claim=CLAIM,
        setup=(f"DenseNet-BC (L={cfg.densenet_depth}, k={cfg.growth_rate}: three dense blocks of "
               f"{(cfg.densenet_depth - 4) // 6} bottleneck layers, compression 0.5) and the CIFAR ResNets "
               f"{', '.join(f'ResNet-{d}' for d in cfg.resnets)} trained on {cfg.data.describe(train, test)} with the "
               f"paper's optimiser: {cfg.recipe.describe()}, {augment.describe()}, seeds {list(cfg.seeds)} (a seed fixes "
               "initialisation and data order)."),
        columns=["network", "params (M)", "MMACs", "final train loss", "test error (%)", "per seed", "time (s)"],
        rows=rows,
        decision=decision,
        discussion=discussion,
        differences=[
            f"A DenseNet-BC of depth {cfg.densenet_depth} (the paper's smallest BC net is L=100) and ResNets of depth "
            f"{'/'.join(map(str, cfg.resnets))} on {cfg.data.image_size}x{cfg.data.image_size} synthetic scenes instead of "
            "CIFAR-10's 32x32 photos. With 5,000 medium-difficulty scenes every network reached 98-99%; the default uses "
            "half as many scenes of the 'hard' preset (textured, cluttered, noisy, partly occluded).",
            f"{cfg.recipe.epochs} epochs on a cosine schedule instead of 300 epochs with steps at 50% and 75%; no dropout.",
        ],
        figures=[figure, curves],
        results={"test_error": err, "params": sizes, "compared_with": best},
    )
