"""Learning-rate schedules, stepped once per optimizer step (so they resume exactly mid-epoch).

``cosine``, ``step`` and ``constant`` are a ``LambdaLR`` of ``lr_factor`` (linear warmup, then the
schedule). ``sgdr`` is SGDR (Loshchilov & Hutter, 2016, arXiv:1608.03983) through PyTorch's
``CosineAnnealingWarmRestarts`` (after a ``LinearLR`` warmup if one is asked for); ``sgdr_lr`` restates
the paper's eq. 5 and is checked against PyTorch's scheduler in tests.
"""
from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import CosineAnnealingWarmRestarts, LambdaLR, LinearLR, LRScheduler, SequentialLR

from ..errors import unknown
from .config import TrainConfig

SCHEDULES = ("cosine", "sgdr", "step", "constant")


def sgdr_cycle(t: float, t0: float, t_mult: int) -> tuple[float, float]:
    """(T_cur, T_i): position within the current cycle and its length, after ``t`` units of training."""
    t_i = t0
    while t >= t_i:  # restart: the next cycle is t_mult times longer
        t -= t_i
        t_i *= t_mult
    return t, t_i


def sgdr_lr(t: float, eta_max: float, eta_min: float = 0.0, t0: float = 1.0, t_mult: int = 1) -> float:
    """SGDR's eq. 5: eta_t = eta_min + (eta_max - eta_min) (1 + cos(pi T_cur / T_i)) / 2, where T_cur counts
    the epochs (or steps) since the last restart and each cycle T_i is t_mult times the previous."""
    t_cur, t_i = sgdr_cycle(t, t0, t_mult)
    return eta_min + 0.5 * (eta_max - eta_min) * (1 + math.cos(math.pi * t_cur / t_i))


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


def build_scheduler(cfg: TrainConfig, optimizer: Optimizer, total_steps: int, steps_per_epoch: int) -> LRScheduler:
    if cfg.schedule != "sgdr":
        return LambdaLR(optimizer, lr_factor(cfg, total_steps, steps_per_epoch))
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    restarts = CosineAnnealingWarmRestarts(optimizer, T_0=max(1, round(cfg.sgdr.t0 * steps_per_epoch)),
                                           T_mult=cfg.sgdr.t_mult, eta_min=cfg.min_lr)
    if warmup == 0:
        return restarts
    ramp = LinearLR(optimizer, start_factor=1 / warmup, end_factor=1.0, total_iters=max(1, warmup - 1))
    return SequentialLR(optimizer, [ramp, restarts], milestones=[warmup])
