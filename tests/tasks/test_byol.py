"""BYOL (Grill et al., 2020): heads, loss and the EMA target update against lightly (BYOLProjectionHead,
BYOLPredictionHead, NegativeCosineSimilarity, update_momentum, cosine_schedule) on the same weights and inputs; the
task's own step through the Trainer; the augmentation pair; `paperzoo train --task byol` killed and resumed."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

import paperzoo as pz
from helpers import kill_and_resume, perturb_, rel_err
from paperzoo.cli import main
from paperzoo.tasks.byol import BYOLTask, byol_loss, regression_loss, target_momentum
from paperzoo.tasks.ssl import MLP, Views, byol_pipelines, ema_update, features
from paperzoo.train import TrainConfig, Trainer


@pytest.mark.paper("byol")
def test_projector_and_predictor_equal_lightlys_heads() -> None:
    """Lightly's BYOL heads (perturbed random init) load strictly into ours; outputs agree in train mode (batch
    statistics) and eval mode (running statistics)."""
    from lightly.models.modules import BYOLPredictionHead, BYOLProjectionHead

    torch.manual_seed(0)
    x = torch.randn(8, 64)
    for ref, ours in ((BYOLProjectionHead(64, 128, 32), MLP(64, 128, 32)), (BYOLPredictionHead(32, 128, 32), MLP(32, 128, 32))):
        perturb_(ref, seed=1)
        pz.load_weights(ours, ref.state_dict())
        inp = x if ref.layers[0].in_features == 64 else x[:, :32]
        for mode in (True, False):
            ref.train(mode), ours.train(mode)
            assert rel_err(ours(inp).detach(), ref(inp).detach()) < 1e-6
    assert sum(p.numel() for p in MLP(2048, 4096, 256).parameters()) == sum(
        p.numel() for p in BYOLProjectionHead().parameters())  # the paper's 2048 -> 4096 -> 256 projector


@pytest.mark.paper("byol")
def test_symmetric_loss_equals_lightlys_negative_cosine_similarity() -> None:
    """Eq. 2-3: L + L~ = sum over both orders of (2 - 2 cos) = 4 + 2 (NCS(q1, z2) + NCS(q2, z1)) with lightly's
    NegativeCosineSimilarity (mean of -cos); gradients reach the predictions only (stop-gradient on the target)."""
    from lightly.loss import NegativeCosineSimilarity

    g = torch.Generator().manual_seed(2)
    q1, q2, z1, z2 = (torch.randn(6, 16, generator=g).requires_grad_(True) for _ in range(4))
    ncs = NegativeCosineSimilarity()
    ours = byol_loss(q1, q2, z1, z2)
    ref = 4 + 2 * (ncs(q1, z2) + ncs(q2, z1))
    assert rel_err(ours.detach(), ref.detach()) < 1e-6
    ours.backward()
    assert z1.grad is None and z2.grad is None and q1.grad.abs().sum() > 0
    # eq. 2 literally: || q/|q| - z/|z| ||^2
    direct = ((q1 / q1.norm(dim=1, keepdim=True) - z2 / z2.norm(dim=1, keepdim=True)) ** 2).sum(1)
    assert rel_err(regression_loss(q1, z2).detach(), direct.detach()) < 1e-6


@pytest.mark.paper("byol")
def test_momentum_schedule_and_update_equal_lightly() -> None:
    """tau_k = 1 - (1 - 0.996)(cos(pi k / K) + 1) / 2 equals lightly's cosine_schedule(k, K + 1, 0.996, 1) (its
    denominator is max_steps - 1) for k = 0..K-1, and the EMA step equals update_momentum on the same weights."""
    from lightly.models.utils import update_momentum
    from lightly.utils.scheduler import cosine_schedule

    K = 50
    taus = [target_momentum(k, K) for k in range(K)]
    ref = [cosine_schedule(k, K + 1, 0.996, 1.0) for k in range(K)]
    assert max(abs(a - b) for a, b in zip(taus, ref)) < 1e-12
    assert taus[0] == pytest.approx(0.996) and target_momentum(K, K) == 1.0 and taus == sorted(taus)
    online, target = perturb_(MLP(8, 16, 4), 3), perturb_(MLP(8, 16, 4), 4)
    ref_target = copy.deepcopy(target)
    ema_update(target, online, taus[7])
    update_momentum(online, ref_target, taus[7])
    for a, b in zip(target.parameters(), ref_target.parameters()):
        assert rel_err(a.detach(), b.detach()) < 1e-6


class _Tiny(torch.utils.data.Dataset):
    mean, std, in_chans, num_classes, image_size = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), 3, 2, (16, 16)

    def __len__(self) -> int:
        return 16

    def __getitem__(self, i: int):
        return torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(i)), i % 2


@pytest.mark.paper("byol")
def test_task_step_updates_the_target_as_lightly_after_the_online_step() -> None:
    """Through the Trainer: after one step, target_encoder = update_momentum(online after the step, initial target,
    tau_0 = 0.996), the online projector and predictor have trained, and the target got no gradient."""
    from lightly.models.utils import update_momentum

    torch.manual_seed(0)
    model = pz.create_model("resnet20_cifar", num_classes=2, width=4)
    initial = copy.deepcopy(model)
    task = BYOLTask(Views(byol_pipelines(16, 3, (0.5, 1.0)), _Tiny.mean, _Tiny.std), hidden_dim=32, out_dim=8)
    cfg = TrainConfig(epochs=1, batch_size=8, device="cpu", optimizer="adamw", lr=1e-2, schedule="constant")
    trainer = Trainer(model, _Tiny(), None, cfg, task=task, quiet=True)
    proj0 = copy.deepcopy(task.heads["projector"])
    trainer.fit()
    assert trainer.step == 2 and task.tau == target_momentum(2, 2)
    # replay the EMA with lightly: two steps; the online weights after step 1 are unknown here, so check step 2's
    # relation from a run of one step instead
    torch.manual_seed(0)
    model1 = pz.create_model("resnet20_cifar", num_classes=2, width=4)
    task1 = BYOLTask(Views(byol_pipelines(16, 3, (0.5, 1.0)), _Tiny.mean, _Tiny.std), hidden_dim=32, out_dim=8)
    trainer1 = Trainer(model1, torch.utils.data.Subset(_Tiny(), range(8)), None, cfg, task=task1, quiet=True)
    trainer1.fit()
    ref = copy.deepcopy(initial)
    update_momentum(model1, ref, 0.996)
    for a, b in zip(task1.target_encoder.parameters(), ref.parameters()):
        assert rel_err(a.detach(), b.detach()) < 1e-6
    assert not torch.equal(model1.conv1.weight, initial.conv1.weight)
    assert not torch.equal(task.heads["projector"].layers[0].weight, proj0.layers[0].weight)
    assert all(p.grad is None for p in task.target_encoder.parameters())


def test_views_are_two_different_seeded_augmentations() -> None:
    """The pair differs (blur and solarisation probabilities differ), stays normalised, and a view is a function of
    the seed (what makes resume exact)."""
    views = Views(byol_pipelines(16, 3), _Tiny.mean, _Tiny.std)
    image = _Tiny()[0][0]
    torch.manual_seed(5)
    (a, b), label = views((image, 1))
    torch.manual_seed(5)
    (a2, _), _ = views((image, 1))
    assert label == 1 and a.shape == b.shape == image.shape and not torch.allclose(a, b) and torch.equal(a, a2)
    assert (a * 0.25 + 0.5).min() >= -1e-6 and (a * 0.25 + 0.5).max() <= 1 + 1e-6
    gray = Views(byol_pipelines(16, 1), (0.5,), (0.25,))
    assert gray((image[:1], 0))[0][0].shape == (1, 16, 16)


def test_features_are_the_pre_logit_pool() -> None:
    model = pz.create_model("resnet20_cifar", num_classes=3, width=4).eval()
    x = torch.randn(2, 3, 16, 16)
    assert features(model, x).shape == (2, 16)
    assert torch.allclose(model.fc(features(model, x)), model(x), atol=1e-6)


BYOL_ARGS = ["--model", "resnet20_cifar", "--task", "byol", "--epochs", "2", "--batch-size", "8", "data.size=32",
             "data.val_size=16", "data.image_size=16", "model_args.width=4", "checkpoint_every=3", "keep_checkpoints=10"]


def _byol_trainer(out: Path) -> tuple[Trainer, BYOLTask]:
    torch.manual_seed(0)
    model = pz.create_model("resnet20_cifar", num_classes=2, width=4)
    task = BYOLTask(Views(byol_pipelines(16, 3, (0.5, 1.0)), _Tiny.mean, _Tiny.std), hidden_dim=32, out_dim=8)
    cfg = TrainConfig(epochs=1, batch_size=2, device="cpu", optimizer="adamw", lr=1e-2, checkpoint_every=3,
                      keep_checkpoints=100)
    return Trainer(model, _Tiny(), None, cfg, task=task, out=out, quiet=True), task


@pytest.mark.paper("byol")
def test_resume_restores_target_heads_and_momentum_schedule(tmp_path: Path) -> None:
    """Resumed from the mid-epoch step-3 checkpoint (of 8 steps in one epoch), the online network, both target networks, the heads
    and tau end bit-identical to the uninterrupted run (the target is not re-copied from the online network)."""
    import shutil

    full, full_task = _byol_trainer(tmp_path / "a")
    full.fit()
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step-000000003", tmp_path / "b" / "checkpoints" / "step-000000003")
    resumed, task = _byol_trainer(tmp_path / "b")
    resumed.fit(resume=True)
    pairs = ((resumed.model, full.model), (task.target_encoder, full_task.target_encoder),
             (task.target_projector, full_task.target_projector), (task.heads, full_task.heads))
    for ours, ref in pairs:
        for (k, x), y in zip(ours.state_dict().items(), ref.state_dict().values()):
            assert torch.equal(x, y), k
    assert task.tau == full_task.tau == 1.0
    assert not torch.equal(task.target_encoder.conv1.weight, resumed.model.conv1.weight)


@pytest.mark.slow
@pytest.mark.paper("byol")
def test_byol_killed_and_resumed_ends_with_identical_weights(tmp_path: Path) -> None:
    """`paperzoo train --task byol`, SIGKILLed at step 5 of 8 (after the step-3 checkpoint) and resumed, ends with the
    same online weights as the uninterrupted run -- the online updates after the kill depend on the restored target
    network, heads, their optimizer and the momentum schedule; the frozen-feature metrics are logged."""
    a, b = kill_and_resume(BYOL_ARGS, tmp_path, kill_at=5)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = [json.loads(line) for line in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    epoch = [r for r in rows if r["kind"] == "epoch"][-1]
    assert 0 <= epoch["val_probe_acc"] <= 1 and 0 <= epoch["val_knn_acc"] <= 1
    steps = [r for r in rows if r["kind"] == "step"]
    assert all(math.isfinite(r["loss"]) and 0 <= r["loss"] <= 8 for r in steps)
    assert steps[-1]["tau"] > 0.996  # the schedule moved


def test_byol_bad_settings_are_user_errors(capsys) -> None:
    with pytest.raises(pz.errors.ConfigError, match="tau_base"):
        BYOLTask(tau_base=1.5)
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--model", "resnet20_cifar", "--task", "byl", "--out", "/tmp/never"])
    assert exit_.value.code == 2 and "byol" in capsys.readouterr().err


def test_paperzoo_train_task_byol_logs_frozen_feature_metrics(tmp_path: Path) -> None:
    """`paperzoo train --model resnet20_cifar --task byol --data shapes` for one short epoch: the loss, tau and the
    validation linear probe / k-NN accuracies are logged; the weights are the backbone's."""
    out = tmp_path / "run"
    main(["train", "--model", "resnet20_cifar", "--task", "byol", "--data", "shapes", "--epochs", "1", "--batch-size", "8",
          "--out", str(out), "data.size=16", "data.val_size=16", "data.image_size=16", "model_args.width=4"])
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    epoch = rows[-1]
    assert epoch["kind"] == "epoch" and {"val_probe_acc", "val_knn_acc", "val_feature_std"} <= set(epoch)
    from safetensors.torch import load_file

    assert set(load_file(str(out / "model.safetensors"))) == set(pz.create_model("resnet20_cifar", width=4).state_dict())
