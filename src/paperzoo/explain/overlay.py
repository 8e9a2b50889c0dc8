"""Pictures of explanations: a heatmap blended over its image, and a figure with the Guided Grad-CAM."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _hwc(image: torch.Tensor) -> np.ndarray:
    """A CHW (or HW) tensor in [0, 1] as an HxWx3 array."""
    x = image.detach().float().cpu()
    if x.ndim == 2:
        x = x[None]
    x = x.expand(3, *x.shape[1:]) if x.shape[0] == 1 else x[:3]
    return x.permute(1, 2, 0).clamp(0, 1).numpy()


def overlay(image: torch.Tensor, cam: torch.Tensor, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] map (H, W) over an image (C, H, W in [0, 1]) with a colour map; returns HxWx3."""
    import matplotlib

    colors = matplotlib.colormaps[cmap](cam.detach().float().cpu().clamp(0, 1).numpy())[..., :3]
    return (1 - alpha) * _hwc(image) + alpha * colors


def _guided_image(guided: torch.Tensor) -> np.ndarray:
    g = guided.detach().float().cpu()
    g = (g - g.mean()) / (g.std() + 1e-12) * 0.15 + 0.5  # the paper's visualisation: centred, contrast-stretched
    return _hwc(g.clamp(0, 1))


def save_explanation(path: str | Path, image: torch.Tensor, cam: torch.Tensor, guided: torch.Tensor | None = None,
                     title: str = "") -> Path:
    """Write a PNG: the image, its Grad-CAM overlay and (if given) the Guided Grad-CAM."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("image", _hwc(image)), ("Grad-CAM", overlay(image, cam))]
    if guided is not None:
        panels.append(("Guided Grad-CAM", _guided_image(guided)))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4))
    for ax, (name, img) in zip(np.atleast_1d(axes), panels):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
