"""The one training engine. Every paper's training, ``paperzoo train`` and every reproduction go through
``Trainer``; tasks (``tasks.py``) change the loss and metrics, never the loop.

What it guarantees:

* **Exact resume.** The epoch's sample order is a permutation seeded by (seed, epoch); per-sample
  augmentation randomness is seeded by (seed, epoch, index); model-level randomness (dropout, drop-path)
  and the optimizer, schedule, scaler and EMA states are checkpointed. A run killed at any moment and
  resumed from its last checkpoint ends with bit-identical weights on CPU.
* **Atomic checkpoints** every ``checkpoint_every`` steps and at each epoch end (``checkpoint.py``).
* **Scale-out** on torch.distributed: under ``torchrun`` the model is wrapped in
  DistributedDataParallel (gloo on CPU, nccl on GPU), each process takes its slice of every global
  batch, and only rank 0 logs and writes.
* **Faults.** A non-finite loss stops the run naming the step (or skips the step with
  ``on_nan=skip``); Ctrl-C saves a checkpoint and stops cleanly.
* **Training techniques** (section C of the papers) are config keys that compose: the optimizer
  (``optimizer=``, ``lookahead=true``, ``sam.rho=``), schedules (``schedule=sgdr``, ``swa.start=``),
  regularisers (``mixup.alpha``, ``cutmix.alpha``, ``randaugment.n``, ``dropblock.drop_prob``,
  ``label_smoothing``, ``drop_path_rate``) and ``bag_of_tricks=true``. Their state (Lookahead's slow
  weights, the SWA average, mixing randomness) is checkpointed with the rest.
"""
from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import dump_yaml
from ..data.mixing import MixUpOrCutMix
from ..data.randaugment import randaugment_for
from ..errors import ConfigError, PaperzooError, unknown
from ..layers.dropblock import add_drop_block, drop_blocks_of
from ..optim import SAM, normalized_weight_decay
from .checkpoint import clean_temporaries, list_checkpoints, load_latest, save_checkpoint, save_weights
from .config import TrainConfig
from .optimizers import build_optimizer
from .schedules import build_scheduler, sgdr_cycle
from .swa import SWA
from .tasks import ClassificationTask
from .tricks import apply_bag_of_tricks, zero_gamma_init


class NonFiniteLossError(PaperzooError):
    """The loss became NaN or infinite."""

    exit_code = 1


class TrainingInterrupted(PaperzooError):
    """Ctrl-C (SIGINT) during training; a checkpoint was saved."""

    exit_code = 130


class _NonFinite(Exception):
    """Raised inside a step when the loss is not finite (the step is then stopped or skipped)."""

    def __init__(self, value: float) -> None:
        self.value = value


