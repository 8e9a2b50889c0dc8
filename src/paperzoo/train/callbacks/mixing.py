"""mixup / CutMix (``data.mixing``) on every training batch, drawing from the Trainer's checkpointed generator."""
from __future__ import annotations

from typing import Any

from ...data.mixing import MixUpOrCutMix
from ...errors import ConfigError
from . import Callback


class Mixing(Callback):
    def __init__(self, mix: MixUpOrCutMix) -> None:
        self.mix = mix

    @classmethod
    def from_config(cls, cfg: Any, model: Any, train_data: Any) -> Mixing:
        num_classes = getattr(train_data, "num_classes", None) or getattr(model, "num_classes", None)
        if not num_classes:
            raise ConfigError("mixup/cutmix need the number of classes (a dataset or model with num_classes)")
        return cls(MixUpOrCutMix(cfg.mixup.alpha, cfg.cutmix.alpha, num_classes, cfg.cutmix.switch_prob))

    def on_batch(self, trainer, batch: Any) -> Any:
        images, targets = batch
        return self.mix(images, targets, trainer.generator)
