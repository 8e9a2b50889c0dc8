"""Sharpness-Aware Minimization (Foret, Kleiner, Mobahi & Neyshabur, 2020, arXiv:2010.01412).

SAM minimises max_{||eps|| <= rho} L(w + eps), the worst loss in a rho-ball around the weights. Its
first-order solution for p = 2 (eq. 2) is eps_hat(w) = rho * g / ||g||_2 with g = grad L(w); the update
(eq. 3) is the base optimizer's step taken with the gradient *at w + eps_hat*, applied to w. One SAM step
therefore costs two forward-backward passes:

1. ``first_step``: w <- w + eps_hat(w) (the ascent, with the gradient norm taken over all parameters);
2. recompute the gradient at the perturbed weights (the closure);
3. ``second_step``: w is restored and the base optimizer steps with the new gradient.

``adaptive=True`` is ASAM (Kwon et al., 2021): the ball is scaled by T_w = |w| elementwise, so
eps_hat = rho * T_w^2 g / ||T_w g||_2, which makes sharpness invariant to rescaling of the weights.
``base_optimizer`` is any callable ``(params, **base_kwargs) -> Optimizer`` (a class such as
``torch.optim.SGD``, or a function that builds e.g. ``Lookahead(AdamW(...))``).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer

from ._wrapper import WrappedOptimizer


class SAM(WrappedOptimizer):
    """SAM over ``base_optimizer``; per-group ``rho`` and ``adaptive`` may be set in the parameter groups.
    ``step`` needs a closure (``needs_closure``): the Trainer passes one that re-runs the batch."""

    needs_closure = True

    def __init__(self, params: Iterable[Any], base_optimizer: Callable[..., Optimizer], rho: float = 0.05,
                 adaptive: bool = False, **base_kwargs: Any) -> None:
        if rho < 0:
            raise ValueError(f"SAM rho must be >= 0, got {rho}")
        super().__init__(base_optimizer(params, **base_kwargs))
        for group in self.param_groups:
            group.setdefault("rho", rho)
            group.setdefault("adaptive", adaptive)
        self._saved: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None  # (params, w) between the two steps

    def _grad_norm(self) -> torch.Tensor:
        """||T_w g||_2 over every parameter with a gradient (T_w = |w| in adaptive groups, else 1)."""
        parts = []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            grads = [p.grad for p in params]
            if group["adaptive"]:
                grads = torch._foreach_mul(grads, torch._foreach_abs(params))
            parts += torch._foreach_norm(grads) if grads else []
        return torch.linalg.vector_norm(torch.stack(parts)) if parts else torch.zeros(())

    @torch.no_grad()
    def first_step(self, zero_grad: bool = False) -> None:
        """w <- w + eps_hat(w), eps_hat = rho * T_w^2 g / ||T_w g|| (T_w = 1 for plain SAM)."""
        norm = self._grad_norm()
        moved, saved = [], []
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            eps = torch._foreach_mul(grads, torch._foreach_mul(params, params)) if group["adaptive"] else [g.clone() for g in grads]
            torch._foreach_mul_(eps, group["rho"] / (norm + 1e-12))
            saved += [p.detach().clone() for p in params]
            moved += params
            torch._foreach_add_(params, eps)
        self._saved = (moved, saved)
        if zero_grad:
            self.zero_grad()

    @torch.no_grad()
    def restore(self) -> None:
        """Return to w (undo ``first_step``) without stepping."""
        if self._saved is not None:
            torch._foreach_copy_(*self._saved)
            self._saved = None

    @torch.no_grad()
    def second_step(self, zero_grad: bool = False) -> None:
        """Restore w and take the base optimizer's step with the gradient computed at w + eps_hat."""
        if self._saved is None:
            raise RuntimeError("SAM.second_step needs first_step (or use step(closure))")
        self.restore()
        self.inner.step()
        if zero_grad:
            self.zero_grad()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:  # type: ignore[override]
        """A full SAM step; ``closure`` must recompute the loss and call ``backward()`` (gradients at w + eps_hat)."""
        if closure is None:
            raise RuntimeError("SAM needs a closure that recomputes the loss and its gradient")
        self.first_step(zero_grad=True)
        try:
            with torch.enable_grad():
                loss = closure()
        except BaseException:
            self.restore()
            raise
        self.second_step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return self.inner.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.inner.load_state_dict(state_dict)
