"""Detections drawn on a few test scenes, side by side per detector: the PNG a detection miniature shows."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset


@torch.no_grad()
def detections_png(out: Path, filename: str, models: Mapping[str, nn.Module], dataset: Dataset, n: int = 4,
                   score: float = 0.3) -> str:
    """One row per model (``models``: label -> detector with ``detect``), ``n`` test scenes per row, boxes scoring
    at least ``score`` drawn in red, ground truth in green. Returns the file name."""
    from torchvision.utils import draw_bounding_boxes, make_grid

    from .plots import pyplot

    images, targets = zip(*(dataset[i] for i in range(min(n, len(dataset)))))
    images = [im.as_subclass(torch.Tensor) for im in images]
    rows = []
    for model in models.values():
        dets = model.detect(images)
        for im, det, t in zip(images, dets, targets):
            canvas = (im.clamp(0, 1) * 255).to(torch.uint8)
            gt = t["boxes"].as_subclass(torch.Tensor)
            if len(gt):
                canvas = draw_bounding_boxes(canvas, gt, colors="lime")
            keep = det["scores"] >= score
            if keep.any():
                canvas = draw_bounding_boxes(canvas, det["boxes"][keep].cpu(), colors="red")
            rows.append(canvas)
    grid = make_grid(rows, nrow=len(images), padding=2, pad_value=255)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(2.2 * len(images), 2.2 * len(models) + 0.4))
    ax.imshow(grid.permute(1, 2, 0).numpy())
    ax.set_yticks([(i + 0.5) * grid.shape[1] / len(models) for i in range(len(models))], list(models))
    ax.set_xticks([])
    ax.set_title(f"detections (red, score >= {score:g}) and ground truth (green)")
    fig.tight_layout()
    fig.savefig(out / filename, dpi=100)
    plt.close(fig)
    return filename
