"""Engine speed and safety options: bf16 autocast, channels_last, EMA, gradient clipping, compile, YAML recipes."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

import paperzoo as pz
from paperzoo.config import apply_overrides, load_yaml
from paperzoo.errors import ConfigError
from paperzoo.train import TrainConfig, Trainer
from paperzoo.train.plots import read_metrics


def _fit(tiny_shapes, tmp_path: Path | None = None, **kw) -> Trainer:
    train, val = tiny_shapes
    cfg = apply_overrides(TrainConfig(epochs=2, batch_size=16, lr=0.05, log_every=1), kw)
    trainer = Trainer(pz.create_model("resnet20_cifar", num_classes=8), train, val, cfg, out=tmp_path, quiet=True)
    trainer.fit()
    return trainer


def test_bf16_autocast_and_channels_last(tiny_shapes) -> None:
    t = _fit(tiny_shapes, amp="bf16", channels_last=True)
    assert all(math.isfinite(r["train_loss"]) for r in t.history)
    assert t.model.conv1.weight.dtype == torch.float32  # master weights stay fp32
    assert t.model.conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_ema_weights_are_tracked_and_saved(tiny_shapes, tmp_path: Path) -> None:
    t = _fit(tiny_shapes, tmp_path, ema_decay=0.9)
    assert "ema_val_acc" in t.history[-1]
    ema = pz.load_weights(pz.create_model("resnet20_cifar", num_classes=8), tmp_path / "model_ema.safetensors")
    assert not torch.equal(ema.conv1.weight, t.model.conv1.weight)  # an average, not a copy


def test_gradient_clipping_logs_the_norm(tiny_shapes, tmp_path: Path) -> None:
    _fit(tiny_shapes, tmp_path, clip_grad=0.5)
    norms = [r["grad_norm"] for r in read_metrics(tmp_path / "metrics.jsonl") if r["kind"] == "step"]
    assert norms and all(math.isfinite(n) for n in norms)


@pytest.mark.slow
def test_compile_true_trains(tiny_shapes) -> None:
    t = _fit(tiny_shapes, compile=True, epochs=1)
    assert math.isfinite(t.history[-1]["train_loss"])


def test_yaml_recipe(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text("epochs: 7\nlr: 0.2\ndata:\n  name: digits\n  image_size: 16\n")
    cfg = load_yaml(TrainConfig(), tmp_path / "r.yaml")
    assert cfg.epochs == 7 and cfg.lr == 0.2 and cfg.data.name == "digits" and cfg.data.image_size == 16
    (tmp_path / "bad.yaml").write_text("epochs: 7\nlearning_rate: 0.2\n")
    with pytest.raises(ConfigError, match="unknown config key 'learning_rate'"):
        load_yaml(TrainConfig(), tmp_path / "bad.yaml")
    (tmp_path / "broken.yaml").write_text("epochs: [7\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(TrainConfig(), tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(TrainConfig(), tmp_path / "none.yaml")


def test_plain_progress_lines_when_not_a_terminal(tiny_shapes, capsys) -> None:
    train, val = tiny_shapes
    cfg = TrainConfig(epochs=1, batch_size=16, log_every=2)
    Trainer(pz.create_model("resnet20_cifar", num_classes=8), train, val, cfg).fit()
    out = capsys.readouterr().out
    assert "epoch 1/1 step 2/4 loss" in out and "img/s" in out and "epoch 1: train_loss" in out


def test_model_recipe_layers_over_the_task_recipe() -> None:
    """A new DETR run starts from the paper's AdamW at 1e-4 (meta.recipe) over the detection task's recipe; a
    Faster R-CNN run keeps the task's SGD recipe; a model trained for another task does not take its own recipe."""
    from paperzoo.run import run_recipe

    detr = run_recipe(TrainConfig(model="detr_resnet50"))
    assert detr["optimizer"] == "adamw" and detr["lr"] == 1e-4 and detr["clip_grad"] == 0.1
    assert detr["batch_size"] == 8  # from the task's recipe
    assert run_recipe(TrainConfig(model="co_detr_resnet50"))["lr"] == 2e-4
    frcnn = run_recipe(TrainConfig(model="fasterrcnn_resnet50_fpn"))
    assert frcnn["lr"] == 0.01 and "optimizer" not in frcnn
    assert "optimizer" not in run_recipe(TrainConfig(model="detr_resnet50", task="classification"))
