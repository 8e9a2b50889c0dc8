"""``paperzoo bench``: parameters, FLOPs, inference and training throughput and peak memory of models,
optionally against a reference library's model of the same architecture (timm's or torchvision's), measured
alternately in the same process.

Classifiers run on a batch tensor with a cross-entropy step. Detectors (``meta.task == "detection"``) run on a list
of images (``image_size`` square, which also becomes the detector's ``min_size``) and a training step on a few
synthetic boxes per image; against torchvision, the reference's random weights are loaded into ours so that both
propose, sample and suppress the same boxes."""
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

from .cost import macs as count_macs
from .errors import PaperzooError
from .registry import create_model, model_meta


@dataclass
class BenchResult:
    model: str
    impl: str  # "paperzoo", "timm" or "torchvision"
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
    """One model's two measured steps: inference on ``inputs`` (eval, no gradients) and a training step (``loss(out)``
    of the forward pass on ``inputs`` plus ``extra``, backward, SGD)."""

    def __init__(self, model: nn.Module, inputs: Any, extra: tuple[Any, ...], loss: Any, compile_: bool) -> None:
        self.model, self.inputs, self.extra, self.loss = model, inputs, extra, loss
        self.fwd = torch.compile(model) if compile_ else model
        self.opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

    @torch.no_grad()
    def infer(self) -> None:
        self.model.eval()
        self.fwd(self.inputs)

    def train(self) -> None:
        self.model.train()
        self.loss(self.fwd(self.inputs, *self.extra)).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def _detection_inputs(batch_size: int, size: int, num_classes: int, device: torch.device
                      ) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    g = torch.Generator().manual_seed(0)
    images = [torch.rand(3, size, size, generator=g).to(device) for _ in range(batch_size)]
    targets = []
    for _ in range(batch_size):
        xy = torch.rand(3, 2, generator=g) * size * 0.6
        wh = (torch.rand(3, 2, generator=g) * 0.3 + 0.1) * size
        targets.append({"boxes": torch.cat([xy, xy + wh], 1).to(device),
                        "labels": torch.randint(1, num_classes, (3,), generator=g).to(device)})
    return images, targets


def _reference(name: str, vs: str, task: str, kwargs: dict[str, Any]) -> nn.Module:
    """The reference library's model for ``name`` (its name in ``meta.reference[vs]``)."""
    meta = model_meta(name)
    ref_name = meta.reference.get(vs)
    if ref_name is None:
        raise PaperzooError(f"{vs} has no counterpart of '{name}'")
    if vs == "timm":
        try:
            import timm
        except ImportError:
            raise PaperzooError("--vs timm needs timm installed (pip install timm)") from None
        return timm.create_model(ref_name)
    import torchvision

    if task == "detection":
        return torchvision.models.get_model(ref_name, weights=None, weights_backbone=None, num_classes=meta.num_classes,
                                            **kwargs)
    return torchvision.models.get_model(ref_name)


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
    """Measure each model (and, with ``vs`` = "timm" or "torchvision", that library's model, alternately)."""
    if vs is not None and vs not in ("timm", "torchvision"):
        raise PaperzooError(f"--vs supports timm and torchvision, got '{vs}'")
    dev = torch.device(device)
    results: list[BenchResult] = []
    for name in names:
        meta = model_meta(name)
        size = image_size or meta.input_size[-1]
        detection = meta.task == "detection"
        kwargs: dict[str, Any] = {"min_size": size, "max_size": size} if detection else {}  # square images, no resize
        impls: dict[str, nn.Module] = {"paperzoo": create_model(name, **kwargs)}
        if vs is not None:
            impls[vs] = _reference(name, vs, meta.task, kwargs)
            if detection:  # same weights: both do the same work after NMS and sampling
                from .weights import load_weights

                load_weights(impls["paperzoo"], impls[vs].state_dict(), source=vs)
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        if detection:
            images, targets = _detection_inputs(batch_size, size, meta.num_classes, dev)
            first: Any = images[:1]
        else:
            x = torch.randn(batch_size, meta.input_size[0], size, size, device=dev).contiguous(memory_format=fmt)
            y = torch.randint(0, meta.num_classes, (batch_size,), device=dev)
            first = x[:1]
        runners: dict[str, Any] = {}
        for impl, model in impls.items():
            model = model.to(dev, memory_format=fmt)
            if detection:  # losses come out of the model, given the targets
                runners[impl] = _Runner(model, images, (targets,), lambda losses: sum(losses.values()), compile_)
            else:
                runners[impl] = _Runner(model, x, (), lambda logits, y=y: F.cross_entropy(logits, y), compile_)
            runners[impl].infer()  # warm-up (and compile)
            runners[impl].train()
        times: dict[str, dict[str, list[float]]] = {k: {"infer": [], "train": []} for k in runners}
        for _ in range(rounds):  # alternate, so that machine noise hits both implementations alike
            for impl, r in runners.items():
                times[impl]["infer"].append(_time(r.infer, dev, iters))
                times[impl]["train"].append(_time(r.train, dev, iters))
        for impl, r in runners.items():
            macs = count_macs(r.model, first)
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
    """Ours / the reference for each model measured against one (>1 means we are faster)."""
    out: dict[str, dict[str, float]] = {}
    by = {(r.model, r.impl): r for r in results}
    for (name, impl), r in by.items():
        ref = next((by[(name, lib)] for lib in ("timm", "torchvision") if (name, lib) in by), None)
        if impl == "paperzoo" and ref is not None:
            out[name] = {"infer": r.infer_img_s / ref.infer_img_s, "train": r.train_img_s / ref.train_img_s}
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
