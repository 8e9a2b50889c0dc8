"""Extra trainable modules of a task (SSL projectors and predictors, OFD's connectors) trained beside the model.

``HeadsTraining`` is a task mixin: ``self.heads`` (an ``nn.ModuleDict`` built in ``build(trainer)``) gets an
optimizer of the run's kind (``build_optimizer`` on the run's config) whose learning rate follows the model's
optimizer at every step; the task-owned step is the Trainer's forward/backward, both optimizer steps, the schedule,
then ``after_step`` (e.g. an EMA target's update). Heads and their optimizer are checkpointed in ``state_dict``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import ConfigError


class HeadsTraining:
    heads: nn.ModuleDict
    heads_opt: torch.optim.Optimizer | None = None

    def build(self, trainer: Any) -> None:
        """Create ``self.heads`` (and target networks) for ``trainer.model``."""

    def setup(self, trainer: Any) -> None:
        if trainer.info.enabled:
            raise ConfigError(f"the {self.name} task runs in one process (its extra modules are not data-parallel yet)")
        if trainer.closure_optimizer:
            raise ConfigError(f"the {self.name} task does not support closure optimizers (SAM)")
        self.build(trainer)
        self.heads.to(trainer.device)
        from ..train.optimizers import build_optimizer

        self.heads_opt = build_optimizer(trainer.cfg, self.heads) if list(self.heads.parameters()) else None

    def after_step(self, trainer: Any) -> None:
        """What follows each optimizer step (called with ``trainer.step`` still the index of this step)."""

    def train_step(self, trainer: Any, batch: Any) -> dict[str, float] | None:
        from ..train.engine import _NonFinite

        self.heads.train()
        try:
            total, logs = trainer.forward_backward(batch)
            if self.heads_opt is not None:  # the heads follow the model's schedule
                for group in self.heads_opt.param_groups:
                    group["lr"] = trainer.optimizer.param_groups[0]["lr"]
                trainer.scaler.step(self.heads_opt)
            trainer.optimizer_step(batch, logs)
        except _NonFinite as bad:
            trainer.optimizer.zero_grad(set_to_none=True)
            if self.heads_opt is not None:
                self.heads_opt.zero_grad(set_to_none=True)
            return trainer._on_nonfinite(bad.value)
        trainer.optimizer.zero_grad(set_to_none=True)
        if self.heads_opt is not None:
            self.heads_opt.zero_grad(set_to_none=True)
        trainer.scheduler.step()
        self.after_step(trainer)
        logs["loss"] = total
        return logs

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"heads": self.heads.state_dict()}
        if self.heads_opt is not None:
            state["heads_opt"] = self.heads_opt.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "heads" in state:
            self.heads.load_state_dict(state["heads"])
        if "heads_opt" in state and self.heads_opt is not None:
            self.heads_opt.load_state_dict(state["heads_opt"])
