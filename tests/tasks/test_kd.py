"""KD (Hinton et al., 2015): ``kd_loss`` against torchdistill's KDLoss (its alpha weights the hard term), the paper's
high-temperature limit (the T^2-scaled soft gradient tends to logit matching, eq. 4), and `paperzoo train --task kd`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import paperzoo as pz
from helpers import rel_err
from paperzoo.cli import main
from paperzoo.errors import ConfigError
from paperzoo.tasks.distillation import KDTask, kd_loss


def _logits(seed: int = 0, b: int = 6, n: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, n, generator=g) * 3, torch.randn(b, n, generator=g) * 3, torch.randint(0, n, (b,), generator=g)


@pytest.mark.paper("kd")
def test_kd_loss_and_gradient_equal_torchdistill_kdloss() -> None:
    """Loss and student gradient equal torchdistill's KDLoss at T=4 with its weights swapped (its alpha weights CE):
    ours alpha=0.7 <-> theirs alpha=0.3, beta=0.7; and the soft term alone (no labels) equals its beta=1 soft term."""
    from torchdistill.losses.mid_level import KDLoss

    z, v, y = _logits()
    ref_loss = KDLoss("fc", "output", "fc", "output", temperature=4.0, alpha=0.3)
    zs = z.clone().requires_grad_(True)
    ours, _, _ = kd_loss(zs, v, y, temperature=4.0, alpha=0.7)
    ours.backward()
    zr = z.clone().requires_grad_(True)
    theirs = ref_loss({"fc": {"output": zr}}, {"fc": {"output": v}}, y)
    theirs.backward()
    assert rel_err(ours.detach(), theirs.detach()) < 1e-6
    assert rel_err(zs.grad, zr.grad) < 1e-5
    soft_only, _, _ = kd_loss(z, v, None, temperature=4.0)
    ref_soft = KDLoss("fc", "output", "fc", "output", temperature=4.0, alpha=0.0, beta=1.0)
    assert rel_err(soft_only, ref_soft({"fc": {"output": z}}, {"fc": {"output": v}}, y) * 16) < 1e-6  # theirs: no T^2


@pytest.mark.paper("kd")
def test_high_temperature_limit_is_logit_matching() -> None:
    """Eq. 4: for zero-mean logits and large T, the gradient of the T^2-scaled soft term per logit is
    (z_i - v_i) / N (per sample; batchmean divides by the batch B too) -- the gradient of matching logits,
    1/(2N) ||z - v||^2. The gap closes as 1/T (measured at T = 100 and 1000); at T=1 the two differ by far."""
    z, v, _ = _logits(1)
    z, v = z - z.mean(1, keepdim=True), v - v.mean(1, keepdim=True)
    b, n = z.shape
    matching = (z - v) / (n * b)
    grads = {}
    for t in (1.0, 100.0, 1000.0):
        zs = z.clone().requires_grad_(True)
        kd_loss(zs, v, None, temperature=t)[0].backward()
        grads[t] = zs.grad
    gap100 = float((grads[100.0] - matching).abs().max() / matching.abs().max())
    err = rel_err(grads[1000.0], matching)
    assert err < 3e-3, err
    assert 5 < gap100 / err < 20  # the O(1/T) approach of eq. 4
    assert float((grads[1.0] - matching).abs().max() / matching.abs().max()) > 0.3


def test_hard_and_soft_weights_and_bad_settings() -> None:
    """alpha=0 is cross-entropy alone, alpha=1 the soft term alone; bad T or alpha is a ConfigError."""
    z, v, y = _logits(2)
    assert kd_loss(z, v, y, 3.0, 0.0)[0].item() == pytest.approx(torch.nn.functional.cross_entropy(z, y).item(), rel=1e-6)
    total, soft, _ = kd_loss(z, v, y, 3.0, 1.0)
    assert total.item() == pytest.approx(soft.item(), rel=1e-6) and soft.item() > 0
    assert kd_loss(v, v, None, 3.0)[0].abs().item() < 1e-6  # a student equal to its teacher has no soft loss
    for bad in (dict(temperature=0.0), dict(alpha=1.5)):
        with pytest.raises(ConfigError):
            kd_loss(z, v, y, **bad)


def test_kd_task_freezes_the_teacher_and_trains_the_student() -> None:
    teacher = pz.create_model("resnet20_cifar", num_classes=4)
    student = pz.create_model("resnet20_cifar", num_classes=4)
    task = KDTask(teacher, temperature=4.0, alpha=0.9)
    teacher.train()
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    before = {k: t.clone() for k, t in teacher.state_dict().items()}
    loss, logs = task.loss(student.train(), (x, y))
    loss.backward()
    assert all(torch.equal(before[k], t) for k, t in teacher.state_dict().items())  # eval mode: BN stats untouched
    assert all(p.grad is None for p in teacher.parameters())
    assert student.fc.weight.grad.abs().sum() > 0 and {"soft_loss", "hard_loss", "acc"} <= set(logs)


def test_paperzoo_train_task_kd(capsys, tmp_path: Path) -> None:
    """`paperzoo train --task kd --teacher NAME --teacher-weights PATH` runs the KD loss (T=4, alpha=0.9 by default);
    without teacher weights it is one line and exit 2."""
    from safetensors.torch import save_file

    teacher = tmp_path / "teacher.safetensors"
    save_file(pz.create_model("resnet20_cifar", num_classes=8).state_dict(), str(teacher))
    out = tmp_path / "run"
    args = ["train", "--model", "resnet20_cifar", "--task", "kd", "--teacher", "resnet20_cifar", "--teacher-weights",
            str(teacher), "--epochs", "1", "--batch-size", "16", "--out", str(out), "data.size=32", "data.val_size=16",
            "data.image_size=16"]
    main(args)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all("soft_loss" in r and math.isfinite(r["loss"]) for r in rows if r["kind"] == "step")
    assert "tau: 4.0" in (out / "config.yaml").read_text()
    with pytest.raises(SystemExit) as exit_:
        main(args[:7] + args[9:])
    assert exit_.value.code == 2 and "--teacher-weights" in capsys.readouterr().err
