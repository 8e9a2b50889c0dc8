"""Steering regression (PilotNet): mean squared error between the predicted and the recorded (or corrected)
inverse turning radius; metrics: RMSE and mean absolute error (1/m).

Samples of ``paperzoo.data.roads.RoadDataset`` (frame, steer) are used as they are. Any other image dataset
(the built-in scenes or digits, a folder of the user's photos: ``(image, label)`` samples) becomes road frames
in ``collate``: each image is the scenery beside and above a rendered road, with a random shifted/rotated
viewpoint and its steering correction, seeded by the batch's content so that evaluation repeats.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import SumEvaluator, Task, register_task


class SteeringEvaluator(SumEvaluator):
    def update(self, predictions: torch.Tensor, batch: Any) -> None:
        err = predictions.float().view(-1) - batch[1].float().view(-1)
        self.add("sq", (err**2).sum())
        self.add("mae", err.abs().sum())
        self.count += len(err)

    def compute(self) -> dict[str, float]:
        out = super().compute()
        return {"rmse": out.get("sq", 0.0) ** 0.5, "mae": out.get("mae", 0.0)} if out else {}


@register_task("steering")
class SteeringTask(Task):
    data = "classification"
    recipe = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0}

    def __init__(self, mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.25,), scale: float = 100.0) -> None:
        self.mean, self.std, self.scale = torch.tensor(mean), torch.tensor(std), scale

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> SteeringTask:
        return cls(getattr(data, "mean", (0.5,)), getattr(data, "std", (0.25,)))

    def collate(self, samples: Sequence[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([s[0] for s in samples])
        if isinstance(samples[0][1], torch.Tensor) and samples[0][1].is_floating_point():
            return x, torch.stack([s[1] for s in samples]).view(-1, 1)
        from ..data.roads import random_params, render, rgb_to_yuv, steering_correction

        scenery = (x * self.std.view(1, -1, 1, 1) + self.mean.view(1, -1, 1, 1)).clamp(0, 1)
        if scenery.shape[1] == 1:
            scenery = scenery.expand(-1, 3, -1, -1)
        gen = torch.Generator().manual_seed(int(scenery.sum() * 1e4) % (2**31))
        p = random_params(len(x), gen)
        return rgb_to_yuv(render(p, gen, scenery)), steering_correction(p.kappa, p.d, p.psi).view(-1, 1).float()

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        pred = model(batch[0]).float()
        loss = F.mse_loss(pred * self.scale, batch[1] * self.scale)  # in units of 1/(100 m), well scaled
        return loss, {"mae": (pred - batch[1]).abs().mean().detach()}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return model(batch[0])

    def evaluator(self) -> SteeringEvaluator:
        return SteeringEvaluator()
