"""Generative models on the one Trainer: a task that owns its training step.

A generative model (an adversarial autoencoder, a GAN, a VAE with a discriminator) is one ``nn.Module`` that holds
all of its networks, so ``model.state_dict()`` (the run's ``model.safetensors``) carries every weight. It says how
it is trained by a list of **phases** (``model.phases()``): each phase names the sub-networks it updates, a loss
and its optimizer settings. Per training step the task runs the phases in order — e.g. the discriminator update,
then the generator update — each with **its own Adam optimizer** (kept by the task and checkpointed through
``state_dict``, so resume is exact), its own gradient clipping and optional gradient skipping (an update whose
gradient norm exceeds ``skip_above`` is dropped, VDVAE's stability trick). All phase learning rates follow the
run's schedule: phase lr = ``phase.lr_scale`` x the Trainer's current lr (``--lr``, ``schedule=``).

Under torchrun the losses run on the unwrapped model and each phase's gradients are averaged across processes by
an all-reduce before its step. Random draws inside a loss (prior samples, noise) take the ``generator`` the task passes: the Trainer's
checkpointed batch-level generator, so a killed and resumed run draws the same numbers.

The model also implements ``sample(n, generator) -> images in [0, 1]`` (a grid of them is written to
``samples/epoch-NNN.png`` at the end of every epoch, from a fixed noise seed) and
``evaluate_batch(x, y) -> {name: per-sample tensor}`` (the validation metrics). Batches reach the model as
``(images in [0, 1], labels)``: the task undoes the dataset's normalisation.
"""
from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import ConfigError
from .base import SumEvaluator, Task, register_task

if TYPE_CHECKING:  # pragma: no cover
    from ..train.engine import Trainer

LossFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, dict[str, float]]]


@dataclass
class Phase:
    """One update of a training step: ``loss(model, x, y, generator)`` minimised over the parameters of the
    sub-modules ``modules`` (attribute paths of the model) by an Adam optimizer of its own."""

    name: str
    modules: Sequence[str]
    loss: LossFn
    lr_scale: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)
    every: int = 1  # run on every ``every``-th step
    clip: float = 0.0  # max gradient norm of this phase (0: off)
    skip_above: float = 0.0  # drop the update when the gradient norm exceeds this (0: never)


def _inner(net: nn.Module) -> nn.Module:
    return getattr(net, "module", getattr(net, "_orig_mod", net))


def phase_parameters(model: nn.Module, phase: Phase) -> list[nn.Parameter]:
    params: list[nn.Parameter] = []
    for name in phase.modules:
        try:
            sub = model.get_submodule(name)
        except AttributeError:
            raise ConfigError(f"phase '{phase.name}' names a sub-module '{name}' the model does not have") from None
        params += [p for p in sub.parameters() if p.requires_grad]
    if not params:
        raise ConfigError(f"phase '{phase.name}' has no trainable parameters")
    return params


