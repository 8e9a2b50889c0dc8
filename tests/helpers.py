"""Helpers for reference-equivalence tests."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


@torch.no_grad()
def perturb_(model: nn.Module, seed: int = 0, scale: float = 0.1) -> nn.Module:
    """Move every float tensor of ``model`` away from its initial value, so that zero-initialised gammas,
    unit norm weights and empty running statistics all take part in an equivalence check."""
    g = torch.Generator().manual_seed(seed)
    for name, t in model.state_dict().items():
        if not t.is_floating_point():
            continue
        noise = torch.randn(t.shape, generator=g, dtype=torch.float32).to(t.dtype)
        if name.endswith("running_var"):
            t.copy_(torch.rand(t.shape, generator=g) + 0.5)
        elif name.endswith("running_mean"):
            t.copy_(noise * scale)
        else:
            std = float(t.float().std()) if t.numel() > 1 else 0.0
            t.add_(noise * scale * (std if std > 0 else 1.0))
    return model


# The test being run (set by conftest), so that helpers can record what they measured on it.
CURRENT: dict[str, object] = {"item": None}


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|; the largest value a test measures is recorded on it as ``max_rel_err`` (the figure
    ``paperzoo show`` lists for the check)."""
    err = float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
    item = CURRENT["item"]
    if item is not None:
        props = dict(item.user_properties)
        if err >= props.get("max_rel_err", -1.0):
            item.user_properties[:] = [p for p in item.user_properties if p[0] != "max_rel_err"] + [("max_rel_err", err)]
    return err


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs(model: nn.Module, x: torch.Tensor) -> float:
    """Multiply-accumulates of one forward pass (torch's FLOP counter counts 2 FLOPs per MAC)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2


def strict_load(record_property, model: nn.Module, state: dict, source: str) -> int:
    """``load_weights`` strictly (it raises, listing the keys, on any name or shape that does not match) and record
    how many of the model's tensors it filled (BatchNorm counters aside); returns that count."""
    import paperzoo as pz

    pz.load_weights(model, state, source=source)
    filled = [k for k in model.state_dict() if not k.endswith("num_batches_tracked")]
    assert filled
    record_property(f"num_tensors_loaded_strictly_from_{source}", len(filled))
    return len(filled)


# `paperzoo train` that kills itself with SIGKILL when step KILL_AT begins: between two checkpoints, at a step
# fixed in advance (polling from outside could miss it, or find the run already finished on a fast machine).
KILLED_TRAIN = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job inherits SIGINT ignored
from paperzoo.cli import main
from paperzoo.train import Trainer
step = Trainer.train_step
def train_step(self, batch):
    if self.step == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), getattr(signal, os.environ.get("KILL_SIGNAL", "SIGKILL")))
    return step(self, batch)
Trainer.train_step = train_step
main(sys.argv[1:])
"""


def kill_and_resume(args: list[str], tmp_path: Path, kill_at: int) -> tuple[dict, dict]:
    """Final weights of an uninterrupted ``paperzoo train ARGS`` and of the same run SIGKILLed when step ``kill_at``
    begins and then resumed with ``--resume``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    ref = subprocess.run([sys.executable, "-m", "paperzoo", "train", *args, "--out", str(tmp_path / "ref")],
                         capture_output=True, env=env, cwd=ROOT)
    assert ref.returncode == 0, ref.stderr.decode()
    run = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", KILLED_TRAIN, "train", *args, "--out", str(run)], capture_output=True,
                            env={**env, "KILL_AT": str(kill_at)}, cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert not (run / "model.safetensors").exists(), "the run was killed before it finished"
    resumed = subprocess.run([sys.executable, "-m", "paperzoo", "train", "--resume", str(run)], capture_output=True,
                             env=env, cwd=ROOT)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert b"resuming from" in resumed.stdout
    a, b = load_file(str(tmp_path / "ref" / "model.safetensors")), load_file(str(run / "model.safetensors"))
    again = subprocess.run([sys.executable, "-m", "paperzoo", "train", "--resume", str(run)], capture_output=True, env=env, cwd=ROOT)
    assert again.returncode == 0 and b"already finished" in again.stdout
    return a, b
