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
from torchvision import tv_tensors

from ..errors import DataError, unknown
from .shapes import MAX_KEYPOINTS, Scene, make_config, render_scene

SPLITS = ("train", "val", "test")
# What a synthetic scene can be served as (a task's ``data`` kind); "scene" gives every annotation at once.
KINDS = ("classification", "detection", "instances", "keypoints", "segmentation", "matting", "captioning", "scene")
BUILTIN = ("shapes", "digits")


class ShapesDataset(Dataset):
    """Seeded synthetic scenes (see ``paperzoo.data.shapes``); sample ``i`` of a split never changes.

    ``kind`` says what a sample is (every kind comes from the same rendered scene):

    * ``"classification"``: ``(image, label)``, the class of the largest object;
    * ``"detection"``: ``(image, target)`` with ``boxes`` (``tv_tensors.BoundingBoxes``, XYXY pixels), ``labels``
      (1..K: 0 is the background, as torchvision's detectors have it), ``image_id``, ``area``, ``iscrowd``;
    * ``"instances"``: detection plus ``masks`` (``tv_tensors.Mask``, N x H x W, the visible part);
    * ``"keypoints"``: detection plus ``keypoints`` (``tv_tensors.KeyPoints``, N x 8 x 2: each shape's corners,
      padded) and ``visibility`` (N x 8: 2 visible, 1 occluded, 0 absent);
    * ``"segmentation"``: ``{"mask": Mask (H, W)}`` with each pixel's class 1..K (0 background);
    * ``"matting"``: ``{"alpha": Mask (1, H, W)}``, the exact foreground coverage in [0, 1];
    * ``"captioning"``: ``{"caption": str}``;
    * ``"scene"``: all of the above in one target (and ``label``, ``colors``).

    Detection-style kinds (detection, instances, keypoints, scene) give images in [0, 1] — torchvision's detectors
    normalise inside — and the others normalised images, unless ``normalize`` says otherwise; dense kinds'
    ``num_classes`` counts the background. ``keypoint_sigmas`` are the OKS constants of the 8 keypoint slots (shape
    corners are sharp points: one small constant for all). ``transform`` acts on the image alone, ``transforms`` on
    ``(image, target)`` (torchvision's v2 convention: boxes, masks and keypoints follow). Scenes are rendered on
    first access and kept (as uint8) unless ``cache=False``.
    """

    def __init__(
        self,
        split: str = "train",
        size: int | None = None,
        kind: str = "classification",
        preset: str = "medium",
        seed: int = 0,
        normalize: bool | None = None,
        cache: bool = True,
        transform: Any = None,
        transforms: Any = None,
        **knobs: Any,
    ) -> None:
        if split not in SPLITS:
            raise unknown("split", split, SPLITS)
        if kind not in KINDS:
            raise unknown("kind of synthetic-scene sample", kind, KINDS)
        self.split, self.kind, self.seed = split, kind, seed
        self.config = make_config(preset, **knobs)
        self.size = size if size is not None else {"train": 5000, "val": 1000, "test": 1000}[split]
        dense = kind != "classification"
        self.classes = list(self.config.classes)
        self.categories = ("__background__", *self.classes) if dense else tuple(self.classes)
        self.num_classes = len(self.categories)
        self.in_chans = 3
        self.image_size = (self.config.image_size, self.config.image_size)
        if normalize is None:
            normalize = kind not in ("detection", "instances", "keypoints", "scene")
        self.mean = (0.5, 0.5, 0.5) if normalize else (0.0, 0.0, 0.0)
        self.std = (0.25, 0.25, 0.25) if normalize else (1.0, 1.0, 1.0)
        self.transform, self.transforms = transform, transforms
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
        if self._cache is not None and self.kind != "classification":
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

    def target(self, index: int) -> dict[str, Any]:
        """The dense target of sample ``index`` for this dataset's kind."""
        return scene_target(self.scene(index), self.kind, index)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Any]:
        if self.kind == "classification":
            if self._cache is not None:
                images, labels = self.materialize()
                image, target = images[index], int(labels[index])
            else:
                s = self.scene(index)
                image, target = s.image, s.label
            x = self._to_tensor(image)
        else:
            s = self.scene(index)
            x = tv_tensors.Image(self._to_tensor(s.image))
            target = scene_target(s, self.kind, index)
        if self.transform is not None:
            x = self.transform(x)
        if self.transforms is not None:
            x, target = self.transforms(x, target)
        return x, target

    max_keypoints = MAX_KEYPOINTS
    keypoint_sigmas = (0.05,) * MAX_KEYPOINTS


def scene_target(s: Scene, kind: str, image_id: int = 0) -> dict[str, Any]:
    """A rendered scene's annotations in the dense-sample format (see ``ShapesDataset``)."""
    h, w = s.image.shape[:2]
    target: dict[str, Any] = {"image_id": image_id}
    if kind in ("detection", "instances", "keypoints", "scene"):
        boxes = torch.from_numpy(s.boxes).reshape(-1, 4)
        target.update(
            boxes=tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(h, w)),
            labels=torch.from_numpy(s.labels) + 1,
            area=torch.from_numpy(s.masks.reshape(len(s.labels), h * w).sum(1).astype(np.float32)),
            iscrowd=torch.zeros(len(s.labels), dtype=torch.int64),
        )
    if kind in ("instances", "scene"):
        target["masks"] = tv_tensors.Mask(torch.from_numpy(s.masks.astype(np.uint8)))
    if kind in ("keypoints", "scene"):
        kp = torch.from_numpy(s.keypoints)
        target["keypoints"] = tv_tensors.KeyPoints(kp[..., :2].contiguous(), canvas_size=(h, w))
        target["visibility"] = kp[..., 2].to(torch.int64)
    if kind in ("segmentation", "scene"):
        semantic = np.zeros((h, w), np.int64)
        for m, label in zip(s.masks, s.labels):
            semantic[m] = label + 1
        target["mask"] = tv_tensors.Mask(torch.from_numpy(semantic))
    if kind in ("matting", "scene"):
        target["alpha"] = tv_tensors.Mask(torch.from_numpy(s.alpha)[None])
    if kind in ("captioning", "scene"):
        target["caption"] = s.caption
    if kind == "scene":
        target.update(label=s.label, colors=s.colors)
    return target


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
