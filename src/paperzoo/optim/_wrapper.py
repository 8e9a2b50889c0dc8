"""A base for optimizers that wrap another one (Lookahead, SAM).

The wrapper *is* a ``torch.optim.Optimizer`` (so learning-rate schedulers and ``GradScaler`` accept it)
but owns no parameter groups: ``param_groups``, ``state`` and ``defaults`` are the inner optimizer's,
so a scheduler that sets the learning rate on the wrapper sets it where the steps are taken, also after
``load_state_dict`` replaces the inner optimizer's group dictionaries.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.optim import Optimizer


class WrappedOptimizer(Optimizer):
    inner: Optimizer

    def __init__(self, inner: Optimizer) -> None:  # no Optimizer.__init__: the groups are the inner's
        self.inner = inner

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.inner.param_groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.inner.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.inner.defaults

    def params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.inner.zero_grad(set_to_none=set_to_none)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.inner.add_param_group(param_group)

    def __getstate__(self) -> dict[str, Any]:
        return self.__dict__

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"
