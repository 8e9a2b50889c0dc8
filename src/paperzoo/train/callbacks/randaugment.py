"""RandAugment (``data.randaugment``) on every training sample, in the data loader. Randomness comes from
torch's global generator, which the loader seeds per sample (seed, epoch, index), so a resumed run draws the
same operations. Geometric operations move the sample's boxes, masks and keypoints with the image."""
from __future__ import annotations

from typing import Any

from ...data.randaugment import randaugment_for
from . import Callback


class RandAugmentSamples(Callback):
    def __init__(self, num_ops: int, magnitude: float, train_data: Any) -> None:
        self.augment = randaugment_for(train_data, num_ops, magnitude)

    def sample_transform(self, sample: tuple[Any, Any]) -> tuple[Any, Any]:  # type: ignore[override]
        return self.augment(*sample)
