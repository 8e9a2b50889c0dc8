"""Lookahead (Zhang et al.): checked step for step against the paper's Algorithm 1, written out here."""
from __future__ import annotations

import pytest
import torch

from paperzoo.optim import Lookahead

from test_adamw import grads_at, problem


def algorithm_1(make_inner, k: int, alpha: float, steps: int) -> list[list[torch.Tensor]]:
    """The paper's loop: phi_0 = theta_0; for each outer step, theta starts at phi, takes k steps of the
    inner optimizer A, then phi <- phi + alpha (theta_k - phi). Returns theta after every inner step."""
    model, batches = problem(2)
    theta = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    phi = [p.detach().clone() for p in theta]                          # slow weights start at theta_0
    inner = make_inner(theta)                                          # A keeps its state across outer steps
    trajectory, t = [], 0
    while t < steps:
        with torch.no_grad():
            for p, s in zip(theta, phi):
                p.copy_(s)                                             # theta_{t,0} <- phi_{t-1}
        for _ in range(k):
            for p, g in zip(theta, grads_at(model, [p.detach() for p in theta], batches[t % len(batches)])):
                p.grad = g
            inner.step()
            t += 1
            trajectory.append([p.detach().clone() for p in theta])
        phi = [s + alpha * (p.detach() - s) for s, p in zip(phi, theta)]  # phi_t = phi_{t-1} + alpha (theta_{t,k} - phi_{t-1})
        trajectory[-1] = [s.clone() for s in phi]                      # after the k-th step the weights are phi_t
    return trajectory[:steps]


def ours(make_inner, k: int, alpha: float, steps: int) -> list[list[torch.Tensor]]:
    model, batches = problem(2)
    theta = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    opt = Lookahead(make_inner(theta), k=k, alpha=alpha)
    trajectory = []
    for t in range(steps):
        for p, g in zip(theta, grads_at(model, [p.detach() for p in theta], batches[t % len(batches)])):
            p.grad = g
        opt.step()
        trajectory.append([p.detach().clone() for p in theta])
    return trajectory


INNER = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9),
    "adam": lambda ps: torch.optim.Adam(ps, lr=1e-2),
}


@pytest.mark.paper("lookahead")
@pytest.mark.parametrize("inner", sorted(INNER))
@pytest.mark.parametrize("k,alpha", [(5, 0.5), (3, 0.8)])
def test_lookahead_is_algorithm_1(inner: str, k: int, alpha: float, record_property) -> None:
    reference = algorithm_1(INNER[inner], k, alpha, 4 * k + 2)
    mine = ours(INNER[inner], k, alpha, 4 * k + 2)
    record_property("max_abs_diff_vs_algorithm_1",
                    max(float((x - y).abs().max()) for a, b in zip(mine, reference) for x, y in zip(a, b)))
    for step, (a, b) in enumerate(zip(mine, reference)):
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-14, msg=f"step {step + 1}")


@pytest.mark.paper("lookahead")
def test_first_synchronisation_pulls_towards_the_initial_weights(record_property) -> None:
    """After the first k inner steps the weights are phi_1 = theta_0 + alpha (theta_k - theta_0): the slow weights
    start at the initial weights theta_0 (Algorithm 1), not one inner step later (torch-optimizer's variant).
    theta_k comes from the inner optimizer run alone, by hand."""
    k, alpha = 5, 0.5
    model, batches = problem(2)
    theta0 = [p.detach().clone() for p in model.parameters()]
    alone = [torch.nn.Parameter(p.clone()) for p in theta0]
    plain = INNER["sgd"](alone)
    wrapped = [torch.nn.Parameter(p.clone()) for p in theta0]
    opt = Lookahead(INNER["sgd"](wrapped), k=k, alpha=alpha)
    for t in range(k):
        for params, step in ((alone, plain.step), (wrapped, opt.step)):
            for p, g in zip(params, grads_at(model, [p.detach() for p in params], batches[t])):
                p.grad = g
            step()
    expected = [t0 + alpha * (tk.detach() - t0) for t0, tk in zip(theta0, alone)]
    diff = max(float((w.detach() - e).abs().max()) for w, e in zip(wrapped, expected))
    record_property("max_abs_diff_vs_theta0_plus_alpha_step", diff)
    assert diff < 1e-12
    assert max(float((w.detach() - tk.detach()).abs().max()) for w, tk in zip(wrapped, alone)) > 1e-4  # it did move back


def test_lookahead_state_round_trip() -> None:
    model, batches = problem(3)
    opt = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9), k=4, alpha=0.5)
    for batch in batches[:6]:
        model.zero_grad()
        torch.nn.functional.mse_loss(model(batch[0]), batch[1]).backward()
        opt.step()
    state = opt.state_dict()
    other = Lookahead(torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    other.load_state_dict(state)
    assert (other.k, other.fast_steps) == (4, 6) and all(torch.equal(a, b) for a, b in zip(other.slow, opt.slow))
    assert other.param_groups is other.inner.param_groups
