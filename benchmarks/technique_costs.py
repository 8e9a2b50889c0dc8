"""Cost per training step of each section-C technique in the Trainer, relative to plain SGD.

    python benchmarks/technique_costs.py [--model resnet20_cifar] [--steps 20] [--rounds 3]

Every setting trains the same model (same initial weights) on the same in-memory synthetic scenes for
``steps`` steps; settings alternate round by round and the median time per step is reported, with the
ratio to plain SGD. SAM takes two forward-backward passes by design; RandAugment's cost is per image
on the loading side.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import paperzoo as pz
from paperzoo.config import apply_overrides
from paperzoo.data import ShapesDataset
from paperzoo.train import TrainConfig, Trainer

SETTINGS = {
    "sgd": [],
    "adamw": ["optimizer=adamw", "lr=1e-3"],
    "radam": ["optimizer=radam", "lr=1e-3"],
    "sgds": ["optimizer=sgds"],
    "adams": ["optimizer=adams", "lr=1e-3"],
    "lookahead(sgd)": ["lookahead=true"],
    "sam(sgd)": ["sam.rho=0.05"],
    "sam(lookahead(adamw))": ["sam.rho=0.05", "lookahead=true", "optimizer=adamw", "lr=1e-3"],
    "mixup+cutmix": ["mixup.alpha=0.2", "cutmix.alpha=1.0"],
    "randaugment n=2": ["randaugment.n=2"],
    "dropblock": ["dropblock.drop_prob=0.1", "dropblock.block_size=3"],
    "swa (averaging)": ["swa.start=0", "swa.lr=0.05"],
    "bag_of_tricks": ["bag_of_tricks=true"],
}


def time_setting(base: torch.nn.Module, data, overrides: list[str], batch_size: int, steps: int) -> float:
    cfg = apply_overrides(TrainConfig(epochs=1, batch_size=batch_size, lr=0.05, schedule="constant", log_every=10**9), overrides)
    subset = torch.utils.data.Subset(data, range(batch_size * steps))
    subset.num_classes, subset.mean, subset.std = data.num_classes, data.mean, data.std
    trainer = Trainer(copy.deepcopy(base), subset, None, cfg, quiet=True)
    t = time.perf_counter()
    trainer.fit()
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet20_cifar")
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    data = ShapesDataset("train", size=args.batch_size * args.steps, image_size=args.image_size)
    data.materialize()
    base = pz.create_model(args.model, num_classes=data.num_classes)
    times: dict[str, list[float]] = {k: [] for k in SETTINGS}
    for _ in range(args.rounds):
        for name, overrides in SETTINGS.items():
            times[name].append(time_setting(base, data, overrides, args.batch_size, args.steps))
    sgd = statistics.median(times["sgd"])
    print(f"model {args.model}, batch {args.batch_size}, {args.image_size}px, {torch.get_num_threads()} threads, "
          f"median of {args.rounds} rounds of {args.steps} steps")
    print("| setting | ms/step | vs sgd |\n|---|---|---|")
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"| {name} | {1000 * m:.1f} | {m / sgd:.2f}x |")


if __name__ == "__main__":
    main()
