"""What the ``train``, ``eval`` and ``data`` commands do, as plain functions (the CLI only parses)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from .data import get_dataset
from .errors import ConfigError, PaperzooError
from .registry import create_model, model_meta
from .train import Trainer, TrainConfig, evaluate
from .weights import load_weights

BUILTIN_DEFAULT_SIZE = 32
COCO_KIND = {"detection": "instances", "instances": "instances", "keypoints": "keypoints", "captioning": "captions"}


def run_task_class(cfg: TrainConfig) -> type:
    """The class of the task a run uses (``--task``, distillation, or the model's own)."""
    from .tasks import task_class, task_name_for

    return task_class(task_name_for(cfg, model_meta(cfg.model)))


def run_recipe(cfg: TrainConfig) -> dict[str, Any]:
    """The defaults a new run starts from: its task's recipe, then the model's own (``meta.recipe``) when the model
    trains for its own task."""
    from .tasks import task_name_for

    meta = model_meta(cfg.model)
    own = task_name_for(cfg, meta) == meta.task
    return {**run_task_class(cfg).recipe, **(meta.recipe if own else {})}


def dataset_kwargs(cfg: TrainConfig, split: str) -> dict[str, Any]:
    """Keyword arguments of the dataset ``cfg.data`` names, for the run's task (built-in scenes take the task's
    sample kind and default knobs, e.g. larger scenes with several objects for detection)."""
    d = cfg.data
    kind = run_task_class(cfg).data
    kwargs: dict[str, Any] = dict(d.options)
    if d.name == "shapes":
        defaults = dict(getattr(run_task_class(cfg), "data_defaults", {}))
        kwargs.setdefault("image_size", d.image_size or defaults.pop("image_size", BUILTIN_DEFAULT_SIZE))
        defaults.pop("image_size", None)
        for key, value in defaults.items():
            kwargs.setdefault(key, value)
        kwargs.setdefault("preset", d.preset)
        kwargs.setdefault("kind", kind)
        size = d.size if split == "train" else d.val_size
        if size is not None:
            kwargs.setdefault("size", size)
    elif d.name == "digits":
        if kind != "classification":
            raise ConfigError(f"the digits are a classification dataset; the {run_task_class(cfg).name} task needs "
                              "--data shapes or a COCO json")
        kwargs.setdefault("image_size", d.image_size or BUILTIN_DEFAULT_SIZE)
    elif d.name.endswith(".json"):
        if kind not in COCO_KIND:
            raise ConfigError(f"a COCO json serves detection, instances, keypoints or captioning, not the "
                              f"{run_task_class(cfg).name} task")
        kwargs.setdefault("kind", COCO_KIND[kind])
        kwargs.setdefault("masks", kind == "instances")
        kwargs.setdefault("seed", cfg.seed)
    else:
        if kind != "classification":
            raise ConfigError(f"an image folder is a classification dataset; the {run_task_class(cfg).name} task "
                              "needs --data shapes or a COCO json (annotations.json)")
        meta = model_meta(cfg.model)
        kwargs.setdefault("image_size", d.image_size or meta.input_size[-1])
        kwargs.setdefault("mean", meta.mean)
        kwargs.setdefault("std", meta.std)
        kwargs.setdefault("on_error", d.on_error)
    return kwargs


def build_dataset(cfg: TrainConfig, split: str) -> torch.utils.data.Dataset:
    """The ``split`` of the run's data: built-in scenes or digits, an image folder, or a COCO json (``data.val``
    names a second json for validation; without one a fixed tenth of the images is held out). Dense training
    data get a random horizontal flip (boxes and masks follow) unless ``data.augment=false``; keypoint data are
    not flipped (left and right keypoints would swap)."""
    from .data.transforms import detection_train_transforms

    d = cfg.data
    kwargs = dataset_kwargs(cfg, split)
    kind = run_task_class(cfg).data
    if split == "train" and d.augment and kind in ("detection", "instances"):
        kwargs.setdefault("transforms", detection_train_transforms())
    if d.name.endswith(".json"):
        from .data.coco import CocoDataset

        if split != "train" and d.val:
            return CocoDataset(d.val, split="all", **kwargs)
        return CocoDataset(d.name, split="all" if split == "train" and d.val else ("train" if split == "train" else "val"), **kwargs)
    return get_dataset(d.name, split, **kwargs)


def build_model(cfg: TrainConfig, num_classes: int, in_chans: int, num_keypoints: int | None = None,
                image_size: Any = None) -> torch.nn.Module:
    if num_keypoints and model_meta(cfg.model).task == "pose" and "num_keypoints" not in cfg.model_args:
        cfg.model_args["num_keypoints"] = num_keypoints  # a pose net predicts the data's keypoints (and the weights say so)
    kwargs = dict(cfg.model_args)
    if cfg.drop_path_rate is not None:
        kwargs["drop_path_rate"] = cfg.drop_path_rate
    if model_meta(cfg.model).task == "classification":
        kwargs["in_chans"] = in_chans
    if model_meta(cfg.model).task == "generative":  # a generator is built for the data's channels and size
        kwargs.setdefault("in_chans", in_chans)
        if image_size is not None:
            kwargs.setdefault("img_size", image_size[-1] if isinstance(image_size, (tuple, list)) else image_size)
    return create_model(cfg.model, pretrained=cfg.pretrained, num_classes=num_classes, **kwargs)


def _num_keypoints(data: Any) -> int | None:
    """Keypoints per object of keypoint data (the scenes' padded corner slots, a COCO json's names), else None."""
    names = getattr(data, "keypoint_names", None)
    return len(names) if names else getattr(data, "max_keypoints", None)


def build_and_train(cfg: TrainConfig, resume: bool = False, quiet: bool = False) -> Trainer:
    """``paperzoo train``: datasets and model from the config, then ``Trainer.fit``. Every input is read and
    checked before the run directory is written."""
    from .tasks import build_task

    train = build_dataset(cfg, "train")
    val = build_dataset(cfg, "val")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, train.num_classes, train.in_chans, _num_keypoints(train), getattr(train, "image_size", None))
    task = build_task(cfg, model.meta, train)
    trainer = Trainer(model, train, val, cfg, task=task, quiet=quiet)
    trainer.fit(resume=resume)
    if trainer.info.is_main and not quiet and trainer.out is not None:
        print(f"run directory: {trainer.out} (model.safetensors, metrics.jsonl, curves.png, checkpoints/)")
    return trainer


