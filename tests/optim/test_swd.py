"""Stable weight decay (Xie et al.): SGDS and AdamS checked against a hand computation of the paper's
Algorithms 1 and 2, over two parameter groups (the decay of AdamS uses v_hat over every parameter)."""
from __future__ import annotations

import math

import pytest
import torch

from paperzoo.optim import SGDS, AdamS

from test_adamw import grads_at, problem


def groups_of(params: list[torch.Tensor], wd: float) -> list[dict]:
    return [{"params": params[::2], "weight_decay": wd}, {"params": params[1::2], "weight_decay": 0.0}]


@pytest.mark.paper("stable-weight-decay")
@pytest.mark.parametrize("dampening,nesterov", [(0.0, False), (0.1, False), (0.0, True)])
def test_sgds_is_algorithm_1(dampening: float, nesterov: bool, record_property) -> None:
    """m_t = beta1 m_{t-1} + beta3 g_t (m_1 = g_1), theta_t = theta_{t-1} - eta m_t - eta beta3/(1-beta1) lambda theta_{t-1}."""
    lr, mu, wd = 0.1, 0.9, 5e-3
    model, batches = problem(7)
    params = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    opt = SGDS(groups_of(params, wd), lr=lr, momentum=mu, dampening=dampening, nesterov=nesterov)
    theta = [p.detach().clone() for p in params]
    decay = [wd if i % 2 == 0 else 0.0 for i in range(len(theta))]
    m = [None] * len(theta)
    beta3 = 1 - dampening
    worst = 0.0
    for batch in batches[:6]:
        g = grads_at(model, [p.detach() for p in params], batch)
        for p, gi in zip(params, g):
            p.grad = gi
        opt.step()
        for i, gi in enumerate(g):
            m[i] = gi.clone() if m[i] is None else mu * m[i] + beta3 * gi
            step = gi + mu * m[i] if nesterov else m[i]
            theta[i] = theta[i] - lr * step - lr * beta3 / (1 - mu) * decay[i] * theta[i]
        worst = max(worst, max(float((a.detach() - b).abs().max()) for a, b in zip(params, theta)))
        for a, b in zip(params, theta):
            torch.testing.assert_close(a.detach(), b, rtol=1e-12, atol=1e-14)
    record_property("max_abs_diff_vs_hand_algorithm_1_over_6_steps", worst)


@pytest.mark.paper("stable-weight-decay")
def test_adams_is_algorithm_2(record_property) -> None:
    """theta_t = theta_{t-1} - eta lambda theta_{t-1} / sqrt(mean(v_hat_t)) - eta m_hat_t / (sqrt(v_hat_t) + eps),
    with mean(v_hat_t) over all elements of all parameters (of both groups)."""
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.999, 1e-8, 5e-4
    model, batches = problem(8)
    params = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    opt = AdamS(groups_of(params, wd), lr=lr, betas=(b1, b2), eps=eps)
    theta = [p.detach().clone() for p in params]
    decay = [wd if i % 2 == 0 else 0.0 for i in range(len(theta))]
    m = [torch.zeros_like(x) for x in theta]
    v = [torch.zeros_like(x) for x in theta]
    worst = 0.0
    for t, batch in enumerate(batches[:8], start=1):
        g = grads_at(model, [p.detach() for p in params], batch)
        for p, gi in zip(params, g):
            p.grad = gi
        opt.step()
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
        v = [b2 * vi + (1 - b2) * gi**2 for vi, gi in zip(v, g)]
        m_hat = [mi / (1 - b1**t) for mi in m]
        v_hat = [vi / (1 - b2**t) for vi in v]
        v_bar = sum(float(x.sum()) for x in v_hat) / sum(x.numel() for x in v_hat)
        theta = [x - lr * d * x / math.sqrt(v_bar) - lr * mh / (vh.sqrt() + eps)
                 for x, d, mh, vh in zip(theta, decay, m_hat, v_hat)]
        worst = max(worst, max(float((a.detach() - b).abs().max()) for a, b in zip(params, theta)))
        for a, b in zip(params, theta):
            torch.testing.assert_close(a.detach(), b, rtol=1e-10, atol=1e-13)
    record_property("max_abs_diff_vs_hand_algorithm_2_over_8_steps", worst)


@pytest.mark.paper("stable-weight-decay")
def test_sgds_decay_is_stable_under_momentum(record_property) -> None:
    """With no loss gradient, SGDS shrinks the weights by exactly eta lambda beta3 / (1 - beta1) per step,
    w_n = w_0 (1 - eta lambda / (1 - beta1))^n: the stationary rate that momentum gives library L2 decay, from the
    first step on, while torch's SGD with L2 decay starts at eta lambda and only builds up to it."""
    lr, wd, mu, n = 0.1, 1e-2, 0.9, 10
    w0 = torch.linspace(-1, 1, 7, dtype=torch.float64)
    a, b = torch.nn.Parameter(w0.clone()), torch.nn.Parameter(w0.clone())
    sgds, sgd = SGDS([a], lr=lr, momentum=mu, weight_decay=wd), torch.optim.SGD([b], lr=lr, momentum=mu, weight_decay=wd)
    for _ in range(n):
        for p, opt in ((a, sgds), (b, sgd)):
            p.grad = torch.zeros_like(p)
            opt.step()
    expected = w0 * (1 - lr * wd / (1 - mu)) ** n
    diff = float((a.detach() - expected).abs().max())
    record_property("max_abs_diff_vs_w0_times_stable_factor_pow_n", diff)
    record_property("shrink_ratio_sgds_over_sgd_l2_after_10_steps",
                    float((w0 - a.detach()).abs().sum() / (w0 - b.detach()).abs().sum()))
    assert diff < 1e-14
    assert float((w0 - a.detach()).abs().sum()) > float((w0 - b.detach()).abs().sum())  # L2 under momentum starts slower
