"""An exponential moving average of the weights (and buffers), updated after every optimizer step,
evaluated beside the model at each validation (``ema_val_*``) and saved as ``model_ema.safetensors``."""
from __future__ import annotations

from typing import Any

from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from . import Callback


class EMA(Callback):
    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.average: AveragedModel | None = None

    @property
    def module(self):
        return self.average.module

    def setup(self, trainer) -> None:
        self.average = AveragedModel(trainer.model, multi_avg_fn=get_ema_multi_avg_fn(self.decay), use_buffers=True)

    def on_step_end(self, trainer, logs) -> None:
        self.average.update_parameters(trainer.model)

    def on_epoch_end(self, trainer, row: dict[str, Any]) -> None:
        if trainer.validating:
            row.update({f"ema_val_{k}": v for k, v in trainer.evaluate(model=self.module).items()})

    def on_fit_end(self, trainer) -> None:
        trainer.save_extra_weights("model_ema.safetensors", self.module.state_dict())

    def state_dict(self) -> dict[str, Any]:
        return {"average": self.average.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.average.load_state_dict(state["average"])
