"""Data: built-in datasets (synthetic scenes, digits), user image folders and COCO json files, one
``(image, target)`` interface; dense targets are torchvision tv_tensors and follow transforms.v2."""
from .datasets import (
    BUILTIN,
    KINDS,
    DigitsDataset,
    ImageFolderDataset,
    ShapesDataset,
    get_dataset,
    scene_target,
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
    "KINDS",
    "scene_target",
    "get_dataset",
    "make_config",
    "render_scene",
    "CutMix",
    "MixUp",
    "MixUpOrCutMix",
    "RandAugment",
]
