"""SGDR in miniature: warm restarts give good "anytime" snapshots.

The paper's claim (Loshchilov & Hutter, 2016, Fig. 1-2): with cosine annealing restarted at growing
intervals (T_0, T_mult), the network at the end of every cycle is already good, so one run yields
usable models after 1, 3, 7, ... epochs, while a single long schedule (step decay or one cosine) is only
good at its end; the final accuracy is on par. We train the same CIFAR ResNet on synthetic scenes with
SGDR (T_0 = 1 epoch, T_mult = 2), one cosine over the whole budget, and the classic step schedule, and
compare test accuracy at the ends of SGDR's cycles.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ._training import cifar_resnet, curves_figure, fit, scenes
from .report import Report

CLAIM = ("Cosine annealing with warm restarts (SGDR) gives a good model at the end of every cycle (anytime "
         "performance), where a single schedule is good only at its end, at no cost in final accuracy.")


@dataclass
class Config:
    depth: int = 14
    image_size: int = 16
    train_size: int = 5000
    test_size: int = 1000
    epochs: int = 15  # SGDR cycles of 1, 2, 4, 8 epochs end at epochs 1, 3, 7 and 15
    t0: float = 1.0
    t_mult: int = 2
    batch_size: int = 64
    lr: float = 0.1
    weight_decay: float = 5e-4
    seed: int = 0


SMOKE = dict(train_size=96, test_size=32, epochs=3, depth=8)
FULL = dict(depth=20, image_size=32, train_size=50000, test_size=10000, epochs=63, t0=1.0, t_mult=2)


def cycle_ends(cfg: Config) -> list[int]:
    ends, length, t = [], cfg.t0, cfg.t0
    while t <= cfg.epochs + 1e-9:
        ends.append(int(round(t)))
        length *= cfg.t_mult
        t += length
    return ends


def run(cfg: Config, out: Path) -> Report:
    train, test = scenes(cfg.image_size, cfg.train_size, cfg.test_size, seed=cfg.seed)
    schedules = {
        "SGDR (warm restarts)": ["schedule=sgdr", f"sgdr.t0={cfg.t0}", f"sgdr.t_mult={cfg.t_mult}"],
        "one cosine": ["schedule=cosine"],
        "step (x0.1 at 50%, 75%)": ["schedule=step"],
    }
    runs = {}
    for name, overrides in schedules.items():
        model = cifar_resnet(cfg.depth, train.num_classes, cfg.seed)
        runs[name], _ = fit(model, train, test, None, overrides, epochs=cfg.epochs,
                            batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay, seed=cfg.seed)
    ends = cycle_ends(cfg)
    acc = {name: {r["epoch"]: 100 * r["val_acc"] for r in h} for name, h in runs.items()}
    rows = [{"epoch": e, **{name: acc[name][e] for name in runs}} for e in ends]
    sgdr, cosine, step = runs
    early = [e for e in ends if e < cfg.epochs]
    mean_at_ends = {name: sum(acc[name][e] for e in ends) / len(ends) for name in runs}
    final_gap = acc[sgdr][cfg.epochs] - max(acc[cosine][cfg.epochs], acc[step][cfg.epochs])
    held = all(mean_at_ends[sgdr] > mean_at_ends[n] for n in (cosine, step)) and final_gap > -2.0
    verdict = (f"Mean test accuracy over SGDR's cycle ends (epochs {', '.join(map(str, ends))}): "
               + ", ".join(f"{n} {v:.1f}%" for n, v in mean_at_ends.items()) + ". Per cycle end, SGDR minus one cosine / "
               f"step: " + "; ".join(f"epoch {e}: {acc[sgdr][e] - acc[cosine][e]:+.1f} / {acc[sgdr][e] - acc[step][e]:+.1f}"
                                     for e in early)
               + f". At the end (epoch {cfg.epochs}): SGDR {acc[sgdr][cfg.epochs]:.1f}%, one cosine {acc[cosine][cfg.epochs]:.1f}%, "
               f"step {acc[step][cfg.epochs]:.1f}%. "
               + ("The snapshots at restarts are better on average than the single schedules' models at the same epochs, "
                  "with no loss at the end." if held else "SGDR's snapshots were not better on average, or its final "
                  "accuracy fell behind."))
    figure = curves_figure(out / "anytime.png", runs, [("val_acc", "test accuracy"), ("train_loss", "training loss")],
                           f"SGDR (T0={cfg.t0:g}, Tmult={cfg.t_mult}) vs single schedules; cycles end at epochs {ends}")
    return Report(
        slug="sgdr", claim=CLAIM,
        setup=(f"ResNet-{cfg.depth} (the ResNet paper's CIFAR design) trained three times from the same initialisation on "
               f"{cfg.train_size} synthetic {cfg.image_size}x{cfg.image_size} scenes (8 classes) for {cfg.epochs} epochs: "
               f"SGD momentum 0.9, peak lr {cfg.lr}, weight decay {cfg.weight_decay}, batch {cfg.batch_size}, with SGDR "
               f"(T_0 = {cfg.t0:g} epoch, T_mult = {cfg.t_mult}; the rate is annealed every step), one cosine over all "
               f"epochs, or step decay. Test accuracy on {cfg.test_size} held-out scenes after every epoch."),
        columns=["epoch", *runs], rows=rows, held=held, verdict=verdict,
        differences=[
            "Synthetic 16x16 scenes and a small ResNet instead of CIFAR-10/100 with WRN-28-10; a 15-epoch budget "
            "instead of 200 (the paper's curves also show the snapshots at cycle ends).",
            "The learning rate is annealed per step (as in the paper, which updates it per batch).",
            "One seed per schedule. The criterion is the mean accuracy over SGDR's cycle ends (each end is one noisy "
            "evaluation); per-epoch differences are listed in the verdict.",
        ],
        figures=[figure], results={"accuracy_by_epoch": acc, "cycle_ends": ends, "mean_at_cycle_ends": mean_at_ends},
    )
