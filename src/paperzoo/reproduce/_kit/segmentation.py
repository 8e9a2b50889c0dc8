"""What the segmentation miniatures share: label maps of a trained model on a dataset (through the task's own
``predict``), their mean IoU and boundary F-score, and a PNG of overlays (torchvision's
``draw_segmentation_masks``) of several models' predictions on the same test images."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from ...metrics import MeanIoU
from ...metrics.boundary import boundary_counts, f1_from_counts
from . import plots


@torch.no_grad()
def label_maps(model: nn.Module, dataset: Dataset, task: Any, batch_size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted, true) label maps (N, H, W) of ``model`` in eval mode on every sample of ``dataset`` (the true map
    is the batch's target, or its first element where the task's target is a tuple)."""
    was = model.training
    model.eval()
    preds, targets = [], []
    for start in range(0, len(dataset), batch_size):
        batch = task.collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        preds.append(task.predict(model, batch).cpu())
        target = batch[1][0] if isinstance(batch[1], (tuple, list)) else batch[1]  # (mask, extras...) or mask
        targets.append(target.cpu())
    model.train(was)
    return torch.cat(preds), torch.cat(targets)


def scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int, tol: int = 1) -> dict[str, float]:
    """Mean IoU and the boundary F-score (tolerance ``tol`` px), both in percent."""
    ev = MeanIoU(num_classes)
    ev.update(pred, (None, target))
    miou = ev.compute()["miou"]
    return {"miou": 100 * miou, "boundary_f": 100 * f1_from_counts(boundary_counts(pred, target, tol))["f1"]}


def overlays(out: Path, filename: str, images: torch.Tensor, rows: Mapping[str, torch.Tensor], num_classes: int,
             title: str = "") -> str:
    """A grid: one row per entry of ``rows`` (label maps (N, H, W), e.g. "ground truth" and each model), one
    column per image, each class but the background drawn over the image in its own colour."""
    from torchvision.utils import draw_segmentation_masks

    plt = plots.pyplot()
    imgs = images - images.amin(dim=(1, 2, 3), keepdim=True)
    imgs = (255 * imgs / imgs.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)).to(torch.uint8)
    colors = [tuple(int(255 * c) for c in plt.cm.tab10(i)[:3]) for i in range(10)]
    n = images.shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n, 1.7 * len(rows)), squeeze=False)
    for r, (name, maps) in enumerate(rows.items()):
        for c in range(n):
            masks = torch.stack([maps[c] == k for k in range(1, num_classes)])
            drawn = draw_segmentation_masks(imgs[c], masks, alpha=0.55, colors=colors[:num_classes - 1])
            ax = axes[r][c]
            ax.imshow(drawn.permute(1, 2, 0).numpy())
            ax.set_xticks([]), ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return plots._save(fig, out, filename)


def first_images(dataset: Dataset, n: int) -> torch.Tensor:
    return torch.stack([dataset[i][0].as_subclass(torch.Tensor) for i in range(min(n, len(dataset)))])


__all__: Sequence[str] = ["first_images", "label_maps", "overlays", "scores"]
