"""Lookahead (Zhang, Lucas, Hinton & Ba, 2019, arXiv:1907.08610): "k steps forward, 1 step back".

Algorithm 1 of the paper: keep *slow weights* phi, starting at the initial weights theta_0. The inner
optimizer A updates the *fast weights* theta for k steps; then the slow weights move a fraction alpha of
the way towards them, phi <- phi + alpha (theta_k - phi), and the fast weights restart from phi. The
inner optimizer's own state (momentum, second moments) is kept across synchronisations, as in the paper's
experiments. Works with any optimizer, SAM's base optimizer included; the slow weights and the step
counter are part of ``state_dict`` so that a resumed run continues exactly.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.optim import Optimizer

from ._wrapper import WrappedOptimizer


class Lookahead(WrappedOptimizer):
    """Wrap ``optimizer``: every ``k`` of its steps, slow weights phi <- phi + alpha (theta - phi) and theta <- phi."""

    def __init__(self, optimizer: Optimizer, k: int = 5, alpha: float = 0.5) -> None:
        if k < 1:
            raise ValueError(f"Lookahead k must be >= 1, got {k}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Lookahead alpha must be in [0, 1], got {alpha}")
        super().__init__(optimizer)
        self.k, self.alpha = k, alpha
        self.fast_steps = 0  # inner steps taken since the start
        self.slow: list[torch.Tensor] | None = None  # phi; set from the weights at the first step (theta_0)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        if self.slow is None:
            self.slow = [p.detach().clone() for p in self.params()]
        loss = self.inner.step(closure)
        self.fast_steps += 1
        if self.fast_steps % self.k == 0:
            fast = self.params()
            torch._foreach_add_(self.slow, torch._foreach_sub(fast, self.slow), alpha=self.alpha)  # phi += alpha (theta - phi)
            torch._foreach_copy_(fast, self.slow)                                                 # theta <- phi
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"inner": self.inner.state_dict(),
                "lookahead": {"k": self.k, "alpha": self.alpha, "fast_steps": self.fast_steps, "slow": self.slow}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.inner.load_state_dict(state_dict["inner"])
        la = state_dict["lookahead"]
        self.k, self.alpha, self.fast_steps = la["k"], la["alpha"], la["fast_steps"]
        self.slow = None if la["slow"] is None else [
            s.to(device=p.device, dtype=p.dtype).clone() for s, p in zip(la["slow"], self.params(), strict=True)]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        super().add_param_group(param_group)
        if self.slow is not None:
            self.slow += [p.detach().clone() for p in self.param_groups[-1]["params"]]
