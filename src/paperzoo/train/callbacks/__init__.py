"""Callbacks: everything the Trainer does beyond the plain loop. The training techniques of section C
(SWA, EMA, the DropBlock schedule, AdamWR's decay restarts, mixup/CutMix, RandAugment, zero-gamma) live here,
one file each, so the Trainer core never branches on a technique.

A callback may implement any of these hooks (all optional):

* ``on_model(trainer, model)``: change the model before it is placed and its optimizer built (zero-gamma,
  DropBlock's hooks);
* ``setup(trainer)``: once the optimizer and schedule exist (SWA takes over the schedule, EMA copies the model);
* ``sample_transform``: a per-sample augmentation ``(image, target) -> (image, target)``, run in the data loader
  with randomness seeded by (seed, epoch, index) so that it resumes exactly (RandAugment);
* ``on_batch(trainer, batch) -> batch``: a batch-level transform drawing from ``trainer.generator`` (mixing);
* ``on_step_start(trainer)`` / ``on_step_end(trainer, logs)``: around each optimizer step;
* ``on_epoch_end(trainer, row)``: may add numbers to the epoch's row (extra evaluations);
* ``on_fit_end(trainer)``: write extra weights;
* ``state_dict()`` / ``load_state_dict(state)``: whatever exact resume needs; checkpointed with the run.

``from_config(cfg, model, train_data)`` builds the callbacks a ``TrainConfig`` asks for.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from torch import nn
    from torch.utils.data import Dataset

    from ..config import TrainConfig
    from ..engine import Trainer


class Callback:
    """Base callback: every hook is a no-op."""

    sample_transform: Callable[[Any], Any] | None = None

    def on_model(self, trainer: Trainer, model: nn.Module) -> None:
        pass

    def setup(self, trainer: Trainer) -> None:
        pass

    def on_batch(self, trainer: Trainer, batch: Any) -> Any:
        return batch

    def on_step_start(self, trainer: Trainer) -> None:
        pass

    def on_step_end(self, trainer: Trainer, logs: dict[str, float]) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        pass

    def on_fit_end(self, trainer: Trainer) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class EpochEnd(Callback):
    """A plain function ``fn(trainer, row)`` called at each epoch end (the simplest way to log more)."""

    def __init__(self, fn: Callable[[Trainer, dict[str, Any]], None]) -> None:
        self.fn = fn

    def on_epoch_end(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self.fn(trainer, row)


class BatchTransform(Callback):
    """A function ``fn(images, targets, generator) -> (images, targets)`` applied to every training batch, with
    the Trainer's checkpointed generator (so a resumed run transforms identically)."""

    def __init__(self, fn: Callable[[torch.Tensor, Any, torch.Generator], tuple[torch.Tensor, Any]]) -> None:
        self.fn = fn

    def on_batch(self, trainer: Trainer, batch: Any) -> Any:
        images, targets = batch
        return self.fn(images, targets, trainer.generator)


def as_callback(obj: Callback | Callable[[Trainer, dict[str, Any]], None]) -> Callback:
    return obj if isinstance(obj, Callback) else EpochEnd(obj)


def from_config(cfg: TrainConfig, model: nn.Module, train_data: Dataset) -> list[Callback]:
    """The technique callbacks ``cfg`` turns on, in the order they act."""
    from .dropblock import DropBlockSchedule
    from .ema import EMA
    from .mixing import Mixing
    from .randaugment import RandAugmentSamples
    from .restarts import DecayRestarts
    from .swa import SWA
    from .zero_gamma import ZeroGamma

    out: list[Callback] = []
    if cfg.zero_gamma:
        out.append(ZeroGamma())
    out.append(DropBlockSchedule(cfg.dropblock))  # also schedules DropBlock layers a model was built with
    if cfg.randaugment.n > 0:
        out.append(RandAugmentSamples(cfg.randaugment.n, cfg.randaugment.m, train_data))
    if cfg.mixup.alpha > 0 or cfg.cutmix.alpha > 0:
        out.append(Mixing.from_config(cfg, model, train_data))
    if cfg.weight_decay_norm > 0 and cfg.schedule == "sgdr":
        out.append(DecayRestarts(cfg))
    if cfg.swa.start is not None:
        out.append(SWA(cfg.swa))
    if cfg.ema_decay > 0:
        out.append(EMA(cfg.ema_decay))
    return out


__all__ = ["BatchTransform", "Callback", "EpochEnd", "as_callback", "from_config"]