def save_grid(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Images in [0, 1] (B, C, H, W) as one PNG grid."""
    from torchvision.utils import save_image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(images)
    save_image(images.detach().float().clamp(0, 1).cpu(), str(path), nrow=nrow or max(1, int(n ** 0.5)), padding=1)
    return path


class GenerativeEvaluator(SumEvaluator):
    """Means over the validation samples of the per-sample numbers ``model.evaluate_batch`` gives."""

    def update(self, predictions: dict[str, torch.Tensor], batch: Any) -> None:
        n = 0
        for k, v in predictions.items():
            self.add(k, v.detach().double().sum())
            n = len(v)
        self.count += n


@register_task("generative")
class GenerativeTask(Task):
    """Generative models (AAE, GANs, VAEs): the model's phases, each with its own optimizer, per step; a sample
    grid per epoch."""

    data = "classification"  # (image, label) samples: the label feeds supervised and semi-supervised forms
    recipe = {"optimizer": "adam", "lr": 2e-4, "schedule": "constant", "weight_decay": 0.0, "batch_size": 64,
              "epochs": 20}
    grid_samples = 64

    def __init__(self, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> None:
        self.mean, self.std = mean, std
        self.phases: list[Phase] = []
        self.optimizers: list[torch.optim.Optimizer] = []
        self.skipped: dict[str, int] = {}

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> GenerativeTask:
        return cls(getattr(data, "mean", None), getattr(data, "std", None))

    # ------------------------------------------------------------------ batches
    def collate(self, samples):
        images = torch.stack([s[0] for s in samples])
        labels = torch.tensor([int(s[1]) if not isinstance(s[1], dict) else int(s[1].get("label", -1)) for s in samples])
        return images, labels

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Dataset images (normalised) back to [0, 1]."""
        if self.mean is None or self.std is None:
            return x
        m = torch.as_tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        s = torch.as_tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x * s + m).clamp(0, 1)

    # ------------------------------------------------------------------ training
    def setup(self, trainer: Trainer) -> None:
        data = trainer.train_data
        if self.mean is None and getattr(data, "mean", None) is not None:
            self.mean, self.std = data.mean, data.std
        model = trainer.model
        if not callable(getattr(model, "phases", None)):
            raise ConfigError(f"the generative task needs a model with phases(); {type(model).__name__} has none")
        self.phases = list(model.phases())
        base = trainer.cfg.lr
        self.optimizers = []
        for p in self.phases:
            opt = torch.optim.Adam(phase_parameters(model, p), lr=base * p.lr_scale, betas=p.betas)
            for g in opt.param_groups:
                g["initial_lr"] = base * p.lr_scale
            self.optimizers.append(opt)
        self.skipped = {p.name: 0 for p in self.phases}

    def loss(self, model, batch):
        """The phases' losses summed, without updates (what a step would minimise; used by ``forward_backward``
        only through the phases)."""
        x, y = self.to_unit(batch[0]), batch[1]
        g = torch.Generator(device=x.device).manual_seed(0)
        total, logs = 0.0, {}
        for p in model.phases():
            value, extra = p.loss(_inner(model), x, y, g)
            total = total + value
            logs.update(extra)
        return total, logs

    def train_step(self, trainer: Trainer, batch):
        from ..train.engine import _NonFinite

        x, y = self.to_unit(batch[0]), batch[1]
        model = trainer.model
        group = trainer.optimizer.param_groups[0]
        scale = group["lr"] / group.get("initial_lr", group["lr"]) if group.get("initial_lr", 0) else 1.0
        logs: dict[str, float] = {}
        total = 0.0
        try:
            for phase, opt in zip(self.phases, self.optimizers):
                if trainer.step % phase.every:
                    continue
                for g in opt.param_groups:
                    g["lr"] = g["initial_lr"] * scale
                model.zero_grad(set_to_none=True)
                value, extra = trainer.forward_backward(
                    (x, y), lambda net, b, phase=phase: phase.loss(_inner(net), b[0], b[1], trainer.generator))
                params = [p for g in opt.param_groups for p in g["params"]]
                if trainer.info.enabled:  # the losses run on the unwrapped model: average the gradients by hand
                    for p in params:
                        if p.grad is not None:
                            torch.distributed.all_reduce(p.grad)
                            p.grad /= trainer.info.world
                if phase.clip > 0 or phase.skip_above > 0:
                    trainer.scaler.unscale_(opt)
                    norm = float(torch.nn.utils.clip_grad_norm_(params, phase.clip if phase.clip > 0 else float("inf")))
                    extra[f"{phase.name}_grad_norm"] = norm
                    if phase.skip_above > 0 and not norm < phase.skip_above:  # NaN norms are skipped too
                        self.skipped[phase.name] += 1
                        extra[f"{phase.name}_skipped"] = 1.0
                        trainer.scaler.update()
                        continue
                trainer.scaler.step(opt)
                trainer.scaler.update()
                logs[f"{phase.name}_loss"] = value
                logs.update(extra)
                total += value
        except _NonFinite as bad:
            model.zero_grad(set_to_none=True)
            return trainer._on_nonfinite(bad.value)
        model.zero_grad(set_to_none=True)
        with warnings.catch_warnings():  # the Trainer's optimizer only carries the schedule; the phases' step
            warnings.filterwarnings("ignore", message=re.escape("Detected call of `lr_scheduler.step()`"))
            trainer.scheduler.step()
        logs["loss"] = total
        if trainer.batch_in_epoch == trainer.steps_per_epoch - 1:  # the epoch's last step: its sample grid
            self.write_grid(trainer)
        return logs

    def write_grid(self, trainer: Trainer) -> Path | None:
        if trainer.out is None or not trainer.info.is_main:
            return None
        model = trainer.model
        was = model.training
        model.eval()
        gen = torch.Generator(device=trainer.device).manual_seed(trainer.cfg.seed)  # the same noise every epoch
        with torch.no_grad():
            images = model.sample(self.grid_samples, generator=gen)
        model.train(was)
        return save_grid(images, trainer.out / "samples" / f"epoch-{trainer.epoch + 1:03d}.png")

    # ------------------------------------------------------------------ evaluation
    def predict(self, model, batch):
        return _inner(model).evaluate_batch(self.to_unit(batch[0]), batch[1])

    def evaluator(self):
        return GenerativeEvaluator()

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {"optimizers": {p.name: o.state_dict() for p, o in zip(self.phases, self.optimizers)},
                "skipped": dict(self.skipped)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("optimizers", {})
        if set(saved) != {p.name for p in self.phases}:
            raise ConfigError(f"the checkpoint's phases ({', '.join(saved) or 'none'}) are not this model's "
                              f"({', '.join(p.name for p in self.phases)})")
        for p, o in zip(self.phases, self.optimizers):
            o.load_state_dict(saved[p.name])
        self.skipped = dict(state.get("skipped", self.skipped))
