"""``paperzoo bench``: parameters, FLOPs, inference and training throughput and peak memory of models,
optionally against a reference library's model of the same architecture (timm's or torchvision's), measured
alternately in the same process.

Classifiers run on a batch tensor with a cross-entropy step. Detectors (``meta.task == "detection"``) run on a list
of images (``image_size`` square, which also becomes the detector's ``min_size``) and a training step on a few
synthetic boxes per image; against torchvision, the reference's random weights are loaded into ours so that both
propose, sample and suppress the same boxes. Segmenters (``{"out": ...}``) take a per-pixel cross-entropy step;
other dense outputs (heatmaps) a mean-square step.

References beyond timm and torchvision (``--vs transformers``, ``open_clip``, ``segment-anything``) are paired in
``_PAIRS``: the reference is built from its config with random weights, those weights are loaded into ours with
``load_weights``, and both get the same inputs and the same loss (DETR: images, boxes and the set loss; CLIP: both
towers and the contrastive loss; CLIPSeg: text-prompted masks and a BCE step; SAM: the image encoder at 1024 px,
and the prompt -> mask step on a fixed embedding as a second row). These libraries are imported only here, to
measure against them."""
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
    impl: str  # "paperzoo" or a reference library (REFERENCES)
    params_m: float
    gmacs: float | None  # multiply-accumulates per image (torch's FLOP counter / 2); None for the paired references
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


class _Steps:
    """One implementation's two measured steps, as closures of its model: ``infer(model)`` (eval mode, no
    gradients) and ``loss(model)`` (train mode; then backward and an SGD step over ``params``, default all)."""

    def __init__(self, model: nn.Module, infer: Any, loss: Any, params: Any = None) -> None:
        self.model, self._infer, self._loss = model, infer, loss
        self.opt = torch.optim.SGD([p for p in (params or model.parameters()) if p.requires_grad], lr=1e-4, momentum=0.9)

    @torch.no_grad()
    def infer(self) -> None:
        self.model.eval()
        self._infer(self.model)

    def train(self) -> None:
        self.model.train()
        self._loss(self.model).backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def _runner(model: nn.Module, inputs: Any, extra: tuple[Any, ...], loss: Any, compile_: bool) -> _Steps:
    """The standard steps: inference on ``inputs``; training on ``loss(out)`` of the forward pass on ``inputs``
    plus ``extra`` (``torch.compile``d with ``compile_``)."""
    fwd = torch.compile(model) if compile_ else model
    return _Steps(model, lambda m: fwd(inputs), lambda m: loss(fwd(inputs, *extra)))


