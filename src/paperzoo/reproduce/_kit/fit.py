"""One training run of a reproduction, through the one ``Trainer``: ``fit(...) -> Run``.

Everything a reproduction varies goes through the Trainer's public constructor: the recipe (``Recipe`` or
TrainConfig fields as keywords), dotted overrides (``"sam.rho=0.05"``), a custom task, a batch transform,
an optimizer and schedule, per-epoch callbacks. The budget is either epochs over the training set or a
number of optimizer steps (a small set is repeated inside each trainer epoch, so that a few hundred steps
on 400 digits are a few trainer epochs, not hundreds of tiny ones each ending in an evaluation).
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ...config import apply_overrides
from ...errors import ConfigError
from ...train import TrainConfig, Trainer
from ...cost import params as count_params
from .data import Repeated


@dataclass
class Recipe:
    """The optimisation recipe the arms of one comparison share (the TrainConfig fields it sets)."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    schedule: str = "cosine"
    label_smoothing: float = 0.0

    def describe(self, schedule: bool = True) -> str:
        """The recipe in one phrase (``schedule=False`` leaves out the schedule, for arms that vary it)."""
        opt = {"sgd": f"SGD{' with Nesterov' if self.nesterov else ''} momentum {self.momentum:g}",
               "adamw": "AdamW", "adam": "Adam", "radam": "RAdam", "adams": "AdamS"}.get(self.optimizer, self.optimizer)
        warm = f"{self.warmup_epochs:g}-epoch linear warmup" if self.warmup_epochs else ""
        sched = ", ".join(x for x in (self.schedule if schedule else "", warm) if x)
        ls = f", label smoothing {self.label_smoothing:g}" if self.label_smoothing else ""
        return (f"{self.epochs} epochs of {opt}, lr {self.lr:g}{f' ({sched})' if sched else ''}, weight decay "
                f"{self.weight_decay:g}, batch {self.batch_size}{ls}")


@dataclass
class Run:
    """One trained model: its per-epoch history, wall time, size and the numbers of its last epoch."""

    name: str
    model: nn.Module
    history: list[dict[str, Any]]
    seconds: float
    params: int
    metrics: dict[str, float]  # the numbers of the last epoch's row (val_acc, train_loss, train_eval_acc, ...)
    seed: int

    @property
    def acc(self) -> float:
        """Final test accuracy in percent."""
        return 100 * self.metrics["val_acc"]

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    def last(self, key: str, k: int = 1) -> float:
        """Mean of ``key`` over the last ``k`` epochs that recorded it."""
        values = [row[key] for row in self.history if key in row][-k:]
        if not values:
            raise KeyError(f"run '{self.name}' recorded no '{key}'")
        return sum(values) / len(values)


def seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """``build()`` after ``torch.manual_seed(seed)``: the initialisation an arm's seed fixes."""
    torch.manual_seed(seed)
    return build()


