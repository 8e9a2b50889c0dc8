"""Annotated references for optimizers that PyTorch already implements.

The engine trains with ``torch.optim.AdamW`` and ``torch.optim.RAdam``; the functions here restate the
papers' update rules line by line, so that a test can show, step for step on the same inputs, that
PyTorch's optimizer is the paper's algorithm (and where the two differ in parametrisation).

* ``adamw_reference`` — Loshchilov & Hutter (arXiv:1711.05101), Algorithm 2 ("AdamW"): the weight decay
  is taken out of the gradient and applied to the weights directly, scaled by the schedule multiplier
  eta_t only (line 12). PyTorch scales the decay by its ``lr`` (= alpha * eta_t) instead, so the paper's
  lambda equals ``lr * weight_decay`` of ``torch.optim.AdamW`` at eta_t = 1.
* ``normalized_weight_decay`` — the same paper's Appendix B.1: lambda = lambda_norm * sqrt(b / (B T)),
  which makes the best decay independent of batch size b, dataset size B and run length T (epochs).
* ``radam_reference`` — Liu et al. (arXiv:1908.03265), Algorithm 2 ("RAdam"): Adam's adaptive learning
  rate is multiplied by the rectification term r_t (eq. 9) once the variance of the adaptive rate is
  tractable (rho_t > 4); before that the step is SGD with momentum on the bias-corrected first moment.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _moments(state: dict, params: list[Tensor]) -> tuple[int, list[Tensor], list[Tensor]]:
    state["t"] = t = state.get("t", 0) + 1
    if "m" not in state:
        state["m"] = [torch.zeros_like(p) for p in params]
        state["v"] = [torch.zeros_like(p) for p in params]
    return t, state["m"], state["v"]


@torch.no_grad()
def adamw_reference(params: list[Tensor], grads: list[Tensor], state: dict, alpha: float = 1e-3,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                    eta: float = 1.0) -> None:
    """One AdamW step in place on ``params`` (Algorithm 2 of the paper). ``weight_decay`` is the paper's
    lambda (not multiplied by ``alpha``), ``eta`` the schedule multiplier eta_t; ``state`` carries t, m, v."""
    beta1, beta2 = betas
    t, m, v = _moments(state, params)
    for theta, g, m_t, v_t in zip(params, grads, m, v):
        m_t.mul_(beta1).add_(g, alpha=1 - beta1)                 # m_t = b1 m_{t-1} + (1 - b1) g_t
        v_t.mul_(beta2).addcmul_(g, g, value=1 - beta2)          # v_t = b2 v_{t-1} + (1 - b2) g_t^2
        m_hat = m_t / (1 - beta1**t)                             # bias corrections
        v_hat = v_t / (1 - beta2**t)
        step = alpha * m_hat / (v_hat.sqrt() + eps) + weight_decay * theta
        theta.sub_(eta * step)                                   # line 12: theta_t = theta_{t-1} - eta_t (...)


def normalized_weight_decay(lambda_norm: float, batch_size: int, dataset_size: int, epochs: float) -> float:
    """The paper's normalised weight decay: lambda = lambda_norm * sqrt(b / (B * T)) (Appendix B.1)."""
    return lambda_norm * math.sqrt(batch_size / (dataset_size * epochs))


@torch.no_grad()
def radam_reference(params: list[Tensor], grads: list[Tensor], state: dict, alpha: float = 1e-3,
                    betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                    decoupled: bool = False, rho_threshold: float = 4.0) -> None:
    """One RAdam step in place on ``params`` (Algorithm 2 of the paper).

    ``rho_threshold`` is the paper's 4 (rectify when rho_t > 4); the official code and PyTorch use 5.
    ``weight_decay`` is an L2 term added to the gradient, or, with ``decoupled``, AdamW-style decay
    ``theta *= 1 - alpha * weight_decay`` (as the official code does). The paper's l_t = sqrt((1 - b2^t) / v_t)
    has no epsilon; like the authors' code we add ``eps`` to sqrt(v_t).
    """
    beta1, beta2 = betas
    rho_inf = 2 / (1 - beta2) - 1                                # rho_infinity, eq. 5
    t, m, v = _moments(state, params)
    rho_t = rho_inf - 2 * t * beta2**t / (1 - beta2**t)          # length of the approximated SMA at step t
    for theta, g, m_t, v_t in zip(params, grads, m, v):
        if weight_decay and decoupled:
            theta.mul_(1 - alpha * weight_decay)
        elif weight_decay:
            g = g + weight_decay * theta
        m_t.mul_(beta1).add_(g, alpha=1 - beta1)
        v_t.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m_hat = m_t / (1 - beta1**t)
        if rho_t > rho_threshold:                                # the variance of the adaptive rate is tractable
            l_t = math.sqrt(1 - beta2**t) / (v_t.sqrt() + eps)   # adaptive learning rate l_t = sqrt((1 - b2^t) / v_t)
            r_t = math.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t))  # eq. 9
            theta.sub_(alpha * r_t * m_hat * l_t)
        else:
            theta.sub_(alpha * m_hat)                            # un-adapted momentum step
