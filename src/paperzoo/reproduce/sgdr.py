"""SGDR in miniature: warm restarts give good "anytime" snapshots.

The paper's claim (Loshchilov & Hutter, 2016, Fig. 1-2): with cosine annealing restarted at growing
intervals (T_0, T_mult), the network at the end of every cycle is already good, so one run yields
usable models after 1, 3, 7, ... epochs, while a single long schedule (step decay or one cosine) is only
good at its end; the final accuracy is on par. We train the same CIFAR ResNet on synthetic scenes with
SGDR (T_0 = 1 epoch, T_mult = 2), one cosine over the whole budget, and the classic step schedule, each
from several seeds, and compare test accuracy at the ends of SGDR's cycles.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..models.classification.resnet import CifarResNet
from ._kit import Data, Recipe, all_of, about_equal, beats, fit, mean, plots, run_arms, seeded, spread
from .report import Report

CLAIM = ("Cosine annealing with warm restarts (SGDR) gives a good model at the end of every cycle (anytime "
         "performance), where a single schedule is good only at its end, at no cost in final accuracy.")


@dataclass
class Config:
    depth: int = 14
    data: Data = field(default_factory=lambda: Data(image_size=16, train_size=2500, test_size=1000))
    recipe: Recipe = field(default_factory=lambda: Recipe(epochs=15, batch_size=64, lr=0.1, weight_decay=5e-4))
    t0: float = 1.0  # SGDR cycles of 1, 2, 4, 8 epochs end at epochs 1, 3, 7 and 15
    t_mult: int = 2
    final_tolerance: float = 2.0  # "no cost in final accuracy": SGDR at most this many points below the better single schedule
    seeds: tuple[int, ...] = (0, 1, 2)


SMOKE = dict(depth=8, data=dict(train_size=96, test_size=32), recipe=dict(epochs=3))
FULL = dict(depth=20, data=dict(image_size=32, train_size=50000, test_size=10000), recipe=dict(epochs=63))


def cycle_ends(cfg: Config) -> list[int]:
    ends, length, t = [], cfg.t0, cfg.t0
    while t <= cfg.recipe.epochs + 1e-9:
        ends.append(int(round(t)))
        length *= cfg.t_mult
        t += length
    return ends


def run(cfg: Config, out: Path) -> Report:
    train, test = cfg.data.splits()
    schedules = {
        "SGDR (warm restarts)": ["schedule=sgdr", f"sgdr.t0={cfg.t0}", f"sgdr.t_mult={cfg.t_mult}"],
        "one cosine": ["schedule=cosine"],
        "step (x0.1 at 50%, 75%)": ["schedule=step"],
    }

    def arm(name: str, overrides: list[str]):
        return lambda seed: fit(name, seeded(seed, lambda: CifarResNet(cfg.depth, num_classes=train.num_classes)),
                                train, test, seed=seed, recipe=cfg.recipe, overrides=overrides)

    runs = run_arms({name: arm(name, o) for name, o in schedules.items()}, cfg.seeds)
    ends, last = cycle_ends(cfg), cfg.recipe.epochs
    acc = {name: [{r["epoch"]: 100 * r["val_acc"] for r in run.history} for run in rs] for name, rs in runs.items()}
    anytime = {name: [mean([a[e] for e in ends]) for a in accs] for name, accs in acc.items()}
    final = {name: [a[last] for a in accs] for name, accs in acc.items()}
    sgdr, cosine, step = schedules
    best_single = max((cosine, step), key=lambda n: mean(final[n]))
    decision = all_of([
        beats(anytime[sgdr], anytime[cosine], a_name="SGDR", b_name="one cosine", metric="mean test acc at cycle ends (%)"),
        beats(anytime[sgdr], anytime[step], a_name="SGDR", b_name="step", metric="mean test acc at cycle ends (%)"),
        about_equal(final[sgdr], final[best_single], tolerance=cfg.final_tolerance, one_sided=True, a_name="SGDR",
                    b_name=best_single, metric=f"final test acc, epoch {last} (%)"),
    ], "SGDR's snapshots beat both single schedules at the same epochs, at no cost at the end")
    rows = [{"epoch": e, **{name: spread([a[e] for a in acc[name]]) for name in runs}} for e in ends]
    rows.append({"epoch": "mean over cycle ends", **{name: spread(anytime[name]) for name in runs}})
    figure = plots.curves(out, "anytime.png", {n: [r.history for r in rs] for n, rs in runs.items()},
                          f"SGDR (T0={cfg.t0:g}, Tmult={cfg.t_mult}) vs single schedules; cycles end at epochs {ends}",
                          keys=[("val_acc", "test accuracy (%)"), ("train_loss", "training loss")])
    return Report(
        slug="sgdr", claim=CLAIM,
        setup=(f"ResNet-{cfg.depth} (the ResNet paper's CIFAR design) trained with three schedules on "
               f"{cfg.data.describe(train, test)}, seeds {list(cfg.seeds)} (a seed fixes the initialisation and the "
               f"data order, shared by the schedules): {cfg.recipe.describe(schedule=False)}, with "
               f"SGDR (T_0 = {cfg.t0:g} epoch, T_mult = {cfg.t_mult}; the rate is annealed every step), one cosine over "
               f"all epochs, or step decay. Test accuracy after every epoch; table cells are mean +- s.d. over seeds."),
        columns=["epoch", *runs], rows=rows, decision=decision,
        differences=[
            f"Synthetic {cfg.data.image_size}x{cfg.data.image_size} scenes and a small ResNet instead of CIFAR-10/100 "
            f"with WRN-28-10; a {last}-epoch budget instead of 200 (the paper's curves also show the snapshots at "
            "cycle ends).",
            "The learning rate is annealed per step (as in the paper, which updates it per batch).",
            "The anytime criterion is the mean accuracy over SGDR's cycle ends, per seed; per-epoch numbers are in "
            "the table.",
        ],
        figures=[figure], results={"accuracy_by_epoch": acc, "cycle_ends": ends, "anytime": anytime, "final": final},
    )
