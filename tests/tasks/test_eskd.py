"""ESKD (Cho & Hariharan, 2019): the protocol -- the teacher is the checkpoint of the chosen epoch of its own run (not
its final weights, not a mid-epoch checkpoint), and the student's loss is the KD loss of that teacher's logits."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import paperzoo as pz
from paperzoo.cli import main
from paperzoo.errors import ConfigError, WeightsError
from paperzoo.tasks.distillation import ESKDTask, early_stopped_teacher, epoch_checkpoints, kd_loss
from paperzoo.train import TrainConfig, Trainer


class _Labelled(torch.utils.data.Dataset):
    num_classes, in_chans = 3, 3

    def __len__(self) -> int:
        return 12

    def __getitem__(self, i: int):
        return torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(i)) + i % 3, i % 3


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory) -> tuple[Path, dict[int, dict[str, torch.Tensor]]]:
    """A 3-epoch teacher run (4 steps an epoch, mid-epoch checkpoints every 3 steps), with its weights recorded at
    each epoch end."""
    out = tmp_path_factory.mktemp("teacher")
    torch.manual_seed(0)
    model = pz.create_model("resnet20_cifar", num_classes=3, width=4)
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def record(trainer, row) -> None:
        seen[trainer.epoch] = {k: v.clone() for k, v in trainer.model.state_dict().items()}

    cfg = TrainConfig(model="resnet20_cifar", model_args={"width": 4}, epochs=3, batch_size=3, device="cpu", lr=0.05,
                      checkpoint_every=3, keep_checkpoints=100)
    Trainer(model, _Labelled(), None, cfg, out=out, quiet=True, callbacks=[record]).fit()
    return out, seen


@pytest.mark.paper("eskd")
def test_the_teacher_is_the_checkpoint_of_the_chosen_epoch(teacher_run) -> None:
    """early_stopped_teacher(run, e) holds exactly the weights the teacher had at the end of epoch e (e = 1, 2, 3), the
    last one equal to the run's final model; the mid-epoch checkpoints (steps 3, 6, 9) are never chosen."""
    from safetensors.torch import load_file

    run, seen = teacher_run
    assert sorted(epoch_checkpoints(run)) == [1, 2, 3]
    assert len(list((run / "checkpoints").iterdir())) == 6  # 3 epoch ends + 3 mid-epoch checkpoints
    for epoch in (1, 2, 3):
        weights = load_file(str(early_stopped_teacher(run, epoch)))
        assert all(torch.equal(weights[k], v) for k, v in seen[epoch].items()), epoch
    final = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(final[k], v) for k, v in seen[3].items())
    assert not all(torch.equal(seen[1][k], v) for k, v in seen[3].items())  # the epochs differ
    with pytest.raises(WeightsError, match="epochs kept: 1, 2, 3"):
        early_stopped_teacher(run, 7)


@pytest.mark.paper("eskd")
def test_eskd_task_distils_the_early_teacher_with_the_kd_loss(teacher_run) -> None:
    """The task built from `--task eskd --teacher-weights RUN distill.teacher_epoch=1` holds the epoch-1 teacher, and its
    loss is kd_loss(student logits, epoch-1 teacher logits, labels, T=4, alpha=0.9) -- not the final teacher's."""
    run, seen = teacher_run
    cfg = TrainConfig(model="resnet20_cifar", task="eskd")
    cfg.distill.teacher, cfg.distill.teacher_weights, cfg.distill.teacher_epoch = "resnet20_cifar", str(run), 1
    cfg.distill.tau, cfg.distill.alpha = 4.0, 0.9
    task = ESKDTask.from_config(cfg, _Labelled())  # the teacher's width comes from its run's config.yaml
    assert all(torch.equal(task.teacher.state_dict()[k], v) for k, v in seen[1].items())
    assert task.temperature == 4.0 and task.alpha == 0.9
    early = pz.create_model("resnet20_cifar", num_classes=3, width=4)
    pz.load_weights(early, seen[1])
    final = pz.create_model("resnet20_cifar", num_classes=3, width=4)
    pz.load_weights(final, seen[3])
    x, y = torch.stack([_Labelled()[i][0] for i in range(6)]), torch.tensor([i % 3 for i in range(6)])
    student = pz.create_model("resnet20_cifar", num_classes=3, width=4).train()
    torch.manual_seed(1)
    loss, _ = task.loss(student, (x, y))
    with torch.no_grad():
        expected = kd_loss(student(x), early.eval()(x), y, 4.0, 0.9)[0]
        other = kd_loss(student(x), final.eval()(x), y, 4.0, 0.9)[0]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert abs(other.item() - expected.item()) > 1e-3


def test_paperzoo_train_task_eskd(capsys, teacher_run, tmp_path: Path) -> None:
    """End to end: `paperzoo train --task eskd` from the epoch-2 checkpoint; without the epoch, one line and exit 2."""
    run, _ = teacher_run
    args = ["train", "--model", "resnet20_cifar", "--task", "eskd", "--teacher", "resnet20_cifar", "--teacher-weights",
            str(run), "--epochs", "1", "--batch-size", "8", "--out", str(tmp_path / "s"), "data.size=16", "data.val_size=8",
            "data.image_size=8", "model_args.width=4", "data.options.classes=[circle,triangle,square]"]
    with pytest.raises(SystemExit) as exit_:
        main(args)
    assert exit_.value.code == 2 and "teacher_epoch" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(args + ["distill.teacher_epoch=9"])
    assert exit_.value.code == 2 and "epochs kept" in capsys.readouterr().err
