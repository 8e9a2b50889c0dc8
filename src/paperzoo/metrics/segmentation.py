"""Semantic segmentation metrics from one confusion matrix: per-class IoU, mean IoU, pixel accuracy.

``C[t, p]`` counts pixels of true class ``t`` predicted as ``p`` (rows true, columns predicted, as
sklearn's ``confusion_matrix``), accumulated with one ``torch.bincount`` per batch; pixels labelled
``ignore_index`` are left out. Then ``IoU_k = C[k,k] / (sum_p C[k,p] + sum_t C[t,k] - C[k,k])``,
``mIoU`` the mean over classes that occur (in the ground truth or the predictions), pixel accuracy
``trace(C) / sum(C)`` and mean class accuracy ``mean_k C[k,k] / sum_p C[k,p]`` (FCN, Long et al., sec. 5).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..errors import DataError
from ..tasks.base import Evaluator, distributed

TARGET_KEYS = ("semantic", "mask", "segmentation")


def _stack(items: Sequence[Any]) -> torch.Tensor:
    return torch.stack([torch.as_tensor(x).as_subclass(torch.Tensor) for x in items])


def _targets(batch: Any) -> torch.Tensor:
    """(B, H, W) class indices from a batch ``(images, targets)`` (or a target tensor alone); targets are a
    (B, H, W) tensor, a list of (H, W) tensors, or a list of dicts holding one under ``"semantic"``,
    ``"mask"`` or ``"segmentation"``."""
    targets = batch if torch.is_tensor(batch) else batch[1]
    if isinstance(targets, (list, tuple)):
        if targets and isinstance(targets[0], dict):
            key = next((k for k in TARGET_KEYS if k in targets[0]), None)
            if key is None:
                raise DataError(f"MeanIoU: segmentation targets need one of the keys {', '.join(TARGET_KEYS)}")
            targets = [t[key] for t in targets]
        targets = _stack(targets)
    t = torch.as_tensor(targets).as_subclass(torch.Tensor)
    return t[:, 0] if t.ndim == 4 else t


class MeanIoU(Evaluator):
    """Mean intersection-over-union from a confusion matrix; ``synchronize`` all-reduces the matrix.

    Predictions are logits or probabilities (B, K, h, w) (bilinearly resized to the targets' size when it
    differs, then arg-maxed), class maps (B, H, W), torchvision's ``{"out": logits}``, or a list of
    per-image ones. ``compute()`` gives ``miou``, ``pixel_acc``, ``mean_acc`` and ``iou_<name>`` per class
    (NaN for a class absent from both the ground truth and the predictions).
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255,
                 class_names: Sequence[str] | None = None) -> None:
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"MeanIoU: {len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
        self.reset()

    def reset(self) -> None:
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64)

    def _labels(self, predictions: Any, size: tuple[int, int]) -> torch.Tensor:
        if isinstance(predictions, dict):
            predictions = predictions["out"]
        if isinstance(predictions, (list, tuple)):
            predictions = _stack([p["out"] if isinstance(p, dict) else p for p in predictions])
        p = torch.as_tensor(predictions).detach().as_subclass(torch.Tensor)
        if p.is_floating_point():
            if p.ndim != 4:
                raise ValueError(f"MeanIoU: float predictions must be (B, K, H, W) scores, got {tuple(p.shape)}")
            if tuple(p.shape[-2:]) != size:
                p = F.interpolate(p.float(), size=size, mode="bilinear", align_corners=False)
            return p.argmax(1)
        if tuple(p.shape[-2:]) != size:
            raise ValueError(f"MeanIoU: class maps of size {tuple(p.shape[-2:])} for targets of size {size}")
        return p

    @torch.no_grad()
    def update(self, predictions: Any, batch: Any) -> None:
        target = _targets(batch).long()
        pred = self._labels(predictions, tuple(target.shape[-2:])).to(target.device).long()
        if pred.shape != target.shape:
            raise ValueError(f"MeanIoU: predictions {tuple(pred.shape)} and targets {tuple(target.shape)} differ")
        if self.ignore_index is not None:
            keep = target != self.ignore_index
            target, pred = target[keep], pred[keep]
        t, p = target.reshape(-1), pred.reshape(-1)
        k = self.num_classes
        bad = (t < 0) | (t >= k)
        if bad.any():
            raise DataError(f"MeanIoU: target class {int(t[bad][0])} outside 0..{k - 1} "
                            f"(ignore_index is {self.ignore_index})")
        if ((p < 0) | (p >= k)).any():
            raise ValueError(f"MeanIoU: predicted classes outside 0..{k - 1}")
        self.confusion += torch.bincount(t * k + p, minlength=k * k).reshape(k, k).cpu()

    def synchronize(self) -> None:
        if not distributed():
            return
        device = "cuda" if dist.get_backend() == "nccl" else "cpu"
        conf = self.confusion.to(device)
        dist.all_reduce(conf)
        self.confusion = conf.cpu()

    def iou(self) -> torch.Tensor:
        """Per-class IoU (K,), NaN where a class is in neither the ground truth nor the predictions."""
        c = self.confusion.double()
        tp = c.diag()
        union = c.sum(0) + c.sum(1) - tp
        return torch.where(union > 0, tp / union.clamp_min(1), torch.nan)

    def compute(self) -> dict[str, float]:
        c = self.confusion.double()
        iou = self.iou()
        rows = c.sum(1)
        acc = torch.where(rows > 0, c.diag() / rows.clamp_min(1), torch.nan)
        out = {
            "miou": float(iou.nanmean()) if (~iou.isnan()).any() else 0.0,
            "pixel_acc": float(c.diag().sum() / c.sum()) if c.sum() > 0 else 0.0,
            "mean_acc": float(acc.nanmean()) if (~acc.isnan()).any() else 0.0,
        }
        out.update({f"iou_{name}": float(v) for name, v in zip(self.class_names, iou)})
        return out
