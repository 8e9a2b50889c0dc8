"""Stochastic Weight Averaging (Izmailov, Podoprikhin, Garipov, Vetrov & Wilson, 2018, arXiv:1803.05407).

SGD with a constant (or cyclical) learning rate keeps moving around a wide basin instead of settling at
its edge; averaging the weights it visits lands near the basin's centre, a flatter solution that
generalises better. Algorithm 1 of the paper: after a pre-training phase, run SGD at the SWA learning
rate and, at the end of every cycle of c epochs, update the running average

    w_SWA <- (w_SWA * n_models + w) / (n_models + 1);

then, since BatchNorm statistics of the average are not the average of the statistics, recompute them
with one pass over the training data.

``SWA`` is the Trainer's callback (``swa.start=``): PyTorch's ``AveragedModel`` holds the running average
(equal weights), ``SWALR`` takes over the schedule from epoch ``swa.start`` when ``swa.lr`` is given, and
``update_bn`` recomputes the average's statistics after the last epoch; the average is evaluated
(``swa_val_*``) and saved as ``model_swa.safetensors``.
"""
from __future__ import annotations

from typing import Any

from torch.optim import Optimizer
from torch.optim.swa_utils import SWALR, AveragedModel, update_bn

from ..config import SWAConfig
from . import Callback


class SWASchedule:
    """The run's own schedule until step ``start``; from then on SWALR anneals to ``swa_lr`` over
    ``anneal_steps`` and holds it. Checkpointed as one scheduler."""

    def __init__(self, base: Any, optimizer: Optimizer, swa_lr: float, anneal_steps: int, start: int) -> None:
        self.base, self.optimizer, self.swa_lr, self.anneal_steps, self.start = base, optimizer, swa_lr, anneal_steps, start
        self.steps = 0  # completed optimizer steps
        self.swalr: SWALR | None = None

    def step(self) -> None:
        self.steps += 1
        if self.steps < self.start:
            self.base.step()
        elif self.swalr is None:  # the SWA phase begins: anneal from the current lr to swa.lr
            self.swalr = SWALR(self.optimizer, swa_lr=self.swa_lr, anneal_epochs=self.anneal_steps)
        else:
            self.swalr.step()

    def get_last_lr(self) -> list[float]:
        return [g["lr"] for g in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        swalr = None
        if self.swalr is not None:
            swalr = {k: v for k, v in self.swalr.state_dict().items() if not callable(v)}
        return {"base": self.base.state_dict(), "steps": self.steps, "swalr": swalr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state["base"])
        self.steps = state["steps"]
        self.swalr = None
        if state["swalr"] is not None:
            lrs = [g["lr"] for g in self.optimizer.param_groups]  # SWALR's constructor steps once: keep the saved lrs
            self.swalr = SWALR(self.optimizer, swa_lr=self.swa_lr, anneal_epochs=self.anneal_steps)
            self.swalr.load_state_dict(state["swalr"])
            for g, lr in zip(self.optimizer.param_groups, lrs):
                g["lr"] = lr


class SWA(Callback):
    """Average once per ``cfg.every`` epochs after epoch ``cfg.start``; from then on the learning rate anneals to
    ``cfg.lr`` if one is given; BatchNorm statistics of the average are recomputed after the last epoch."""

    def __init__(self, cfg: SWAConfig) -> None:
        self.cfg = cfg
        self.average: AveragedModel | None = None

    @property
    def module(self):
        return self.average.module

    @property
    def n_averaged(self) -> int:
        return int(self.average.n_averaged)

    def setup(self, trainer) -> None:
        self.average = AveragedModel(trainer.model)  # equal weights; BN buffers are recomputed, not averaged
        if self.cfg.lr is not None:
            start = self.cfg.start * trainer.steps_per_epoch
            anneal = int(round(self.cfg.anneal_epochs * trainer.steps_per_epoch))
            trainer.scheduler = SWASchedule(trainer.scheduler, trainer.optimizer, self.cfg.lr, anneal, start)

    def on_epoch_end(self, trainer, row: dict[str, Any]) -> None:
        epoch = trainer.epoch  # 1-based, just finished
        if epoch > self.cfg.start and (epoch - self.cfg.start) % self.cfg.every == 0:
            self.average.update_parameters(trainer.model)
        if epoch < trainer.cfg.epochs or self.n_averaged == 0:
            return
        update_bn(trainer.loader(trainer.train_data, trainer.cfg.epochs, shuffle=False), self.average, trainer.device)
        if trainer.validating:
            row.update({f"swa_val_{k}": v for k, v in trainer.evaluate(model=self.module).items()})

    def on_fit_end(self, trainer) -> None:
        if self.n_averaged > 0:
            trainer.save_extra_weights("model_swa.safetensors", self.module.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average.load_state_dict(state["average"])
