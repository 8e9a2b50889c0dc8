"""Promptable segmentation (Segment Anything, sec. 3 and appendix A): a prompt (a point or a box) in, a mask out.

Batches are images with their instance masks; every instance becomes a prompt on its image. Training follows the
paper's recipe in one round: each step prompts every instance either with one point drawn uniformly from its mask
(three masks out, "ambiguity-aware": only the lowest of the three losses is back-propagated; with
``multimask=False`` the single output instead, the paper's ablation without ambiguity awareness) or with its box
(jittered by a standard deviation of 10% of the box side, at most 20 px; one mask out); the mask loss is focal +
dice in a 20:1 ratio (torchvision's ``sigmoid_focal_loss``), and the IoU head regresses each mask's IoU with the
ground truth by mean-squared error. The image is encoded once per step and shared by all its prompts.

Evaluation prompts each instance with its most interior point (the pixel farthest from the mask's border, as the
paper's point-validity protocol starts) and with its exact box, and reports mean IoU of: the mask the IoU head
ranks first (``miou_point``), the best of the three (``miou_point_oracle``: the ambiguity upper bound), the
single-output mask (``miou_point_single``), and the box prompt's mask (``miou_box``).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from .base import SumEvaluator, Task, register_task


def _unwrap(model: nn.Module) -> nn.Module:
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def interior_points(masks: torch.Tensor) -> torch.Tensor:
    """(P, 2) (x, y) of each mask's most interior pixel: the last one to vanish under repeated 3x3 erosion (the
    maximum of the chessboard distance to the border; ties to the first in raster order)."""
    depth = torch.zeros(masks.shape, dtype=torch.float32, device=masks.device)
    m = masks[:, None].float()
    for _ in range(max(masks.shape[-2:]) // 2 + 1):
        if not m.any():
            break
        depth += m[:, 0]
        m = -F.max_pool2d(-F.pad(m, (1, 1, 1, 1)), 3, stride=1)  # erosion; outside the image is background
    idx = depth.flatten(1).argmax(1)
    w = masks.shape[-1]
    return torch.stack([idx % w, idx // w], 1).float()


def mask_iou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of boolean masks (..., H, W) -> (...); 1 where both are empty."""
    inter = (pred & target).flatten(-2).sum(-1).float()
    union = (pred | target).flatten(-2).sum(-1).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - 2|p t| / (|p| + |t|) per mask (..., H, W) -> (...), on sigmoid probabilities (+1 smoothing)."""
    p = logits.sigmoid().flatten(-2)
    t = target.flatten(-2)
    return 1 - (2 * (p * t).sum(-1) + 1) / (p.sum(-1) + t.sum(-1) + 1)


class PromptEvaluator(SumEvaluator):
    def update(self, predictions: dict[str, torch.Tensor], batch: Any) -> None:
        for key, value in predictions.items():
            self.add(key, value.sum())
        self.count += len(next(iter(predictions.values())))


@register_task("promptable")
class PromptableSegmentationTask(Task):
    """Points and boxes in, masks out; see the module docstring for the recipe and the metrics."""

    data = "instances"
    data_defaults: dict[str, Any] = {"image_size": 64, "min_objects": 1, "max_objects": 3}

    def __init__(self, box_fraction: float = 0.5, focal_weight: float = 20.0, dice_weight: float = 1.0,
                 multimask: bool = True, seed: int = 0) -> None:
        self.box_fraction, self.focal_weight, self.dice_weight = box_fraction, focal_weight, dice_weight
        self.multimask = multimask  # False: point prompts train the single output too (no ambiguity awareness)
        self.generator = torch.Generator().manual_seed(seed)

    def collate(self, samples: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images = torch.stack([s[0].as_subclass(torch.Tensor) for s in samples])
        masks = [s[1]["masks"].as_subclass(torch.Tensor).bool() for s in samples]
        if any(m.ndim != 3 for m in masks):
            raise DataError("promptable segmentation needs instance masks (data kind 'instances')")
        image_index = torch.cat([torch.full((len(m),), i, dtype=torch.long) for i, m in enumerate(masks)])
        masks_t = torch.cat(masks) if masks else torch.zeros(0, *images.shape[-2:], dtype=torch.bool)
        keep = masks_t.flatten(1).any(1)  # an instance hidden entirely has nothing to prompt
        masks_t, image_index = masks_t[keep], image_index[keep]
        boxes = torch.cat([s[1]["boxes"].as_subclass(torch.Tensor).float() for s in samples])[keep]
        return images, {"masks": masks_t, "image_index": image_index, "boxes": boxes}

    # ------------------------------------------------------------------ the model's two halves
    @staticmethod
    def _embed(model: nn.Module, images: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Image embeddings of [0, 1] images, resized to the encoder's size; the factor prompts are scaled by."""
        size = model.img_size
        scale = size / max(images.shape[-2:])
        x = images * 255.0 if images.max() <= 1.0 + 1e-6 else images
        if scale != 1:
            x = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False, antialias=scale < 1)
        return model.image_encoder(model.preprocess(x)), scale

    @staticmethod
    def _masks(model: nn.Module, low: torch.Tensor, size: tuple[int, int], scale: float) -> torch.Tensor:
        h, w = round(size[0] * scale), round(size[1] * scale)
        return model.postprocess_masks(low, (h, w), size)

    def _prompt(self, masks: torch.Tensor, boxes: torch.Tensor, use_box: bool) -> tuple[torch.Tensor, ...]:
        g = self.generator
        if use_box:
            side = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
            noise = (torch.randn(boxes.shape, generator=g).to(boxes.device) * 0.1 * side).clamp(-20, 20)
            return (boxes + noise,)
        weights = masks.flatten(1).float()
        idx = torch.multinomial(weights.cpu(), 1, generator=g)[:, 0].to(masks.device)
        w = masks.shape[-1]
        return torch.stack([idx % w, idx // w], 1).float()[:, None], torch.ones(len(idx), 1, dtype=torch.long,
                                                                               device=masks.device)

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, dict[str, torch.Tensor]]) -> tuple[torch.Tensor, dict[str, Any]]:
        from torchvision.ops import sigmoid_focal_loss

        sam = _unwrap(model)
        images, target = batch
        masks, index = target["masks"], target["image_index"]
        if len(masks) == 0:
            zero = sum(p.sum() for p in sam.parameters()) * 0.0
            return zero, {"loss_mask": zero.detach(), "loss_iou": zero.detach()}
        emb, scale = self._embed(sam, images)
        use_box = bool(torch.rand((), generator=self.generator) < self.box_fraction)
        prompt = self._prompt(masks, target["boxes"], use_box)
        if use_box:
            low, iou_pred = sam.decode(emb[index], boxes=prompt[0] * scale, multimask_output=False)
        else:
            low, iou_pred = sam.decode(emb[index], prompt[0] * scale, prompt[1], multimask_output=self.multimask)
        logits = self._masks(sam, low, tuple(masks.shape[-2:]), scale).float()
        gt = masks[:, None].expand_as(logits).float()
        focal = sigmoid_focal_loss(logits, gt, reduction="none").flatten(2).mean(-1)  # (P, K)
        per_mask = self.focal_weight * focal + self.dice_weight * dice_loss(logits, gt)
        best = per_mask.min(1).values  # ambiguity-aware: only the best of the K masks learns
        with torch.no_grad():
            actual = mask_iou(logits > 0, masks[:, None].expand_as(logits))
        loss_iou = F.mse_loss(iou_pred.float(), actual)
        loss_mask = best.mean()
        return loss_mask + loss_iou, {"loss_mask": loss_mask.detach(), "loss_iou": loss_iou.detach()}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: tuple[torch.Tensor, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        """Per instance: IoU of the point prompt's ranked-first, best and single-output masks, and of the box's."""
        sam = _unwrap(model)
        images, target = batch
        masks, index = target["masks"], target["image_index"]
        if len(masks) == 0:
            empty = torch.zeros(0)
            return {"miou_point": empty, "miou_point_oracle": empty, "miou_point_single": empty, "miou_box": empty}
        emb, scale = self._embed(sam, images)
        size = tuple(masks.shape[-2:])
        pts = interior_points(masks)[:, None] * scale
        labels = torch.ones(len(masks), 1, dtype=torch.long, device=masks.device)
        low, iou_pred = sam.decode(emb[index], pts, labels, multimask_output=True)
        multi = mask_iou(self._masks(sam, low, size, scale) > 0, masks[:, None].expand(-1, low.shape[1], -1, -1))
        low1, _ = sam.decode(emb[index], pts, labels, multimask_output=False)
        single = mask_iou(self._masks(sam, low1, size, scale)[:, 0] > 0, masks)
        lowb, _ = sam.decode(emb[index], boxes=target["boxes"] * scale, multimask_output=False)
        box = mask_iou(self._masks(sam, lowb, size, scale)[:, 0] > 0, masks)
        ranked = multi.gather(1, iou_pred.argmax(1, keepdim=True))[:, 0]
        return {"miou_point": ranked, "miou_point_oracle": multi.max(1).values, "miou_point_single": single,
                "miou_box": box}

    def evaluator(self) -> PromptEvaluator:
        return PromptEvaluator()

    def batch_size(self, batch: Any) -> int:
        return len(batch[0])

    def split(self, batch: Any, parts: int) -> list[Any]:
        if parts == 1:
            return [batch]
        images, target = batch
        chunks = torch.arange(len(images)).chunk(parts)
        out = []
        for c in chunks:
            sel = (target["image_index"][:, None] == c[None]).any(1)
            out.append((images[c], {"masks": target["masks"][sel], "boxes": target["boxes"][sel],
                                    "image_index": target["image_index"][sel] - int(c[0])}))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.set_state(state["generator"])
