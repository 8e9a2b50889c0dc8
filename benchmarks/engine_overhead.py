"""Per-step overhead of the paperzoo Trainer against a bare PyTorch loop on the same model and data.

    python benchmarks/engine_overhead.py [--model resnet20_cifar] [--steps 30] [--rounds 3]

Both loops run the same model (same initial weights), the same in-memory dataset, batch size, SGD
optimizer and per-step LR schedule; they alternate in the same process and the median step time of
each is reported. The Trainer additionally does what makes it safe: a finiteness check of every loss,
seeded per-sample data order, logging and the schedule step.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F

import paperzoo as pz
from paperzoo.data import ShapesDataset
from paperzoo.train import TrainConfig, Trainer


def bare_loop(model, dataset, batch_size, steps, lr):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    model.train()
    it = iter(loader)
    t = time.perf_counter()
    for _ in range(steps):
        x, y = next(it)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return (time.perf_counter() - t) / steps


def engine_loop(model, dataset, batch_size, steps, lr):
    cfg = TrainConfig(epochs=1, batch_size=batch_size, lr=lr, schedule="constant", log_every=10**9)
    small = torch.utils.data.Subset(dataset, range(batch_size * steps))
    trainer = Trainer(model, small, None, cfg, quiet=True)
    t = time.perf_counter()
    trainer.fit()
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet20_cifar")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    data = ShapesDataset("train", size=args.batch_size * args.steps, image_size=args.image_size)
    data.materialize()
    base = pz.create_model(args.model, num_classes=data.num_classes)
    bare_loop(copy.deepcopy(base), data, args.batch_size, 3, 0.01)  # warm-up
    bare, engine = [], []
    for _ in range(args.rounds):
        bare.append(bare_loop(copy.deepcopy(base), data, args.batch_size, args.steps, 0.01))
        engine.append(engine_loop(copy.deepcopy(base), data, args.batch_size, args.steps, 0.01))
    b, e = statistics.median(bare), statistics.median(engine)
    print(f"model {args.model}, batch {args.batch_size}, {args.image_size}px, {torch.get_num_threads()} threads")
    print(f"bare loop   {1000 * b:.1f} ms/step")
    print(f"Trainer     {1000 * e:.1f} ms/step")
    print(f"overhead    {100 * (e / b - 1):+.1f}%")


if __name__ == "__main__":
    main()
