"""Contrastive image-text pre-training (CLIP): image-caption pairs, the symmetric InfoNCE loss over the batch
(gathered across processes under torchrun), and image-to-text / text-to-image retrieval as the metrics.

A batch is ``(images, token_ids)``; the model's ``forward(images, token_ids)`` gives normalised image and text
features and the clipped temperature ``exp(t)`` (``paperzoo.models.multimodal.clip.CLIP``). Captions are tokenised
by the task's tokenizer (the synthetic scenes' word vocabulary by default; CLIP's BPE for real captions:
``ContrastiveTask(tokenizer=ClipTokenizer.from_bpe())``).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from ..errors import DataError
from .base import GatherEvaluator, Task, register_task


class RetrievalEvaluator(GatherEvaluator):
    """Recall@1 of image->text and text->image retrieval over the whole split. A retrieved caption counts as
    correct when its text equals the image's own caption (the synthetic captions repeat)."""

    def update(self, predictions: tuple[torch.Tensor, torch.Tensor], batch: Any) -> None:
        img, txt = predictions
        captions = batch[2] if len(batch) > 2 else [None] * len(img)
        self.records += [(i.float().cpu(), t.float().cpu(), c) for i, t, c in zip(img, txt, captions)]

    def compute(self) -> dict[str, float]:
        if not self.records:
            return {}
        img = torch.stack([r[0] for r in self.records])
        txt = torch.stack([r[1] for r in self.records])
        caps = [r[2] for r in self.records]
        sim = img @ txt.T
        i2t, t2i = sim.argmax(1).tolist(), sim.argmax(0).tolist()
        same = (lambda a, b: a == b or caps[a] == caps[b]) if caps[0] is not None else (lambda a, b: a == b)
        n = len(caps)
        return {"i2t_r1": sum(same(j, i) for i, j in enumerate(i2t)) / n,
                "t2i_r1": sum(same(j, i) for i, j in enumerate(t2i)) / n}


@register_task("contrastive")
class ContrastiveTask(Task):
    """CLIP's objective on image-caption pairs (see the module docstring)."""

    data = "captioning"
    data_defaults: dict[str, Any] = {"image_size": 32, "min_objects": 1, "max_objects": 2}
    recipe: dict[str, Any] = {"optimizer": "adamw", "lr": 5e-4, "weight_decay": 0.1}

    def __init__(self, tokenizer: Callable[[Sequence[str]], torch.Tensor] | None = None) -> None:
        if tokenizer is None:
            from ..models.multimodal.tokenizer import scene_tokenizer

            tokenizer = scene_tokenizer()
        self.tokenizer = tokenizer

    def collate(self, samples: Sequence[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
        images = torch.stack([s[0].as_subclass(torch.Tensor) for s in samples])
        try:
            captions = [s[1]["caption"] if isinstance(s[1], dict) else s[1] for s in samples]
        except KeyError:
            raise DataError("the contrastive task needs captions: use --data shapes or a COCO captions json") from None
        if not all(isinstance(c, str) for c in captions):
            raise DataError("the contrastive task needs one caption string per image")
        return images, self.tokenizer(captions), captions

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, Any]]:
        from ..models.multimodal.clip import clip_loss

        img, txt, scale = model(batch[0], batch[1])
        loss = clip_loss(img, txt, scale)
        acc = ((img @ txt.T).argmax(1) == torch.arange(len(img), device=img.device)).float().mean()
        return loss, {"batch_i2t_acc": acc, "scale": scale.detach()}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        img, txt, _ = model(batch[0], batch[1])
        return img, txt

    def evaluator(self) -> RetrievalEvaluator:
        return RetrievalEvaluator()
