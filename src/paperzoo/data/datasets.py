"""Datasets with one interface: ``ds[i] -> (image, target)``, where ``image`` is a float CHW tensor,
normalised with ``ds.mean``/``ds.std``, and ``target`` is a class index (classification) or a dict.

Every dataset carries ``num_classes``, ``classes``, ``in_chans``, ``image_size``, ``mean`` and ``std``,
so a model and a trainer can be configured from it. ``get_dataset("shapes"|"digits"|PATH, split)``
addresses them by name, as the CLI does.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import DataError, unknown
from .shapes import MAX_KEYPOINTS, Scene, make_config, render_scene

SPLITS = ("train", "val", "test")
TASKS = ("classify", "detect", "scene")
BUILTIN = ("shapes", "digits")


class ShapesDataset(Dataset):
    """Seeded synthetic scenes (see ``paperzoo.data.shapes``); sample ``i`` of a split never changes.

    ``task="classify"`` gives ``(image, label)``; ``"detect"`` gives ``(image, {boxes, labels, masks,
    keypoints})`` in torchvision's detection format (labels start at 0; add 1 for a background class);
    ``"scene"`` gives every annotation, caption and alpha matte included. Scenes are rendered on first
    access and kept (as uint8) unless ``cache=False``.
    """

    def __init__(
        self,
        split: str = "train",
        size: int | None = None,
        task: str = "classify",
        preset: str = "medium",
        seed: int = 0,
        normalize: bool = True,
        cache: bool = True,
        transform: Any = None,
        **knobs: Any,
    ) -> None:
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        if task not in TASKS:
            raise unknown("shapes task", task, TASKS)
        self.split, self.task, self.seed = split, task, seed
        self.config = make_config(preset, **knobs)
        self.size = size if size is not None else {"train": 5000, "val": 1000, "test": 1000}[split]
        self.classes = list(self.config.classes)
        self.num_classes = len(self.classes)
        self.in_chans = 3
        self.image_size = (self.config.image_size, self.config.image_size)
        self.mean = (0.5, 0.5, 0.5) if normalize else (0.0, 0.0, 0.0)
        self.std = (0.25, 0.25, 0.25) if normalize else (1.0, 1.0, 1.0)
        self.transform = transform
        self._cache: dict[int, Scene] | None = {} if cache else None
        self._images: torch.Tensor | None = None
        self._labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.size

    def scene(self, index: int) -> Scene:
        """The full rendered scene behind sample ``index``."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for {self.size} scenes")
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        scene = render_scene(self.config, [self.seed, SPLITS.index(self.split), index])
        if self._cache is not None and self.task != "classify":
            self._cache[index] = scene
        return scene

    def _to_tensor(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = torch.as_tensor(image).permute(2, 0, 1).float().div_(255)
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (x - mean) / std

    def materialize(self) -> tuple[torch.Tensor, torch.Tensor]:
        """All images (uint8, NHWC) and labels of the split as two tensors, rendered once."""
        if self._images is None:
            scenes = [self.scene(i) for i in range(self.size)]
            self._images = torch.from_numpy(np.stack([s.image for s in scenes]))
            self._labels = torch.tensor([s.label for s in scenes])
        return self._images, self._labels

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        if self.task == "classify":
            if self._cache is not None:
                images, labels = self.materialize()
                image, target = images[index], int(labels[index])
            else:
                s = self.scene(index)
                image, target = s.image, s.label
            x = self._to_tensor(image)
        else:
            s = self.scene(index)
            x = self._to_tensor(s.image)
            target = {
                "boxes": torch.from_numpy(s.boxes),
                "labels": torch.from_numpy(s.labels),
                "masks": torch.from_numpy(s.masks),
                "keypoints": torch.from_numpy(s.keypoints),
            }
            if self.task == "scene":
                target.update(label=s.label, alpha=torch.from_numpy(s.alpha), caption=s.caption, colors=s.colors)
        if self.transform is not None:
            x = self.transform(x)
        return x, target

    max_keypoints = MAX_KEYPOINTS


class DigitsDataset(Dataset):
    """scikit-learn's bundled handwritten digits (1,797 real 8x8 images, 10 classes), upsampled to
    ``image_size``. A fixed, seeded 70/10/20 train/val/test split."""

    def __init__(self, split: str = "train", image_size: int = 32, seed: int = 0, transform: Any = None) -> None:
        from sklearn.datasets import load_digits

        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        data = load_digits()
        images = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
        labels = torch.tensor(data.target, dtype=torch.long)
        order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
        n_train, n_val = int(0.7 * len(order)), int(0.1 * len(order))
        parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
        idx = parts[split]
        if image_size != 8:
            images = torch.nn.functional.interpolate(images, size=(image_size, image_size), mode="bilinear", align_corners=False)
        train = images[parts["train"]]
        self.mean, self.std = (float(train.mean()),), (float(train.std()),)
        self.images = (images[idx] - self.mean[0]) / self.std[0]
        self.labels = labels[idx]
        self.classes = [str(i) for i in range(10)]
        self.num_classes, self.in_chans, self.image_size = 10, 1, (image_size, image_size)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = self.images[index]
        if self.transform is not None:
            x = self.transform(x)
        return x, int(self.labels[index])


class ImageFolderDataset(Dataset):
    """A user's images in ``root/CLASS/*.jpg`` (torchvision's ImageFolder layout), resized and normalised.

    If ``root`` has ``train``/``val``/``test`` subfolders, ``split`` selects one; otherwise a fixed 90/10
    split of the whole folder serves as train/val. A corrupt or unreadable image raises an error naming
    the file; with ``on_error="skip"`` it is skipped with a warning instead.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        image_size: int = 224,
        mean: tuple[float, ...] = (0.485, 0.456, 0.406),
        std: tuple[float, ...] = (0.229, 0.224, 0.225),
        on_error: str = "raise",
        transform: Any = None,
        seed: int = 0,
    ) -> None:
        from torchvision.datasets import ImageFolder
        from torchvision.transforms import v2

        root = Path(root)
        if not root.is_dir():
            raise DataError(f"image folder not found: {root}")
        if on_error not in ("raise", "skip"):
            raise unknown("on_error policy", on_error, ("raise", "skip"))
        has_splits = (root / "train").is_dir()
        folder = root / split if has_splits else root
        if not folder.is_dir():
            raise DataError(f"{root} has no '{split}' folder")
        try:
            self.folder = ImageFolder(str(folder), loader=lambda p: p)  # we decode ourselves, to name bad files
        except (FileNotFoundError, RuntimeError) as e:
            raise DataError(f"{folder}: {e}") from None
        self.indices = list(range(len(self.folder.samples)))
        if not has_splits:
            order = torch.randperm(len(self.indices), generator=torch.Generator().manual_seed(seed)).tolist()
            cut = max(1, len(order) // 10)
            self.indices = sorted(order[cut:] if split == "train" else order[:cut])
        self.classes = list(self.folder.classes)
        self.num_classes, self.in_chans, self.image_size = len(self.classes), 3, (image_size, image_size)
        self.mean, self.std = tuple(mean), tuple(std)
        self.on_error = on_error
        self.transform = transform or v2.Compose([
            v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size),
            v2.ToDtype(torch.float32, scale=True), v2.Normalize(self.mean, self.std),
        ])

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, path: str) -> torch.Tensor:
        from PIL import Image, UnidentifiedImageError
        from torchvision.transforms.v2.functional import pil_to_tensor

        try:
            with Image.open(path) as img:
                return pil_to_tensor(img.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError) as e:  # PIL raises these for unreadable files
            raise DataError(f"cannot read image {path}: {e}".splitlines()[0]) from None

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        for attempt in range(len(self)):
            path, label = self.folder.samples[self.indices[(index + attempt) % len(self)]]
            try:
                return self.transform(self.load(path)), label
            except DataError as e:
                if self.on_error == "raise":
                    raise
                warnings.warn(f"skipping {e}", stacklevel=2)
        raise DataError(f"no readable image in {self.folder.root}")


def get_dataset(name: str, split: str = "train", **kwargs: Any) -> Dataset:
    """A dataset by name (``shapes``, ``digits``) or by path to an image folder."""
    if name == "shapes":
        return ShapesDataset(split, **kwargs)
    if name == "digits":
        return DigitsDataset(split, **kwargs)
    if "/" in name or "\\" in name or Path(name).exists():
        return ImageFolderDataset(name, split, **kwargs)
    raise unknown("dataset", name, BUILTIN, "expected shapes, digits or a path to an image folder")


def collate(batch: list[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, Any]:
    """Stack images; stack integer targets, keep dict targets as a list (variable object counts)."""
    images = torch.stack([b[0] for b in batch])
    targets = [b[1] for b in batch]
    if isinstance(targets[0], int):
        return images, torch.tensor(targets)
    return images, targets
