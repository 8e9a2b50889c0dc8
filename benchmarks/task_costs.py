"""Training steps per second of the generative models and of the distillation / self-supervised tasks.

    python benchmarks/task_costs.py [--part generative|tasks|all] [--steps 12] [--rounds 3] [--batch-size 32]

``generative``: each generative model at 32 px (its default widths) trains through the Trainer with its
GenerativeTask, every phase of a step included (a GAN's discriminator and generator updates, an AAE's
reconstruction, regularisation and adversarial phases); reported are full steps per second and samples
per second of ``model.sample``.

``tasks``: a CIFAR ResNet-20 trains on the same in-memory scenes with plain supervised cross-entropy, and
with each task that adds work to a step: a frozen teacher (KD, OFD; ESKD's step is KD's), a second view and
a target network (BYOL, RAFT), two or more views with a contrastive loss (SimCLR, FNC). The ratio to the
supervised step is the task's overhead; the augmentation of the views runs on the loading side and is
included. Settings alternate round by round; the median time per step is reported.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import paperzoo as pz
from paperzoo.data import ShapesDataset
from paperzoo.train import TrainConfig, Trainer

GENERATIVE = ("aae", "dcvae", "cips", "histogan", "rehistogan", "vdvae")


def _subset(data, n: int):
    subset = torch.utils.data.Subset(data, range(n))
    subset.num_classes, subset.mean, subset.std = data.num_classes, data.mean, data.std
    subset.in_chans = 3
    return subset


def _time_fit(model, data, task, batch_size: int, steps: int, **cfg) -> float:
    config = TrainConfig(epochs=1, batch_size=batch_size, log_every=10**9, schedule="constant", **cfg)
    trainer = Trainer(copy.deepcopy(model), _subset(data, batch_size * steps), None, config, task=task, quiet=True)
    t = time.perf_counter()
    trainer.fit()
    return (time.perf_counter() - t) / steps


def generative(args) -> None:
    from paperzoo.tasks.generative import GenerativeTask

    data = ShapesDataset("train", size=args.batch_size * args.steps, image_size=32)
    models = {n: pz.create_model(n, img_size=32, in_chans=3) for n in GENERATIVE}
    times: dict[str, list[float]] = {n: [] for n in models}
    sample_s: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(args.rounds):
        for name, model in models.items():
            task = GenerativeTask(data.mean, data.std)
            task.grid_samples = 0
            times[name].append(_time_fit(model, data, task, args.batch_size, args.steps, optimizer="adam", lr=2e-4,
                                         weight_decay=0.0))
            model.eval()
            with torch.no_grad():
                t = time.perf_counter()
                model.sample(args.batch_size, generator=torch.Generator().manual_seed(0))
                sample_s[name].append(time.perf_counter() - t)
    print(f"| model | params (M) | training steps/s (batch {args.batch_size}, 32 px, all phases) | samples/s |")
    print("|---|---|---|---|")
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"| {name} | {params:.2f} | {1 / statistics.median(times[name]):.2f} | "
              f"{args.batch_size / statistics.median(sample_s[name]):.0f} |")


def tasks(args) -> None:
    from paperzoo.tasks.byol import BYOLTask
    from paperzoo.tasks.distillation import KDTask, OFDTask
    from paperzoo.tasks.fnc import FNCTask, SimCLRTask, simclr_pipeline
    from paperzoo.tasks.raft import RAFTTask
    from paperzoo.tasks.ssl import Views, byol_pipelines

    data = ShapesDataset("train", size=args.batch_size * args.steps, image_size=32)
    torch.manual_seed(0)
    student = pz.create_model("resnet20_cifar", num_classes=data.num_classes)
    teacher = pz.create_model("resnet20_cifar", num_classes=data.num_classes, width=32).eval()
    pipe = simclr_pipeline(32, 3)
    settings = {
        "supervised": lambda: None,
        "KD (teacher ResNet-20 x2)": lambda: KDTask(teacher, 4.0, 0.9),
        "OFD (same teacher)": lambda: OFDTask(teacher, 1e-3),
        "SimCLR (2 views)": lambda: SimCLRTask(Views([pipe, pipe], data.mean, data.std), 0.5, 256, 64),
        "FNC (2 views + 2 support)": lambda: FNCTask(Views([pipe] * 4, data.mean, data.std), "attraction", 2, 1,
                                                     hidden_dim=256, out_dim=64),
        "BYOL (2 views, target net)": lambda: BYOLTask(Views(byol_pipelines(32, 3), data.mean, data.std), 256, 64),
        "RAFT (2 views, target net)": lambda: RAFTTask(Views(byol_pipelines(32, 3), data.mean, data.std), 256, 64),
    }
    times: dict[str, list[float]] = {k: [] for k in settings}
    for _ in range(args.rounds):
        for name, make in settings.items():
            times[name].append(_time_fit(student, data, make(), args.batch_size, args.steps, optimizer="sgd", lr=0.05))
    base = statistics.median(times["supervised"])
    print(f"| task | ms / step (resnet20_cifar, batch {args.batch_size}, 32 px) | relative to supervised |")
    print("|---|---|---|")
    for name in settings:
        t = statistics.median(times[name])
        print(f"| {name} | {1000 * t:.0f} | {t / base:.2f}x |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--part", choices=("generative", "tasks", "all"), default="all")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.part in ("generative", "all"):
        generative(args)
    if args.part in ("tasks", "all"):
        tasks(args)


if __name__ == "__main__":
    main()
