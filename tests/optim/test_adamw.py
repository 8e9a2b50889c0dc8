"""AdamW (Loshchilov & Hutter): PyTorch's AdamW is the paper's Algorithm 2, step for step."""
from __future__ import annotations

import math

import pytest
import torch

from paperzoo.optim import adamw_reference, normalized_weight_decay


def problem(seed: int = 0) -> tuple[torch.nn.Module, list[tuple[torch.Tensor, torch.Tensor]]]:
    """A small float64 MLP and fixed mini-batches (the gradients differ from step to step)."""
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)).double()
    batches = [(torch.randn(16, 6, generator=g, dtype=torch.float64), torch.randn(16, 3, generator=g, dtype=torch.float64))
               for _ in range(40)]
    return model, batches


def grads_at(model: torch.nn.Module, params: list[torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor]) -> list[torch.Tensor]:
    """Gradients of the MSE loss at ``params`` (loaded into ``model``)."""
    with torch.no_grad():
        for p, q in zip(model.parameters(), params):
            p.copy_(q)
    model.zero_grad()
    torch.nn.functional.mse_loss(model(batch[0]), batch[1]).backward()
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.paper("adamw")
@pytest.mark.parametrize("lr,wd,schedule", [(1e-3, 1e-2, False), (3e-3, 0.1, True), (1e-2, 0.0, True)])
def test_torch_adamw_is_algorithm_2(lr: float, wd: float, schedule: bool, record_property) -> None:
    """40 steps of torch.optim.AdamW (lr = alpha * eta_t, weight_decay w) equal Algorithm 2 with the paper's
    lambda = alpha * w and the same schedule multiplier eta_t."""
    model, batches = problem()
    theirs = [p.detach().clone() for p in model.parameters()]
    ours = [p.clone() for p in theirs]
    leaves = [torch.nn.Parameter(p) for p in theirs]
    opt = torch.optim.AdamW(leaves, lr=lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=wd)
    eta = (lambda t: 0.5 * (1 + math.cos(math.pi * t / 40))) if schedule else (lambda t: 1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, eta)
    state: dict = {}
    worst = 0.0
    for t, batch in enumerate(batches):
        g = grads_at(model, [p.detach() for p in leaves], batch)
        for p, gi in zip(leaves, g):
            p.grad = gi
        opt.step()
        sched.step()
        adamw_reference(ours, g, state, alpha=lr, betas=(0.9, 0.99), eps=1e-8, weight_decay=lr * wd, eta=eta(t))
        worst = max(worst, max(float((a - b.detach()).abs().max() / b.detach().abs().max()) for a, b in zip(ours, leaves)))
    record_property("max_rel_diff_vs_torch_AdamW", worst)
    assert worst < 1e-12, worst


@pytest.mark.paper("adamw")
@pytest.mark.parametrize("name", ["adamw", "adam"])
def test_engine_optimizers_decay_as_the_paper_says(name: str, record_property) -> None:
    """The Trainer's optimizers from the config: ``optimizer=adamw`` takes Algorithm 2's decoupled step
    (w <- w - eta (alpha m_hat / (sqrt(v_hat) + eps) + lambda w), lambda = alpha * weight_decay), ``optimizer=adam``
    Adam with the L2 term added to the gradient (g + w_d w) — the paper's point is that these differ — and neither
    decays biases; each is checked here against the hand-written update for 10 steps."""
    from paperzoo.train import TrainConfig
    from paperzoo.train.optimizers import build_optimizer

    lr, wd = 1e-2, 0.1
    model, batches = problem()
    opt = build_optimizer(TrainConfig(optimizer=name, lr=lr, weight_decay=wd, betas=(0.9, 0.999)), model)
    expected = [p.detach().clone() for p in model.parameters()]
    decayed = [p.ndim > 1 for p in model.parameters()]
    state: dict = {}
    worst = 0.0
    for batch in batches[:10]:
        g = grads_at(model, [p.detach() for p in model.parameters()], batch)
        for p, gi in zip(model.parameters(), g):
            p.grad = gi
        opt.step()
        for i, (w, gi) in enumerate(zip(expected, g)):
            lam = wd if decayed[i] else 0.0
            grad = gi + lam * w if name == "adam" else gi
            st = state.setdefault(i, {"m": torch.zeros_like(w), "v": torch.zeros_like(w), "t": 0})
            st["t"] += 1
            st["m"] = 0.9 * st["m"] + 0.1 * grad
            st["v"] = 0.999 * st["v"] + 0.001 * grad * grad
            m_hat, v_hat = st["m"] / (1 - 0.9 ** st["t"]), st["v"] / (1 - 0.999 ** st["t"])
            decoupled = lr * lam * w if name == "adamw" else 0.0
            expected[i] = w - lr * m_hat / (v_hat.sqrt() + 1e-8) - decoupled
        worst = max(worst, max(float((a - b.detach()).abs().max()) for a, b in zip(expected, model.parameters())))
    record_property("max_abs_diff_vs_hand_update", worst)
    assert worst < 1e-12


@pytest.mark.paper("adamw")
def test_normalized_weight_decay(record_property) -> None:
    """Appendix B.1: lambda = lambda_norm * sqrt(b / (B T)); e.g. b = 128, B = 50,000, T = 100 epochs."""
    record_property("lambda_b128_B50000_T100", normalized_weight_decay(0.05, 128, 50_000, 100))
    record_property("lambda_formula_b128_B50000_T100", 0.05 * math.sqrt(128 / 5_000_000))
    assert normalized_weight_decay(0.05, 128, 50_000, 100) == pytest.approx(0.05 * math.sqrt(128 / 5_000_000))
    # doubling the run length divides the decay by sqrt(2); doubling the batch multiplies it by sqrt(2)
    base = normalized_weight_decay(0.05, 128, 50_000, 100)
    record_property("ratio_lambda_T200_over_T100", normalized_weight_decay(0.05, 128, 50_000, 200) / base)
    record_property("ratio_lambda_b256_over_b128", normalized_weight_decay(0.05, 256, 50_000, 100) / base)
    assert normalized_weight_decay(0.05, 128, 50_000, 200) == pytest.approx(base / math.sqrt(2))
    assert normalized_weight_decay(0.05, 256, 50_000, 100) == pytest.approx(base * math.sqrt(2))
