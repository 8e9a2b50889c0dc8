"""DeiT's distillation task (paperzoo.tasks.distillation): its loss against hand-computed values, which head
learns from what, and a tiny end-to-end `paperzoo train ... distill.teacher=...` run."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import paperzoo as pz
from paperzoo.cli import main
from paperzoo.errors import ConfigError, PaperzooError
from paperzoo.tasks.distillation import DeiTDistillationTask

CLS = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
DIST = torch.tensor([[0.0, 0.0, 3.0], [1.0, 0.0, 0.0]])
TEACHER = torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 2.0]])  # its decisions: classes 1 and 2
Y = torch.tensor([0, 1])


class Fixed(nn.Module):
    """A "model" that returns given logits whatever the input (a student with two heads, or a teacher)."""

    def __init__(self, *outputs: torch.Tensor) -> None:
        super().__init__()
        self.outputs = outputs

    def forward(self, x: torch.Tensor):
        return self.outputs if len(self.outputs) > 1 else self.outputs[0]


def ce(logits: list[float], target: int) -> float:
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


@pytest.mark.paper("deit")
def test_hard_distillation_loss_is_half_label_half_teacher_decision() -> None:
    """L = 1/2 CE(class head, y) + 1/2 CE(distillation head, argmax Z_t), computed here by hand."""
    task = DeiTDistillationTask(Fixed(TEACHER))
    loss, logs = task.loss(Fixed(CLS, DIST), (torch.zeros(2, 3, 4, 4), Y))
    label = (ce([2, 0, 0], 0) + ce([0, 1, 0], 1)) / 2
    teacher = (ce([0, 0, 3], 1) + ce([1, 0, 0], 2)) / 2
    assert loss.item() == pytest.approx(0.5 * label + 0.5 * teacher, rel=1e-6)
    assert logs["label_loss"].item() == pytest.approx(label, rel=1e-6)
    assert logs["distill_loss"].item() == pytest.approx(teacher, rel=1e-6)
    assert logs["acc"].item() == 0.0  # fused heads: (1, 0, 1.5) -> 2 and (0.5, 0.5, 0) -> 0; labels 0 and 1


@pytest.mark.paper("deit")
def test_soft_distillation_loss_is_tau_squared_kl() -> None:
    """L = (1 - a) CE(class head, y) + a tau^2 KL(psi(Z_t/tau) || psi(Z_dist/tau)), by hand (a=0.3, tau=2)."""
    task = DeiTDistillationTask(Fixed(TEACHER), kind="soft", alpha=0.3, tau=2.0)
    loss, _ = task.loss(Fixed(CLS, DIST), (torch.zeros(2, 3, 4, 4), Y))

    def softmax(v: list[float]) -> list[float]:
        e = [math.exp(x) for x in v]
        return [x / sum(e) for x in e]

    kl = 0.0
    for s, t in zip(DIST.tolist(), TEACHER.tolist()):
        p, q = softmax([x / 2 for x in t]), softmax([x / 2 for x in s])
        kl += sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)) / 2
    label = (ce([2, 0, 0], 0) + ce([0, 1, 0], 1)) / 2
    assert loss.item() == pytest.approx(0.7 * label + 0.3 * 4 * kl, rel=1e-6)


def test_one_head_student_uses_its_output_for_both_terms() -> None:
    """Without a distillation token (a CNN, plain DeiT), distillation goes through the only head."""
    task = DeiTDistillationTask(Fixed(TEACHER))
    loss, _ = task.loss(Fixed(CLS), (torch.zeros(2, 3, 4, 4), Y))
    expected = 0.5 * (ce([2, 0, 0], 0) + ce([0, 1, 0], 1)) / 2 + 0.5 * (ce([2, 0, 0], 1) + ce([0, 1, 0], 2)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.paper("deit")
def test_distillation_token_learns_from_the_teacher_and_class_token_from_labels() -> None:
    """With alpha=1 only the distillation head gets gradient, with alpha=0 only the class head; the student
    is switched to two-head training by the task, and evaluation averages the heads."""
    student = pz.create_model("deit_tiny_distilled_patch16_224", num_classes=3, img_size=16, patch_size=8,
                              embed_dim=32, depth=1, num_heads=2)
    teacher = pz.create_model("resnet20_cifar", num_classes=3)
    x = torch.randn(4, 3, 16, 16)
    y = torch.tensor([0, 1, 2, 0])
    for alpha, learns, idle in ((1.0, "head_dist", "head"), (0.0, "head", "head_dist")):
        student.zero_grad()
        loss, _ = DeiTDistillationTask(teacher, alpha=alpha).loss(student.train(), (x, y))
        loss.backward()
        assert getattr(student, learns).weight.grad.abs().sum() > 0
        assert getattr(student, idle).weight.grad.abs().sum() == 0
    assert student.distilled_training
    cls, dist = student(x)
    with torch.no_grad():
        assert torch.allclose(student.eval()(x), (cls + dist) / 2, atol=1e-6)


def test_bad_settings_are_user_errors() -> None:
    with pytest.raises(PaperzooError, match="distillation type"):
        DeiTDistillationTask(Fixed(TEACHER), kind="medium")
    with pytest.raises(ConfigError, match="alpha"):
        DeiTDistillationTask(Fixed(TEACHER), alpha=1.5)


@pytest.mark.paper("deit")
def test_paperzoo_train_with_a_cnn_teacher(capsys, tmp_path: Path) -> None:
    """End to end through the CLI: a (saved) ResNet-20 teacher distils into a reduced DeiT⚗ for one epoch."""
    from safetensors.torch import save_file

    teacher = tmp_path / "teacher.safetensors"
    save_file(pz.create_model("resnet20_cifar", num_classes=8).state_dict(), str(teacher))
    out = tmp_path / "run"
    args = ["train", "--model", "deit_tiny_distilled_patch16_224", "--epochs", "1", "--batch-size", "32", "--out", str(out),
            "data.size=64", "data.val_size=32", "data.image_size=16", "model_args.img_size=16", "model_args.patch_size=4",
            "model_args.embed_dim=32", "model_args.depth=2", "model_args.num_heads=2", "optimizer=adamw", "lr=1e-3",
            "distill.teacher=resnet20_cifar", f"distill.teacher_weights={teacher}"]
    main(args)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if r["kind"] == "step"]
    assert steps and all("distill_loss" in r and math.isfinite(r["loss"]) for r in steps)
    assert 0.0 <= rows[-1]["val_acc"] <= 1.0
    with pytest.raises(SystemExit):
        main(args[:-1] + ["distill.teacher_weights=none"])
    assert "distill.teacher_weights" in capsys.readouterr().err
