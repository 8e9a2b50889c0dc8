"""Crop detection and absolute patch localisation (Dissecting Image Crops): any image batch becomes photographs with
lens traces, randomly cropped, cut into patches.

``collate``: the images (un-normalised to [0, 1]) get chromatic aberration and vignetting (``lens_traces``; both 0
gives the traceless control), half of them a random crop, then ``crop_sample`` cuts the G x G patches and the
downscaled global view and computes the targets; seeded by the batch's content, so evaluation repeats. Metrics:
patch localisation accuracy (chance 1 / G^2), crop detection accuracy, rectangle error.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .base import SumEvaluator, Task, register_task


class CropEvaluator(SumEvaluator):
    def update(self, predictions: dict[str, torch.Tensor], batch: Any) -> None:
        target = batch[1]
        n = len(target["cropped"])
        self.add("location_acc", (predictions["locations"].argmax(-1) == target["locations"]).float().mean(1).sum())
        self.add("crop_acc", ((predictions["crop_logit"] > 0).float() == target["cropped"]).float().sum())
        self.add("rectangle_mae", (predictions["rectangle"] - target["rectangle"]).abs().mean(1).sum())
        self.count += n


@register_task("crop")
class CropTask(Task):
    data = "classification"
    data_defaults = {"image_size": 96}
    recipe = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}

    def __init__(self, grid: int = 4, patch: int = 16, global_size: int = 32, aberration: float = 0.01,
                 vignetting: float = 0.5, p_crop: float = 0.5, mean: Sequence[float] = (0.5,),
                 std: Sequence[float] = (0.25,)) -> None:
        self.grid, self.patch, self.global_size = grid, patch, global_size
        self.aberration, self.vignetting, self.p_crop = aberration, vignetting, p_crop
        self.mean, self.std = torch.tensor(mean), torch.tensor(std)

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> CropTask:
        return cls(mean=getattr(data, "mean", (0.5,)), std=getattr(data, "std", (0.25,)))

    def collate(self, samples: Sequence[tuple[torch.Tensor, Any]]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        from ..errors import ConfigError
        from ..models.applications.crop_dissection import (
            crop_sample,
            lens_traces,
            random_crops,
        )

        x = torch.stack([s[0] for s in samples]).float()
        x = (x * self.std.view(1, -1, 1, 1) + self.mean.view(1, -1, 1, 1)).clamp(0, 1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        size = x.shape[-1]
        if x.shape[-2] != size or size < self.grid * self.patch * 1.2:
            raise ConfigError(f"crop task: needs square images of at least {int(self.grid * self.patch * 1.2)} px "
                              f"(grid {self.grid} x patch {self.patch}), got {tuple(x.shape[-2:])}")
        gen = torch.Generator().manual_seed(int(x.sum() * 1e3) % (2**31))
        photos = lens_traces(x, self.aberration, self.vignetting)
        rects = random_crops(len(x), size, gen, self.p_crop, min_side=int(self.grid * self.patch * 1.1))
        s = crop_sample(photos, rects, self.grid, self.patch, self.global_size)
        inputs = {"patches": s.pop("patches"), "global": s.pop("global")}
        return inputs, s

    def batch_size(self, batch: Any) -> int:
        return len(batch[1]["cropped"])

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        from ..models.applications.crop_dissection import crop_loss

        inputs, target = batch
        return crop_loss(model(inputs["patches"], inputs["global"]), target)

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        return model(batch[0]["patches"], batch[0]["global"])

    def evaluator(self) -> CropEvaluator:
        return CropEvaluator()
