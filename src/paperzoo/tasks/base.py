"""The contract every task follows, so that one Trainer, one ``evaluate`` and one CLI serve them all.

A **task** says what a batch is and what the model is asked to do with it:

* ``collate(samples) -> batch``: a list of dataset samples ``(image, target)`` into one batch
  ``(inputs, targets)``; the Trainer moves it to the device and never looks inside;
* ``loss(model, batch) -> (loss, logs)``: the training objective and a few numbers worth logging;
* ``predict(model, batch)``: what the model outputs in eval mode (logits, detection dicts, masks, ...),
  the one path that ``evaluate``, ``paperzoo eval`` and ``paperzoo predict`` use;
* ``evaluator()``: a fresh ``Evaluator`` for the task's metrics.

A task may **own its training step** (``train_step``): a GAN's alternating discriminator and generator
updates with two optimizers, BYOL's EMA target, a frozen teacher's forward pass. It then gets the Trainer and
uses its building blocks (``trainer.backward``, ``trainer.optimizer_step``, ``trainer.autocast``); its own
state (a second optimizer, a target network) is checkpointed through ``state_dict``/``load_state_dict``, so
exact resume covers it. The default step is the Trainer's standard one.

An **evaluator** accumulates ``update(predictions, batch)`` over batches, merges what every process saw in
``synchronize()`` (a no-op in one process), and reports ``compute() -> {name: float}``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import unknown

if TYPE_CHECKING:  # pragma: no cover
    from ..train.engine import Trainer

Batch = Any


def distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class Evaluator:
    """Base evaluator: ``update`` per batch, ``synchronize`` across processes, ``compute`` the metrics."""

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, predictions: Any, batch: Batch) -> None:
        raise NotImplementedError

    def synchronize(self) -> None:
        """Merge the state of every process (called once, after the last ``update``)."""

    def compute(self) -> dict[str, float]:
        raise NotImplementedError


class SumEvaluator(Evaluator):
    """Metrics that are sums over samples divided by the number of samples (accuracy, mean loss, PCK...).

    Subclasses add to ``self.sums`` (tensors) and ``self.count`` in ``update``; ``synchronize`` all-reduces
    them, ``compute`` divides. Names in ``totals`` are reported as sums, not divided.
    """

    totals: tuple[str, ...] = ()

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0.0

    def add(self, name: str, value: torch.Tensor | float) -> None:
        value = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
        self.sums[name] = self.sums.get(name, torch.zeros((), dtype=torch.float64)) + value

    def synchronize(self) -> None:
        if not distributed():
            return
        names = sorted(self.sums)
        vec = torch.stack([self.sums[n] for n in names] + [torch.tensor(self.count, dtype=torch.float64)])
        backend_device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        vec = vec.to(backend_device)
        dist.all_reduce(vec)
        vec = vec.cpu()
        self.sums = dict(zip(names, vec[:-1]))
        self.count = float(vec[-1])

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1.0)
        return {k: float(v) if k in self.totals else float(v) / n for k, v in self.sums.items()}


class GatherEvaluator(Evaluator):
    """Evaluators that keep per-sample records (COCO-style AP needs every detection): ``self.records`` is a
    list of picklable items, concatenated across processes by ``synchronize``."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.records: list[Any] = []

    def synchronize(self) -> None:
        if not distributed():
            return
        gathered: list[list[Any]] = [[] for _ in range(dist.get_world_size())]
        dist.all_gather_object(gathered, self.records)
        self.records = [r for part in gathered for r in part]


def split_batch(obj: Any, parts: int) -> list[Any]:
    """Split a batch (tensors, lists, tuples and dicts of those) into ``parts`` micro-batches along its
    first dimension, for gradient accumulation."""
    if parts == 1:
        return [obj]
    if isinstance(obj, torch.Tensor):
        return list(obj.chunk(parts))
    if isinstance(obj, tuple):
        pieces = [split_batch(v, parts) for v in obj]
        return [tuple(p[i] for p in pieces) for i in range(parts)]
    if isinstance(obj, list):
        k = math.ceil(len(obj) / parts)
        return [obj[i * k:(i + 1) * k] for i in range(parts)]
    if isinstance(obj, dict):
        pieces = {key: split_batch(v, parts) for key, v in obj.items()}
        return [{key: pieces[key][i] for key in obj} for i in range(parts)]
    raise TypeError(f"cannot split a batch of type {type(obj).__name__}")


class Task:
    """Base task. Subclasses set ``name`` and ``data`` (the kind of sample the built-in datasets give it:
    ``"classification"``, ``"detection"``, ...) and implement ``collate``, ``loss``, ``predict``,
    ``evaluator``."""

    name: str = "task"
    data: str = "classification"
    # TrainConfig defaults that suit the task, applied under anything a user sets (``paperzoo train``)
    recipe: dict[str, Any] = {}

    def collate(self, samples: Sequence[tuple[Any, Any]]) -> Batch:
        raise NotImplementedError

    def loss(self, model: nn.Module, batch: Batch) -> tuple[torch.Tensor, dict[str, Any]]:
        raise NotImplementedError

    def predict(self, model: nn.Module, batch: Batch) -> Any:
        raise NotImplementedError

    def evaluator(self) -> Evaluator:
        raise NotImplementedError

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> Task:
        """The task a ``TrainConfig`` asks for, given the training data (``paperzoo train --task NAME``)."""
        return cls()

    # ------------------------------------------------------------------ optional hooks
    def setup(self, trainer: Trainer) -> None:
        """Called once by the Trainer after it has placed the model (move extra networks, build their optimizers)."""

    def train_step(self, trainer: Trainer, batch: Batch) -> dict[str, float] | None:
        """One optimisation step on ``batch``; the default is the Trainer's standard step."""
        return trainer.standard_step(batch)

    def split(self, batch: Batch, parts: int) -> list[Batch]:
        return split_batch(batch, parts)

    def batch_size(self, batch: Batch) -> int:
        return len(batch[0])

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


_TASKS: dict[str, Callable[..., Task]] = {}


def register_task(name: str) -> Callable[[type[Task]], type[Task]]:
    def wrap(cls: type[Task]) -> type[Task]:
        if name in _TASKS and _TASKS[name] is not cls:
            raise RuntimeError(f"task '{name}' is registered twice")
        cls.name = name
        _TASKS[name] = cls
        return cls

    return wrap


def task_names() -> list[str]:
    from . import _discover

    _discover()
    return sorted(_TASKS)


def task_class(name: str) -> type[Task]:
    names = task_names()
    if name not in _TASKS:
        raise unknown("task", name, names, f"known tasks: {', '.join(names)}")
    return _TASKS[name]


def get_task(name: str, **kwargs: Any) -> Task:
    """A task by name, built with ``kwargs``."""
    return task_class(name)(**kwargs)


def task_name_for(cfg: Any, meta: Any) -> str:
    """The task a run uses: ``cfg.task`` (``--task``) if set, DeiT distillation when ``distill.teacher`` is set,
    else the model's own (``meta.task``)."""
    if getattr(cfg, "task", None):
        return cfg.task
    if getattr(getattr(cfg, "distill", None), "teacher", None):
        return "deit-distillation"
    return getattr(meta, "task", "classification")


def build_task(cfg: Any, meta: Any, data: Any = None) -> Task:
    """The task of a run (``task_name_for``) built from the config and the training data."""
    return task_class(task_name_for(cfg, meta)).from_config(cfg, data)
