"""Panoptic segmentation in the Panoptic-DeepLab form: semantic cross-entropy + center heatmap MSE + offset L1.

The scenes' class masks carry no instance ids, so instances are the connected components of each non-background
class (scipy.ndimage.label; touching objects of one class merge into one instance). Class 0 (background) is stuff,
every other class a thing. Evaluation: PQ/SQ/RQ from torchmetrics' PanopticQuality on the panoptic maps of
``panoptic_merge``, and mean IoU of the semantic logits. The center loss is weighted 200 as in Panoptic-DeepLab; with
the CLI's default optimizer and learning rate it diverges on tiny runs, Adam(W) at lr 1e-3 (the paper's choice) does not.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from ..data.transforms import pad_images
from .base import Evaluator, register_task
from .segmentation import IGNORE, SemanticSegmentationTask

DIVISOR = 1000


def _instances(mask: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool instance masks: connected components of each class > 0 (ignore label excluded)."""
    from scipy import ndimage

    m = mask.numpy()
    out = []
    for c in np.unique(m):
        if c == 0 or c == IGNORE:
            continue
        lab, n = ndimage.label(m == c)
        out.extend(lab == i for i in range(1, n + 1))
    return torch.from_numpy(np.stack(out)) if out else torch.zeros(0, *m.shape, dtype=torch.bool)


def _panoptic_gt(mask: torch.Tensor) -> torch.Tensor:
    inst = _instances(mask)
    ids = (inst.long() * torch.arange(1, len(inst) + 1)[:, None, None]).amax(0) if len(inst) else 0
    return mask.long() * DIVISOR + ids


@register_task("panoptic")
class PanopticTask(SemanticSegmentationTask):
    """Semantic + instance center/offset losses; PQ (torchmetrics) and mean IoU."""

    def __init__(self, num_classes: int | None = None, sigma: float = 8.0, threshold: float = 0.1,
                 center_weight: float = 200.0, offset_weight: float = 0.01) -> None:
        super().__init__(num_classes)
        self.sigma, self.threshold = sigma, threshold
        self.center_weight, self.offset_weight = center_weight, offset_weight

    def collate(self, samples: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, ...]:
        from ..models.segmentation.swidernet import instance_targets

        images, masks = super().collate(samples)
        heat, offset, fg = zip(*(instance_targets(_instances(m), self.sigma) for m in masks))
        return images, masks, torch.stack(heat), torch.stack(offset), torch.stack(fg)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
        from ..models.segmentation.swidernet import instance_losses

        images, masks, heat, offset, fg = batch
        out = model(images)
        semantic, logs = super().loss(lambda _: out, (images, masks))
        extra = instance_losses(out, heat, offset, fg, self.center_weight, self.offset_weight)
        logs.update({f"loss_{k}": v.detach() for k, v in extra.items()})
        return semantic + extra["center"] + extra["offset"], logs

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        from ..models.segmentation.swidernet import panoptic_merge

        out = model(batch[0])
        things = list(range(1, self.num_classes))
        pan = torch.stack([panoptic_merge(s, c, o, things, self.threshold, label_divisor=DIVISOR)
                           for s, c, o in zip(out["out"], out["center"], out["offset"])])
        return {"out": out["out"], "panoptic": pan}

    def evaluator(self) -> Evaluator:
        if self.num_classes is None:
            raise ValueError("the panoptic task needs num_classes (from the data or the task's arguments)")
        return PanopticEvaluator(self.num_classes)


class PanopticEvaluator(Evaluator):
    """PQ, SQ, RQ in 0..1 (torchmetrics' PanopticQuality; class 0 stuff, the rest things) and mean IoU."""

    def __init__(self, num_classes: int) -> None:
        from ..metrics import MeanIoU

        self.num_classes, self.miou = num_classes, MeanIoU(num_classes, ignore_index=IGNORE)
        self.reset()

    def reset(self) -> None:
        from torchmetrics.detection import PanopticQuality

        self.pq = PanopticQuality(things=set(range(1, self.num_classes)), stuffs={0}, return_sq_and_rq=True,
                                  allow_unknown_preds_category=True)
        self.miou.reset()

    def update(self, predictions: dict[str, torch.Tensor], batch: tuple[torch.Tensor, ...]) -> None:
        masks = batch[1]
        self.miou.update(predictions["out"], (batch[0], masks))
        gt = torch.stack([_panoptic_gt(m) for m in masks.cpu()])
        keep = (masks != IGNORE).cpu()
        pred = predictions["panoptic"].cpu()
        pred = torch.where(keep, pred, gt)  # padded pixels count for neither side
        self.pq.update(torch.stack([pred // DIVISOR, pred % DIVISOR], -1), torch.stack([gt // DIVISOR, gt % DIVISOR], -1))

    def compute(self) -> dict[str, float]:
        pq, sq, rq = (float(v) for v in self.pq.compute().reshape(-1)[:3])
        return {"pq": pq, "sq": sq, "rq": rq, **self.miou.compute()}
