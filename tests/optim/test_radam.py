"""RAdam (Liu et al.): PyTorch's RAdam is the paper's Algorithm 2, step for step (threshold aside)."""
from __future__ import annotations

import pytest
import torch

from paperzoo.optim import radam_reference

from test_adamw import grads_at, problem


def run_both(weight_decay: float, decoupled: bool, threshold: float, steps: int = 40, betas=(0.9, 0.999)) -> list[float]:
    model, batches = problem(1)
    leaves = [torch.nn.Parameter(p.detach().clone()) for p in model.parameters()]
    ours = [p.detach().clone() for p in leaves]
    opt = torch.optim.RAdam(leaves, lr=1e-2, betas=betas, eps=1e-8, weight_decay=weight_decay,
                            decoupled_weight_decay=decoupled)
    state: dict = {}
    errors = []
    for batch in batches[:steps]:
        g_theirs = grads_at(model, [p.detach() for p in leaves], batch)
        g_ours = grads_at(model, ours, batch)
        for p, g in zip(leaves, g_theirs):
            p.grad = g
        opt.step()
        radam_reference(ours, g_ours, state, alpha=1e-2, betas=betas, eps=1e-8, weight_decay=weight_decay,
                        decoupled=decoupled, rho_threshold=threshold)
        errors.append(max(float((a - b.detach()).abs().max() / b.detach().abs().max()) for a, b in zip(ours, leaves)))
    return errors


@pytest.mark.paper("radam")
@pytest.mark.parametrize("weight_decay,decoupled", [(0.0, False), (1e-2, False), (1e-2, True)])
def test_torch_radam_is_algorithm_2(weight_decay: float, decoupled: bool, record_property) -> None:
    """40 steps, covering both the un-rectified start (rho_t <= 5) and the rectified updates."""
    errors = run_both(weight_decay, decoupled, threshold=5.0)
    record_property("max_rel_diff_vs_torch_RAdam", max(errors))
    assert max(errors) < 1e-12, max(errors)


@pytest.mark.paper("radam")
def test_papers_threshold_of_4_differs_only_where_4_lt_rho_le_5(record_property) -> None:
    """The paper rectifies once rho_t > 4, PyTorch (and the authors' code) once rho_t > 5. With beta2 = 0.999,
    rho_5 = 4.99: the two agree for steps 1-4, split at step 5, and everything after inherits the split."""
    rho_inf = 2 / (1 - 0.999) - 1
    rho = [rho_inf - 2 * t * 0.999**t / (1 - 0.999**t) for t in range(1, 8)]
    record_property("rho_4", rho[3])
    record_property("rho_5", rho[4])
    record_property("rho_6", rho[5])
    assert rho[3] < 4 < rho[4] <= 5 < rho[5]
    errors = run_both(0.0, False, threshold=4.0, steps=6)
    record_property("max_rel_diff_threshold_4_vs_torch_steps_1_4", max(errors[:4]))
    record_property("rel_diff_threshold_4_vs_torch_step_5", errors[4])
    assert max(errors[:4]) < 1e-12 and errors[4] > 1e-6
