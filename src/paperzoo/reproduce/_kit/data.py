"""The built-in data every reproduction trains on, and the one batch augmentation they share.

``Data`` is the data block of a reproduction's config: the synthetic scenes (with their difficulty knobs)
or the real handwritten digits, a training and a test split, and a one-line description for the report.
``Part`` and ``Repeated`` are views of a dataset that keep the wrapped dataset's attributes (``classes``,
``num_classes``, ``mean``, ``std``, ``transform``, ...), so that the Trainer and the models see a dataset.
``FlipShift`` is the batch augmentation: random horizontal flips and translations with the border filled
by reflection or by a constant (the background value of a normalised image).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ...data import DigitsDataset, ShapesDataset
from ...errors import ConfigError, unknown

DATASETS = ("shapes", "digits")


class Part(Dataset):
    """The first ``n`` samples of ``dataset`` (all of them if it is shorter), with its attributes."""

    def __init__(self, dataset: Dataset, n: int | None) -> None:
        self.dataset = dataset
        self.n = len(dataset) if n is None else min(n, len(dataset))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Any:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} samples")
        return self.dataset[index % self.n]

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "n"):  # not set yet (unpickling): do not recurse
            raise AttributeError(name)
        return getattr(self.dataset, name)


class Repeated(Dataset):
    """``dataset`` cycled to ``length`` samples (default ``times`` x its length; sample ``i`` is
    ``dataset[i % len(dataset)]``), so that one trainer epoch of a small set is many steps long; other
    attributes are the wrapped dataset's."""

    def __init__(self, dataset: Dataset, times: int = 1, length: int | None = None) -> None:
        self.length = len(dataset) * times if length is None else length
        if self.length < 1:
            raise ConfigError(f"Repeated: needs at least one sample, got times={times}, length={length}")
        self.dataset, self.times = dataset, times

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Any:
        return self.dataset[index % len(self.dataset)]

    def __getattr__(self, name: str) -> Any:
        if name in ("dataset", "times", "length"):
            raise AttributeError(name)
        return getattr(self.dataset, name)


def scenes(image_size: int, train_size: int, test_size: int, preset: str = "medium",
           scale: tuple[float, float] | None = None, seed: int = 0, **knobs: Any) -> tuple[ShapesDataset, ShapesDataset]:
    """Training and test splits of the synthetic scenes (8 shape classes) with the same knobs; ``scale``
    None keeps the preset's object sizes."""
    kw = dict(image_size=image_size, preset=preset, seed=seed, **knobs)
    if scale is not None:
        kw["scale"] = tuple(scale)
    return ShapesDataset("train", size=train_size, **kw), ShapesDataset("test", size=test_size, **kw)


def digits(train_size: int | None = None, test_size: int | None = None, image_size: int = 16,
           seed: int = 0) -> tuple[Part, Part]:
    """The first ``train_size`` of the 1,257 real training digits and the first ``test_size`` of the 361 test
    digits (None: all), upsampled to ``image_size``; the split is scikit-learn's images shuffled by ``seed``."""
    return (Part(DigitsDataset("train", image_size=image_size, seed=seed), train_size),
            Part(DigitsDataset("test", image_size=image_size, seed=seed), test_size))


@dataclass
class Data:
    """The data block of a reproduction's config: which built-in data, how much of it, how hard."""

    name: str = "shapes"  # shapes (synthetic scenes, 8 classes) | digits (real 8x8 handwritten digits, 10 classes)
    image_size: int = 16
    train_size: int | None = 4000  # None: the whole split (digits: 1,257 training images)
    test_size: int | None = 1000  # None: the whole split (digits: 361 test images)
    preset: str = "medium"  # shapes only: easy | medium | hard
    scale: tuple[float, float] | None = (0.5, 0.9)  # shapes only: object diameter / image side (None: the preset's)
    knobs: dict[str, Any] = field(default_factory=dict)  # shapes only: further SceneConfig knobs (max_objects, rotate, ...)
    seed: int = 0
    kind: str = "classification"  # shapes only: what a sample is (classification, detection, instances, ...)

    def splits(self, image_size: int | None = None) -> tuple[Dataset, Dataset]:
        """(train, test) at this config's size, or re-rendered at ``image_size`` (scenes) / resized (digits)."""
        size = image_size or self.image_size
        if self.name == "shapes":
            if self.train_size is None or self.test_size is None:
                raise ConfigError("data: the synthetic scenes need a train_size and a test_size")
            return scenes(size, self.train_size, self.test_size, self.preset, self.scale, self.seed, kind=self.kind,
                          **self.knobs)
        if self.name == "digits":
            return digits(self.train_size, self.test_size, size, self.seed)
        raise unknown("dataset", self.name, DATASETS)

    def validation(self, size: int | None = None, image_size: int | None = None) -> Dataset:
        """A third split, disjoint from train and test, for choosing settings (digits: the 179 validation
        digits, or the first ``size``; scenes: ``size`` or ``test_size`` validation scenes)."""
        s = image_size or self.image_size
        if self.name == "digits":
            return Part(DigitsDataset("val", image_size=s, seed=self.seed), size)
        kw = dict(image_size=s, preset=self.preset, seed=self.seed, kind=self.kind, **self.knobs)
        if self.scale is not None:
            kw["scale"] = tuple(self.scale)
        return ShapesDataset("val", size=size or self.test_size, **kw)

    def describe(self, train: Dataset | None = None, test: Dataset | None = None) -> str:
        """One line for a report's setup: how many images of what, at which size and difficulty."""
        n_train = len(train) if train is not None else self.train_size
        n_test = len(test) if test is not None else self.test_size
        s = self.image_size
        if self.name == "digits":
            size = "at their 8x8" if s == 8 else f"8x8 upsampled to {s}x{s}"
            return f"{n_train} real handwritten digits (10 classes, {size}); {n_test} held-out test digits"
        objects = "" if self.scale is None else f", objects {self.scale[0]:g}-{self.scale[1]:g} of the side"
        classes = self.knobs.get("classes")
        knobs = "".join(f", {k}={v}" for k, v in self.knobs.items() if k != "classes")
        what = f"{len(classes)} shape classes: {', '.join(classes)}" if classes else "8 shape classes"
        return (f"{n_train} synthetic {s}x{s} scenes ({what}, preset '{self.preset}'{objects}{knobs}); "
                f"{n_test} held-out test scenes")


