"""What the ``train``, ``eval`` and ``data`` commands do, as plain functions (the CLI only parses)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .data import get_dataset
from .errors import PaperzooError
from .registry import create_model, model_meta
from .train import Trainer, TrainConfig, evaluate
from .tasks.distillation import build_distillation_task
from .weights import load_weights

BUILTIN_DEFAULT_SIZE = 32


def dataset_kwargs(cfg: TrainConfig, split: str) -> dict[str, Any]:
    d = cfg.data
    kwargs: dict[str, Any] = dict(d.options)
    if d.name == "shapes":
        kwargs.setdefault("image_size", d.image_size or BUILTIN_DEFAULT_SIZE)
        kwargs.setdefault("preset", d.preset)
        size = d.size if split == "train" else d.val_size
        if size is not None:
            kwargs.setdefault("size", size)
    elif d.name == "digits":
        kwargs.setdefault("image_size", d.image_size or BUILTIN_DEFAULT_SIZE)
    else:
        meta = model_meta(cfg.model)
        kwargs.setdefault("image_size", d.image_size or meta.input_size[-1])
        kwargs.setdefault("mean", meta.mean)
        kwargs.setdefault("std", meta.std)
        kwargs.setdefault("on_error", d.on_error)
    return kwargs


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int) -> torch.nn.Module:
    kwargs = dict(cfg.model_args)
    if cfg.drop_path_rate is not None:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    return create_model(cfg.model, pretrained=cfg.pretrained, num_classes=num_classes, in_chans=in_chans, **kwargs)


def build_and_train(cfg: TrainConfig, resume: bool = False, quiet: bool = False) -> Trainer:
    """``paperzoo train``: datasets and model from the config, then ``Trainer.fit``."""
    train = get_dataset(cfg.data.name, "train", **dataset_kwargs(cfg, "train"))
    val = get_dataset(cfg.data.name, "val", **dataset_kwargs(cfg, "val"))
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, train.num_classes, train.in_chans)
    task = build_distillation_task(cfg, train.num_classes, train.in_chans)
    trainer = Trainer(model, train, val, cfg, task=task, quiet=quiet)
    trainer.fit(resume=resume)
    if trainer.info.is_main and not quiet and trainer.out is not None:
        print(f"run directory: {trainer.out} (model.safetensors, metrics.jsonl, curves.png, checkpoints/)")
    return trainer


def evaluate_weights(cfg: TrainConfig, weights: Path, split: str = "val", source: str = "paperzoo") -> dict[str, float]:
    """``paperzoo eval``: load weights into the named model and score it on a dataset split."""
    if not Path(weights).exists():
        raise PaperzooError(f"weights file not found: {weights}")
    ds = get_dataset(cfg.data.name, split, **dataset_kwargs(cfg, split))
    model = build_model(cfg, ds.num_classes, ds.in_chans)
    load_weights(model, weights, source=source)
    device = "cuda" if torch.cuda.is_available() and cfg.device in ("auto", "cuda") else "cpu"
    return evaluate(model.to(device), ds, batch_size=cfg.batch_size, device=device)


def describe_dataset(name: str, split: str, preset: str, image_size: int, preview: Path | None, bench: int, console: Any) -> None:
    """``paperzoo data``: size, classes, a preview grid and (for synthetic scenes) rendering speed."""
    kwargs: dict[str, Any] = {}
    if name == "shapes":
        kwargs = dict(preset=preset, image_size=image_size)
    ds = get_dataset(name, split, **kwargs)
    console.print(f"{name} [{split}]: {len(ds)} samples, {ds.num_classes} classes ({', '.join(ds.classes[:12])}"
                  f"{', ...' if len(ds.classes) > 12 else ''}), {ds.in_chans} channels, {ds.image_size[0]}x{ds.image_size[1]}")
    if preview is not None:
        _preview_grid(ds, preview)
        console.print(f"wrote {preview}")
    if bench and name == "shapes":
        from .data.shapes import render_scene

        t = time.perf_counter()
        for i in range(bench):
            render_scene(ds.config, [99, 0, i])
        rate = bench / (time.perf_counter() - t)
        console.print(f"rendered {bench} scenes at {rate:.0f} images/s (one process, {image_size}x{image_size}, preset {preset})")


def _preview_grid(ds: Any, path: Path, n: int = 16) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, n // 2, figsize=(n // 2 * 1.4, 3.2))
    mean = torch.tensor(ds.mean).view(-1, 1, 1)
    std = torch.tensor(ds.std).view(-1, 1, 1)
    for i, ax in enumerate(axes.flat):
        x, y = ds[i % len(ds)]
        img = (x * std + mean).clamp(0, 1).permute(1, 2, 0).squeeze(-1).numpy()
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        label = y if isinstance(y, int) else y.get("label", "") if isinstance(y, dict) else y
        ax.set_title(ds.classes[label] if isinstance(label, int) else "", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ------------------------------------------------------------------------------------------- cam
def _weights_and_metadata(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    import json

    from .weights import read_checkpoint

    state = read_checkpoint(path)
    meta: dict[str, Any] = {}
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            raw = f.metadata() or {}
        for key in ("mean", "std", "classes", "image_size"):
            if key in raw:
                meta[key] = json.loads(raw[key])
    return state, meta


def _shape_arguments(name: str, state: dict[str, torch.Tensor]) -> dict[str, int]:
    """num_classes / in_chans that make ``name``'s tensors match a paperzoo state dict (classifier rows,
    input channels of the first conv)."""
    own = create_model(name).state_dict()
    kwargs: dict[str, int] = {}
    for key, value in state.items():
        mine = own.get(key)
        if mine is None or mine.shape == value.shape:
            continue
        if value.ndim == 4 and mine.shape[0] == value.shape[0] and "in_chans" not in kwargs:
            kwargs["in_chans"] = value.shape[1]
        elif value.ndim in (1, 2) and mine.shape[1:] == value.shape[1:]:
            kwargs["num_classes"] = value.shape[0]
    return kwargs


def load_image(path: Path, size: int, in_chans: int, mean: Any, std: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """An image file as (normalised 1xCxHxW input, CxHxW picture in [0, 1]) at ``size`` x ``size``."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as TF

    try:
        with Image.open(path) as img:
            picture = TF.pil_to_tensor(img.convert("L" if in_chans == 1 else "RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise PaperzooError(f"cannot read image {path}: {e}".splitlines()[0]) from None
    picture = TF.resize(picture, [size, size], antialias=True).float().div(255)
    m, s = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)
    return ((picture - m) / s)[None], picture


def explain_image(model: str, weights: Path, image: Path, out: Path, layer: str | None = None, class_index: int | None = None,
                  source: str = "paperzoo", num_classes: int | None = None, in_chans: int | None = None,
                  image_size: int | None = None) -> dict[str, Any]:
    """``paperzoo cam``: Grad-CAM and Guided Grad-CAM of one image, written as a PNG figure."""
    from .explain import GradCAM, GuidedGradCAM, save_explanation

    for f in (weights, image):
        if not Path(f).exists():
            raise PaperzooError(f"file not found: {f}")
    meta = model_meta(model)
    state, saved = _weights_and_metadata(Path(weights))
    kwargs = _shape_arguments(model, state) if source == "paperzoo" else {}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if in_chans is not None:
        kwargs["in_chans"] = in_chans
    net = create_model(model, **kwargs)
    load_weights(net, state, source=source)
    net.eval()
    chans = kwargs.get("in_chans", meta.input_size[0])
    saved_size = saved.get("image_size")
    size = image_size or (saved_size[-1] if isinstance(saved_size, list) else saved_size) or meta.input_size[-1]
    x, picture = load_image(Path(image), size, chans, saved.get("mean", meta.mean), saved.get("std", meta.std))
    cam = GradCAM(net, layer)
    maps, logits = cam.compute(x, class_index)
    target = int(logits.argmax(1)) if class_index is None else class_index
    heat = cam(x, target)[0]
    guided = GuidedGradCAM(net, layer)(x, target)[0]
    classes = saved.get("classes")
    name = classes[target] if classes and target < len(classes) else f"class {target}"
    prob = float(torch.softmax(logits, 1)[0, target])
    save_explanation(out, picture, heat, guided, f"{model}: {name} (p = {prob:.2f})")
    return {"class": target, "name": name, "probability": prob, "predicted": int(logits.argmax(1)), "out": str(out)}
