"""Keypoint metrics: object keypoint similarity (OKS, COCO), PCK and PCKh.

* OKS (COCO keypoint evaluation): ``OKS = sum_i exp(-d_i^2 / (2 s^2 k_i^2)) [v_i > 0] / sum_i [v_i > 0]``
  with ``d_i`` the distance of keypoint ``i`` to its ground truth, ``s^2`` the object's area and
  ``k_i = 2 sigma_i`` the per-keypoint constant. For a ground truth without labelled keypoints COCO
  measures the distance to a box twice its size around the ground-truth box, over all keypoints.
* PCK (Yang & Ramanan): a keypoint is correct when ``d_i <= alpha * max(w, h)`` of the object's box.
* PCKh (Andriluka et al., MPII): the same with the head segment as the scale, ``alpha = 0.5``; the head
  segment is MPII's ``0.6 * ||head box diagonal||`` when targets carry ``"head_boxes"``, else the distance
  between two named keypoints (e.g. head top and upper neck).

Only labelled ground-truth keypoints (visibility > 0) count. Predictions give one pose per ground-truth
instance, in the targets' order (top-down pose estimation).
"""
from __future__ import annotations

from typing import Any

import torch

from ..errors import ConfigError, unknown
from ..tasks.base import SumEvaluator


def oks(pred: torch.Tensor, gt: torch.Tensor, visibility: torch.Tensor, area: torch.Tensor,
        sigmas: torch.Tensor | Any, gt_boxes: torch.Tensor | None = None) -> torch.Tensor:
    """OKS between every predicted pose and every ground truth: (M, P, 2) x (N, P, 2) -> (M, N).

    ``visibility`` (N, P) is COCO's 0/1/2, ``area`` (N,) the ground truths' areas, ``sigmas`` (P,).
    Ground truths with no labelled keypoint use COCO's fallback when ``gt_boxes`` (N, 4) XYXY are given
    (distance outside the box grown by its size on every side) and are 0 otherwise.
    """
    pred, gt = torch.as_tensor(pred, dtype=torch.float64), torch.as_tensor(gt, dtype=torch.float64)
    vis = torch.as_tensor(visibility).reshape(gt.shape[:2]) > 0
    area = torch.as_tensor(area, dtype=torch.float64).reshape(-1)
    var = (2 * torch.as_tensor(sigmas, dtype=torch.float64)) ** 2  # k_i^2 = (2 sigma_i)^2
    d2 = ((pred[:, None] - gt[None]) ** 2).sum(-1)  # (M, N, P)
    labelled = vis.sum(-1)  # (N,)
    if gt_boxes is not None:
        b = torch.as_tensor(gt_boxes, dtype=torch.float64).reshape(-1, 4)
        wh = b[:, 2:] - b[:, :2]
        lo, hi = b[:, :2] - wh, b[:, 2:] + wh  # COCO: [x - w, x + 2w] around a box at x of width w
        outside = (lo[None, :, None] - pred[:, None]).clamp_min(0) + (pred[:, None] - hi[None, :, None]).clamp_min(0)
        d2 = torch.where((labelled == 0)[None, :, None], (outside ** 2).sum(-1), d2)
    eps = torch.finfo(torch.float64).eps  # numpy's spacing(1), as COCO adds to the area
    e = torch.exp(-d2 / var / (area[None, :, None] + eps) / 2)
    counted = torch.where(labelled[:, None] > 0, vis, gt_boxes is not None)  # (N, P)
    n = counted.sum(-1).clamp_min(1)
    return (e * counted[None]).sum(-1) / n[None]


def _poses(predictions: Any) -> list[torch.Tensor]:
    """Per-image (N, P, 2) predicted poses from a list of dicts/tensors or a (B, [N,] P, 2+) tensor."""
    if torch.is_tensor(predictions):
        p = predictions.detach()
        return list(p[:, None] if p.ndim == 3 else p)
    return [torch.as_tensor(p["keypoints"] if isinstance(p, dict) else p).detach() for p in predictions]


