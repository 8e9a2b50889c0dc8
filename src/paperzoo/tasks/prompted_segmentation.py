"""Prompted (referring) segmentation, CLIPSeg's task: one binary mask per (image, prompt), the prompt a phrase or an
example image of the thing to segment.

From a synthetic scene (``kind="scene"``: instance masks, classes and colours) the task draws one object per image
and prompts with its phrase, "a red star"; the target is every object of that colour and shape. With probability
``image_prompts`` the prompt is instead another image of the batch that holds the same kind of object, turned into a
visual prompt (background darkened, cropped to the object: CLIPSeg section 3.2). Loss: binary cross-entropy per
pixel; metrics: foreground IoU of the mask ``logits > 0`` (mean over prompts) and pixel accuracy.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import DataError
from .base import SumEvaluator, Task, register_task


class MaskIoUEvaluator(SumEvaluator):
    """Mean foreground IoU and pixel accuracy of binary masks (prediction: logits > 0)."""

    def update(self, logits: torch.Tensor, batch: Any) -> None:
        target = batch[2].bool()
        pred = logits > 0
        inter = (pred & target).flatten(1).sum(1).float()
        union = (pred | target).flatten(1).sum(1).float()
        self.add("iou", (inter / union.clamp_min(1)).sum())
        self.add("pixel_acc", (pred == target).flatten(1).float().mean(1).sum())
        self.count += len(target)


def phrase_of(color: str, cls: str) -> str:
    return f"a {color} {cls}"


@register_task("prompted-segmentation")
class PromptedSegmentationTask(Task):
    """CLIPSeg's objective on synthetic scenes (see the module docstring)."""

    data = "scene"
    data_defaults: dict[str, Any] = {"image_size": 64, "min_objects": 1, "max_objects": 3}
    recipe: dict[str, Any] = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-4}

    def __init__(self, tokenizer: Callable[[Sequence[str]], torch.Tensor] | None = None, classes: Sequence[str] | None = None,
                 image_prompts: float = 0.0, mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                 seed: int = 0) -> None:
        from ..models.multimodal.clip import CLIP_MEAN, CLIP_STD

        if tokenizer is None:
            from ..models.multimodal.tokenizer import scene_tokenizer

            tokenizer = scene_tokenizer()
        self.tokenizer, self.classes, self.image_prompts = tokenizer, list(classes) if classes else None, image_prompts
        self.mean = torch.tensor(mean or CLIP_MEAN)[:, None, None]
        self.std = torch.tensor(std or CLIP_STD)[:, None, None]
        self.rng = torch.Generator().manual_seed(seed)
        self.fixed: str | None = None  # "text" or "image": force one kind of prompt (evaluation)

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> PromptedSegmentationTask:
        return cls(classes=getattr(data, "classes", None))

    def setup(self, trainer) -> None:
        if self.classes is None:
            self.classes = list(getattr(trainer.train_data, "classes", []))

    def collate(self, samples: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple:
        from ..data.shapes import CLASSES
        from ..models.multimodal.clipseg import visual_prompt

        classes = self.classes or list(CLASSES)
        try:
            objects = [[(c, classes[int(lab) - 1]) for c, lab in zip(t["colors"], t["labels"])] for _, t in samples]
            inst = [t["masks"].as_subclass(torch.Tensor).bool() for _, t in samples]
        except (KeyError, TypeError):
            raise DataError("prompted segmentation needs scene samples (instance masks, classes and colours): "
                            "use --data shapes") from None
        images = torch.stack([(s[0].as_subclass(torch.Tensor) - self.mean) / self.std for s in samples])
        phrases, masks, support, use_image = [], [], [], []
        for i, objs in enumerate(objects):
            if not objs:
                raise DataError("a scene without objects cannot be prompted")
            k = int(torch.randint(len(objs), (1,), generator=self.rng))
            masks.append(torch.stack([m for m, o in zip(inst[i], objs) if o == objs[k]]).any(0))
            phrases.append(phrase_of(*objs[k]))
            partners = [(j, [m for m, o in zip(inst[j], objects[j]) if o == objs[k]]) for j in range(len(samples)) if j != i]
            partners = [(j, ms) for j, ms in partners if ms]
            want = (self.fixed == "image") or (self.fixed is None and float(torch.rand((), generator=self.rng)) < self.image_prompts)
            if partners and want:
                j, ms = partners[int(torch.randint(len(partners), (1,), generator=self.rng))]
                support.append(visual_prompt(images[j:j + 1], torch.stack(ms).any(0)[None], mean=self.mean, std=self.std)[0])
                use_image.append(True)
            else:
                support.append(torch.zeros_like(images[i]))
                use_image.append(False)
        return images, self.tokenizer(phrases), torch.stack(masks).float(), torch.stack(support), torch.tensor(use_image), phrases

    def conditional(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        images, ids, _, support, use_image, _ = batch
        inner = getattr(model, "module", model)
        cond = inner.conditional(token_ids=ids)
        if bool(use_image.any()):
            cond = torch.where(use_image[:, None], inner.conditional(prompt_images=support), cond)
        return cond

    def loss(self, model: nn.Module, batch: tuple) -> tuple[torch.Tensor, dict[str, Any]]:
        logits = model(batch[0], conditional=self.conditional(model, batch))
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch[2])
        return loss, {"image_prompts": batch[4].float().mean()}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: tuple) -> torch.Tensor:
        return model(batch[0], conditional=self.conditional(model, batch))

    def evaluator(self) -> MaskIoUEvaluator:
        return MaskIoUEvaluator()

    def batch_size(self, batch: tuple) -> int:
        return len(batch[0])
