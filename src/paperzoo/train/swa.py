"""Stochastic Weight Averaging (Izmailov, Podoprikhin, Garipov, Vetrov & Wilson, 2018, arXiv:1803.05407).

SGD with a constant (or cyclical) learning rate keeps moving around a wide basin instead of settling at
its edge; averaging the weights it visits lands near the basin's centre, a flatter solution that
generalises better. Algorithm 1 of the paper: after a pre-training phase, run SGD at the SWA learning
rate and, at the end of every cycle of c epochs, update the running average

    w_SWA <- (w_SWA * n_models + w) / (n_models + 1);

then, since BatchNorm statistics of the average are not the average of the statistics, recompute them
with one pass over the training data.

The engine uses PyTorch's implementation (``AveragedModel``, ``SWALR``, ``update_bn``) through ``SWA``;
``swa_average_reference`` and ``bn_update_reference`` restate the paper's two steps and are checked
against PyTorch's in tests.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from .config import SWAConfig


@torch.no_grad()
def swa_average_reference(w_swa: list[torch.Tensor], w: list[torch.Tensor], n_models: int) -> list[torch.Tensor]:
    """The paper's running average: (w_SWA * n_models + w) / (n_models + 1)."""
    return [(a * n_models + b) / (n_models + 1) for a, b in zip(w_swa, w)]


@torch.no_grad()
def bn_update_reference(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Recompute every BatchNorm's statistics for ``model``'s weights: the running mean and variance become
    the averages, over one pass of ``batches``, of each batch's mean and (unbiased) variance."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    seen: dict[nn.Module, list[tuple[torch.Tensor, torch.Tensor]]] = {m: [] for m in norms}

    def record(module: nn.Module, inputs: tuple[torch.Tensor], _: torch.Tensor) -> None:
        x = inputs[0].transpose(0, 1).flatten(1)  # channels x (batch * positions)
        seen[module].append((x.mean(1), x.var(1, unbiased=True)))

    hooks = [m.register_forward_hook(record) for m in norms]
    was_training = model.training
    model.train()
    for images in batches:
        model(images)
    model.train(was_training)
    for h in hooks:
        h.remove()
    for m in norms:
        m.running_mean.copy_(torch.stack([s[0] for s in seen[m]]).mean(0))
        m.running_var.copy_(torch.stack([s[1] for s in seen[m]]).mean(0))


class SWA:
    """The Trainer's SWA: average once per ``cfg.every`` epochs after epoch ``cfg.start``; from then on the
    learning rate anneals to ``cfg.lr`` (``SWALR``) if one is given; BatchNorm is recomputed at the end."""

    def __init__(self, model: nn.Module, cfg: SWAConfig, steps_per_epoch: int) -> None:
        self.cfg = cfg
        self.average = AveragedModel(model)  # equal weights; BN buffers are recomputed, not averaged
        self.start_step = cfg.start * steps_per_epoch
        self.anneal_steps = int(round(cfg.anneal_epochs * steps_per_epoch))
        self.scheduler: SWALR | None = None

    @property
    def module(self) -> nn.Module:
        return self.average.module

    @property
    def n_averaged(self) -> int:
        return int(self.average.n_averaged)

    def takes_over_schedule(self, step: int) -> bool:
        """Whether the SWA learning rate governs the step after ``step`` completed steps."""
        return self.cfg.lr is not None and step >= self.start_step

    def step_schedule(self, optimizer: Optimizer) -> None:
        if self.scheduler is None:  # the SWA phase begins: anneal from the current lr to swa.lr
            self.scheduler = SWALR(optimizer, swa_lr=self.cfg.lr, anneal_epochs=self.anneal_steps)
        else:
            self.scheduler.step()

    def on_epoch_end(self, epoch: int, model: nn.Module) -> bool:
        """Add ``model``'s weights to the average if ``epoch`` (1-based, just finished) ends an SWA cycle."""
        if epoch > self.cfg.start and (epoch - self.cfg.start) % self.cfg.every == 0:
            self.average.update_parameters(model)
            return True
        return False

    def update_bn(self, batches: Iterable[Any], device: torch.device) -> None:
        update_bn(batches, self.average, device)

    def state_dict(self) -> dict[str, Any]:
        sched = None
        if self.scheduler is not None:
            sched = {k: v for k, v in self.scheduler.state_dict().items() if not callable(v)}
        return {"average": self.average.state_dict(), "scheduler": sched}

    def load_state_dict(self, state: dict[str, Any], optimizer: Optimizer) -> None:
        """Load the average; recreate the SWA scheduler if it had started (call before the optimizer's
        ``load_state_dict``, which then restores the learning rates)."""
        self.average.load_state_dict(state["average"])
        if state["scheduler"] is not None:
            self.scheduler = SWALR(optimizer, swa_lr=self.cfg.lr, anneal_epochs=self.anneal_steps)
            self.scheduler.load_state_dict(state["scheduler"])
