"""Checkpoints that lose nothing: each is a directory written under a temporary name and renamed into
place (atomic on POSIX), holding ``model.safetensors`` (weights), ``state.pt`` (optimizer, scheduler,
scaler, EMA, RNG and loop state) and ``meta.json`` with the SHA-256 of both. A checkpoint whose files
are missing, truncated or altered fails its hash check, is reported by name, and the previous good one
is used.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..errors import WeightsError

PREFIX = "step-"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def tensors_for_saving(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous tensors with no shared storage (what safetensors requires)."""
    out, seen = {}, set()
    for k, v in state.items():
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:  # tied weights: safetensors stores each tensor once
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[k] = t
    return out


def save_weights(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write weights as safetensors atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    save_file(tensors_for_saving(state), str(tmp), metadata=metadata)
    _fsync(tmp)
    os.replace(tmp, path)


def save_checkpoint(root: str | Path, step: int, model_state: dict[str, torch.Tensor], train_state: dict[str, Any],
                    keep: int = 2) -> Path:
    """Write checkpoint ``root/step-NNNNNNNNN`` atomically and keep only the newest ``keep`` checkpoints."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"{PREFIX}{step:09d}"
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file(tensors_for_saving(model_state), str(tmp / "model.safetensors"))
    torch.save(train_state, tmp / "state.pt")
    files = {f: _sha256(tmp / f) for f in ("model.safetensors", "state.pt")}
    (tmp / "meta.json").write_text(json.dumps({"step": step, "sha256": files}))
    for f in (*files, "meta.json"):
        _fsync(tmp / f)
    if final.exists():  # the same step saved twice (e.g. a step checkpoint that is also an epoch end)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync(root)
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: str | Path) -> list[Path]:
    """Checkpoint directories under ``root``, oldest first (temporary leftovers of a killed run ignored)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def verify(path: Path) -> str | None:
    """None if the checkpoint at ``path`` is whole, else what is wrong with it."""
    meta_path = path / "meta.json"
    if not meta_path.exists():
        return "meta.json is missing"
    try:
        meta = json.loads(meta_path.read_text())
        expected = meta["sha256"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return "meta.json is corrupt"
    for name, digest in expected.items():
        f = path / name
        if not f.exists():
            return f"{name} is missing"
        if _sha256(f) != digest:
            return f"{name} is truncated or altered (checksum mismatch)"
    return None


def load_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    problem = verify(path)
    if problem:
        raise WeightsError(f"checkpoint {path} is corrupt: {problem}")
    return load_file(str(path / "model.safetensors")), torch.load(path / "state.pt", map_location="cpu", weights_only=True)


def load_latest(root: str | Path) -> tuple[Path, dict[str, torch.Tensor], dict[str, Any]] | None:
    """The newest checkpoint that passes its checks; corrupt ones are reported by name and skipped."""
    for path in reversed(list_checkpoints(root)):
        problem = verify(path)
        if problem:
            warnings.warn(f"checkpoint {path} is corrupt ({problem}); using the previous one", stacklevel=2)
            continue
        model_state, train_state = load_checkpoint(path)
        return path, model_state, train_state
    return None


def clean_temporaries(root: str | Path) -> None:
    """Remove half-written checkpoints left by a killed run."""
    root = Path(root)
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".tmp-"):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
