"""AdamWR (Loshchilov & Hutter, 2017, Appendix B.2): with warm restarts, the normalised weight decay
lambda = lambda_norm sqrt(b / (B T_i)) follows the length T_i of the current SGDR cycle."""
from __future__ import annotations

from ...optim import normalized_weight_decay
from ..schedules import sgdr_cycle
from . import Callback


class DecayRestarts(Callback):
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.groups: list[dict] = []

    def setup(self, trainer) -> None:
        self.groups = [g for g in trainer.optimizer.param_groups if g["weight_decay"] > 0]

    def on_step_end(self, trainer, logs) -> None:
        cfg = self.cfg
        _, t_i = sgdr_cycle(trainer.step / trainer.steps_per_epoch, cfg.sgdr.t0, cfg.sgdr.t_mult)
        decay = normalized_weight_decay(cfg.weight_decay_norm, cfg.batch_size, len(trainer.train_data), t_i)
        for group in self.groups:
            group["weight_decay"] = decay
