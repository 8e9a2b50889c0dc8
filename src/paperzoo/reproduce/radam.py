"""RAdam in miniature: rectifying Adam's adaptive learning rate removes the need for warmup.

Liu et al. (2019) trace warmup's benefit to the large variance of Adam's adaptive learning rate in the
first steps, when v_t has seen few gradients; RAdam multiplies the step by a rectification term r_t that
corrects this variance (and takes plain momentum steps while it is undefined). Their Fig. 3-4: without
warmup, Adam degrades at larger learning rates, RAdam does not, and it matches Adam with warmup. We
train the same small ResNet with Adam, Adam with a linear warmup, and RAdam without warmup over a range of
learning rates, from several seeds.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..models.classification.resnet import CifarResNet
from ._kit import Data, about_equal, all_of, beats, fit, mean, per_seed, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("Without warmup, RAdam is robust to the learning rate where Adam degrades, and it performs like Adam with "
         "warmup.")

VARIANTS = {"Adam, no warmup": ("adam", 0.0), "Adam + warmup": ("adam", 1.0), "RAdam, no warmup": ("radam", 0.0)}


@dataclass
class Config:
    depth: int = 8
    data: Data = field(default_factory=lambda: Data("digits", image_size=16, train_size=150, test_size=None))
    steps: int = 250
    batch_size: int = 32
    warmup_fraction: float = 0.05  # Adam + warmup: linear warmup over this fraction of the steps
    lrs: tuple[float, ...] = (1e-3, 3e-3, 1e-2, 3e-2)
    weight_decay: float = 0.0  # none: Adam's L2 and RAdam's decoupled decay would differ
    tolerance: float = 2.0  # "performs like Adam with warmup": mean accuracy at most this many points below
    seeds: tuple[int, ...] = (0, 1, 2)


SMOKE = dict(data=dict(train_size=64, test_size=64), steps=2, lrs=(1e-3, 1e-2), seeds=(0, 1))
FULL = dict(depth=20, data=dict(train_size=None), steps=4000)


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()

    def arm(name: str, lr: float):
        opt, warm = VARIANTS[name]
        return lambda seed: fit(f"{opt}_w{warm:g}_lr{lr:g}", seeded(seed, lambda: CifarResNet(
            cfg.depth, num_classes=train.num_classes, in_chans=train.in_chans)), train, test, seed=seed, steps=cfg.steps,
            batch_size=cfg.batch_size, optimizer=opt, lr=lr, weight_decay=cfg.weight_decay,
            warmup_fraction=cfg.warmup_fraction * warm)

    cells = [(name, lr) for lr in cfg.lrs for name in VARIANTS]
    runs = run_arms({c: arm(*c) for c in cells}, cfg.seeds)
    acc = {c: [r.acc for r in rs] for c, rs in runs.items()}
    seeds = range(len(cfg.seeds))
    worst = {n: [min(acc[(n, lr)][s] for lr in cfg.lrs) for s in seeds] for n in VARIANTS}
    avg = {n: [mean([acc[(n, lr)][s] for lr in cfg.lrs]) for s in seeds] for n in VARIANTS}
    adam, warm, radam = VARIANTS
    decision = all_of([
        beats(worst[radam], worst[adam], a_name=radam, b_name=adam, metric="worst test acc over the learning rates (%)"),
        about_equal(avg[radam], avg[warm], tolerance=cfg.tolerance, one_sided=True, a_name=radam, b_name=warm,
                    metric="mean test acc over the learning rates (%)"),
    ], "RAdam without warmup is robust where Adam is not, and as good as Adam with warmup")
    rows = [{"optimizer": n, "lr": lr, "test acc (%)": spread(acc[(n, lr)]), "test acc per seed": per_seed(acc[(n, lr)]),
             "first-epoch train loss": mean([r.history[0]["train_loss"] for r in runs[(n, lr)]])} for n, lr in cells]
    rows += [{"optimizer": n, "lr": "worst / mean over lrs", "test acc (%)": f"{spread(worst[n])} / {spread(avg[n])}"}
             for n in VARIANTS]
    figure = plots.lines(out, "lr_sweep.png", {n: {lr: acc[(n, lr)] for lr in cfg.lrs} for n in VARIANTS},
                         f"robustness to the learning rate ({len(cfg.seeds)} seeds)", xlabel="learning rate", xscale="log")
    return Report(
        slug="radam", claim=CLAIM,
        setup=(f"ResNet-{cfg.depth} (CIFAR design) on {cfg.data.describe(train, test)}; {cfg.steps} steps of batch "
               f"{cfg.batch_size}, cosine decay, weight decay {cfg.weight_decay}, seeds {list(cfg.seeds)} (a seed fixes "
               f"initialisation and data order, the same for every cell), at each learning rate in {list(cfg.lrs)}: Adam, "
               f"Adam with a linear warmup over the first {100 * cfg.warmup_fraction:g}% of the steps, and RAdam "
               "(torch.optim.RAdam, checked step for step against the paper's Algorithm 2 in the tests) without warmup. "
               "Per seed, the worst and the mean test accuracy over the learning rates are compared."),
        columns=["optimizer", "lr", "test acc (%)", "test acc per seed", "first-epoch train loss"], rows=rows,
        decision=decision,
        differences=[
            f"A small ResNet on {len(train)} real digits for {cfg.steps} steps instead of ResNet-20 on CIFAR-10 / "
            "ResNet-18 on ImageNet. With 400 digits most settings reached 97-99%, so the default trains on fewer.",
        ],
        figures=[figure], results={"accuracy": {f"{n},{lr:g}": v for (n, lr), v in acc.items()}, "worst": worst, "mean": avg},
    )
