"""paperzoo: 76 computer-vision papers implemented faithfully, checked against independent references,
and re-runnable in miniature with ``paperzoo reproduce SLUG``.

    import paperzoo as pz
    pz.list_models("resnet*")
    model = pz.create_model("resnet50", num_classes=10)
    pz.load_weights(model, "resnet50.pth", source="torchvision")
    pz.paper("resnet").status

The subpackages (``pz.optim``, ``pz.data``, ``pz.train``, ``pz.tasks``, ``pz.layers``, ``pz.models``,
``pz.reproduce``, ``pz.explain``) are attributes as in timm (``timm.optim``, ``timm.data``), imported on first
use so that ``import paperzoo`` stays fast.
"""
from __future__ import annotations

import importlib as _importlib
from types import ModuleType as _ModuleType

from .catalog import Paper, paper, papers
from .errors import PaperzooError
from .registry import ModelMeta, create_model, list_models, model_meta, register_model
from .weights import load_weights

__version__ = "0.1.0"

__all__ = [
    "ModelMeta",
    "Paper",
    "PaperzooError",
    "create_model",
    "list_models",
    "load_weights",
    "model_meta",
    "paper",
    "papers",
    "register_model",
]

_SUBPACKAGES = ("data", "explain", "layers", "models", "optim", "reproduce", "tasks", "train")


def __getattr__(name: str) -> _ModuleType:
    """``pz.optim`` and the other subpackages, imported at first access (PEP 562)."""
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"{__name__}.{name}")  # the import also binds it in this namespace
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_SUBPACKAGES})