@contextlib.contextmanager
def _frozen_norm_statistics(model: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics stay as they are (SAM's second pass sees the same batch again)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(tracked)


# --------------------------------------------------------------------------------------- distributed
@dataclass(frozen=True)
class DistInfo:
    world: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' requested but no CUDA device is available")
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group that torchrun describes in the environment (no-op for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistInfo(world=dist.get_world_size(), rank=dist.get_rank(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


# --------------------------------------------------------------------------------------- data order
class _SeededSamples(Dataset):
    """Wraps a dataset so that sample ``(epoch, i)`` draws its augmentation randomness from a seed fixed
    by (seed, epoch, i): identical whichever worker loads it and whether or not the run was resumed."""

    def __init__(self, dataset: Dataset, seed: int, augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        self.dataset = dataset
        self.seed = seed
        self.augment = augment  # an extra per-image transform (RandAugment), seeded the same way

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if getattr(self.dataset, "transform", None) is None and self.augment is None:
            return self.dataset[index]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed * 1_000_003 + epoch) * 10_000_019 + index)
            sample = self.dataset[index]
            if self.augment is not None:
                sample = (self.augment(sample[0]), *sample[1:])
            return sample


class _EpochBatches(Sampler):
    """This process's slice of each global batch of a (seed, epoch)-seeded permutation, from batch ``start``."""

    def __init__(self, n: int, global_batch: int, seed: int, epoch: int, start: int, info: DistInfo, shuffle: bool = True) -> None:
        self.n, self.global_batch, self.seed, self.epoch, self.start, self.info = n, global_batch, seed, epoch, start, info
        self.shuffle = shuffle
        self.local = global_batch // info.world

    def __len__(self) -> int:
        return max(0, self.n // self.global_batch - self.start)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        if self.shuffle:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + self.epoch)).tolist()
        else:
            order = list(range(self.n))
        for b in range(self.start, self.n // self.global_batch):
            chunk = order[b * self.global_batch:(b + 1) * self.global_batch]
            mine = chunk[self.info.rank * self.local:(self.info.rank + 1) * self.local]
            yield [(self.epoch, i) for i in mine]


def _collate(batch: list[tuple[torch.Tensor, Any]]) -> tuple[torch.Tensor, Any]:
    images = torch.stack([b[0] for b in batch])
    targets = [b[1] for b in batch]
    if isinstance(targets[0], (int, np.integer)):
        return images, torch.tensor([int(t) for t in targets])
    if isinstance(targets[0], torch.Tensor):
        return images, torch.stack(targets)
    return images, targets


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to(v, device) for v in obj]
    return obj


def _split(obj: Any, parts: int) -> list[Any]:
    """Split a batch (tensor, list, or dict of those) into ``parts`` micro-batches."""
    if parts == 1:
        return [obj]
    if isinstance(obj, torch.Tensor):
        return list(obj.chunk(parts))
    if isinstance(obj, list):
        k = math.ceil(len(obj) / parts)
        return [obj[i * k:(i + 1) * k] for i in range(parts)]
    if isinstance(obj, dict):
        pieces = {key: _split(v, parts) for key, v in obj.items()}
        return [{key: pieces[key][i] for key in obj} for i in range(parts)]
    raise TypeError(f"cannot split a batch of type {type(obj).__name__}")


# --------------------------------------------------------------------------------------- logging
class _Log:
    """Rank-0 output: a rich progress bar on a terminal, plain periodic lines otherwise, and JSONL rows."""

    def __init__(self, out: Path | None, enabled: bool, quiet: bool, total_steps: int, tensorboard: bool) -> None:
        self.enabled = enabled
        self.quiet = quiet or not enabled
        self.file = None
        self.tb = None
        if enabled and out is not None:
            out.mkdir(parents=True, exist_ok=True)
            self.file = (out / "metrics.jsonl").open("a")
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter

                    self.tb = SummaryWriter(str(out / "tensorboard"))
                except ImportError:
                    print("tensorboard is not installed; logging to metrics.jsonl only", file=sys.stderr)
        self.progress = None
        if not self.quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=False)
            self.task = self.progress.add_task("train", total=total_steps, info="")
            self.progress.start()

    def row(self, row: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(row) + "\n")
            self.file.flush()
        if self.tb is not None:
            step = row.get("step", 0)
            for k, v in row.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{row.get('kind', 'train')}/{k}", v, step)

    def advance(self, step: int, text: str) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=step, info=text)

    def line(self, text: str) -> None:
        if self.quiet:
            return
        if self.progress is not None:
            self.progress.console.print(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self.file is not None:
            self.file.close()
        if self.tb is not None:
            self.tb.close()


# --------------------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, task: Any = None, batch_size: int = 128, device: torch.device | str | None = None,
             amp: str = "none", info: DistInfo = DistInfo(), memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, float]:
    """Average ``task.evaluate`` metrics of ``model`` over ``dataset`` (sharded over processes under torchrun)."""
    task = task or ClassificationTask()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    idx = list(range(info.rank, len(dataset), info.world))
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)
                if amp != "none" else contextlib.nullcontext())
    for start in range(0, len(idx), batch_size):
        images, targets = _collate([dataset[i] for i in idx[start:start + batch_size]])
        images = images.to(device, memory_format=memory_format)
        with autocast:
            out = task.evaluate(model, images, _to(targets, device))
        for k, v in out.items():
            sums[k] = sums.get(k, torch.zeros((), device=device)) + v.float()
    if info.enabled:
        keys = sorted(sums)
        vec = torch.stack([sums[k] for k in keys]) if keys else torch.zeros(0, device=device)
        dist.all_reduce(vec)
        sums = dict(zip(keys, vec))
    model.train(was_training)
    count = float(sums.pop("count", torch.tensor(1.0)))
    return {k: float(v) / max(count, 1.0) for k, v in sums.items()}


# --------------------------------------------------------------------------------------- trainer
class Trainer:
    """Train ``model`` on ``train_data`` (and validate on ``val_data``) as ``config`` says.

    ``task`` supplies loss and metrics (default: classification). ``optimizer`` and ``scheduler`` may be
    given; otherwise they are built from the config. ``batch_transform(images, targets, generator)``
    acts on each batch with the trainer's checkpointed generator (default: mixup/CutMix as configured).
    ``callbacks`` are called as ``cb(trainer, row)`` at each epoch end and may add numbers to the epoch's
    row. ``out`` (or ``config.out``) is the run directory; without one nothing is written. ``fit()``
    returns the list of per-epoch metric rows.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Dataset,
        val_data: Dataset | None = None,
        config: TrainConfig | None = None,
        task: Any = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        out: str | Path | None = None,
        quiet: bool = False,
        batch_transform: Callable[[torch.Tensor, Any, torch.Generator], tuple[torch.Tensor, Any]] | None = None,
        callbacks: list[Callable[[Trainer, dict[str, Any]], None]] = (),
    ) -> None:
        cfg = config or TrainConfig()
        if cfg.bag_of_tricks:
            cfg = apply_bag_of_tricks(copy.deepcopy(cfg))
        self.cfg = cfg
        if cfg.amp not in ("none", "bf16", "fp16"):
            raise unknown("amp mode", cfg.amp, ("none", "bf16", "fp16"))
        if cfg.on_nan not in ("stop", "skip"):
            raise unknown("on_nan policy", cfg.on_nan, ("stop", "skip"))
        self.device = resolve_device(cfg.device)
        self.info = init_distributed(self.device)
        if self.info.enabled and self.device.type == "cuda":
            self.device = torch.device(f"cuda:{self.info.local_rank}")
            torch.cuda.set_device(self.device)
        if cfg.batch_size % (self.info.world * cfg.grad_accum):
            raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by processes x grad_accum = {self.info.world * cfg.grad_accum}")
        if len(train_data) < cfg.batch_size:
            raise ConfigError(f"batch_size {cfg.batch_size} is larger than the training set ({len(train_data)} samples)")
        self._seed_everything(cfg.seed + self.info.rank)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

        self.out = Path(out or cfg.out) if (out or cfg.out) else None
        self.train_data, self.val_data = train_data, val_data
        self.task = task or ClassificationTask(cfg.label_smoothing)
        self.batch_transform = batch_transform or self._mixing(model, train_data)
        self.augment = randaugment_for(train_data, cfg.randaugment.n, cfg.randaugment.m) if cfg.randaugment.n > 0 else None
        self.callbacks = list(callbacks)
        self.generator = torch.Generator().manual_seed(cfg.seed * 31 + 17 + self.info.rank)  # batch-level randomness

        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        if cfg.zero_gamma:
            zero_gamma_init(model)
        self.drop_blocks = drop_blocks_of(model)  # scheduled by the Trainer (keep_prob ramp)
        if cfg.dropblock.drop_prob > 0 and not self.drop_blocks:
            self.drop_blocks = add_drop_block(model, cfg.dropblock.drop_prob, cfg.dropblock.block_size, cfg.dropblock.stages)
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.optimizer = optimizer or build_optimizer(cfg, self.model, len(train_data))
        self.sam = isinstance(self.optimizer, SAM)
        if self.sam and cfg.amp == "fp16":
            raise ConfigError("SAM with amp=fp16 is not supported (its first step needs unscaled gradients); use amp=bf16")
        self.steps_per_epoch = len(train_data) // cfg.batch_size
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.scheduler = scheduler if scheduler is not None else build_scheduler(cfg, self.optimizer, self.total_steps, self.steps_per_epoch)
        self.swa = SWA(self.model, cfg.swa, self.steps_per_epoch) if cfg.swa.start is not None else None
        self._decayed = [g for g in self.optimizer.param_groups if g["weight_decay"] > 0]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
        self.ema = None
        if cfg.ema_decay > 0:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
        self.net: nn.Module = self.model
        if self.info.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            self.net = torch.compile(self.net)

        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.skipped_steps = 0
        self.last_checkpoint: Path | None = None
        self.quiet = quiet
        self._log: _Log | None = None

    def _mixing(self, model: nn.Module, train_data: Dataset) -> Callable | None:
        """mixup and/or CutMix from the config, for the dataset's (or model's) number of classes."""
        cfg = self.cfg
        if cfg.mixup.alpha <= 0 and cfg.cutmix.alpha <= 0:
            return None
        num_classes = getattr(train_data, "num_classes", None) or getattr(model, "num_classes", None)
        if not num_classes:
            raise ConfigError("mixup/cutmix need the number of classes (a dataset or model with num_classes)")
        return MixUpOrCutMix(cfg.mixup.alpha, cfg.cutmix.alpha, num_classes, cfg.cutmix.switch_prob)

    # ------------------------------------------------------------------ state
    @staticmethod
    def _seed_everything(seed: int) -> None:
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def state_dict(self) -> dict[str, Any]:
        """Everything but the weights that exact resume needs."""
        state = {
            "step": self.step, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "history": json.dumps(self.history),
            "skipped_steps": self.skipped_steps,
            "torch_rng": torch.get_rng_state(), "generator": self.generator.get_state(),
            "python_rng": json.dumps(random.getstate()),
            "numpy_rng": json.dumps([v.tolist() if isinstance(v, np.ndarray) else v for v in np.random.get_state()]),
        }
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        if self.swa is not None:
            state["swa"] = self.swa.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        if self.swa is not None and "swa" in state:  # before the optimizer: it may recreate the SWA scheduler
            self.swa.load_state_dict(state["swa"], self.optimizer)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.history = json.loads(state["history"])
        self.skipped_steps = state.get("skipped_steps", 0)
        torch.set_rng_state(state["torch_rng"])
        self.generator.set_state(state["generator"])
        py = json.loads(state["python_rng"])
        random.setstate((py[0], tuple(py[1]), py[2]))
        npst = json.loads(state["numpy_rng"])
        np.random.set_state((npst[0], np.array(npst[1], dtype=np.uint32), *npst[2:]))
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        if self.ema is not None and "ema" in state:
            self.ema.load_state_dict(state["ema"])

    def save_checkpoint(self) -> Path | None:
        if self.out is None:
            return None
        if self.info.is_main:
            self.last_checkpoint = save_checkpoint(self.out / "checkpoints", self.step, self.model.state_dict(),
                                                   self.state_dict(), keep=self.cfg.keep_checkpoints)
        if self.info.enabled:
            dist.barrier()
        return self.last_checkpoint

    def resume(self) -> bool:
        """Load the newest good checkpoint of the run directory; False if there is none."""
        if self.out is None:
            raise ConfigError("resume needs a run directory (out)")
        clean_temporaries(self.out / "checkpoints")
        found = load_latest(self.out / "checkpoints")
        if found is None:
            if list_checkpoints(self.out / "checkpoints"):
                raise PaperzooError(f"no usable checkpoint in {self.out / 'checkpoints'}: all are corrupt")
            return False
        path, model_state, train_state = found
        self.model.load_state_dict(model_state)
        self.load_state_dict(train_state)
        self.last_checkpoint = path
        metrics = self.out / "metrics.jsonl"
        if self.info.is_main and metrics.exists():  # drop rows logged after the checkpoint we resume from
            from .plots import read_metrics

            kept = [r for r in read_metrics(metrics) if r.get("step", 0) <= self.step]
            metrics.write_text("".join(json.dumps(r) + "\n" for r in kept))
        return True

    @property
    def finished(self) -> bool:
        return self.step >= self.total_steps

    # ------------------------------------------------------------------ loop
    def _loader(self, dataset: Dataset, epoch: int, start: int, shuffle: bool, global_batch: int) -> DataLoader:
        sampler = _EpochBatches(len(dataset), global_batch, self.cfg.seed, epoch, start, self.info, shuffle)
        # A generator of its own: creating the iterator must not draw from the global RNG, whose state
        # (dropout, drop-path) is checkpointed mid-epoch.
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        return DataLoader(_SeededSamples(dataset, self.cfg.seed, self.augment), batch_sampler=sampler, collate_fn=_collate,
                          num_workers=self.cfg.data.num_workers, pin_memory=self.device.type == "cuda",
                          persistent_workers=False, generator=generator)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.cfg.amp == "none":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _nonfinite(self, loss: torch.Tensor) -> bool:
        bad = torch.tensor(0.0 if torch.isfinite(loss.detach()).all() else 1.0, device=self.device)
        if self.info.enabled:
            dist.all_reduce(bad)
        return bool(bad.item() > 0)

    def _forward_backward(self, images: torch.Tensor, targets: Any) -> tuple[float, dict[str, float]]:
        """Loss and gradients over ``grad_accum`` micro-batches (raises _NonFinite on a bad loss)."""
        parts = self.cfg.grad_accum
        logs: dict[str, float] = {}
        total = 0.0
        for i, (x, y) in enumerate(zip(_split(images, parts), _split(targets, parts))):
            sync = contextlib.nullcontext()
            if self.info.enabled and i < parts - 1:
                sync = self.net.no_sync()
            with sync:
                with self._autocast():
                    loss, extra = self.task.loss(self.net, x, y)
                if self._nonfinite(loss):
                    raise _NonFinite(float(loss.detach()))
                self.scaler.scale(loss / parts).backward()
            total += float(loss.detach()) / parts
            for k, v in extra.items():
                logs[k] = logs.get(k, 0.0) + float(v) / parts
        return total, logs

    def _clip(self, logs: dict[str, float]) -> None:
        if self.cfg.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip_grad))

    def _sam_second_pass(self, images: torch.Tensor, targets: Any, logs: dict[str, float]) -> float:
        """SAM's closure: the gradient at the perturbed weights, with BatchNorm statistics left alone."""
        with _frozen_norm_statistics(self.model):
            loss, _ = self._forward_backward(images, targets)
        self._clip(logs)
        logs["sam_loss"] = loss
        return loss

    def train_step(self, images: torch.Tensor, targets: Any) -> dict[str, float] | None:
        """One optimizer step over a (per-process) batch, in ``grad_accum`` micro-batches (two passes with
        SAM). Returns the step's logs, or None when a non-finite loss made it skip."""
        self.net.train()
        try:
            total, logs = self._forward_backward(images, targets)
            if self.sam:
                self.optimizer.step(lambda: self._sam_second_pass(images, targets, logs))
            else:
                self._clip(logs)
                self.scaler.step(self.optimizer)
                self.scaler.update()
        except _NonFinite as bad:
            self.optimizer.zero_grad(set_to_none=True)
            return self._on_nonfinite(bad.value)
        self.optimizer.zero_grad(set_to_none=True)
        if self.swa is not None and self.swa.takes_over_schedule(self.step + 1):
            self.swa.step_schedule(self.optimizer)
        else:
            self.scheduler.step()
        if self.cfg.weight_decay_norm > 0 and self.cfg.schedule == "sgdr":
            self._restart_weight_decay(self.step + 1)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        logs["loss"] = total
        return logs

    def _restart_weight_decay(self, step: int) -> None:
        """AdamWR: the normalised weight decay follows the length T_i of the current SGDR cycle."""
        cfg = self.cfg
        _, t_i = sgdr_cycle(step / self.steps_per_epoch, cfg.sgdr.t0, cfg.sgdr.t_mult)
        decay = normalized_weight_decay(cfg.weight_decay_norm, cfg.batch_size, len(self.train_data), t_i)
        for group in self._decayed:
            group["weight_decay"] = decay

    def _set_drop_block_ramp(self) -> None:
        """DropBlock's schedule: keep_prob falls linearly from 1 to its target over ``dropblock.ramp`` of training."""
        span = self.cfg.dropblock.ramp * self.total_steps
        ramp = min(1.0, self.step / span) if span > 0 else 1.0
        for block in self.drop_blocks:
            block.ramp = ramp

    def _on_nonfinite(self, value: float) -> None:
        where = f"step {self.step + 1} (epoch {self.epoch + 1})"
        if self.cfg.on_nan == "skip":
            self.skipped_steps += 1
            if self._log:
                self._log.line(f"warning: loss is {value} at {where}; step skipped")
            return None
        ckpt = f"; last good checkpoint: {self.last_checkpoint}" if self.last_checkpoint else ""
        raise NonFiniteLossError(f"loss is {value} at {where}; stopping{ckpt} (set on_nan=skip to skip such steps)")

    def evaluate(self, dataset: Dataset | None = None, model: nn.Module | None = None, batch_size: int | None = None) -> dict[str, float]:
        """Metrics of ``model`` (default: the trained model) on ``dataset`` (default: validation data)."""
        dataset = dataset if dataset is not None else self.val_data
        if dataset is None:
            return {}
        return evaluate(model if model is not None else self.model, dataset, self.task, batch_size or self.cfg.batch_size,
                        self.device, self.cfg.amp, self.info, self.memory_format)

    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train to the configured number of epochs (continuing from a checkpoint with ``resume``)."""
        cfg = self.cfg
        if resume and not self.resume():
            raise PaperzooError(f"nothing to resume in {self.out}: no checkpoint found")
        is_main = self.info.is_main
        if self.out is not None and is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            dump_yaml(cfg, self.out / "config.yaml")
        self._log = log = _Log(self.out, is_main, self.quiet, self.total_steps, cfg.tensorboard)
        if self.finished:
            log.line(f"run in {self.out} is already finished ({self.step}/{self.total_steps} steps); nothing to do")
            log.close()
            return self.history
        if resume:
            log.line(f"resuming from {self.last_checkpoint} at step {self.step}/{self.total_steps}")
        try:
            self._fit_loop(log)
        except KeyboardInterrupt:
            path = self.save_checkpoint()
            log.close()
            where = f"; checkpoint saved to {path}; continue with --resume {self.out}" if path else ""
            raise TrainingInterrupted(f"interrupted at step {self.step}{where}") from None
        except BaseException:
            log.close()
            raise
        log.close()
        if self.out is not None and is_main:
            save_weights(self.model.state_dict(), self.out / "model.safetensors", self._weights_metadata())
            if self.ema is not None:
                save_weights(self.ema.module.state_dict(), self.out / "model_ema.safetensors")
            if self.swa is not None and self.swa.n_averaged > 0:
                save_weights(self.swa.module.state_dict(), self.out / "model_swa.safetensors")
        return self.history

    def _weights_metadata(self) -> dict[str, str]:
        """What ``paperzoo cam`` and ``eval`` need to use the weights: model, input normalisation, classes."""
        meta = {"model": self.cfg.model, "step": str(self.step)}
        for key in ("mean", "std", "classes", "image_size"):
            value = getattr(self.train_data, key, None)
            if value is not None:
                meta[key] = json.dumps(list(value) if isinstance(value, (list, tuple)) else value)
        return meta

    def _swa_epoch_end(self) -> bool:
        """Average the weights if this epoch ends an SWA cycle; at the last epoch, recompute the average's
        BatchNorm statistics. True when the average is ready to evaluate."""
        self.swa.on_epoch_end(self.epoch, self.model)
        if self.epoch < self.cfg.epochs or self.swa.n_averaged == 0:
            return False
        self.swa.update_bn(self._loader(self.train_data, self.cfg.epochs, 0, False, self.cfg.batch_size), self.device)
        return True

    def _fit_loop(self, log: _Log) -> None:
        cfg = self.cfg
        local_batch = cfg.batch_size // self.info.world
        while self.epoch < cfg.epochs:
            epoch = self.epoch
            t0 = time.perf_counter()
            run_loss, run_n, seen, t_log = 0.0, 0, 0, time.perf_counter()
            epoch_loss, epoch_n = 0.0, 0
            loader = self._loader(self.train_data, epoch, self.batch_in_epoch, True, cfg.batch_size)
            for images, targets in loader:
                images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
                targets = _to(targets, self.device)
                if self.batch_transform is not None:
                    images, targets = self.batch_transform(images, targets, self.generator)
                if self.drop_blocks:
                    self._set_drop_block_ramp()
                logs = self.train_step(images, targets)
                self.step += 1
                self.batch_in_epoch += 1
                seen += local_batch * self.info.world
                if logs is not None:
                    run_loss += logs["loss"]
                    run_n += 1
                    epoch_loss += logs["loss"]
                    epoch_n += 1
                if self.step % cfg.log_every == 0 or self.batch_in_epoch == self.steps_per_epoch:
                    dt = time.perf_counter() - t_log
                    row = {"kind": "step", "step": self.step, "epoch": epoch + 1,
                           "loss": run_loss / max(run_n, 1), "lr": self.optimizer.param_groups[0]["lr"],
                           "img_per_s": seen / max(dt, 1e-9)}
                    if logs:
                        row.update({k: v for k, v in logs.items() if k != "loss"})
                    log.row(row)
                    log.advance(self.step, f"epoch {epoch + 1}/{cfg.epochs} loss {row['loss']:.4f} {row['img_per_s']:.0f} img/s")
                    if log.progress is None:
                        log.line(f"epoch {epoch + 1}/{cfg.epochs} step {self.step}/{self.total_steps} "
                                 f"loss {row['loss']:.4f} lr {row['lr']:.3g} {row['img_per_s']:.0f} img/s")
                    run_loss, run_n, seen, t_log = 0.0, 0, 0, time.perf_counter()
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0 and self.batch_in_epoch < self.steps_per_epoch:
                    self.save_checkpoint()
            # epoch end
            self.epoch += 1
            self.batch_in_epoch = 0
            row: dict[str, Any] = {"kind": "epoch", "epoch": self.epoch, "step": self.step,
                                   "train_loss": epoch_loss / max(epoch_n, 1), "time": time.perf_counter() - t0}
            swa_ready = self.swa is not None and self._swa_epoch_end()
            if self.val_data is not None and (self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs):
                row.update({f"val_{k}": v for k, v in self.evaluate().items()})
                if self.ema is not None:
                    row.update({f"ema_val_{k}": v for k, v in self.evaluate(model=self.ema.module).items()})
                if swa_ready:
                    row.update({f"swa_val_{k}": v for k, v in self.evaluate(model=self.swa.module).items()})
            for callback in self.callbacks:
                callback(self, row)
            self.history.append(row)
            log.row(row)
            log.line("epoch {epoch}: ".format(**row) + " ".join(
                f"{k} {v:.4f}" for k, v in row.items() if k not in ("kind", "epoch", "step") and isinstance(v, float)))
            self.save_checkpoint()
            if self.out is not None and self.info.is_main:
                from .plots import plot_curves

                plot_curves(self.out / "metrics.jsonl", self.out / "curves.png")
