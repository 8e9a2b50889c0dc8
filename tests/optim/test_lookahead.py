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


def ours(make_inner, k: int, alpha: float, steps: int, late_start: bool = False) -> list[list[torch.Tensor]]:
    model, batches = problem(2)
    theta = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    opt = Lookahead(make_inner(theta), k=k, alpha=alpha)
    trajectory = []
    for t in range(steps):
        for p, g in zip(theta, grads_at(model, [p.detach() for p in theta], batches[t % len(batches)])):
            p.grad = g
        if late_start and t == 0:  # torch-optimizer's variant: slow weights copied after the first inner step
            opt.inner.step()
            opt.slow = [p.detach().clone() for p in theta]
            opt.fast_steps = 1
        else:
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
def test_slow_weights_start_at_the_initial_weights_not_one_step_later(record_property) -> None:
    """Starting the slow weights after the first inner step (as torch-optimizer does) is a different algorithm."""
    reference = algorithm_1(INNER["sgd"], 5, 0.5, 5)
    late = ours(INNER["sgd"], 5, 0.5, 5, late_start=True)
    diff = max(float((x - y).abs().max()) for x, y in zip(late[-1], reference[-1]))
    record_property("max_abs_diff_late_start_vs_algorithm_1", diff)
    assert diff > 1e-4


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
