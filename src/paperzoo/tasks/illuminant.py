"""Illuminant estimation (C5): images become raw images of synthetic cameras, the model estimates the light.

``collate`` turns any built-in or user image batch into a colour-constancy batch: the images, taken as
reflectances (un-normalised, linearised), are split into groups of ``group`` images; each group is seen by one
random camera (``paperzoo.data.illuminants``), each image under its own random light. The model gets, for every
image, its histograms and those of the next m - 1 images of its group (``cyclic_additional``): unlabelled images
of the same camera, as C5 needs. The camera and lights of a batch are seeded by its content, so evaluation is
repeatable. Metrics: mean, median and worst-25% angular error in degrees.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..data.illuminants import random_camera, random_illuminants, render_raw
from ..errors import ConfigError
from .base import GatherEvaluator, Task, register_task


def error_summary(errors: torch.Tensor) -> dict[str, float]:
    """Mean, median and mean of the worst 25% of angular errors (degrees), as colour-constancy papers report."""
    e = errors.double().flatten().sort().values
    worst = e[int(0.75 * len(e)):] if len(e) >= 4 else e
    return {"angular_error": float(e.mean()), "median": float(e.median()), "worst25": float(worst.mean())}


class AngularErrorEvaluator(GatherEvaluator):
    def update(self, predictions: torch.Tensor, batch: Any) -> None:
        from ..models.applications.c5 import angular_error

        self.records.extend(angular_error(predictions.double().cpu(), batch[1].double().cpu()).tolist())

    def compute(self) -> dict[str, float]:
        return error_summary(torch.tensor(self.records)) if self.records else {}


@register_task("illuminant")
class IlluminantTask(Task):
    """C5's training objective on synthetic-camera batches (``c5_loss``: angular error + smoothness of F, B, G)."""

    data = "classification"
    recipe = {"optimizer": "adam", "lr": 5e-4, "weight_decay": 0.0, "batch_size": 16}

    def __init__(self, group: int = 8, mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.25,),
                 gamma: float = 2.2, noise: float = 0.005) -> None:
        if group < 1:
            raise ConfigError(f"illuminant task: group must be >= 1, got {group}")
        self.group, self.gamma, self.noise = group, gamma, noise
        self.mean, self.std = torch.tensor(mean, dtype=torch.float64), torch.tensor(std, dtype=torch.float64)

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> IlluminantTask:
        return cls(mean=getattr(data, "mean", (0.5,)), std=getattr(data, "std", (0.25,)))

    def collate(self, samples: Sequence[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack([s[0] for s in samples]).to(torch.float64)
        x = x * self.std.view(1, -1, 1, 1) + self.mean.view(1, -1, 1, 1)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        reflect = x.clamp(0, 1) ** self.gamma
        gen = torch.Generator().manual_seed(int(reflect.sum() * 1e4) % (2**31))
        lights = random_illuminants(len(x), gen)
        raws, truths = [], []
        for start in range(0, len(x), self.group):  # one camera per group
            cam = random_camera(gen)
            raw, truth = render_raw(reflect[start:start + self.group], lights[start:start + self.group], cam,
                                    self.noise, gen)
            raws.append(raw)
            truths.append(truth)
        return torch.cat(raws).float(), torch.cat(truths).float()

    def inputs(self, model: nn.Module, raw: torch.Tensor) -> torch.Tensor:
        from ..models.applications.c5 import (
            c5_inputs,
            cyclic_additional,
            histogram_features,
        )

        hists = histogram_features(raw, model.bins, model.boundary)
        return c5_inputs(hists, cyclic_additional(len(raw), model.m, self.group).to(raw.device)).to(raw.device)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        from ..models.applications.c5 import c5_loss

        raw, truth = batch
        return c5_loss(model(self.inputs(model, raw)), truth)

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return model(self.inputs(model, batch[0]))["rgb"]

    def evaluator(self) -> AngularErrorEvaluator:
        return AngularErrorEvaluator()
