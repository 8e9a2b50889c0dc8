"""The one Trainer: training, checkpoints, exact resume after SIGKILL, faults, config errors."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import KILLED_TRAIN, kill_and_resume

import paperzoo as pz
from paperzoo.config import apply_overrides
from paperzoo.errors import ConfigError
from paperzoo.tasks import ClassificationTask
from paperzoo.train import NonFiniteLossError, TrainConfig, Trainer
from paperzoo.train.checkpoint import list_checkpoints

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, "-m", "paperzoo", "train", "--model", "resnet20_cifar", "--data", "shapes", "--epochs", "3",
         "--batch-size", "32", "data.size=256", "data.val_size=32", "data.image_size=16", "log_every=1",
         "drop_path_rate=0.2"]  # drop-path makes the result depend on the RNG stream, so resume must restore it


def _cfg(**kw) -> TrainConfig:
    cfg = TrainConfig(epochs=2, batch_size=16, lr=0.05, log_every=2)
    return apply_overrides(cfg, kw)


def test_fit_learns_and_writes_run_directory(tiny_shapes, tmp_path: Path) -> None:
    train, val = tiny_shapes
    model = pz.create_model("resnet20_cifar", num_classes=8)
    history = Trainer(model, train, val, _cfg(epochs=3), out=tmp_path, quiet=True).fit()
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for f in ("config.yaml", "metrics.jsonl", "curves.png", "model.safetensors"):
        assert (tmp_path / f).exists(), f
    assert len(list_checkpoints(tmp_path / "checkpoints")) == 2  # keep_checkpoints


def test_resume_from_mid_epoch_checkpoint_equals_uninterrupted(tiny_shapes, tmp_path: Path) -> None:
    """Resuming from the step-3 checkpoint (mid-epoch) in a fresh process state ends with identical weights."""
    import shutil

    train, val = tiny_shapes
    cfg = dict(epochs=2, checkpoint_every=3, keep_checkpoints=100)
    torch.manual_seed(1)
    full = Trainer(pz.create_model("resnet20_cifar", num_classes=8, drop_path_rate=0.2), train, val, _cfg(**cfg),
                   out=tmp_path / "a", quiet=True)
    full.fit()
    (tmp_path / "b" / "checkpoints").mkdir(parents=True)
    shutil.copytree(tmp_path / "a" / "checkpoints" / "step-000000003", tmp_path / "b" / "checkpoints" / "step-000000003")
    torch.manual_seed(123)  # a restarted process starts from unrelated RNG state
    resumed = Trainer(pz.create_model("resnet20_cifar", num_classes=8, drop_path_rate=0.2), train, val, _cfg(**cfg),
                      out=tmp_path / "b", quiet=True)
    resumed.fit(resume=True)
    for (k, v), w in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(v, w), k
    assert [r["epoch"] for r in resumed.history] == [1, 2]


def test_finished_run_says_so(tiny_shapes, tmp_path: Path, capsys) -> None:
    train, val = tiny_shapes
    Trainer(pz.create_model("resnet20_cifar", num_classes=8), train, val, _cfg(epochs=1), out=tmp_path, quiet=True).fit()
    again = Trainer(pz.create_model("resnet20_cifar", num_classes=8), train, val, _cfg(epochs=1), out=tmp_path)
    again.fit(resume=True)
    assert "already finished" in capsys.readouterr().out


class _NanAfter(ClassificationTask):
    """Classification loss that turns NaN from optimizer step ``n`` on."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.inner, self.n, self.calls = ClassificationTask(), n, 0

    def loss(self, model, batch):
        self.calls += 1
        loss, logs = self.inner.loss(model, batch)
        return (loss * float("nan") if self.calls >= self.n else loss), logs


def test_nan_loss_stops_naming_the_step(tiny_shapes, tmp_path: Path) -> None:
    train, val = tiny_shapes
    t = Trainer(pz.create_model("resnet20_cifar", num_classes=8), train, val, _cfg(epochs=2, checkpoint_every=2),
                task=_NanAfter(6), out=tmp_path, quiet=True)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 6 \(epoch 2\).*step-000000004"):
        t.fit()
    assert list_checkpoints(tmp_path / "checkpoints")[-1].name == "step-000000004"


