"""A task that owns its training step, as a GAN, an EMA teacher or SAM's two passes will: a critic with an
optimizer of its own updated before the Trainer's model in every step. The Trainer must run exactly the task's
step (no extra or missing update) and checkpoint the task's own networks and optimizer, so a resumed run ends
with the same weights as an uninterrupted one."""
from __future__ import annotations

import copy
import shutil
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from paperzoo.tasks.base import SumEvaluator, Task
from paperzoo.train import TrainConfig, Trainer


class _Pairs(torch.utils.data.Dataset):
    """(real sample, noise) pairs: 4-d points around (1, -1, 2, 0) and 2-d noise."""

    def __init__(self, n: int = 64) -> None:
        g = torch.Generator().manual_seed(3)
        self.x = torch.randn(n, 4, generator=g) * 0.3 + torch.tensor([1.0, -1.0, 2.0, 0.0])
        self.z = torch.randn(n, 2, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.z[i]


def _critic_init() -> nn.Module:
    torch.manual_seed(7)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))


def critic_loss(critic: nn.Module, generator: nn.Module, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    fake = generator(z).detach()
    return F.softplus(-critic(x)).mean() + F.softplus(critic(fake)).mean()


def generator_loss(critic: nn.Module, generator: nn.Module, z: torch.Tensor) -> torch.Tensor:
    return F.softplus(-critic(generator(z))).mean()


class Alternating(Task):
    """Per step: one Adam step of the critic (its own optimizer), then the Trainer's standard step of the model."""

    name = "test-alternating"

    def __init__(self) -> None:
        self.batches: list[tuple[torch.Tensor, torch.Tensor]] = []

    def setup(self, trainer: Trainer) -> None:
        self.critic = _critic_init().to(trainer.device)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=0.02)

    def collate(self, samples):
        return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])

    def loss(self, model, batch):
        return generator_loss(self.critic, model, batch[1]), {}

    def train_step(self, trainer: Trainer, batch):
        self.batches.append((batch[0].clone(), batch[1].clone()))
        self.critic_opt.zero_grad(set_to_none=True)
        c, _ = trainer.forward_backward(batch, lambda model, b: (critic_loss(self.critic, model, *b), {}))
        self.critic_opt.step()
        self.critic_opt.zero_grad(set_to_none=True)
        logs = trainer.standard_step(batch)
        return None if logs is None else {**logs, "critic_loss": c}

    def predict(self, model, batch):
        return model(batch[1])

    def evaluator(self):
        return SumEvaluator()

    def state_dict(self):
        return {"critic": self.critic.state_dict(), "critic_opt": self.critic_opt.state_dict()}

    def load_state_dict(self, state):
        self.critic.load_state_dict(state["critic"])
        self.critic_opt.load_state_dict(state["critic_opt"])


def _generator() -> nn.Module:
    torch.manual_seed(5)
    return nn.Linear(2, 4)


def _trainer(out: Path, **cfg) -> tuple[Trainer, Alternating]:
    model = _generator()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    task = Alternating()
    config = TrainConfig(epochs=2, batch_size=8, device="cpu", **cfg)
    return Trainer(model, _Pairs(), None, config, task=task, optimizer=opt, scheduler=sched, out=out, quiet=True), task


def test_the_trainer_runs_the_tasks_own_step_and_nothing_else(tmp_path: Path) -> None:
    """Replaying the batches the task saw through a hand-written alternating loop gives the same critic and model."""
    trainer, task = _trainer(tmp_path / "run")
    trainer.fit()
    assert len(task.batches) == trainer.total_steps == 16
    gen, critic = _generator(), _critic_init()
    g_opt = torch.optim.SGD(gen.parameters(), lr=0.1, momentum=0.9)
    c_opt = torch.optim.Adam(critic.parameters(), lr=0.02)
    for x, z in task.batches:
        c_opt.zero_grad()
        critic_loss(critic, gen, x, z).backward()
        c_opt.step()
        g_opt.zero_grad()
        generator_loss(critic, gen, z).backward()
        g_opt.step()
    for ours, ref in ((trainer.model, gen), (task.critic, critic)):
        for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7, msg=k)
    assert not torch.allclose(task.critic[0].weight, _critic_init()[0].weight)  # the critic did train


def test_resume_restores_the_tasks_networks_and_optimizer(tmp_path: Path) -> None:
    """Resumed from a mid-epoch checkpoint (step 5 of 16), the critic, its Adam moments and the model end as in
    the uninterrupted run."""
    full, full_task = _trainer(tmp_path / "a", checkpoint_every=5, keep_checkpoints=100)
    full.fit()
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step-000000005", tmp_path / "b" / "checkpoints" / "step-000000005")
    resumed, resumed_task = _trainer(tmp_path / "b", checkpoint_every=5, keep_checkpoints=100)
    resumed.fit(resume=True)
    assert len(resumed_task.batches) == 11
    for ours, ref in ((resumed.model, full.model), (resumed_task.critic, full_task.critic)):
        for (k, a), b in zip(ours.state_dict().items(), ref.state_dict().values()):
            assert torch.equal(a, b), k
    state, ref_state = resumed_task.critic_opt.state_dict()["state"], full_task.critic_opt.state_dict()["state"]
    assert all(torch.equal(state[i]["exp_avg_sq"], ref_state[i]["exp_avg_sq"]) for i in ref_state)
    assert copy.deepcopy(resumed_task.batches[-1][0]).equal(full_task.batches[-1][0])
