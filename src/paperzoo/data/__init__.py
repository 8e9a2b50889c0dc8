"""Data: built-in datasets (synthetic scenes, digits), user image folders, one ``(image, target)`` interface."""
from .datasets import (
    BUILTIN,
    DigitsDataset,
    ImageFolderDataset,
    ShapesDataset,
    collate,
    get_dataset,
)
from .mixing import CutMix, MixUp, MixUpOrCutMix
from .randaugment import RandAugment
from .shapes import CLASSES as SHAPE_CLASSES
from .shapes import PRESETS, Scene, SceneConfig, make_config, render_scene

__all__ = [
    "BUILTIN",
    "DigitsDataset",
    "ImageFolderDataset",
    "PRESETS",
    "SHAPE_CLASSES",
    "Scene",
    "SceneConfig",
    "ShapesDataset",
    "collate",
    "get_dataset",
    "make_config",
    "render_scene",
    "CutMix",
    "MixUp",
    "MixUpOrCutMix",
    "RandAugment",
]
