"""What the pose miniatures share: the keypoint scenes, one training run of a top-down pose net through the
Trainer and the pose task, its OKS AP / PCK, and a figure of drawn skeletons.

The scenes are drawn without rotation, so that every corner of a shape has an identity (a rotated pentagon has
five indistinguishable corners); the skeleton of a shape joins its corners in order around the outline.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ...tasks import get_task
from .data import Data
from .fit import Recipe, Run, fit


def pose_data(image_size: int = 64, train_size: int = 1500, test_size: int = 300, preset: str = "medium",
              scale: tuple[float, float] = (0.35, 0.7), **knobs: Any) -> Data:
    """Keypoint scenes (one object, unrotated shapes) for a top-down pose miniature."""
    return Data(kind="keypoints", image_size=image_size, train_size=train_size, test_size=test_size, preset=preset,
                scale=scale, knobs={"rotate": False, "max_objects": 1, **knobs})


def pose_task(train: Dataset, input_size: tuple[int, int], flip: bool = False, sigma: float = 2.0):
    return get_task("pose", input_size=input_size, sigmas=train.keypoint_sigmas, categories=train.categories,
                    flip=flip, sigma=sigma)


def fit_pose(name: str, model: nn.Module, train: Dataset, test: Dataset, *, seed: int, recipe: Recipe,
             input_size: tuple[int, int], task: Any = None, **config: Any) -> Run:
    """Train a pose net on the keypoint scenes (evaluated once, at the end): its ``Run`` has ``val_kp_map``,
    ``val_kp_map_50`` and ``val_pck`` among its metrics."""
    task = task or pose_task(train, input_size)
    return fit(name, model, train, test, seed=seed, recipe=recipe, task=task, eval_every=recipe.epochs,
               channels_last=False, **config)


def percent(run: Run, key: str = "val_kp_map") -> float:
    return 100 * run.metrics[key]


@torch.no_grad()
def skeletons(out: Path, filename: str, models: dict[str, nn.Module], test: Dataset, task: Any, n: int = 6) -> str:
    """A grid: ``n`` test scenes (rows) with each model's predicted keypoints and skeleton (columns, yellow) and
    the ground truth (first column, green), drawn by ``torchvision.utils.draw_keypoints``."""
    from torchvision.utils import draw_keypoints, make_grid

    from .plots import _save, pyplot

    samples = [test[i] for i in range(min(n, len(test)))]
    images, targets = task.collate(samples)
    preds = {k: task.predict(m.eval(), (images, targets)) for k, m in models.items()}
    tiles = []
    for i, (im, t) in enumerate(zip(images, targets)):
        picture = (im.as_subclass(torch.Tensor).clamp(0, 1) * 255).to(torch.uint8)
        vis = t["visibility"].reshape(len(t["boxes"]), -1)
        columns = [("ground truth", t["keypoints"].as_subclass(torch.Tensor), "lime")]
        columns += [(k, p[i]["keypoints"], "yellow") for k, p in preds.items()]
        for _, kp, color in columns:
            drawn = picture
            for j in range(len(kp)):
                k = int((vis[j] > 0).sum())
                if k == 0:
                    continue
                ring = [(a, (a + 1) % k) for a in range(k)] if k > 1 else []
                drawn = draw_keypoints(drawn, kp[j:j + 1, :k].float(), connectivity=ring, colors=color, radius=1, width=1)
            tiles.append(drawn)
    grid = make_grid(tiles, nrow=1 + len(models), padding=2, pad_value=255)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(1.6 * (1 + len(models)) + 0.5, 1.6 * len(samples) + 0.6))
    ax.imshow(grid.permute(1, 2, 0).numpy())
    ax.set_xticks([(j + 0.5) * grid.shape[-1] / (1 + len(models)) for j in range(1 + len(models))],
                  ["ground truth", *models], fontsize=8)
    ax.set_yticks([])
    ax.set_title("predicted corners and skeletons on held-out scenes", fontsize=9)
    return _save(fig, out, filename, bbox_inches="tight")
