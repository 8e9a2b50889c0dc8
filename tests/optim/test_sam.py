"""SAM (Foret et al.): the two-step update checked against a hand computation of eq. 2-3 (and ASAM's)."""
from __future__ import annotations

import pytest
import torch

from paperzoo.optim import SAM, Lookahead

from test_adamw import grads_at, problem


def hand_sam_step(model, w: list[torch.Tensor], batch, rho: float, lr: float, adaptive: bool) -> list[torch.Tensor]:
    """eps_hat = rho * T^2 g / ||T g|| (T = |w| for ASAM, else 1), then w <- w - lr * grad L(w + eps_hat)."""
    g = grads_at(model, w, batch)
    t = [x.abs() if adaptive else torch.ones_like(x) for x in w]
    norm = torch.sqrt(sum(((ti * gi) ** 2).sum() for ti, gi in zip(t, g)))
    eps = [rho * ti**2 * gi / norm for ti, gi in zip(t, g)]
    g_adv = grads_at(model, [wi + ei for wi, ei in zip(w, eps)], batch)
    return [wi - lr * gi for wi, gi in zip(w, g_adv)]


@pytest.mark.paper("sharpness-aware")
@pytest.mark.parametrize("adaptive", [False, True])
def test_sam_step_is_the_papers_ascent_then_descent(adaptive: bool, record_property) -> None:
    model, batches = problem(4)
    w = [p.detach().clone() for p in model.parameters()]
    params = [torch.nn.Parameter(x.clone()) for x in w]
    opt = SAM(params, torch.optim.SGD, rho=0.5 if adaptive else 0.05, adaptive=adaptive, lr=0.1)
    worst = 0.0
    for batch in batches[:5]:
        expected = hand_sam_step(model, w, batch, 0.5 if adaptive else 0.05, 0.1, adaptive)

        def closure():
            gs = grads_at(model, [p.detach() for p in params], batch)
            for p, g in zip(params, gs):
                p.grad = g

        closure()  # the gradient at w (first pass)
        opt.step(closure)  # ascent to w + eps_hat, gradient there, descent from w
        worst = max(worst, max(float((a.detach() - b).abs().max()) for a, b in zip(params, expected)))
        for a, b in zip(params, expected):
            torch.testing.assert_close(a.detach(), b, rtol=1e-10, atol=1e-13)
        w = expected
    record_property("max_abs_diff_vs_hand_eq_2_3_over_5_steps", worst)


@pytest.mark.paper("sharpness-aware")
def test_eps_hat_has_norm_rho_and_points_along_the_gradient(record_property) -> None:
    """eq. 2 with p = 2: ||eps_hat|| = rho and eps_hat is parallel to g."""
    model, batches = problem(5)
    opt = SAM(model.parameters(), torch.optim.SGD, rho=0.05, lr=0.1)
    torch.nn.functional.mse_loss(model(batches[0][0]), batches[0][1]).backward()
    w = [p.detach().clone() for p in model.parameters()]
    g = [p.grad.clone() for p in model.parameters()]
    opt.first_step()
    eps = [p.detach() - x for p, x in zip(model.parameters(), w)]
    norm = torch.sqrt(sum((e**2).sum() for e in eps))
    record_property("eps_hat_norm", float(norm))
    record_property("target_eps_hat_norm_rho", 0.05)
    assert float(norm) == pytest.approx(0.05, rel=1e-9)
    cosine = sum((e * gi).sum() for e, gi in zip(eps, g)) / (norm * torch.sqrt(sum((gi**2).sum() for gi in g)))
    record_property("cosine_eps_hat_vs_grad", float(cosine))
    assert float(cosine) == pytest.approx(1.0, abs=1e-12)
    opt.restore()
    record_property("max_abs_diff_restored_vs_original_weights",
                    max(float((p.detach() - x).abs().max()) for p, x in zip(model.parameters(), w)))
    assert all(torch.equal(p.detach(), x) for p, x in zip(model.parameters(), w))


def test_sam_over_lookahead_over_adamw_composes() -> None:
    """SAM's base optimizer can itself be Lookahead(AdamW): one SAM step is one inner step of Lookahead."""
    model, batches = problem(6)
    opt = SAM(model.parameters(), lambda ps, **kw: Lookahead(torch.optim.AdamW(ps, **kw), k=2), rho=0.05, lr=1e-2)
    for batch in batches[:4]:
        def closure():
            model.zero_grad()
            loss = torch.nn.functional.mse_loss(model(batch[0]), batch[1])
            loss.backward()
            return loss

        closure()
        opt.step(closure)
    assert opt.inner.fast_steps == 4 and opt.param_groups[0]["rho"] == 0.05
    assert isinstance(opt.state_dict()["lookahead"]["slow"], list)
