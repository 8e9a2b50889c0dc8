"""``paperzoo bench``: parameters, FLOPs, inference and training throughput and peak memory of models,
optionally against timm's model of the same name measured alternately in the same process."""
from __future__ import annotations

import contextlib
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .errors import PaperzooError
from .registry import create_model, model_meta


@dataclass
class BenchResult:
    model: str
    impl: str  # "paperzoo" or "timm"
    params_m: float
    gmacs: float  # multiply-accumulates per image (torch's FLOP counter / 2)
    infer_img_s: float
    train_img_s: float
    peak_mem_mb: float | None
    device: str
    batch_size: int
    image_size: int
    compiled: bool
    channels_last: bool


def count_macs(model: nn.Module, x: torch.Tensor) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() / 2


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory_mb(fn, device: torch.device) -> float | None:
    """Peak memory allocated during ``fn()``: CUDA's allocator statistics on a GPU; on CPU, the peak of
    torch's memory timeline from the profiler (activations, gradients, optimizer state, temporaries)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        _sync(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    try:
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True, with_stack=True) as prof:
            fn()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "timeline.json"
            prof.export_memory_timeline(str(path), device="cpu")
            _, sizes = json.loads(path.read_text())
        return max(sum(s) for s in sizes) / 2**20 if sizes else None
    except Exception:  # the profiler's memory timeline is best effort; report n/a rather than fail the bench
        return None


class _Runner:
    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, compile_: bool) -> None:
        self.model, self.x, self.y = model, x, y
        self.fwd = torch.compile(model) if compile_ else model
        self.opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    @torch.no_grad()
    def infer(self) -> None:
        self.model.eval()
        self.fwd(self.x)

    def train(self) -> None:
        self.model.train()
        loss = F.cross_entropy(self.fwd(self.x), self.y)
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def _time(step, device: torch.device, iters: int) -> float:
    _sync(device)
    t = time.perf_counter()
    for _ in range(iters):
        step()
    _sync(device)
    return (time.perf_counter() - t) / iters


def bench(
    names: list[str],
    vs: str | None = None,
    batch_size: int = 8,
    image_size: int | None = None,
    device: str = "cpu",
    compile_: bool = False,
    channels_last: bool = False,
    iters: int = 5,
    rounds: int = 3,
    memory: bool = True,
) -> list[BenchResult]:
    """Measure each model (and, with ``vs="timm"``, timm's model of the same name, alternately)."""
    dev = torch.device(device)
    results: list[BenchResult] = []
    for name in names:
        meta = model_meta(name)
        size = image_size or meta.input_size[-1]
        impls: dict[str, nn.Module] = {"paperzoo": create_model(name)}
        if vs is not None:
            if vs != "timm":
                raise PaperzooError(f"--vs supports timm only, got '{vs}'")
            try:
                import timm
            except ImportError:
                raise PaperzooError("--vs timm needs timm installed (pip install timm)") from None
            ref_name = meta.reference.get("timm")
            if ref_name is None:
                raise PaperzooError(f"timm has no counterpart of '{name}'")
            impls["timm"] = timm.create_model(ref_name)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x = torch.randn(batch_size, meta.input_size[0], size, size, device=dev).contiguous(memory_format=fmt)
        y = torch.randint(0, meta.num_classes, (batch_size,), device=dev)
        runners = {}
        for impl, model in impls.items():
            model = model.to(dev, memory_format=fmt)
            runners[impl] = _Runner(model, x, y, compile_)
            runners[impl].infer()  # warm-up (and compile)
            runners[impl].train()
        times: dict[str, dict[str, list[float]]] = {k: {"infer": [], "train": []} for k in runners}
        for _ in range(rounds):  # alternate, so that machine noise hits both implementations alike
            for impl, r in runners.items():
                times[impl]["infer"].append(_time(r.infer, dev, iters))
                times[impl]["train"].append(_time(r.train, dev, iters))
        for impl, r in runners.items():
            macs = count_macs(r.model.eval(), x[:1])
            peak = _peak_memory_mb(r.train, dev) if memory else None
            results.append(BenchResult(
                model=name, impl=impl, params_m=sum(p.numel() for p in r.model.parameters()) / 1e6, gmacs=macs / 1e9,
                infer_img_s=batch_size / statistics.median(times[impl]["infer"]),
                train_img_s=batch_size / statistics.median(times[impl]["train"]),
                peak_mem_mb=peak, device=str(dev), batch_size=batch_size, image_size=size, compiled=compile_,
                channels_last=channels_last,
            ))
        del runners, impls
    return results


def ratios(results: list[BenchResult]) -> dict[str, dict[str, float]]:
    """Ours / timm for each model measured against timm (>1 means we are faster)."""
    out: dict[str, dict[str, float]] = {}
    by = {(r.model, r.impl): r for r in results}
    for (name, impl), r in by.items():
        if impl == "paperzoo" and (name, "timm") in by:
            t = by[(name, "timm")]
            out[name] = {"infer": r.infer_img_s / t.infer_img_s, "train": r.train_img_s / t.train_img_s}
    return out


def to_json(results: list[BenchResult]) -> list[dict[str, Any]]:
    return [asdict(r) for r in results]


@contextlib.contextmanager
def threads(n: int | None):
    if n is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)
