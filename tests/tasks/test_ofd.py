"""OFD (Heo et al., 2019): the closed-form margin E[x | x < 0] from BN statistics against a Monte-Carlo estimate, the
partial L2 on hand cases, both against a fixture from the official repository (tests/fixtures/ofd/README.md), the
pre-ReLU distillation positions, and `paperzoo train --task ofd`."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import paperzoo as pz
from helpers import ROOT, rel_err
from paperzoo.cli import main
from paperzoo.tasks.distillation import OFDTask, OverhaulDistiller, bn_margin, partial_l2, prerelu_positions

FIXTURE = ROOT / "tests" / "fixtures" / "ofd" / "ofd_loss.safetensors"


@pytest.mark.paper("ofd")
def test_margin_is_the_mean_of_negative_responses(record_property) -> None:
    """m = E[x | x < 0] for x ~ N(beta, gamma^2) in closed form equals the mean of the negative samples of 2 million
    draws, for positive and negative gamma and means on both sides of zero."""
    gamma = torch.tensor([1.0, -0.5, 2.0, 0.3])
    beta = torch.tensor([0.0, 0.4, -1.0, 0.5])
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2_000_000, 4, generator=g, dtype=torch.float64) * gamma.double().abs() + beta.double()
    mc = torch.where(x < 0, x, torch.zeros_like(x)).sum(0) / (x < 0).sum(0)
    ours = bn_margin(gamma, beta)
    err = rel_err(ours.double(), mc)
    record_property("monte_carlo_rel_err", err)
    assert err < 5e-3, (ours, mc)
    assert ours[0].item() == pytest.approx(-math.sqrt(2 / math.pi), rel=1e-6)  # half-normal: -sqrt(2/pi) sigma
    assert bn_margin(torch.tensor([0.5]), torch.tensor([4.0])).item() == pytest.approx(-1.5)  # P(x<0) < 0.001: -3|gamma|


@pytest.mark.paper("ofd")
def test_margin_and_partial_l2_equal_the_official_fixture() -> None:
    """The official get_margin_from_BN and distillation_loss (fixture) on the same BN parameters and features."""
    f = load_file(str(FIXTURE))
    margin = bn_margin(f["bn_weight"], f["bn_bias"])
    assert rel_err(margin, f["margin"]) < 1e-5
    loss = partial_l2(f["source"], f["target"], margin.view(1, -1, 1, 1))
    assert rel_err(loss.reshape(1), f["loss"]) < 1e-5


@pytest.mark.paper("ofd")
def test_partial_l2_on_hand_cases() -> None:
    """Teacher -1 with margin -0.5 becomes -0.5: a student at -2 (below, both negative) costs nothing, at 0 costs 0.25;
    a positive teacher 1 costs (1 - S)^2 from either side; a student above a negative target is pulled down."""
    m = torch.tensor(-0.5)
    cases = [(-2.0, -1.0, 0.0), (0.0, -1.0, 0.25), (2.0, 1.0, 1.0), (0.0, 1.0, 1.0), (-0.2, -3.0, 0.09), (-0.6, -0.55, 0.0)]
    for s, t, expected in cases:
        assert partial_l2(torch.tensor([s]), torch.tensor([t]), m).item() == pytest.approx(expected, abs=1e-7), (s, t)


def test_positions_are_the_stage_outputs_before_relu() -> None:
    """For the CIFAR ResNet the three positions are the last blocks' pre-ReLU sums: relu(captured) is each stage's
    output, and they contain negative values (what the margin ReLU and partial L2 act on); the distiller's loss is the
    stage-weighted (1/4, 1/2, 1) sum of partial_l2 over connector(S) and the teacher's captured T."""
    teacher = pz.create_model("resnet20_cifar", num_classes=3).eval()
    student = pz.create_model("resnet20_cifar", num_classes=3, width=4).eval()
    assert [bn.num_features for _, bn in prerelu_positions(teacher)] == [16, 32, 64]
    d = OverhaulDistiller(student, teacher).eval()
    x = torch.randn(2, 3, 16, 16)
    _, t_feats = d._teacher_hooks.run(teacher, x)
    s_out, s_feats = d._student_hooks.run(student, x)
    stage = teacher.act1(teacher.bn1(teacher.conv1(x)))
    for i, layer in enumerate(teacher.stages):
        stage = layer(stage)
        assert torch.allclose(torch.relu(t_feats[i]), stage, atol=1e-6) and (t_feats[i] < 0).any()
    _, _, loss = d(student, x)
    manual = sum(partial_l2(c(s), t, m) * w for c, s, t, m, w in zip(d.connectors, s_feats, t_feats, d.margins(), (0.25, 0.5, 1)))
    assert loss.item() == pytest.approx(manual.item(), rel=1e-5)
    assert torch.allclose(s_out, student(x))


def test_paperzoo_train_task_ofd(tmp_path: Path) -> None:
    """`paperzoo train --task ofd` trains the student and its connectors (CE + partial L2 / batch / 1000)."""
    from safetensors.torch import save_file

    teacher = tmp_path / "teacher.safetensors"
    save_file(pz.create_model("resnet20_cifar", num_classes=8).state_dict(), str(teacher))
    out = tmp_path / "run"
    main(["train", "--model", "resnet20_cifar", "--task", "ofd", "--teacher", "resnet20_cifar", "--teacher-weights",
          str(teacher), "--epochs", "1", "--batch-size", "8", "--out", str(out), "data.size=16", "data.val_size=8",
          "data.image_size=16", "model_args.width=4"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(r["feature_loss"] > 0 and math.isfinite(r["loss"]) for r in rows if r["kind"] == "step")
    assert 0 <= rows[-1]["val_acc"] <= 1
    with pytest.raises(pz.errors.ConfigError):
        OFDTask(pz.create_model("resnet20_cifar"), weight=-1)
