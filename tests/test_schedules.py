"""SGDR and SWA: the papers' equations against PyTorch's CosineAnnealingWarmRestarts and swa_utils."""
from __future__ import annotations

import pytest
import torch
from torch.optim.swa_utils import AveragedModel, update_bn

from paperzoo.config import apply_overrides
from paperzoo.train import TrainConfig
from paperzoo.train.schedules import build_scheduler, sgdr_lr
from paperzoo.train.swa import bn_update_reference, swa_average_reference


def lrs(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return out


@pytest.mark.paper("sgdr")
@pytest.mark.parametrize("t0,t_mult,eta_min", [(10, 1, 0.0), (7, 2, 1e-3), (5, 3, 0.01)])
def test_sgdr_equation_5_equals_torch(t0: int, t_mult: int, eta_min: float, record_property) -> None:
    """eta_t = eta_min + (eta_max - eta_min)(1 + cos(pi T_cur / T_i)) / 2 with T_i = t0 t_mult^i, for 1500 steps."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.4)
    torch_lrs = lrs(torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=t0, T_mult=t_mult, eta_min=eta_min), 1500)
    ours = [sgdr_lr(t, 0.4, eta_min, t0, t_mult) for t in range(1500)]
    record_property("max_abs_diff_lr_vs_torch_CosineAnnealingWarmRestarts", max(abs(a - b) for a, b in zip(torch_lrs, ours)))
    assert max(abs(a - b) for a, b in zip(torch_lrs, ours)) < 1e-15
    restarts = [t for t in range(1, 1500) if ours[t] > ours[t - 1]]
    expected, start, length = [], 0, t0
    while start + length < 1500:
        start += length
        expected.append(start)
        length *= t_mult
    record_property("num_restarts", len(restarts))
    record_property("num_restarts_at_expected_steps", len(set(restarts) & set(expected)))
    record_property("num_expected_restarts", len(expected))
    assert restarts == expected


@pytest.mark.paper("sgdr")
def test_engine_sgdr_schedule_with_warmup(record_property) -> None:
    """schedule=sgdr in the engine: linear warmup, then eq. 5 with cycles of sgdr.t0 epochs, in steps."""
    cfg = apply_overrides(TrainConfig(lr=0.2, min_lr=0.002), ["schedule=sgdr", "sgdr.t0=2", "sgdr.t_mult=2", "warmup_epochs=1"])
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    got = lrs(build_scheduler(cfg, opt, total_steps=100, steps_per_epoch=5), 60)
    expected = [0.2 * (t + 1) / 5 for t in range(5)] + [sgdr_lr(t, 0.2, 0.002, 10, 2) for t in range(55)]
    record_property("max_abs_diff_lr_vs_warmup_then_eq_5", max(abs(a - b) for a, b in zip(got, expected)))
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.paper("swa")
def test_swa_running_average_equals_averaged_model(record_property) -> None:
    """Algorithm 1's w_SWA <- (w_SWA n + w) / (n + 1) over 6 models equals torch's AveragedModel (and the mean)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2)).double()
    avg = AveragedModel(net)
    ours, seen = None, []
    for n in range(6):
        with torch.no_grad():
            for p in net.parameters():
                p.normal_()
        w = [p.detach().clone() for p in net.parameters()]
        seen.append(w)
        avg.update_parameters(net)
        ours = [x.clone() for x in w] if ours is None else swa_average_reference(ours, w, n)
    record_property("max_abs_diff_vs_torch_AveragedModel",
                    max(float((a.detach() - b).abs().max()) for a, b in zip(avg.module.parameters(), ours)))
    record_property("max_abs_diff_vs_mean_of_snapshots",
                    max(float((b - torch.stack(snapshots).mean(0)).abs().max()) for b, *snapshots in zip(ours, *seen)))
    for a, b, *snapshots in zip(avg.module.parameters(), ours, *seen):
        torch.testing.assert_close(a.detach(), b, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(b, torch.stack(snapshots).mean(0), rtol=1e-12, atol=1e-14)


@pytest.mark.paper("swa")
def test_bn_update_equals_torch_update_bn(record_property) -> None:
    """Recomputing BatchNorm statistics for the averaged weights: one pass, the average of the batch
    statistics, equals torch.optim.swa_utils.update_bn."""
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3), torch.nn.BatchNorm2d(6), torch.nn.ReLU(),
                              torch.nn.Conv2d(6, 4, 3), torch.nn.BatchNorm2d(4)).double()
    batches = [torch.randn(8, 3, 9, 9, dtype=torch.float64) * 2 + 1 for _ in range(5)]
    theirs = AveragedModel(net).module
    update_bn(batches, theirs)
    ours = AveragedModel(net).module
    bn_update_reference(ours, batches)
    bns = [(a, b) for a, b in zip(ours.modules(), theirs.modules()) if isinstance(a, torch.nn.BatchNorm2d)]
    record_property("max_abs_diff_running_mean_vs_torch_update_bn",
                    max(float((a.running_mean - b.running_mean).abs().max()) for a, b in bns))
    record_property("max_abs_diff_running_var_vs_torch_update_bn",
                    max(float((a.running_var - b.running_var).abs().max()) for a, b in bns))
    for a, b in zip(ours.modules(), theirs.modules()):
        if isinstance(a, torch.nn.BatchNorm2d):
            torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-12, atol=1e-14)
            torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-12, atol=1e-14)
