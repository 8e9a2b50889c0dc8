"""Zero-gamma (Goyal et al., 2017; Bag of Tricks, section 3.1) as a callback: the last norm layer of every
residual block starts at gamma = 0, so each block starts as the identity (``tricks.zero_gamma_init``)."""
from __future__ import annotations

from torch import nn

from ..tricks import zero_gamma_init
from . import Callback


class ZeroGamma(Callback):
    def on_model(self, trainer, model: nn.Module) -> None:
        zero_gamma_init(model)
