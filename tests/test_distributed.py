"""Scale-out on torch.distributed: two processes under torchrun equal one process with the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["train", "--model", "resnet18", "--data", "shapes", "--epochs", "2", "--batch-size", "32", "data.size=128",
        "data.val_size=32", "data.image_size=16", "model_args.norm_layer=gn", "lr=0.01", "log_every=1", "checkpoint_every=3"]


def test_two_process_ddp_matches_single_process(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    single = subprocess.run([sys.executable, "-m", "paperzoo", *ARGS, "--out", str(tmp_path / "one")],
                            capture_output=True, env=env, cwd=ROOT, timeout=300)
    assert single.returncode == 0, single.stderr.decode()
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                          "-m", "paperzoo", *ARGS, "--out", str(tmp_path / "two")],
                         capture_output=True, env=env, cwd=ROOT, timeout=300)
    assert ddp.returncode == 0, ddp.stderr.decode()[-3000:]
    a = load_file(str(tmp_path / "one" / "model.safetensors"))
    b = load_file(str(tmp_path / "two" / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max() / a[k].abs().max().clamp_min(1e-8)) for k in a)
    assert worst < 1e-4, worst
    # rank 0 alone wrote the logs: one row per step, not two
    rows = (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()
    assert sum('"kind": "step"' in r for r in rows) == 8
    # the run directory resumes identically under torchrun
    again = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                            "-m", "paperzoo", "train", "--resume", str(tmp_path / "two")],
                           capture_output=True, env=env, cwd=ROOT, timeout=300)
    assert again.returncode == 0 and b"already finished" in again.stdout
    torch.testing.assert_close(a["fc.weight"], b["fc.weight"], rtol=1e-4, atol=1e-6)
