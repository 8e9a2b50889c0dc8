"""SGDR against PyTorch's CosineAnnealingWarmRestarts, and the Trainer's SWA against the paper's Algorithm 1."""
from __future__ import annotations

import copy

import pytest
import torch

import paperzoo as pz
from paperzoo.config import apply_overrides
from paperzoo.train import TrainConfig, Trainer
from paperzoo.train.callbacks.swa import SWA
from paperzoo.train.schedules import build_scheduler, sgdr_lr


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


def _swa_trainer(epochs: int = 4, extra=()) -> tuple[Trainer, list[dict[str, torch.Tensor]]]:
    from paperzoo.data import ShapesDataset

    train = ShapesDataset("train", size=64, image_size=16)
    snapshots: list[dict[str, torch.Tensor]] = []

    def keep(trainer: Trainer, row: dict) -> None:  # the weights at each epoch end (a user callback runs after SWA's)
        snapshots.append({k: v.detach().clone() for k, v in trainer.model.named_parameters()})

    cfg = apply_overrides(TrainConfig(epochs=epochs, batch_size=16, lr=0.05, log_every=2),
                          ["swa.start=1", "swa.lr=0.02", *extra])
    t = Trainer(pz.create_model("resnet20_cifar", num_classes=8), train, None, cfg, callbacks=[keep], quiet=True)
    t.fit()
    return t, snapshots


@pytest.mark.paper("swa")
def test_engine_swa_is_algorithm_1_running_average(record_property) -> None:
    """The Trainer's SWA callback: after swa.start, at the end of every cycle (c = 1 epoch) the average becomes
    (w_SWA n + w) / (n + 1) — Algorithm 1 — computed here by hand from the epoch-end weights; the lr is swa.lr."""
    t, snaps = _swa_trainer(epochs=4)
    swa = t.callback(SWA)
    expected: dict[str, torch.Tensor] = {}
    for n, snap in enumerate(snaps[1:]):  # epochs 2..4 are averaged (start = 1)
        expected = {k: v.clone() for k, v in snap.items()} if n == 0 else {k: (expected[k] * n + snap[k]) / (n + 1) for k in snap}
    got = {k: v.detach() for k, v in swa.module.named_parameters()}
    worst = max(float((got[k] - expected[k]).abs().max()) for k in expected)
    record_property("max_abs_diff_swa_average_vs_algorithm_1", worst)
    record_property("n_averaged", swa.n_averaged)
    assert swa.n_averaged == 3 and worst < 1e-6
    assert t.optimizer.param_groups[0]["lr"] == pytest.approx(0.02)


@pytest.mark.paper("swa")
def test_engine_swa_recomputes_batchnorm_statistics(record_property) -> None:
    """After the last epoch the average's BatchNorm statistics are recomputed with one pass over the training
    data (the paper's BN update): the cumulative mean of each batch's mean and unbiased variance, checked here
    by hooking the first BN of the averaged model and redoing that pass by hand."""
    t, _ = _swa_trainer(epochs=3)
    avg = copy.deepcopy(t.callback(SWA).module)
    bn = avg.bn1
    means, variances = [], []

    def record(module, inputs, _):
        x = inputs[0].transpose(0, 1).flatten(1)
        means.append(x.mean(1))
        variances.append(x.var(1, unbiased=True))

    handle = bn.register_forward_hook(record)
    stored_mean, stored_var = bn.running_mean.clone(), bn.running_var.clone()
    avg.train()
    with torch.no_grad():
        for images, _ in t.loader(t.train_data, t.cfg.epochs, shuffle=False):
            avg(images)
    handle.remove()
    diff_mean = float((stored_mean - torch.stack(means).mean(0)).abs().max())
    diff_var = float((stored_var - torch.stack(variances).mean(0)).abs().max())
    record_property("max_abs_diff_running_mean_vs_hand_bn_update", diff_mean)
    record_property("max_abs_diff_running_var_vs_hand_bn_update", diff_var)
    assert diff_mean < 1e-5 and diff_var < 1e-4
    assert not torch.equal(stored_mean, t.model.bn1.running_mean)  # recomputed for the average, not copied
