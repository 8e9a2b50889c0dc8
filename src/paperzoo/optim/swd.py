"""Stable Weight Decay (Xie, Sato & Sugiyama, 2020, arXiv:2011.11152): SGDS and AdamS.

The paper shows that weight decay, as libraries implement it, makes the effective decay depend on the
optimizer's dynamics: with momentum the decay is amplified by 1 / (1 - beta1), and under Adam the
decoupled decay of AdamW is not matched to the adaptive step size. Stable weight decay rescales it:

* SGDS (Algorithm 1): m_t = beta1 m_{t-1} + beta3 g_t (beta3 = 1 - dampening), and
  theta_t = theta_{t-1} - eta m_t - eta * beta3 / (1 - beta1) * lambda * theta_{t-1}.
* AdamS (Algorithm 2): Adam's moments and bias corrections, and a decay divided by the square root of
  the mean of all elements of v_hat_t (over every parameter of the model),
  theta_t = theta_{t-1} - eta * lambda / sqrt(mean(v_hat_t)) * theta_{t-1} - eta * m_hat_t / (sqrt(v_hat_t) + eps).

Both are vectorised over parameters with ``torch._foreach_*`` ops. Like PyTorch's SGD, the first
momentum buffer of SGDS is the gradient itself (m_1 = g_1).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch.optim import Optimizer


def _with_grad(group: dict[str, Any]) -> list[torch.Tensor]:
    return [p for p in group["params"] if p.grad is not None]


class SGDS(Optimizer):
    """SGD with momentum and stable weight decay."""

    def __init__(self, params: Iterable[Any], lr: float = 0.1, momentum: float = 0.9, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False) -> None:
        if lr < 0 or weight_decay < 0 or not 0 <= momentum < 1:
            raise ValueError("SGDS needs lr >= 0, weight_decay >= 0 and 0 <= momentum < 1")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = _with_grad(group)
            if not params:
                continue
            lr, mu, damp, wd = group["lr"], group["momentum"], group["dampening"], group["weight_decay"]
            grads = [p.grad for p in params]
            if wd:
                torch._foreach_mul_(params, 1 - lr * wd * (1 - damp) / (1 - mu))  # stable decay: lambda * beta3 / (1 - beta1)
            step = grads
            if mu:
                old = [p for p in params if "momentum_buffer" in self.state[p]]
                if old:
                    bufs = [self.state[p]["momentum_buffer"] for p in old]
                    torch._foreach_mul_(bufs, mu)
                    torch._foreach_add_(bufs, [p.grad for p in old], alpha=1 - damp)  # m_t = beta1 m + beta3 g
                for p in params:
                    if "momentum_buffer" not in self.state[p]:
                        self.state[p]["momentum_buffer"] = p.grad.detach().clone()
                bufs = [self.state[p]["momentum_buffer"] for p in params]
                step = torch._foreach_add(grads, bufs, alpha=mu) if group["nesterov"] else bufs
            torch._foreach_add_(params, step, alpha=-lr)
        return loss


class AdamS(Optimizer):
    """Adam with stable weight decay (the decay is scaled by 1 / sqrt(mean(v_hat)) over all parameters)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-4) -> None:
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError("AdamS needs lr, eps, weight_decay >= 0 and betas in [0, 1)")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        work = []
        v_hat_sum, numel = None, 0
        for group in self.param_groups:  # moments first: the decay needs mean(v_hat) over every parameter
            params = _with_grad(group)
            if not params:
                continue
            beta1, beta2 = group["betas"]
            for p in params:
                if not self.state[p]:
                    self.state[p].update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
                self.state[p]["step"] += 1
            states = [self.state[p] for p in params]
            m, v = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
            grads = [p.grad for p in params]
            torch._foreach_lerp_(m, grads, 1 - beta1)                       # m_t = b1 m + (1 - b1) g
            torch._foreach_mul_(v, beta2)
            torch._foreach_addcmul_(v, grads, grads, value=1 - beta2)       # v_t = b2 v + (1 - b2) g^2
            bc1 = [1 - beta1 ** s["step"] for s in states]
            bc2 = [1 - beta2 ** s["step"] for s in states]
            sums = torch._foreach_div(torch._foreach_norm(v, 1), bc2)       # sum of v_hat per tensor (v >= 0)
            total = torch.stack(sums).sum()
            v_hat_sum = total if v_hat_sum is None else v_hat_sum + total
            numel += sum(p.numel() for p in params)
            work.append((group, params, m, v, bc1, bc2))
        if not work:
            return loss
        v_bar_sqrt = (v_hat_sum / numel).sqrt()
        for group, params, m, v, bc1, bc2 in work:
            lr, wd, eps = group["lr"], group["weight_decay"], group["eps"]
            if wd:
                decay = torch.where(v_bar_sqrt > 0, 1 - lr * wd / v_bar_sqrt, torch.ones_like(v_bar_sqrt))
                torch._foreach_mul_(params, decay)                          # theta *= 1 - eta lambda / sqrt(mean v_hat)
            denom = torch._foreach_sqrt(torch._foreach_div(v, bc2))
            torch._foreach_add_(denom, eps)                                 # sqrt(v_hat) + eps
            torch._foreach_addcdiv_(params, m, denom, [-lr / b for b in bc1])  # theta -= eta m_hat / (sqrt(v_hat) + eps)
        return loss