def fit(name: str, model: nn.Module, train: Dataset, test: Dataset | None, *, seed: int = 0,
        recipe: Recipe | Mapping[str, Any] | None = None, steps: int | None = None, evals: int = 1,
        warmup_fraction: float | None = None, overrides: Sequence[str] | Mapping[str, Any] = (),
        task: Any = None, optimizer: str | torch.optim.Optimizer | None = None, scheduler: Any = None,
        batch_transform: Callable | None = None, callbacks: Sequence[Callable] = (),
        train_eval: Dataset | None = None, out: str | Path | None = None, **config: Any) -> Run:
    """Train ``model`` on ``train`` (validating on ``test`` after each trainer epoch) and return its ``Run``.

    The TrainConfig is ``recipe`` updated by the ``config`` keywords, then by the dotted ``overrides``.
    With ``steps`` the budget is that many optimizer steps (rounded up to a multiple of ``evals``) cut into
    ``evals`` trainer epochs (``train`` cycled to fill them) instead of ``epochs``; ``warmup_fraction`` sets the
    linear warmup as a fraction of all training. ``train_eval`` adds ``train_eval_acc`` (accuracy on those
    training samples, in eval mode) to every epoch's row; ``callbacks(trainer, row)`` run at each epoch end
    and may add numbers.
    A ``batch_transform`` (e.g. ``FlipShift``) is followed by the configured mixup/CutMix (the Trainer's order).
    ``out`` is the trainer's run directory (None: nothing
    written). Each row also gets ``passes``, the epochs over ``train`` so far. ``optimizer`` is a TrainConfig
    name ("adamw") or a built optimizer (then ``scheduler`` may be given too).
    """
    if isinstance(optimizer, str):
        config["optimizer"], optimizer = optimizer, None
    base = dataclasses.asdict(recipe) if dataclasses.is_dataclass(recipe) else dict(recipe or {})
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    settings = {"model": name, "log_every": 10**9, "channels_last": True, **base, **config, "seed": seed}
    bad = sorted(set(settings) - fields)
    if bad:
        raise ConfigError(f"fit: unknown TrainConfig field '{bad[0]}'")
    cfg = apply_overrides(TrainConfig(**settings), overrides)
    n = len(train)
    data = train
    if steps is not None:  # each trainer epoch is ceil(steps / evals) batches of the cycled training set
        cfg.epochs = evals
        data = Repeated(train, length=math.ceil(steps / evals) * cfg.batch_size)
    if warmup_fraction is not None:
        cfg.warmup_epochs = warmup_fraction * cfg.epochs
    def annotate(trainer: Trainer, row: dict[str, Any]) -> None:
        row["passes"] = trainer.step * cfg.batch_size / n
        if train_eval is not None:
            row["train_eval_acc"] = trainer.evaluate(train_eval)["acc"]

    trainer = Trainer(model, data, test, cfg, task=task, optimizer=optimizer, scheduler=scheduler, out=out, quiet=True,
                      batch_transform=batch_transform, callbacks=[annotate, *callbacks])
    t0 = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - t0
    metrics = {k: v for k, v in history[-1].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return Run(name, model, history, seconds, count_params(model), metrics, seed)


@torch.no_grad()
def predictions(model: nn.Module, dataset: Dataset, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (float) and labels of ``model`` in eval mode on a classification ``dataset``."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    logits, labels = [], []
    for start in range(0, len(dataset), batch_size):
        xs, ys = zip(*(dataset[i] for i in range(start, min(start + batch_size, len(dataset)))))
        x = torch.stack(xs).to(device).contiguous(memory_format=torch.channels_last)
        logits.append(model(x).float().cpu())
        labels.append(torch.tensor(ys))
    model.train(was)
    return torch.cat(logits), torch.cat(labels)


def accuracy(model: nn.Module, dataset: Dataset) -> float:
    """Top-1 accuracy (percent) of ``model`` in eval mode on ``dataset``."""
    logits, labels = predictions(model, dataset)
    return 100 * float((logits.argmax(1) == labels).float().mean())


def run_arms(arms: Mapping[str, Callable[[int], Run]], seeds: Sequence[int]) -> dict[str, list[Run]]:
    """Train every arm once per seed (``arms[label](seed) -> Run``), the seeds in the outer loop so that a
    change of machine load during the run falls on all arms alike; returns each arm's runs in seed order."""
    runs: dict[str, list[Run]] = {label: [] for label in arms}
    for seed in seeds:
        for label, train_one in arms.items():
            runs[label].append(train_one(seed))
    return runs


def calibration(logits: torch.Tensor, labels: torch.Tensor, bins: int = 15) -> dict[str, float]:
    """Accuracy, negative log-likelihood, expected calibration error (Guo et al., 2017: ``bins`` equal-width
    confidence bins, |confidence - accuracy| weighted by the bin's share) and mean confidence."""
    prob = logits.softmax(1)
    conf, pred = prob.max(1)
    correct = (pred == labels).float()
    which = (conf * bins).ceil().clamp(1, bins).long() - 1  # bin (lo, hi] of each prediction
    count = torch.zeros(bins).index_add_(0, which, torch.ones_like(conf))
    gap = torch.zeros(bins).index_add_(0, which, conf - correct).abs()
    ece = float(gap.sum() / len(conf))
    return {"acc": float(correct.mean()), "nll": float(torch.nn.functional.cross_entropy(logits, labels)), "ece": ece,
            "confidence": float(conf.mean()), "bins_used": int((count > 0).sum())}