def _dense_loss(out: Any, target: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of every logit map of a segmenter's dict (``out``, ``aux``) against ``target``; a mean square
    for any other dense output (pose heatmaps)."""
    if isinstance(out, dict):
        return sum(_dense_loss(v, target) for v in out.values() if isinstance(v, torch.Tensor))
    if isinstance(out, (list, tuple)):
        return sum(_dense_loss(v, target) for v in out)
    if target is not None and out.dim() == 4 and out.shape[-2:] == target.shape[-2:]:
        return F.cross_entropy(out, target)
    return out.float().square().mean()


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
    if task == "segmentation":
        return torchvision.models.get_model(ref_name, weights=None, weights_backbone=None, num_classes=meta.num_classes,
                                            aux_loss=False)
    return torchvision.models.get_model(ref_name)


# ----------------------------------------------------------------------------------- pairs with other references
def _detr_transformers(name: str, batch_size: int, size: int, dev: torch.device) -> list[tuple[str, dict[str, _Steps]]]:
    """DETR against ``DetrForObjectDetection``, Deformable DETR against ``DeformableDetrForObjectDetection``, both at
    their default sizes, on the same weights and the same normalised, padded batch."""
    from torchvision.ops import box_convert
    from transformers import DeformableDetrConfig, DeformableDetrForObjectDetection, DetrConfig, DetrForObjectDetection

    from .models.detection.deformable_detr import DeformableDETR
    from .weights import load_weights

    k = model_meta(name).num_classes
    ours = create_model(name, min_size=size, max_size=size)
    if isinstance(ours, DeformableDETR):
        ref = DeformableDetrForObjectDetection(DeformableDetrConfig(
            use_timm_backbone=True, backbone="resnet50", use_pretrained_backbone=False, num_labels=k)).to(dev)
    else:
        ref = DetrForObjectDetection(DetrConfig(use_pretrained_backbone=False, num_labels=k)).to(dev)
    ours = load_weights(ours, ref.state_dict(), source="transformers").to(dev)
    images, targets = _detection_inputs(batch_size, size, k, dev)
    x, valid = ours.batch(images)  # the same normalised, padded batch for both
    labels = [{"class_labels": t["labels"], "boxes": box_convert(t["boxes"] / size, "xyxy", "cxcywh")} for t in targets]
    return [(name, {
        "paperzoo": _Steps(ours, lambda m: m(images), lambda m: sum(m(images, targets).values())),
        "transformers": _Steps(ref, lambda m: m(pixel_values=x, pixel_mask=valid.long()),
                               lambda m: m(pixel_values=x, pixel_mask=valid.long(), labels=labels).loss)})]


def _clip_open_clip(name: str, batch_size: int, size: int, dev: torch.device) -> list[tuple[str, dict[str, _Steps]]]:
    import open_clip

    from .models.multimodal.clip import clip_loss
    from .weights import load_weights

    ref = open_clip.create_model(model_meta(name).reference["open_clip"], pretrained=None).to(dev)
    ours = load_weights(create_model(name), ref.state_dict(), source="open_clip").to(dev)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, size, size, generator=g).to(dev)
    ids = torch.randint(1, 49406, (batch_size, 77), generator=g)
    ids[:, 0], ids[:, 12], ids[:, 13:] = 49406, 49407, 0  # start, end of text, padding (the tower pools at the end)
    ids = ids.to(dev)

    def infer(m: nn.Module) -> None:
        m.encode_image(x), m.encode_text(ids)

    def loss(m: nn.Module) -> torch.Tensor:
        img, txt = F.normalize(m.encode_image(x), dim=-1), F.normalize(m.encode_text(ids), dim=-1)
        return clip_loss(img, txt, m.logit_scale.exp(), gather=False)

    return [(name, {"paperzoo": _Steps(ours, infer, loss), "open_clip": _Steps(ref, infer, loss)})]


def _clipseg_transformers(name: str, batch_size: int, size: int, dev: torch.device) -> list[tuple[str, dict[str, _Steps]]]:
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

    from .weights import load_weights

    cfg = CLIPSegConfig(extract_layers=[3, 6, 9], reduce_dim=64, decoder_num_attention_heads=4,
                        decoder_intermediate_size=2048, use_complex_transposed_convolution=True,
                        vision_config=dict(patch_size=16), projection_dim=512)  # the released rd64-refined
    ref = CLIPSegForImageSegmentation(cfg).to(dev)
    ours = load_weights(create_model(name), ref.state_dict(), source="transformers").to(dev)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, size, size, generator=g).to(dev)
    ids = torch.randint(1, 49406, (batch_size, 77), generator=g)
    ids[:, 0], ids[:, 8], ids[:, 9:] = 49406, 49407, 0
    ids = ids.to(dev)
    target = (torch.rand(batch_size, size, size, generator=g) > 0.5).float().to(dev)

    def bce(logits: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits.reshape(target.shape), target)

    decoder = [p for n, p in ours.named_parameters() if not n.startswith("clip.")]  # CLIP stays frozen (the paper)
    ref_decoder = [p for n, p in ref.named_parameters() if n.startswith("decoder.")]
    return [(name, {
        "paperzoo": _Steps(ours, lambda m: m(x, ids), lambda m: bce(m(x, ids)), params=decoder),
        "transformers": _Steps(ref, lambda m: m(input_ids=ids, pixel_values=x),
                               lambda m: bce(m(input_ids=ids, pixel_values=x).logits), params=ref_decoder)})]


def _sam_segment_anything(name: str, batch_size: int, size: int, dev: torch.device) -> list[tuple[str, dict[str, _Steps]]]:
    from segment_anything import sam_model_registry

    from .weights import load_weights

    ref = sam_model_registry[model_meta(name).reference["segment-anything"]](checkpoint=None).to(dev)
    ours = load_weights(create_model(name), ref.state_dict(), source="segment-anything").to(dev)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch_size, 3, 1024, 1024, generator=g).to(dev)  # the encoder's fixed input size
    with torch.no_grad():
        emb = ours.image_encoder(x[:1])
    coords = (torch.rand(batch_size, 1, 2, generator=g) * 1024).to(dev)  # one point per prompt, all on one image
    labels = torch.ones(batch_size, 1, dtype=torch.int64, device=dev)

    def ref_decode(m: nn.Module) -> torch.Tensor:
        sparse, dense = m.prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        return m.mask_decoder(image_embeddings=emb, image_pe=m.prompt_encoder.get_dense_pe(),
                              sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=True)[0]

    def ours_decode(m: nn.Module) -> torch.Tensor:
        return m.decode(emb, coords, labels, multimask_output=True)[0]

    def encoder_loss(m: nn.Module) -> torch.Tensor:
        return m.image_encoder(x).square().mean()

    light = [p for n, p in ours.named_parameters() if not n.startswith("image_encoder.")]
    ref_light = [p for n, p in ref.named_parameters() if not n.startswith("image_encoder.")]
    return [(f"{name} (image encoder)", {
                "paperzoo": _Steps(ours, lambda m: m.image_encoder(x), encoder_loss),
                "segment-anything": _Steps(ref, lambda m: m.image_encoder(x), encoder_loss)}),
            (f"{name} (prompt -> mask)", {
                "paperzoo": _Steps(ours, ours_decode, lambda m: ours_decode(m).square().mean(), params=light),
                "segment-anything": _Steps(ref, ref_decode, lambda m: ref_decode(m).square().mean(), params=ref_light)})]


_PAIRS = {("detection", "transformers"): _detr_transformers, ("contrastive", "open_clip"): _clip_open_clip,
          ("prompted-segmentation", "transformers"): _clipseg_transformers,
          ("promptable", "segment-anything"): _sam_segment_anything}
REFERENCES = ("timm", "torchvision", "transformers", "open_clip", "segment-anything")


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
    """Measure each model (and, with ``vs``, that library's model of the same architecture, alternately)."""
    if vs is not None and vs not in REFERENCES:
        raise PaperzooError(f"--vs supports {', '.join(REFERENCES)}, got '{vs}'")
    dev = torch.device(device)
    results: list[BenchResult] = []
    for name in names:
        meta = model_meta(name)
        size = image_size or meta.input_size[-1]
        pair = _PAIRS.get((meta.task, vs)) if vs is not None else None
        if vs is not None and pair is None and vs not in ("timm", "torchvision"):
            raise PaperzooError(f"{vs} has no counterpart of '{name}' in paperzoo bench")
        if pair is not None:
            if compile_ or channels_last:
                raise PaperzooError(f"--vs {vs}: --compile and --channels-last are not supported for this pair")
            groups = pair(name, batch_size, size, dev)
            first = None
        else:
            hw = (size, size) if image_size else tuple(meta.input_size[1:])  # pose nets: 256 x 192
            runners, first = _standard(name, meta, vs, batch_size, hw, dev, compile_, channels_last)
            groups = [(name, runners)]
        for label, runners in groups:
            results += _measure(label, runners, first, dev, batch_size, size, iters, rounds, memory, compile_,
                                channels_last)
            del runners
        del groups
    return results


def _standard(name: str, meta: Any, vs: str | None, batch_size: int, hw: tuple[int, int], dev: torch.device,
              compile_: bool, channels_last: bool) -> tuple[dict[str, _Steps], Any]:
    """Ours (and timm's or torchvision's model) on a batch tensor, or a detector's list of (square) images."""
    size = hw[-1]
    detection = meta.task == "detection"
    fixed = detection and "ssd" in name  # SSD resizes to its own size and takes no min_size
    kwargs: dict[str, Any] = {"min_size": size, "max_size": size} if detection and not fixed else {}
    impls: dict[str, nn.Module] = {"paperzoo": create_model(name, **kwargs)}
    if vs is not None:
        impls[vs] = _reference(name, vs, meta.task, kwargs)
        if detection or meta.task == "segmentation":  # same weights: the same boxes after NMS and sampling
            from .weights import load_weights

            load_weights(impls["paperzoo"], impls[vs].state_dict(), source=vs)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if detection:
        images, targets = _detection_inputs(batch_size, size, meta.num_classes, dev)
        first: Any = images[:1]
    else:
        x = torch.randn(batch_size, meta.input_size[0], *hw, device=dev).contiguous(memory_format=fmt)
        classes = meta.num_classes or 2
        y = torch.randint(0, classes, (batch_size,), device=dev)
        mask = torch.randint(0, classes, (batch_size, *hw), device=dev)
        first = x[:1]
    runners: dict[str, _Steps] = {}
    for impl, model in impls.items():
        model = model.to(dev, memory_format=fmt)
        if detection:  # losses come out of the model, given the targets
            runners[impl] = _runner(model, images, (targets,), lambda losses: sum(losses.values()), compile_)
        elif meta.task == "classification":
            runners[impl] = _runner(model, x, (), lambda logits, y=y: F.cross_entropy(logits, y), compile_)
        else:
            runners[impl] = _runner(model, x, (), lambda out, mask=mask: _dense_loss(out, mask), compile_)
    return runners, first


def _measure(name: str, runners: dict[str, _Steps], first: Any, dev: torch.device, batch_size: int, size: int,
             iters: int, rounds: int, memory: bool, compile_: bool, channels_last: bool) -> list[BenchResult]:
    for r in runners.values():
        r.infer()  # warm-up (and compile)
        r.train()
    times: dict[str, dict[str, list[float]]] = {k: {"infer": [], "train": []} for k in runners}
    for _ in range(rounds):  # alternate, so that machine noise hits both implementations alike
        for impl, r in runners.items():
            times[impl]["infer"].append(_time(r.infer, dev, iters))
            times[impl]["train"].append(_time(r.train, dev, iters))
    out = []
    for impl, r in runners.items():
        macs = count_macs(r.model, first) if first is not None else None
        peak = _peak_memory_mb(r.train, dev) if memory else None
        out.append(BenchResult(
            model=name, impl=impl, params_m=sum(p.numel() for p in r.model.parameters()) / 1e6,
            gmacs=None if macs is None else macs / 1e9,
            infer_img_s=batch_size / statistics.median(times[impl]["infer"]),
            train_img_s=batch_size / statistics.median(times[impl]["train"]),
            peak_mem_mb=peak, device=str(dev), batch_size=batch_size, image_size=size, compiled=compile_,
            channels_last=channels_last,
        ))
    return out


def ratios(results: list[BenchResult]) -> dict[str, dict[str, float]]:
    """Ours / the reference for each model measured against one (>1 means we are faster)."""
    out: dict[str, dict[str, float]] = {}
    by = {(r.model, r.impl): r for r in results}
    for (name, impl), r in by.items():
        ref = next((by[(name, lib)] for lib in REFERENCES if (name, lib) in by), None)
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
