"""One registry for every model: ``register_model`` (a decorator per variant), ``create_model``, ``list_models``.

Model names follow timm where timm has the architecture, else torchvision, else a clear name of ours.
Every builder takes the same keyword arguments (``num_classes``, ``in_chans``, ``drop_path_rate`` where it
applies); ``features_only``/``out_indices`` are handled here for every model that implements
``forward_intermediates``.
"""
from __future__ import annotations

import fnmatch
import importlib
import pkgutil
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from torch import nn

from .errors import PaperzooError, unknown

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelMeta:
    """What a user needs to know about a registered model before and after building it.

    ``paper_params_m`` and ``paper_gflops`` are the numbers the paper reports (millions of parameters,
    billions of FLOPs where, as in most of these papers, one multiply-add counts as one FLOP).
    ``reference`` maps a reference library ("timm", "torchvision", ...) to its name for the same
    architecture; tests use it to prove equivalence. ``weights`` maps a source to published weights (a URL,
    optionally ending in ``#sha256=HEX`` for a published checksum).

    ``task`` names the task the model is trained and evaluated with (``paperzoo.tasks``; ``--task``
    overrides it); ``categories`` are the names of its output classes where they are fixed (a detector's
    COCO classes, background included at index 0 as torchvision has it); ``classifier`` lists the
    state-dict prefixes of the classification head(s), which a fine-tune to a new ``num_classes``
    re-initialises (timm's ``default_cfg["classifier"]``). ``recipe`` holds the TrainConfig settings the paper
    trains this model with where they differ from its task's recipe (DETR: AdamW at 1e-4); ``paperzoo train``
    layers them over the task's and under anything the user sets.
    """

    name: str
    paper: str
    family: str
    input_size: tuple[int, int, int] = (3, 224, 224)
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_classes: int = 1000
    paper_params_m: float | None = None
    paper_gflops: float | None = None
    reference: dict[str, str] = field(default_factory=dict)
    weights: dict[str, str] = field(default_factory=dict)
    notes: str = ""
    task: str = "classification"
    categories: tuple[str, ...] | None = None
    classifier: tuple[str, ...] = ()
    recipe: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Entry:
    builder: Callable[..., nn.Module]
    meta: ModelMeta


_REGISTRY: dict[str, _Entry] = {}
_DISCOVERED = False


def register_model(
    fn: Callable[..., nn.Module] | None = None, /, *, paper: str, **meta: Any
) -> Any:
    """Register a model builder under its function name.

    Usage: ``@register_model(paper="resnet", paper_params_m=25.6, reference={"timm": "resnet50"})``.
    The family is the builder's module name (``paperzoo.models.classification.resnet`` -> ``resnet``).
    """

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = builder.__name__
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise RuntimeError(f"model name '{name}' is registered twice")
        family = builder.__module__.rsplit(".", 1)[-1]
        _REGISTRY[name] = _Entry(builder, ModelMeta(name=name, paper=paper, family=family, **meta))
        return builder

    return wrap(fn) if fn is not None else wrap


def _discover() -> None:
    """Import every module under paperzoo.models so their decorators run (no hand-kept list)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    _DISCOVERED = True
    from . import models

    for info in pkgutil.walk_packages(models.__path__, models.__name__ + "."):
        if not info.name.rsplit(".", 1)[-1].startswith("_"):
            importlib.import_module(info.name)


def list_models(pattern: str = "*", paper: str | None = None) -> list[str]:
    """Registered model names matching a shell-style pattern (and, optionally, a paper slug), sorted."""
    _discover()
    return sorted(
        n for n, e in _REGISTRY.items()
        if fnmatch.fnmatchcase(n, pattern) and (paper is None or e.meta.paper == paper)
    )


def model_meta(name: str) -> ModelMeta:
    """The metadata of a registered model, without building it."""
    _discover()
    if name not in _REGISTRY:
        raise unknown("model", name, _REGISTRY, "see `paperzoo models` or pz.list_models()")
    return _REGISTRY[name].meta


def model_source(name: str) -> str:
    """Path of the file that defines a registered model."""
    import inspect

    model_meta(name)
    return inspect.getsourcefile(_REGISTRY[name].builder) or ""


def is_model(name: str) -> bool:
    _discover()
    return name in _REGISTRY


def create_model(
    name: str,
    pretrained: str | bool | None = None,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    drop_path_rate: float | None = None,
    features_only: bool = False,
    out_indices: tuple[int, ...] | list[int] | None = None,
    as_dict: bool = False,
    pretrained_backbone: str | bool | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build a registered model.

    ``pretrained`` is a local checkpoint path, a URL, or a source name with published weights
    (``"torchvision"``, ``"timm"``; ``True`` takes the model's first listed source). When
    ``num_classes`` differs from the checkpoint's, the classifier is left freshly initialised.
    ``pretrained_backbone`` (models built on a backbone: detectors, segmenters) loads weights of the
    backbone alone, given the same way as ``pretrained`` for the backbone's own model name.
    ``features_only=True`` returns the feature maps at ``out_indices`` as a list (timm's convention), or
    with ``as_dict=True`` as an ordered dict keyed ``"0"``, ``"1"``, ... (torchvision's, what necks take);
    either way the extractor has ``feature_info`` and ``out_channels``.
    """
    meta = model_meta(name)
    builder = _REGISTRY[name].builder
    for key, value in (("num_classes", num_classes), ("in_chans", in_chans), ("drop_path_rate", drop_path_rate),
                       ("pretrained_backbone", pretrained_backbone)):
        if value is not None:
            kwargs[key] = value
    if pretrained and _takes(builder, "pretrained"):  # builders that configure themselves for loaded weights
        kwargs["pretrained"] = True  # (a detector freezes BatchNorm as torchvision does with its weights)
    model = _build(name, builder, kwargs)
    model.meta = replace(
        meta,
        num_classes=kwargs.get("num_classes", meta.num_classes),
        input_size=(kwargs.get("in_chans", meta.input_size[0]), *meta.input_size[1:]),
    )
    if pretrained:
        from .weights import load_pretrained

        load_pretrained(model, pretrained)
    if features_only:
        from .models._features import FeatureExtractor

        model = FeatureExtractor(model, out_indices, as_dict=as_dict)
    elif out_indices is not None or as_dict:
        raise PaperzooError(f"{'out_indices' if out_indices is not None else 'as_dict'} only applies with features_only=True")
    return model


def _takes(builder: Callable[..., nn.Module], argument: str) -> bool:
    import inspect

    return argument in inspect.signature(builder).parameters


def _build(name: str, builder: Callable[..., nn.Module], kwargs: dict[str, Any]) -> nn.Module:
    """Call the builder; a keyword the model does not take becomes a one-line error naming it."""
    try:
        return builder(**kwargs)
    except TypeError as e:
        m = re.search(r"unexpected keyword argument '(\w+)'", str(e))
        if m and m.group(1) in kwargs:
            raise PaperzooError(f"model '{name}' does not take the argument '{m.group(1)}'") from None
        raise
