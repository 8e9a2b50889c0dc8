"""The one training engine. Every paper's training, ``paperzoo train`` and every reproduction go through
``Trainer``; a task (``paperzoo.tasks``) says what a batch, the loss, a prediction and the metrics are (and may
own its training step); callbacks (``train.callbacks``) add the training techniques. The loop never changes.

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
  ``label_smoothing``, ``drop_path_rate``) and ``bag_of_tricks=true``. Each is a callback with a
  ``state_dict`` (Lookahead's slow weights live in the optimizer), so exact resume covers them. An optimizer
  whose step needs a closure (SAM's second pass) gets one that re-runs the batch with BatchNorm statistics
  frozen.
"""
from __future__ import annotations

import contextlib
import copy
import json
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..config import dump_yaml
from ..errors import ConfigError, PaperzooError, unknown
from ..tasks import ClassificationTask, Task
from .callbacks import BatchTransform, Callback, as_callback, from_config
from .checkpoint import clean_temporaries, list_checkpoints, load_latest, save_checkpoint, save_weights
from .config import TrainConfig
from .distributed import DistInfo, init_distributed, resolve_device
from .log import RunLog
from .optimizers import build_optimizer
from .sampling import EpochBatches, SeededSamples
from .schedules import build_scheduler
from .tricks import apply_bag_of_tricks


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


def to_device(obj: Any, device: torch.device, memory_format: torch.memory_format = torch.contiguous_format) -> Any:
    """Move a batch (tensors, tv_tensors, and lists, tuples and dicts of them) to ``device``; image batches
    (4-d float tensors) take ``memory_format``."""
    if isinstance(obj, torch.Tensor):
        if obj.ndim == 4 and obj.is_floating_point():
            return obj.to(device, non_blocking=True, memory_format=memory_format)
        return obj.to(device, non_blocking=True)
    if isinstance(obj, dict):
        return {k: to_device(v, device, memory_format) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device, memory_format) for v in obj)
    return obj


# --------------------------------------------------------------------------------------- evaluation
def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if amp == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, task: Task | None = None, batch_size: int = 128,
             device: torch.device | str | None = None, amp: str = "none", info: DistInfo = DistInfo(),
             memory_format: torch.memory_format = torch.contiguous_format, evaluator: Any = None) -> dict[str, float]:
    """The task's metrics of ``model`` on ``dataset`` (default task: classification): ``task.predict`` on each
    batch, fed to one ``task.evaluator()`` (or the ``evaluator`` given); under torchrun each process takes its
    shard and the evaluator is synchronised before ``compute``."""
    task = task or ClassificationTask()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    evaluator = evaluator if evaluator is not None else task.evaluator()
    idx = list(range(info.rank, len(dataset), info.world))
    for start in range(0, len(idx), batch_size):
        batch = to_device(task.collate([dataset[i] for i in idx[start:start + batch_size]]), device, memory_format)
        with _autocast(device, amp):
            predictions = task.predict(model, batch)
        evaluator.update(predictions, batch)
    if info.enabled:
        evaluator.synchronize()
    model.train(was_training)
    return evaluator.compute()


def default_task(model: nn.Module, cfg: TrainConfig, data: Dataset | None = None) -> Task:
    """The run's task: ``cfg.task`` if set, else the model's metadata (``meta.task``), built from the config."""
    from ..tasks import build_task
    from ..weights import _inner

    inner, _ = _inner(model)
    return build_task(cfg, getattr(inner, "meta", None) or getattr(model, "meta", None), data)


@contextlib.contextmanager
def frozen_norm_statistics(model: nn.Module) -> Iterator[None]:
    """BatchNorm running statistics stay as they are (a closure re-evaluating the same batch: SAM's second pass)."""
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


