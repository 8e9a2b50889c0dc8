"""The generative task on the one Trainer: the model's phases each step with their own optimizers (a replay
through a hand-written alternating loop gives the same weights), their state is checkpointed (a resumed
adversarial run ends bit-identical), a sample grid is written per epoch, and ``paperzoo sample`` draws a grid."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers import kill_and_resume

import paperzoo as pz
from paperzoo.data import DigitsDataset
from paperzoo.tasks.generative import GenerativeTask
from paperzoo.train import TrainConfig, Trainer

CFG = dict(epochs=2, batch_size=32, lr=1e-3, optimizer="adam", schedule="constant", weight_decay=0.0, device="cpu")


class Recording(GenerativeTask):
    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []

    def train_step(self, trainer, batch):
        self.batches.append((batch[0].clone(), batch[1].clone(), trainer.generator.get_state()))
        return super().train_step(trainer, batch)


ARGS = dict(img_size=8, hidden=16, code_dim=2)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return pz.create_model("aae", **ARGS)


def _trainer(out: Path | None, data: DigitsDataset, **cfg) -> tuple[Trainer, Recording]:
    task = Recording()
    return Trainer(_model(), data, None, TrainConfig(**{"model": "aae", "model_args": ARGS, **CFG, **cfg}), task=task, out=out, quiet=True), task


@pytest.fixture(scope="module")
def digits() -> DigitsDataset:
    return torch.utils.data.Subset(DigitsDataset("train", image_size=8), range(160))


def _data(digits):
    class D(torch.utils.data.Dataset):
        mean, std = digits.dataset.mean, digits.dataset.std

        def __len__(self):
            return len(digits)

        def __getitem__(self, i):
            return digits[i]

    return D()


def test_phases_run_in_order_with_their_own_optimizers(digits, tmp_path: Path) -> None:
    """Replaying the batches (and the generator state) the task saw through reconstruction -> discriminator ->
    generator Adam steps written by hand gives the same encoder, decoder and discriminator."""
    data = _data(digits)
    trainer, task = _trainer(tmp_path / "run", data)
    trainer.fit()
    assert len(task.batches) == trainer.total_steps == 10
    model = _model()
    opts = {"reconstruction": torch.optim.Adam([*model.encoder.parameters(), *model.decoder.parameters()], lr=1e-3),
            "discriminator": torch.optim.Adam(model.discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999)),
            "generator": torch.optim.Adam(model.encoder.parameters(), lr=1e-3, betas=(0.5, 0.999))}
    g = torch.Generator()
    for x, y, state in task.batches:
        x = task.to_unit(x)
        g.set_state(state)
        for name, loss in (("reconstruction", lambda: model.reconstruction_loss(x, y)),
                           ("discriminator", lambda: model.discriminator_loss(x, y, g)),
                           ("generator", lambda: model.generator_loss(x, y))):
            model.zero_grad(set_to_none=True)
            loss().backward()
            opts[name].step()
    for (k, a), b in zip(trainer.model.state_dict().items(), model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)
    assert sorted(p.name for p in (tmp_path / "run" / "samples").iterdir()) == ["epoch-001.png", "epoch-002.png"]


def test_resumed_adversarial_run_ends_with_identical_weights(digits, tmp_path: Path) -> None:
    """Resumed from the mid-epoch checkpoint at step 3 of 10, the three networks and the three Adam states end
    exactly as in the uninterrupted run."""
    data = _data(digits)
    full, full_task = _trainer(tmp_path / "a", data, checkpoint_every=3, keep_checkpoints=100)
    full.fit()
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step-000000003", tmp_path / "b" / "checkpoints" / "step-000000003")
    resumed, resumed_task = _trainer(tmp_path / "b", data, checkpoint_every=3, keep_checkpoints=100)
    resumed.fit(resume=True)
    assert len(resumed_task.batches) == 7
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    for a, b in zip(full_task.optimizers, resumed_task.optimizers):
        for i, s in a.state_dict()["state"].items():
            assert torch.equal(s["exp_avg_sq"], b.state_dict()["state"][i]["exp_avg_sq"])


def test_gradient_skipping_drops_large_updates(digits) -> None:
    """A phase with ``skip_above`` below every gradient norm never updates its networks (VDVAE's skipping)."""
    data = _data(digits)
    trainer, task = _trainer(None, data, epochs=1)
    task.setup(trainer)
    task.phases[1].skip_above = 1e-12
    before = {k: v.clone() for k, v in trainer.model.discriminator.state_dict().items()}
    trainer.fit()
    assert task.skipped["discriminator"] == 5
    assert all(torch.equal(v, trainer.model.discriminator.state_dict()[k]) for k, v in before.items())


def test_cli_sample_writes_a_grid_and_rejects_bad_input(digits, tmp_path: Path, capsys) -> None:
    data = _data(digits)
    trainer, _ = _trainer(tmp_path / "run", data, epochs=1)
    trainer.fit()
    from paperzoo.cli import main

    main(["sample", "--model", "aae", "--weights", str(tmp_path / "run" / "model.safetensors"), "--out",
          str(tmp_path / "grid.png"), "-n", "16"])
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as im:
        assert im.size == (4 * 9 + 1, 4 * 9 + 1)  # 4 x 4 samples of 8 px, 1 px padding
    for args, message in ((["--model", "resnet20_cifar", "--weights", str(tmp_path / "run" / "model.safetensors")],
                           "not a generative model"),
                          (["--model", "aae", "--weights", str(tmp_path / "missing.safetensors")], "not found")):
        with pytest.raises(SystemExit) as exit_info:
            main(["sample", *args])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_sigkilled_aae_run_resumes_to_identical_weights(tmp_path: Path) -> None:
    """`paperzoo train --model aae --data digits`, SIGKILLed between checkpoints, then --resume: identical weights."""
    args = ["--model", "aae", "--data", "digits", "--epochs", "2", "--batch-size", "64", "data.image_size=8",
            "model_args.hidden=32", "log_every=1", "--checkpoint-every", "5"]
    a, b = kill_and_resume(args, tmp_path, kill_at=12)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
