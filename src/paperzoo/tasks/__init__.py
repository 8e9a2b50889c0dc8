"""Tasks: what a batch is, what the loss and the prediction are, and how predictions are scored — one file
per task, all on the contract of ``base.py``. The task of a model comes from its metadata (``meta.task``);
``--task`` (``get_task``) overrides it."""
from __future__ import annotations

import importlib
import pkgutil

from .base import (
    Evaluator,
    GatherEvaluator,
    SumEvaluator,
    Task,
    build_task,
    get_task,
    register_task,
    split_batch,
    task_class,
    task_name_for,
    task_names,
)
from .classification import AccuracyEvaluator, ClassificationTask

_DISCOVERED = False


def _discover() -> None:
    """Import every task module so their ``@register_task`` decorators run (no hand-kept list)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_") and info.name != "base":
            importlib.import_module(f"{__name__}.{info.name}")


__all__ = ["AccuracyEvaluator", "ClassificationTask", "Evaluator", "GatherEvaluator", "SumEvaluator", "Task",
           "build_task", "get_task", "register_task", "split_batch", "task_class", "task_name_for", "task_names"]
