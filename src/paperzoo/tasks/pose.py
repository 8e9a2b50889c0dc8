"""Top-down pose estimation: one crop per object box, keypoints from heatmaps (or regressed), OKS AP and PCK.

A batch is the keypoint data's ``(images, targets)`` (images in [0, 1], targets with ``boxes``, ``labels``,
``keypoints`` (N, P, 2) and ``visibility`` (N, P)). Every ground-truth box is cropped to the model's input size
(``paperzoo.models.pose._heatmap``: grown to the input's aspect ratio, padded by 1.25, bilinear), normalised
with the model's mean and std, and fed to the model as one batch of crops (no loop over boxes):

* a **heatmap model** returns (N, P, h, w) heatmaps, or a list of them (one per stack, each supervised:
  intermediate supervision; ``intermediate=False`` supervises the last only); the loss is HRNet's ``JointsMSELoss``
  against Gaussian targets, keypoints are the
  arg-max with the quarter-pixel shift of the last output (``flip=True``: averaged with the mirrored crop's
  heatmaps, left and right keypoints swapped);
* a **regression model** (``model.pose_output == "coords"``, DeepPose) returns (N, P, 2) coordinates normalised
  by the crop, ``(y - crop centre) / crop size`` (DeepPose's ``N(y; b)``); the loss is the squared L2 distance
  over labelled keypoints.

Predictions are one dict per image with the ground-truth ``boxes`` and ``labels``, ``keypoints`` (N, P, 2) in image
pixels, ``keypoint_scores`` and ``scores`` (their mean); the evaluator reports COCO keypoint AP by pycocotools
(``kp_map``, ``kp_map_50``, ... with the data's OKS sigmas) and PCK at 0.2 of the box's longer side (``pck``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .base import Evaluator, Task, register_task
from .detection import unwrap


DEFAULT_SIGMA = 0.05  # OKS constant per keypoint when the data give none and they are not COCO's 17 person keypoints


class PoseEvaluator(Evaluator):
    """COCO keypoint AP (pycocotools, settable OKS sigmas) and PCK@``alpha`` (box-normalised) in one evaluator.
    Without ``sigmas``, COCO's person constants serve 17 keypoints and ``DEFAULT_SIGMA`` (the scenes' value) any other
    number."""

    def __init__(self, sigmas: Sequence[float] | None = None, alpha: float = 0.2) -> None:
        from ..metrics import PCK, CocoEvaluator

        self.coco = CocoEvaluator(("keypoints",), kpt_oks_sigmas=sigmas)
        self.pck = PCK(alpha=alpha)

    def reset(self) -> None:
        self.coco.reset(), self.pck.reset()

    def update(self, predictions: Any, batch: Any) -> None:
        if self.coco.kpt_oks_sigmas is None and batch[1]:
            import numpy as np

            p = int(batch[1][0]["visibility"].reshape(-1, batch[1][0]["keypoints"].shape[-2]).shape[-1])
            if p != 17:
                self.coco.kpt_oks_sigmas = np.full(p, DEFAULT_SIGMA)
        self.coco.update(predictions, batch)
        self.pck.update(predictions, batch)

    def synchronize(self) -> None:
        self.coco.synchronize(), self.pck.synchronize()

    def compute(self) -> dict[str, float]:
        coco = {("kp_" + k if not k.startswith("kp_") else k): v for k, v in self.coco.compute().items()}
        return {**coco, **self.pck.compute()}


def flip_index_from_names(names: Sequence[str]) -> list[int]:
    """The mirror permutation of named keypoints: ``left_x`` <-> ``right_x`` (also ``l_``/``r_`` prefixes), the others fixed."""
    index = {n.lower(): i for i, n in enumerate(names)}
    swaps = (("left", "right"), ("l_", "r_"))
    out = []
    for i, n in enumerate(names):
        low, j = n.lower(), i
        for a, b in swaps:
            for x, y in ((a, b), (b, a)):
                if low.startswith(x) and low.replace(x, y, 1) in index:
                    j = index[low.replace(x, y, 1)]
        out.append(j)
    return out


@register_task("pose")
class PoseTask(Task):
    """Top-down keypoints from ground-truth boxes (see the module docstring)."""

    data = "keypoints"
    data_defaults: dict[str, Any] = {"image_size": 64, "rotate": False}
    # HRNet's recipe (Adam, lr 1e-3), at a small batch
    recipe: dict[str, Any] = {"optimizer": "adam", "lr": 1e-3, "batch_size": 16, "weight_decay": 0.0}

    def __init__(self, input_size: tuple[int, int] | None = None, sigma: float = 2.0, flip: bool = False,
                 sigmas: Sequence[float] | None = None, flip_index: Any = None, categories: Sequence[str] | None = None,
                 shift_heatmap: bool = False, intermediate: bool = True) -> None:
        self.input_size = tuple(input_size) if input_size is not None else None
        self.sigma, self.flip, self.shift_heatmap = sigma, flip, shift_heatmap
        self.intermediate = intermediate  # False: of a stack's outputs only the last is supervised
        self.sigmas = tuple(sigmas) if sigmas is not None else None
        self.flip_index, self.categories = flip_index, tuple(categories) if categories else None

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> PoseTask:
        task = cls(sigmas=getattr(data, "keypoint_sigmas", None), categories=getattr(data, "categories", None))
        task.keypoint_names = list(getattr(data, "keypoint_names", None) or [])
        return task

    def setup(self, trainer) -> None:
        data = trainer.train_data
        if self.sigmas is None:
            self.sigmas = getattr(data, "keypoint_sigmas", None)
        if self.categories is None:
            self.categories = getattr(data, "categories", None)

    # ------------------------------------------------------------------ crops
    def _size(self, model: nn.Module) -> tuple[int, int]:
        inner = unwrap(model)
        size = self.input_size or getattr(inner, "pose_input_size", None) or getattr(inner, "meta").input_size[1:]
        return int(size[0]), int(size[1])

    def crops(self, model: nn.Module, images: Sequence[torch.Tensor], targets: Sequence[dict[str, Any]]):
        """(crops (N, C, H, W) normalised, regions (N, 4), region keypoints (N, P, 2), visibility (N, P), size)."""
        from ..models.pose import _heatmap as hm

        size = self._size(model)
        inner = unwrap(model)
        boxes = [t["boxes"].as_subclass(torch.Tensor).float() for t in targets]
        regions = [hm.box_to_region(b, size) for b in boxes]
        x = hm.crop([im.as_subclass(torch.Tensor).float() for im in images], regions, size)
        meta = getattr(inner, "meta", None)
        if meta is not None:
            mean = torch.tensor(meta.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(meta.std, device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        regions_all = torch.cat(regions) if regions else torch.zeros(0, 4)
        kp = torch.cat([t["keypoints"].as_subclass(torch.Tensor).float() for t in targets])
        vis = torch.cat([t["visibility"].reshape(-1, kp.shape[1]) for t in targets])
        return x, regions_all, hm.to_region(kp, regions_all, size), vis, size

    def _flip_index(self, targets: Sequence[dict[str, Any]], slots: int) -> torch.Tensor | None:
        from ..models.pose import _heatmap as hm

        if self.flip_index is not None:
            return torch.as_tensor(self.flip_index)
        names = getattr(self, "keypoint_names", None)
        if names:  # a COCO json's keypoints: "left_*" and "right_*" swap
            return torch.as_tensor(flip_index_from_names(names))
        if self.categories is None:
            return None
        labels = torch.cat([t["labels"].reshape(-1) for t in targets])
        return hm.shapes_flip_index(self.categories, labels, slots)

    # ------------------------------------------------------------------ contract
    def collate(self, samples: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
        return [s[0] for s in samples], [s[1] for s in samples]

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        from ..models.pose import _heatmap as hm

        images, targets = batch
        x, _, points, vis, size = self.crops(model, images, targets)
        if len(x) == 0:
            zero = sum(p.sum() for p in model.parameters()) * 0.0
            return zero, {}
        out = model(x)
        if getattr(unwrap(model), "pose_output", "heatmap") == "coords":
            scale = torch.tensor([size[1], size[0]], dtype=points.dtype, device=points.device)
            target = points / scale - 0.5  # N(y; b): centred on the crop, divided by its size
            w = (vis > 0).to(out.dtype)
            loss = (((out - target) ** 2).sum(-1) * w).sum() / len(x)
            return loss, {"l2": loss.detach()}
        last = out[-1] if isinstance(out, (list, tuple)) else out
        stride = size[0] / last.shape[-2]
        targets_hm, weights = hm.encode(points, vis, tuple(last.shape[-2:]), stride, self.sigma)
        supervised = out if self.intermediate or not isinstance(out, (list, tuple)) else out[-1]
        loss = hm.heatmap_loss(supervised, targets_hm.to(last.dtype), weights.to(last.dtype))
        return loss, {"mse": loss.detach()}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: Any) -> list[dict[str, torch.Tensor]]:
        from ..models.pose import _heatmap as hm

        images, targets = batch
        x, regions, points, vis, size = self.crops(model, images, targets)
        p = points.shape[1]
        if len(x) == 0:
            coords, scores = torch.zeros(0, p, 2), torch.zeros(0, p)
        elif getattr(unwrap(model), "pose_output", "heatmap") == "coords":
            out = model(x)
            scale = torch.tensor([size[1], size[0]], dtype=out.dtype, device=out.device)
            coords, scores = (out + 0.5) * scale, torch.ones(out.shape[:2], device=out.device)
        else:
            def forward(inp: torch.Tensor) -> torch.Tensor:
                o = model(inp)
                return (o[-1] if isinstance(o, (list, tuple)) else o).float()

            flip_index = self._flip_index(targets, p) if self.flip else None
            heat = hm.flip_test(forward, x, flip_index, self.shift_heatmap) if flip_index is not None else forward(x)
            stride = size[0] / heat.shape[-2]
            coords, scores = hm.decode(heat)
            coords = hm.heatmap_to_region(coords, stride)
        coords = hm.from_region(coords[:, :p].float(), regions, size)
        scores = scores[:, :p].float()
        out, start = [], 0
        for t in targets:
            n = len(t["boxes"])
            s = scores[start:start + n]
            out.append({"boxes": t["boxes"].as_subclass(torch.Tensor), "labels": t["labels"], "keypoints": coords[start:start + n],
                        "keypoint_scores": s, "scores": s.mean(-1) if n else s.new_zeros(0)})
            start += n
        return out

    def evaluator(self) -> PoseEvaluator:
        return PoseEvaluator(self.sigmas)

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])
