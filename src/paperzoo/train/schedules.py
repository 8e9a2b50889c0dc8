"""Learning-rate schedules, stepped once per optimizer step (so they resume exactly mid-epoch)."""
from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from ..errors import unknown
from .config import TrainConfig

SCHEDULES = ("cosine", "step", "constant")


def lr_factor(cfg: TrainConfig, total_steps: int, steps_per_epoch: int) -> Callable[[int], float]:
    """The multiplier of ``cfg.lr`` at optimizer step ``t`` (linear warmup, then the schedule)."""
    if cfg.schedule not in SCHEDULES:
        raise unknown("schedule", cfg.schedule, SCHEDULES)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
    milestones = [int(m * total_steps) for m in cfg.milestones]

    def factor(t: int) -> float:
        if t < warmup:
            return (t + 1) / warmup
        if cfg.schedule == "constant":
            return 1.0
        if cfg.schedule == "step":
            return cfg.gamma ** sum(t >= m for m in milestones)
        progress = (t - warmup) / max(1, total_steps - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def build_scheduler(cfg: TrainConfig, optimizer: Optimizer, total_steps: int, steps_per_epoch: int) -> LambdaLR:
    return LambdaLR(optimizer, lr_factor(cfg, total_steps, steps_per_epoch))
