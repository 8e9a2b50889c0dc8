"""Visual question answering on region features (ViLBERT's downstream VQA head), with questions generated from the
synthetic scenes.

For a scene with one to three objects the task asks "what shape is the red object ?" about one object (referred to
by its colour, or by colour and position when the colour is not unique); the answer is the object's class (the
dataset's class index, 1..K; 0, background, is never an answer). The regions are the whole image (ViLBERT's IMG
token) and each object's box; a region's feature is the image inside the box pooled to 8 x 8 by RoIAlign
(torchvision.ops) -- a stand-in for a detector's features -- and its location the 5-d box encoding. Loss:
cross-entropy over answers; metric: accuracy.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from .base import SumEvaluator, Task, register_task

POOL = 8  # region features: 3 channels x 8 x 8 = 192


def region_inputs(images: torch.Tensor, boxes: list[torch.Tensor], mean: float = 0.5, std: float = 0.25
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image: the whole image then every box, as RoIAlign features (B, R, 3 x POOL x POOL) of the pixels
    normalised as ``(x - mean) / std`` (the scenes' [0, 1] pixels to about zero mean and unit scale: raw pixels
    left the region embeddings too flat to learn from), 5-d locations (B, R, 5) and a mask (B, R) of the real
    regions (R = 1 + the most boxes in the batch)."""
    from torchvision.ops import roi_align

    from ..models.multimodal.vilbert import box_encoding

    b, _, h, w = images.shape
    full = images.new_tensor([0, 0, w, h])
    per = [torch.cat([full[None], bx.to(images.dtype).reshape(-1, 4)]) for bx in boxes]
    r = max(len(p) for p in per)
    padded = torch.stack([torch.cat([p, full.expand(r - len(p), 4)]) for p in per])  # (B, R, 4)
    feats = roi_align((images - mean) / std, list(padded), output_size=POOL, spatial_scale=1.0, aligned=True)
    mask = torch.tensor([[j < len(p) for j in range(r)] for p in per])
    return feats.reshape(b, r, -1), box_encoding(padded, (h, w)), mask


class AnswerAccuracy(SumEvaluator):
    def update(self, logits: torch.Tensor, batch: Any) -> None:
        answers = batch[-1]
        self.add("acc", (logits.argmax(1) == answers).sum())
        self.add("loss", F.cross_entropy(logits.float(), answers, reduction="sum"))
        self.count += len(answers)


@register_task("vqa")
class VQATask(Task):
    """Scene question answering for ViLBERT-style models (see the module docstring)."""

    data = "scene"
    data_defaults: dict[str, Any] = {"image_size": 32, "min_objects": 1, "max_objects": 3}
    recipe: dict[str, Any] = {"optimizer": "adamw", "lr": 5e-4, "weight_decay": 0.01}

    def __init__(self, tokenizer: Callable[[Sequence[str]], torch.Tensor] | None = None,
                 classes: Sequence[str] | None = None, seed: int = 0) -> None:
        from ..models.multimodal.tokenizer import scene_tokenizer

        self.tokenizer = tokenizer or scene_tokenizer(context_length=16)
        self.classes = list(classes) if classes else None
        self.rng = torch.Generator().manual_seed(seed)

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> VQATask:
        return cls(classes=getattr(data, "classes", None))

    def question(self, colors: list[str], boxes: torch.Tensor, image_size: int, k: int) -> str:
        from ..data.shapes import _where

        if colors.count(colors[k]) == 1:
            return f"what shape is the {colors[k]} object ?"
        x0, y0, x1, y1 = boxes[k].tolist()
        return f"what shape is the {colors[k]} object {_where((x0 + x1) / 2, (y0 + y1) / 2, image_size)} ?"

    def collate(self, samples: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple:
        try:
            images = torch.stack([s[0].as_subclass(torch.Tensor) for s in samples])
            boxes = [s[1]["boxes"].as_subclass(torch.Tensor) for s in samples]
            colors = [list(s[1]["colors"]) for s in samples]
            labels = [s[1]["labels"] for s in samples]
        except (KeyError, TypeError):
            raise DataError("the vqa task needs scene samples (boxes, classes, colours): use --data shapes") from None
        questions, answers = [], []
        for bx, col, lab in zip(boxes, colors, labels):
            if not len(col):
                raise DataError("a scene without objects has no question to ask")
            k = int(torch.randint(len(col), (1,), generator=self.rng))
            questions.append(self.question(col, bx, images.shape[-1], k))
            answers.append(int(lab[k]))
        feats, locs, mask = region_inputs(images, boxes)
        ids = self.tokenizer(questions)
        return ids, ids != 0, feats, locs, mask, torch.tensor(answers)

    def logits(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        ids, t_mask, feats, locs, v_mask, _ = batch
        inner = getattr(model, "module", model)
        _, _, h_cls, h_img = model(ids, feats, locs, text_mask=t_mask, region_mask=v_mask)
        return inner.vqa_logits(h_cls, h_img)

    def loss(self, model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict[str, Any]]:
        logits = self.logits(model, batch)
        return F.cross_entropy(logits.float(), batch[-1]), {"acc": (logits.argmax(1) == batch[-1]).float().mean()}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        return self.logits(model, batch)

    def evaluator(self) -> AnswerAccuracy:
        return AnswerAccuracy()

    def batch_size(self, batch: tuple) -> int:
        return len(batch[0])