def evaluate_weights(cfg: TrainConfig, weights: Path, split: str = "val", source: str = "paperzoo") -> tuple[dict[str, float], Any]:
    """``paperzoo eval``: load weights into the named model and score it on a dataset split with its task's
    metrics. Returns the metrics and the evaluator (COCO's keeps pycocotools' summary table)."""
    from .tasks import build_task

    if not Path(weights).exists():
        raise PaperzooError(f"weights file not found: {weights}")
    ds = build_dataset(cfg, split)
    model = build_model(cfg, ds.num_classes, ds.in_chans, _num_keypoints(ds), getattr(ds, "image_size", None))
    load_weights(model, weights, source=source)
    device = "cuda" if torch.cuda.is_available() and cfg.device in ("auto", "cuda") else "cpu"
    task = build_task(cfg, model.meta, ds)
    evaluator = task.evaluator()
    metrics = evaluate(model.to(device), ds, task=task, batch_size=cfg.batch_size, device=device, evaluator=evaluator)
    return metrics, evaluator


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


# ------------------------------------------------------------------------------------------- predict
def read_image(path: Path, gray: bool = False) -> torch.Tensor:
    """An image file as a uint8 CHW tensor; an unreadable file is a one-line error naming it."""
    from PIL import Image, UnidentifiedImageError
    from torchvision.transforms.v2 import functional as TF

    if not Path(path).exists():
        raise PaperzooError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            return TF.pil_to_tensor(img.convert("L" if gray else "RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise PaperzooError(f"cannot read image {path}: {e}".splitlines()[0]) from None


def predict_image(model: str, weights: Path, image: Path, out: Path, source: str = "paperzoo", task: str | None = None,
                  score_threshold: float = 0.5, num_classes: int | None = None, topk: int = 5,
                  labels: list[str] | None = None, prompt: str | None = None) -> dict[str, Any]:
    """``paperzoo predict``: run a trained model on one image and draw what it predicts into a PNG — boxes with
    their class names and scores (and masks, keypoints) for detectors, the class map for segmenters, the top
    classes for classifiers. Classes, normalisation and input size come from the weights' metadata when
    paperzoo wrote them."""
    from torchvision.transforms.v2 import functional as TF
    from torchvision.utils import draw_bounding_boxes, draw_keypoints, draw_segmentation_masks

    from .tasks import task_class, task_name_for

    if not Path(weights).exists():
        raise PaperzooError(f"weights file not found: {weights}")
    meta = model_meta(model)
    state, saved = _weights_and_metadata(Path(weights))
    names = saved.get("categories") or saved.get("classes") or meta.categories
    task_name = task or saved.get("task") or task_name_for(TrainConfig(model=model), meta)
    kind = task_class(task_name).data
    kwargs: dict[str, int] = {}
    if source == "paperzoo":  # the classes paperzoo recorded, else whatever makes the tensors fit
        kwargs = {"num_classes": len(saved["categories"])} if saved.get("categories") else _shape_arguments(model, state)
        if kind == "classification" and "in_chans" not in kwargs:
            kwargs.update({k: v for k, v in _shape_arguments(model, state).items() if k == "in_chans"})
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    net = create_model(model, **{**saved.get("model_args", {}), **kwargs})  # as it was trained (e.g. its input size)
    load_weights(net, state, source=source)
    net.eval()
    chans = kwargs.get("in_chans", meta.input_size[0])
    picture = read_image(Path(image), gray=chans == 1)
    result: dict[str, Any] = {"out": str(out), "task": task_name}
    if task_name == "promptable":
        raise PaperzooError("predict: a promptable model needs prompts; use paperzoo.models.segmentation.sam.SamPredictor "
                            "(points, boxes) or SamAutomaticMaskGenerator (everything) in Python")
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind in ("detection", "instances", "keypoints"):
        with torch.no_grad():
            det = net.detect([picture.float() / 255])[0]
        keep = det["scores"] >= score_threshold
        det = {k: v[keep] for k, v in det.items()}
        label = [names[int(c)] if names and int(c) < len(names) else str(int(c)) for c in det["labels"]]
        drawn = picture if chans == 3 else picture.expand(3, -1, -1)
        if "masks" in det and len(det["masks"]):
            masks = det["masks"][:, 0] if det["masks"].ndim == 4 else det["masks"]
            drawn = draw_segmentation_masks(drawn, masks > 0.5, alpha=0.5)
        drawn = draw_bounding_boxes(drawn, det["boxes"], labels=[f"{n} {s:.2f}" for n, s in zip(label, det["scores"].tolist())],
                                    width=2, colors="red")
        if "keypoints" in det and len(det["keypoints"]):
            drawn = draw_keypoints(drawn, det["keypoints"][..., :2], colors="yellow", radius=2)
        write_png(drawn, str(out))
        result["detections"] = [{"label": n, "score": round(float(s), 4), "box": [round(float(v), 1) for v in b]}
                                for n, s, b in zip(label, det["scores"], det["boxes"])]
        return result
    size = saved.get("image_size")
    size = (size[-1] if isinstance(size, list) else size) or meta.input_size[-1]
    mean, std = saved.get("mean", meta.mean), saved.get("std", meta.std)
    resized = TF.resize(picture, [size, size], antialias=True)
    x = ((resized.float() / 255 - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1))[None]
    if task_name in ("contrastive", "prompted-segmentation", "captioning"):
        from .models.multimodal.predict import predict_multimodal

        return predict_multimodal(net, task_name, x, resized, picture, out, result, labels=labels, prompt=prompt)
    with torch.no_grad():
        y = net(x)
    if kind == "matting":  # the image and its alpha matte side by side
        matte = (y["matte"] if isinstance(y, dict) else y)[0, 0].float().clamp(0, 1)
        shown = resized if chans == 3 else resized.expand(3, -1, -1)
        write_png(torch.cat([shown, (matte * 255).round().to(torch.uint8).expand(3, -1, -1)], 2), str(out))
        result["foreground_fraction"] = round(float(matte.mean()), 4)
        return result
    if kind == "segmentation":
        logits = y["out"] if isinstance(y, dict) else y
        classes = logits.argmax(1)[0]
        present = [int(c) for c in classes.unique() if int(c) != 0]
        drawn = resized if chans == 3 else resized.expand(3, -1, -1)
        if present:
            drawn = draw_segmentation_masks(drawn, torch.stack([classes == c for c in present]), alpha=0.6)
        write_png(drawn, str(out))
        result["classes"] = [names[c] if names and c < len(names) else str(c) for c in present]
        return result
    probs = torch.softmax(y.float(), 1)[0]
    top = probs.topk(min(topk, len(probs)))
    labels = [names[int(i)] if names and int(i) < len(names) else f"class {int(i)}" for i in top.indices]
    _draw_classification(picture, labels, top.values.tolist(), out)
    result["top"] = [{"label": n, "probability": round(float(p), 4)} for n, p in zip(labels, top.values)]
    return result


def write_png(picture: torch.Tensor, path: str) -> None:
    """A uint8 CHW tensor as a PNG file."""
    from PIL import Image

    Image.fromarray(picture.permute(1, 2, 0).contiguous().numpy()).save(path)


def _draw_classification(picture: torch.Tensor, labels: list[str], probs: list[float], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(7, 3.2), gridspec_kw={"width_ratios": [1, 1.2]})
    img = picture.permute(1, 2, 0).squeeze(-1).numpy()
    a.imshow(img, cmap="gray" if img.ndim == 2 else None)
    a.axis("off")
    b.barh(range(len(labels))[::-1], probs, color="C0")
    b.set_yticks(range(len(labels))[::-1], labels, fontsize=8)
    b.set(xlim=(0, 1), xlabel="probability", title=f"{labels[0]} ({probs[0]:.2f})")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
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
        for key in ("mean", "std", "classes", "categories", "image_size"):
            if key in raw:
                meta[key] = json.loads(raw[key])
        if "task" in raw:
            meta["task"] = raw["task"]
        if "model_args" in raw:
            meta["model_args"] = json.loads(raw["model_args"])
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


# ------------------------------------------------------------------------------------------- sample
def sample_grid(model: str, weights: Path, out: Path, n: int = 64, seed: int = 0, source: str = "paperzoo",
                nrow: int | None = None) -> dict[str, Any]:
    """``paperzoo sample``: build a generative model as its weights were trained (the metadata paperzoo wrote:
    model arguments, channels, image size), draw ``n`` samples from seeded noise and write them as one PNG grid."""
    from .tasks.generative import save_grid

    if not Path(weights).exists():
        raise PaperzooError(f"weights file not found: {weights}")
    meta = model_meta(model)
    if meta.task != "generative":
        raise PaperzooError(f"model '{model}' is not a generative model (its task is {meta.task}); sample needs one")
    if n < 1:
        raise PaperzooError(f"the number of samples must be at least 1, got {n}")
    state, saved = _weights_and_metadata(Path(weights))
    kwargs = dict(saved.get("model_args", {}))
    if saved.get("mean") is not None:
        kwargs.setdefault("in_chans", len(saved["mean"]))
    size = saved.get("image_size")
    if size is not None:
        kwargs.setdefault("img_size", size[-1] if isinstance(size, list) else size)
    net = create_model(model, **kwargs)
    load_weights(net, state, source=source)
    net.eval()
    with torch.no_grad():
        images = net.sample(n, generator=torch.Generator().manual_seed(seed))
    save_grid(images, out, nrow=nrow)
    return {"out": str(out), "samples": n, "shape": list(images.shape[1:])}