class _PCKBase(SumEvaluator):
    name = "pck"

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        super().__init__()

    def scale(self, target: dict[str, Any], gt: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def update(self, predictions: Any, batch: Any) -> None:
        targets = batch[1]
        poses = _poses(predictions)
        if len(poses) != len(targets):
            raise ValueError(f"{type(self).__name__}: {len(poses)} predictions for {len(targets)} images")
        preds, gts, viss, scales = [], [], [], []
        for pose, target in zip(poses, targets):
            gt = torch.as_tensor(target["keypoints"]).as_subclass(torch.Tensor).double().cpu()
            vis = torch.as_tensor(target["visibility"]).cpu().reshape(gt.shape[:2]) > 0
            pose = pose.as_subclass(torch.Tensor).double().cpu()[..., :2].reshape(-1, *gt.shape[1:])
            if pose.shape != gt.shape:
                raise ValueError(f"{type(self).__name__}: predicted poses {tuple(pose.shape)} for ground truth "
                                 f"{tuple(gt.shape)} (one pose per instance, in the targets' order)")
            preds.append(pose), gts.append(gt), viss.append(vis), scales.append(self.scale(target, gt, vis))
        if not preds:
            return
        pred, gt, vis, scale = torch.cat(preds), torch.cat(gts), torch.cat(viss), torch.cat(scales)
        vis = vis & (scale > 0)[:, None]  # an instance without a usable scale is left out
        correct = (pred - gt).norm(dim=-1) <= self.alpha * scale[:, None]
        self.add(self.name, (correct & vis).sum())
        self.count += float(vis.sum())

    def compute(self) -> dict[str, float]:
        return {self.name: float(self.sums.get(self.name, 0.0)) / max(self.count, 1.0)}


class PCK(_PCKBase):
    """Percentage of correct keypoints: ``||pred - gt|| <= alpha * scale``; ``normalize="bbox"`` takes the
    scale as ``max(w, h)`` of the ground-truth box, ``"pair"`` as the distance between ground-truth
    keypoints ``pair=(i, j)`` (e.g. the torso diameter)."""

    name = "pck"

    def __init__(self, alpha: float = 0.2, normalize: str = "bbox", pair: tuple[int, int] | None = None) -> None:
        if normalize not in ("bbox", "pair"):
            raise unknown("PCK normalisation", normalize, ("bbox", "pair"))
        if normalize == "pair" and pair is None:
            raise ConfigError("PCK(normalize='pair') needs pair=(i, j), the keypoints whose distance is the scale")
        self.normalize, self.pair = normalize, pair
        super().__init__(alpha)

    def scale(self, target: dict[str, Any], gt: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        if self.normalize == "pair":
            return _pair_scale(gt, vis, self.pair)
        b = torch.as_tensor(target["boxes"]).as_subclass(torch.Tensor).double().cpu().reshape(-1, 4)
        return (b[:, 2:] - b[:, :2]).amax(-1)


def _pair_scale(gt: torch.Tensor, vis: torch.Tensor, pair: tuple[int, int] | None) -> torch.Tensor:
    i, j = pair  # type: ignore[misc]
    d = (gt[:, i] - gt[:, j]).norm(dim=-1)
    return torch.where(vis[:, i] & vis[:, j], d, 0.0)  # unlabelled ends: no scale


class PCKh(_PCKBase):
    """PCK normalised by the head segment (MPII): ``0.6 * ||head box diagonal||`` from targets'
    ``"head_boxes"`` (N, 4) XYXY when present, else the distance of ground-truth keypoints ``head=(i, j)``."""

    name = "pckh"

    def __init__(self, alpha: float = 0.5, head: tuple[int, int] | None = None) -> None:
        self.head = head
        super().__init__(alpha)

    def scale(self, target: dict[str, Any], gt: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
        if target.get("head_boxes") is not None:
            b = torch.as_tensor(target["head_boxes"]).as_subclass(torch.Tensor).double().cpu().reshape(-1, 4)
            return 0.6 * (b[:, 2:] - b[:, :2]).norm(dim=-1)
        if self.head is None:
            raise ConfigError("PCKh needs targets with 'head_boxes' or head=(i, j), the keypoints of the head segment")
        return _pair_scale(gt, vis, self.head)