# --------------------------------------------------------------------------------------- trainer
class Trainer:
    """Train ``model`` on ``train_data`` (and validate on ``val_data``) as ``config`` says.

    ``task`` supplies batching, loss, predictions and metrics (default: the model's ``meta.task``).
    ``optimizer`` and ``scheduler`` may be given; otherwise they are built from the config.
    ``callbacks`` are ``train.callbacks.Callback`` objects or plain functions ``fn(trainer, row)`` called at each
    epoch end (they may add numbers to the epoch's row); the config's techniques add their own callbacks.
    ``batch_transform(images, targets, generator)`` acts on each batch with the trainer's checkpointed generator,
    before the config's mixup/CutMix (an augmentation, then mixing). ``out`` (or ``config.out``) is the run directory; without one nothing
    is written. ``fit()`` returns the list of per-epoch metric rows.
    """

    def __init__(
        self,
        model: nn.Module,
        train_data: Dataset,
        val_data: Dataset | None = None,
        config: TrainConfig | None = None,
        task: Task | None = None,
        optimizer: torch.optim.Optimizer | None = None,
        scheduler: Any = None,
        out: str | Path | None = None,
        quiet: bool = False,
        batch_transform: Callable[[torch.Tensor, Any, torch.Generator], tuple[torch.Tensor, Any]] | None = None,
        callbacks: Sequence[Callback | Callable[[Trainer, dict[str, Any]], None]] = (),
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
        self.task = task or default_task(model, cfg, train_data)
        first = [BatchTransform(batch_transform)] if batch_transform is not None else []  # before mixup/CutMix
        self.callbacks: list[Callback] = first + from_config(cfg, model, train_data) + [as_callback(c) for c in callbacks]
        self.generator = torch.Generator().manual_seed(cfg.seed * 31 + 17 + self.info.rank)  # batch-level randomness

        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        for cb in self.callbacks:
            cb.on_model(self, model)
        self.model = model.to(self.device, memory_format=self.memory_format)
        self.optimizer = optimizer or build_optimizer(cfg, self.model, len(train_data))
        self.closure_optimizer = bool(getattr(self.optimizer, "needs_closure", False))
        if self.closure_optimizer and cfg.amp == "fp16":
            raise ConfigError(f"{type(self.optimizer).__name__} with amp=fp16 is not supported (its first step needs "
                              "unscaled gradients); use amp=bf16")
        self.steps_per_epoch = len(train_data) // cfg.batch_size
        self.total_steps = self.steps_per_epoch * cfg.epochs
        self.scheduler = scheduler if scheduler is not None else build_scheduler(cfg, self.optimizer, self.total_steps, self.steps_per_epoch)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")
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
        self.validating = False  # True while the epoch-end validation runs (callbacks add their evaluations then)
        self._log: RunLog | None = None
        self.task.setup(self)
        for cb in self.callbacks:
            cb.setup(self)
        self.sample_transforms = [cb.sample_transform for cb in self.callbacks if cb.sample_transform is not None]
        if getattr(self.task, "sample_transform", None) is not None:  # a task's own views (BYOL's augmentation pair)
            self.sample_transforms.append(self.task.sample_transform)

    def callback(self, kind: type) -> Any:
        """The first callback of class ``kind`` (e.g. ``trainer.callback(SWA).module``), or None."""
        return next((cb for cb in self.callbacks if isinstance(cb, kind)), None)

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
            "task": self.task.state_dict(),
            "callbacks": {f"{i}:{type(cb).__name__}": cb.state_dict() for i, cb in enumerate(self.callbacks)},
        }
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step, self.epoch, self.batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
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
        self.task.load_state_dict(state.get("task", {}))
        saved = state.get("callbacks", {})
        mine = {f"{i}:{type(cb).__name__}": cb for i, cb in enumerate(self.callbacks)}
        if set(saved) != set(mine):
            raise ConfigError(f"the checkpoint was written with other training techniques ({', '.join(saved) or 'none'}) "
                              f"than this run has ({', '.join(mine) or 'none'}); resume with the run's own config")
        for key, cb in mine.items():
            cb.load_state_dict(saved[key])

    def save_checkpoint(self) -> Path | None:
        if self.out is None:
            return None
        if self.info.is_main:
            self.last_checkpoint = save_checkpoint(self.out / "checkpoints", self.step, self.model.state_dict(),
                                                   self.state_dict(), keep=self.cfg.keep_checkpoints)
        if self.info.enabled:
            dist.barrier()
        return self.last_checkpoint

    def save_extra_weights(self, name: str, state: dict[str, torch.Tensor]) -> None:
        """Write further weights of the run (an EMA or SWA model) beside ``model.safetensors``."""
        if self.out is not None and self.info.is_main:
            save_weights(state, self.out / name, self._weights_metadata())

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

    # ------------------------------------------------------------------ building blocks of a step
    def loader(self, dataset: Dataset, epoch: int, start: int = 0, shuffle: bool = True,
               global_batch: int | None = None) -> DataLoader:
        """This process's batches of ``dataset`` for ``epoch`` from batch ``start``, collated by the task."""
        sampler = EpochBatches(len(dataset), global_batch or self.cfg.batch_size, self.cfg.seed, epoch, start, self.info, shuffle)
        # A generator of its own: creating the iterator must not draw from the global RNG, whose state
        # (dropout, drop-path) is checkpointed mid-epoch.
        generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        return DataLoader(SeededSamples(dataset, self.cfg.seed, self.sample_transforms), batch_sampler=sampler,
                          collate_fn=self.task.collate, num_workers=self.cfg.data.num_workers,
                          pin_memory=self.device.type == "cuda", persistent_workers=False, generator=generator)

    def autocast(self) -> contextlib.AbstractContextManager:
        return _autocast(self.device, self.cfg.amp)

    def check_finite(self, loss: torch.Tensor) -> None:
        """Raise (to stop or skip the step, per ``on_nan``) when ``loss`` is not finite on any process."""
        bad = torch.tensor(0.0 if torch.isfinite(loss.detach()).all() else 1.0, device=self.device)
        if self.info.enabled:
            dist.all_reduce(bad)
        if bool(bad.item() > 0):
            raise _NonFinite(float(loss.detach()))

    def forward_backward(self, batch: Any, loss_fn: Callable[[nn.Module, Any], tuple[torch.Tensor, dict]] | None = None
                         ) -> tuple[float, dict[str, float]]:
        """Loss and gradients over ``grad_accum`` micro-batches of ``batch`` (``loss_fn`` defaults to the task's)."""
        loss_fn = loss_fn or self.task.loss
        parts = self.cfg.grad_accum
        logs: dict[str, float] = {}
        total = 0.0
        for i, micro in enumerate(self.task.split(batch, parts)):
            sync = self.net.no_sync() if self.info.enabled and i < parts - 1 else contextlib.nullcontext()
            with sync:
                with self.autocast():
                    loss, extra = loss_fn(self.net, micro)
                self.check_finite(loss)
                self.scaler.scale(loss / parts).backward()
            total += float(loss.detach()) / parts
            for k, v in extra.items():
                logs[k] = logs.get(k, 0.0) + float(v) / parts
        return total, logs

    def clip_gradients(self, logs: dict[str, float], optimizer: torch.optim.Optimizer | None = None) -> None:
        if self.cfg.clip_grad > 0:
            optimizer = optimizer or self.optimizer
            self.scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            logs["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad))

    def optimizer_step(self, batch: Any, logs: dict[str, float]) -> None:
        """Step the optimizer on the gradients just computed. An optimizer that needs a closure (SAM) gets one
        that recomputes loss and gradients on the same batch with BatchNorm statistics frozen."""
        if self.closure_optimizer:
            def closure() -> float:
                with frozen_norm_statistics(self.model):
                    loss, _ = self.forward_backward(batch)
                self.clip_gradients(logs)
                logs["closure_loss"] = loss
                return loss

            self.optimizer.step(closure)
        else:
            self.clip_gradients(logs)
            self.scaler.step(self.optimizer)
            self.scaler.update()

    def standard_step(self, batch: Any) -> dict[str, float] | None:
        """One optimizer step over a (per-process) batch in ``grad_accum`` micro-batches, then the schedule.
        Returns the step's logs, or None when a non-finite loss made it skip."""
        try:
            total, logs = self.forward_backward(batch)
            self.optimizer_step(batch, logs)
        except _NonFinite as bad:
            self.optimizer.zero_grad(set_to_none=True)
            return self._on_nonfinite(bad.value)
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        logs["loss"] = total
        return logs

    def train_step(self, batch: Any) -> dict[str, float] | None:
        """One training step: the task's own (``task.train_step``), by default ``standard_step``."""
        self.net.train()
        return self.task.train_step(self, batch)

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

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool = False) -> list[dict[str, Any]]:
        """Train to the configured number of epochs (continuing from a checkpoint with ``resume``)."""
        cfg = self.cfg
        if resume and not self.resume():
            raise PaperzooError(f"nothing to resume in {self.out}: no checkpoint found")
        is_main = self.info.is_main
        if self.out is not None and is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            dump_yaml(cfg, self.out / "config.yaml")
        self._log = log = RunLog(self.out, is_main, self.quiet, self.total_steps, cfg.tensorboard)
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
        for cb in self.callbacks:
            cb.on_fit_end(self)
        return self.history

    def _weights_metadata(self) -> dict[str, str]:
        """What ``paperzoo eval``, ``predict`` and ``cam`` need to use the weights: model, task, input normalisation,
        classes."""
        meta = {"model": self.cfg.model, "step": str(self.step), "task": self.task.name,
                "model_args": json.dumps(self.cfg.model_args)}
        for key in ("mean", "std", "classes", "categories", "image_size"):
            value = getattr(self.train_data, key, None)
            if value is not None:
                meta[key] = json.dumps(list(value) if isinstance(value, (list, tuple)) else value)
        return meta

    def _fit_loop(self, log: RunLog) -> None:
        cfg = self.cfg
        while self.epoch < cfg.epochs:
            epoch = self.epoch
            t0 = time.perf_counter()
            run_loss, run_n, seen, t_log = 0.0, 0, 0, time.perf_counter()
            epoch_loss, epoch_n = 0.0, 0
            for batch in self.loader(self.train_data, epoch, self.batch_in_epoch):
                batch = to_device(batch, self.device, self.memory_format)
                for cb in self.callbacks:
                    batch = cb.on_batch(self, batch)
                for cb in self.callbacks:
                    cb.on_step_start(self)
                size = self.task.batch_size(batch)
                logs = self.train_step(batch)
                self.step += 1
                self.batch_in_epoch += 1
                seen += size * self.info.world
                if logs is not None:
                    for cb in self.callbacks:
                        cb.on_step_end(self, logs)
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
            self.validating = self.val_data is not None and (self.epoch % cfg.eval_every == 0 or self.epoch == cfg.epochs)
            if self.validating:
                row.update({f"val_{k}": v for k, v in self.evaluate().items()})
            for cb in self.callbacks:
                cb.on_epoch_end(self, row)
            self.validating = False
            self.history.append(row)
            log.row(row)
            log.line("epoch {epoch}: ".format(**row) + " ".join(
                f"{k} {v:.4f}" for k, v in row.items() if k not in ("kind", "epoch", "step") and isinstance(v, float)))
            self.save_checkpoint()
            if self.out is not None and self.info.is_main:
                from .plots import plot_curves

                plot_curves(self.out / "metrics.jsonl", self.out / "curves.png")