def test_nan_loss_skip(tiny_shapes) -> None:
    train, val = tiny_shapes
    t = Trainer(pz.create_model("resnet20_cifar", num_classes=8), train, val, _cfg(epochs=1, on_nan="skip"),
                task=_NanAfter(3), quiet=True)
    before = {k: v.clone() for k, v in t.model.state_dict().items()}
    t.fit()
    assert t.skipped_steps == 2 and t.step == 4
    assert any(not torch.equal(before[k], v) for k, v in t.model.state_dict().items())


def test_corrupt_checkpoint_is_named_and_previous_used(tiny_shapes, tmp_path: Path) -> None:
    train, val = tiny_shapes
    Trainer(pz.create_model("resnet20_cifar", num_classes=8), train, val, _cfg(epochs=2), out=tmp_path, quiet=True).fit()
    newest = list_checkpoints(tmp_path / "checkpoints")[-1]
    data = (newest / "state.pt").read_bytes()
    (newest / "state.pt").write_bytes(data[: len(data) // 3])
    t = Trainer(pz.create_model("resnet20_cifar", num_classes=8), train, val, _cfg(epochs=2), out=tmp_path, quiet=True)
    with pytest.warns(UserWarning, match=f"{newest.name} is corrupt .*state.pt is truncated"):
        assert t.resume()
    assert t.step == 4 and t.last_checkpoint.name == "step-000000004"


def test_config_errors_name_the_key() -> None:
    cfg = TrainConfig()
    with pytest.raises(ConfigError, match="unknown config key 'lrr' \\(did you mean lr"):
        apply_overrides(cfg, ["lrr=0.1"])
    with pytest.raises(ConfigError, match="config key 'epochs' expects int, got 'ten'"):
        apply_overrides(cfg, ["epochs=ten"])
    with pytest.raises(ConfigError, match="unknown config key 'data.sise'"):
        apply_overrides(cfg, ["data.sise=3"])
    apply_overrides(cfg, ["data.size=100", "betas=0.8,0.9", "compile=true", "pretrained=none"])
    assert cfg.data.size == 100 and cfg.betas == (0.8, 0.9) and cfg.compile is True and cfg.pretrained is None
    with pytest.raises(ConfigError, match="batch_size 10 must be divisible"):
        Trainer(torch.nn.Linear(2, 2), [(torch.zeros(2), 0)] * 40, config=TrainConfig(batch_size=10, grad_accum=3))


def test_grad_accumulation_matches_full_batch(tiny_shapes) -> None:
    """grad_accum=4 over micro-batches gives the same step as one full batch (no BN: GroupNorm model)."""
    train, _ = tiny_shapes
    results = []
    for accum in (1, 4):
        torch.manual_seed(0)
        model = pz.create_model("resnet18", num_classes=8, norm_layer="gn")
        t = Trainer(model, train, config=_cfg(epochs=1, grad_accum=accum, batch_size=16), quiet=True)
        t.fit()
        results.append(t.model.state_dict())
    for k in results[0]:
        torch.testing.assert_close(results[0][k], results[1][k], rtol=1e-4, atol=1e-5)


def test_sigkill_and_resume_gives_identical_weights(tmp_path: Path) -> None:
    """A run killed with SIGKILL mid-training (two steps after its last checkpoint) and resumed ends with exactly
    the weights of an unkilled run."""
    a, b = kill_and_resume([*TRAIN[4:], "--checkpoint-every", "3"], tmp_path, kill_at=11)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_ctrl_c_saves_a_checkpoint(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT, sent by the run to itself when step 5 begins, with Python's handler installed: a suite
    started as a background job inherits SIGINT ignored, and the run then finished with exit 0) saves a
    checkpoint, says how to resume in one line and exits 130."""
    run = tmp_path / "int"
    proc = subprocess.run([sys.executable, "-c", KILLED_TRAIN, *TRAIN[3:], "--out", str(run), "--checkpoint-every", "2"],
                          capture_output=True, env={**os.environ, "PYTHONUNBUFFERED": "1", "KILL_AT": "5",
                                                    "KILL_SIGNAL": "SIGINT"}, cwd=ROOT)
    err = proc.stderr
    assert proc.returncode == 130, err.decode()
    assert b"interrupted at step" in err and b"--resume" in err
    assert err.count(b"\n") == 1, err
