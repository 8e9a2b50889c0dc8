"""DropBlock's schedule (Ghiasi, Lin & Le, 2018, section 3): keep_prob falls linearly from 1 to its target over
the first ``dropblock.ramp`` of training. With ``dropblock.drop_prob > 0`` and a model that has no DropBlock
layers of its own, blocks are added to the outputs of its last stages (``layers.dropblock.add_drop_block``)."""
from __future__ import annotations

from torch import nn

from ...layers.dropblock import DropBlock2d, add_drop_block, drop_blocks_of
from ..config import DropBlockConfig
from . import Callback


class DropBlockSchedule(Callback):
    def __init__(self, cfg: DropBlockConfig) -> None:
        self.cfg = cfg
        self.blocks: list[DropBlock2d] = []

    def on_model(self, trainer, model: nn.Module) -> None:
        self.blocks = drop_blocks_of(model)
        if self.cfg.drop_prob > 0 and not self.blocks:
            self.blocks = add_drop_block(model, self.cfg.drop_prob, self.cfg.block_size, self.cfg.stages)

    def on_step_start(self, trainer) -> None:
        if not self.blocks:
            return
        span = self.cfg.ramp * trainer.total_steps
        ramp = min(1.0, trainer.step / span) if span > 0 else 1.0
        for block in self.blocks:
            block.ramp = ramp
