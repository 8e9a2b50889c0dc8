"""``TrainConfig``: everything a training run needs, as one dataclass (YAML recipe + key=value overrides)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class DataConfig:
    name: str = "shapes"  # shapes | digits | path to an image folder | path to a COCO json (annotations.json)
    val: str | None = None  # a COCO json for validation (default: a fixed tenth of the training json's images)
    augment: bool = True  # dense tasks: a random horizontal flip of the training images (boxes and masks follow)
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
    teacher_epoch: int | None = None  # --task eskd: the epoch of the teacher's run (teacher_weights = its run directory)


@dataclass
class LookaheadConfig:
    enabled: bool = False  # `lookahead=true` wraps the optimizer (Zhang et al., 2019)
    k: int = 5  # inner steps between synchronisations
    alpha: float = 0.5  # slow-weight step size


@dataclass
class SAMConfig:
    rho: float = 0.0  # neighbourhood radius; > 0 turns SAM on (Foret et al., 2020)
    adaptive: bool = False  # ASAM: scale the neighbourhood by |w|


@dataclass
class SGDRConfig:
    t0: float = 1.0  # epochs of the first cosine cycle (Loshchilov & Hutter, 2016)
    t_mult: int = 2  # each cycle is t_mult times longer than the previous


@dataclass
class MixUpConfig:
    alpha: float = 0.0  # Beta(alpha, alpha) mixing ratio; > 0 turns mixup on


@dataclass
class CutMixConfig:
    alpha: float = 0.0  # Beta(alpha, alpha); > 0 turns CutMix on
    switch_prob: float = 0.5  # with mixup also on: probability that a batch uses CutMix


@dataclass
class DropBlockConfig:
    drop_prob: float = 0.0  # target 1 - keep_prob; > 0 turns DropBlock on (Ghiasi et al., 2018)
    block_size: int = 7
    stages: int = 2  # applied to the blocks of the model's last `stages` stages
    ramp: float = 1.0  # fraction of training over which keep_prob falls linearly from 1 (0: fixed)


@dataclass
class RandAugmentConfig:
    n: int = 0  # operations per image; > 0 turns RandAugment on (Cubuk et al., 2019)
    m: float = 9.0  # global magnitude (10 = AutoAugment's maximum)


@dataclass
class SWAConfig:
    start: int | None = None  # average the weights after this many epochs (Izmailov et al., 2018); None: off
    lr: float | None = None  # constant SWA learning rate from then on (None: keep the schedule)
    anneal_epochs: float = 0.0  # epochs of cosine annealing from the current lr to swa.lr
    every: int = 1  # cycle length c: average every `every` epochs


@dataclass
class TrainConfig:
    model: str = "resnet20_cifar"
    task: str | None = None  # the model's own task (its metadata) unless set: --task
    model_args: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None
    data: DataConfig = field(default_factory=DataConfig)

    epochs: int = 10
    batch_size: int = 128  # global batch: split across processes under torchrun
    optimizer: str = "sgd"  # sgd | adamw | adam | radam | adams | sgds
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 5e-4
    decay_bias_and_norm: bool = False  # False: biases and norm parameters get no weight decay
    schedule: str = "cosine"  # cosine | sgdr | step | constant
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
    # --- training techniques (section C of the papers); every one is off by default ---
    lookahead: LookaheadConfig = field(default_factory=LookaheadConfig)
    sam: SAMConfig = field(default_factory=SAMConfig)
    sgdr: SGDRConfig = field(default_factory=SGDRConfig)
    weight_decay_norm: float = 0.0  # AdamW's normalised decay lambda_norm; > 0 sets weight_decay = lambda_norm sqrt(b / (B T))
    mixup: MixUpConfig = field(default_factory=MixUpConfig)
    cutmix: CutMixConfig = field(default_factory=CutMixConfig)
    dropblock: DropBlockConfig = field(default_factory=DropBlockConfig)
    randaugment: RandAugmentConfig = field(default_factory=RandAugmentConfig)
    swa: SWAConfig = field(default_factory=SWAConfig)
    zero_gamma: bool = False  # zero the last norm's scale in each residual block (Goyal et al.; bag of tricks)
    bag_of_tricks: bool = False  # the bag-of-tricks training recipe: warmup, zero-gamma, no bias decay, cosine, LS, mixup
