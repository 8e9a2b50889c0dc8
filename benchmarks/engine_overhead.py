"""Per-step overhead of the paperzoo Trainer against a bare PyTorch loop on the same model and data.

    python benchmarks/engine_overhead.py [--model resnet20_cifar] [--steps 30] [--rounds 3]

Both loops run the same model (same initial weights), the same in-memory dataset, batch size, SGD
optimizer and per-step LR schedule; they alternate in the same process. Reported: the median time of a step
in steady state (the interval between the ends of consecutive steps, data loading included, the first steps
left out), which is what the engine adds to every step, and the whole run per step for reference. The Trainer
additionally does what makes it safe: a finiteness check of every loss, seeded per-sample data order, the
task's collation, callbacks, logging and the schedule step. Both run with torch's deterministic algorithms on
(the Trainer's default, ``deterministic=True``, which exact resume relies on), or both off with
``--no-deterministic``: that setting alone costs ~10% of a CPU step here, in any loop.
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
from paperzoo.train.callbacks import Callback


SKIP = 3  # steps left out of the steady state (first iterations warm caches and allocators)


def bare_loop(model, dataset, batch_size, steps, lr):
    """(steady-state step times, whole run per step)."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    model.train()
    it = iter(loader)
    t0 = time.perf_counter()
    ends = []
    for _ in range(steps):
        x, y = next(it)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        ends.append(time.perf_counter())
    return [b - a for a, b in zip(ends[SKIP:], ends[SKIP + 1:])], (ends[-1] - t0) / steps


class _StepEnds(Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, trainer, logs) -> None:
        self.ends.append(time.perf_counter())


def engine_loop(model, dataset, batch_size, steps, lr, deterministic=True):
    """(steady-state step times, whole run per step)."""
    cfg = TrainConfig(epochs=1, batch_size=batch_size, lr=lr, schedule="constant", log_every=10**9,
                      deterministic=deterministic)
    small = torch.utils.data.Subset(dataset, range(batch_size * steps))
    clock = _StepEnds()
    trainer = Trainer(model, small, None, cfg, quiet=True, callbacks=[clock])
    t0 = time.perf_counter()
    trainer.fit()
    ends = clock.ends
    return [b - a for a, b in zip(ends[SKIP:], ends[SKIP + 1:])], (time.perf_counter() - t0) / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="resnet20_cifar")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-deterministic", dest="deterministic", action="store_false")
    args = ap.parse_args()
    torch.use_deterministic_algorithms(args.deterministic, warn_only=True)  # the same setting for both loops
    data = ShapesDataset("train", size=args.batch_size * args.steps, image_size=args.image_size)
    data.materialize()
    base = pz.create_model(args.model, num_classes=data.num_classes)
    bare_loop(copy.deepcopy(base), data, args.batch_size, 3, 0.01)  # warm-up
    bare, engine, bare_run, engine_run = [], [], [], []
    for _ in range(args.rounds):
        steps, run = bare_loop(copy.deepcopy(base), data, args.batch_size, args.steps, 0.01)
        bare += steps
        bare_run.append(run)
        steps, run = engine_loop(copy.deepcopy(base), data, args.batch_size, args.steps, 0.01, args.deterministic)
        engine += steps
        engine_run.append(run)
    b, e = statistics.median(bare), statistics.median(engine)
    br, er = statistics.median(bare_run), statistics.median(engine_run)
    print(f"model {args.model}, batch {args.batch_size}, {args.image_size}px, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds of {args.steps} steps, deterministic algorithms {'on' if args.deterministic else 'off'}")
    print(f"steady-state step: bare loop {1000 * b:.1f} ms, Trainer {1000 * e:.1f} ms, overhead {100 * (e / b - 1):+.1f}%")
    print(f"whole run per step: bare loop {1000 * br:.1f} ms, Trainer {1000 * er:.1f} ms, overhead {100 * (er / br - 1):+.1f}%")


if __name__ == "__main__":
    main()
