"""``TrainConfig``: everything a training run needs, as one dataclass (YAML recipe + key=value overrides)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DataConfig:
    name: str = "shapes"  # shapes | digits | path to an image folder
    size: int | None = None  # training-set size for built-in data (default: the dataset's)
    val_size: int | None = None
    image_size: int | None = None  # default: the dataset's (or the model's for image folders)
    preset: str = "medium"  # difficulty preset of the synthetic scenes
    num_workers: int = 0
    on_error: str = "raise"  # image folders: raise | skip (skip corrupt images with a warning)
    options: dict[str, Any] = field(default_factory=dict)  # extra dataset keyword arguments


@dataclass
class DistillConfig:
    """DeiT distillation (``paperzoo.train.distill``): off while ``teacher`` is None."""

    teacher: str | None = None  # registered model name of the teacher
    teacher_weights: str | None = None  # its trained checkpoint: path, URL, or SOURCE::PATH
    type: str = "hard"  # hard | soft
    alpha: float = 0.5  # weight of the distillation term (the label term gets 1 - alpha)
    tau: float = 1.0  # soft distillation temperature


@dataclass
class TrainConfig:
    model: str = "resnet20_cifar"
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    data: DataConfig = field(default_factory=DataConfig)

    epochs: int = 10
    batch_size: int = 128  # global batch: split across processes under torchrun
    optimizer: str = "sgd"  # sgd | adamw | adam
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    decay_bias_and_norm: bool = False  # False: biases and norm parameters get no weight decay
    schedule: str = "cosine"  # cosine | step | constant
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    milestones: tuple[float, ...] = (0.5, 0.75)  # step schedule: fractions of training
    gamma: float = 0.1
    label_smoothing: float = 0.0
    drop_path_rate: float | None = None

    grad_accum: int = 1
    clip_grad: float = 0.0  # max gradient norm; 0 = off
    ema_decay: float = 0.0  # EMA of weights; 0 = off
    amp: str = "none"  # none | bf16 | fp16
    channels_last: bool = False
    compile: bool = False
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N

    log_every: int = 20  # steps between log lines / metrics.jsonl rows
    checkpoint_every: int = 0  # steps between checkpoints (0: only at epoch ends)
    keep_checkpoints: int = 2
    on_nan: str = "stop"  # stop | skip: what a non-finite loss does
    eval_every: int = 1  # epochs between validations
    tensorboard: bool = False
    out: str | None = None

    distill: DistillConfig = field(default_factory=DistillConfig)