def background(dataset: Dataset) -> tuple[float, ...]:
    """The normalised value of a zero-intensity (black) pixel, per channel."""
    return tuple(-m / s for m, s in zip(dataset.mean, dataset.std))


class FlipShift:
    """Batch augmentation: a random horizontal flip (probability 1/2, if ``flip``) and a random translation of
    up to ``max_shift`` pixels in each direction, drawn from the trainer's checkpointed generator.

    ``fill`` is what enters at the borders: ``"reflect"`` (the image mirrored at its edge, the usual CIFAR
    recipe) or a constant per channel, e.g. ``background(dataset)``, so that a shifted digit shows more
    black background rather than a frame of mean-intensity pixels.
    """

    def __init__(self, max_shift: int = 4, flip: bool = True, fill: str | float | tuple[float, ...] = "reflect") -> None:
        if max_shift < 0:
            raise ConfigError(f"FlipShift: max_shift must be >= 0, got {max_shift}")
        if isinstance(fill, str) and fill != "reflect":
            raise unknown("FlipShift fill", fill, ("reflect", "a number per channel"))
        self.max_shift, self.flip, self.fill = max_shift, flip, fill

    def __call__(self, images: torch.Tensor, targets: Any, generator: torch.Generator) -> tuple[torch.Tensor, Any]:
        b, c, h, w = images.shape
        device = images.device
        if self.flip:
            flip = (torch.rand(b, generator=generator) < 0.5).to(device)
            images = torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)
        s = self.max_shift
        if s > 0:
            if self.fill == "reflect":
                if s >= min(h, w):
                    raise ConfigError(f"FlipShift: a reflected shift of {s} px needs images larger than {s} px")
                padded = F.pad(images, (s,) * 4, mode="reflect")
            else:
                fill = torch.as_tensor(self.fill, dtype=images.dtype, device=device).reshape(1, -1, 1, 1)
                border = F.pad(images.new_zeros(1, 1, h, w), (s,) * 4, value=1.0)  # 1 outside the image, 0 inside
                padded = F.pad(images, (s,) * 4) + border * fill  # exact: image + 0 inside, 0 + fill outside
            dy, dx = torch.randint(0, 2 * s + 1, (2, b, 1), generator=generator).to(device)
            rows = (dy + torch.arange(h, device=device))[:, None, :, None]  # (b, 1, h, 1)
            cols = (dx + torch.arange(w, device=device))[:, None, None, :]  # (b, 1, 1, w)
            batch = torch.arange(b, device=device)[:, None, None, None]
            channel = torch.arange(c, device=device)[None, :, None, None]
            images = padded[batch, channel, rows, cols]
        return images.contiguous(memory_format=torch.channels_last), targets

    def __repr__(self) -> str:
        fill = self.fill if isinstance(self.fill, str) else "constant"
        return f"FlipShift(max_shift={self.max_shift}, flip={self.flip}, fill={fill})"

    def describe(self) -> str:
        parts = (["random horizontal flips"] if self.flip else []) + (
            [f"shifts of up to {self.max_shift} px ({'reflected' if self.fill == 'reflect' else 'background-filled'} borders)"]
            if self.max_shift else [])
        return " and ".join(parts) or "no augmentation"
