"""Alpha matting: an image in, its foreground opacity (alpha, (B, 1, H, W) in [0, 1]) out, trimap-free.

Metrics are the four of the matting benchmark (Rhemann et al., CVPR 2009), as the Deep Image Matting evaluation
code computes them, per image and averaged over images: SAD (sum of absolute differences, reported / 1000 as is
customary), MSE (mean squared error), gradient error (sum of squared differences of the gradient magnitudes,
Gaussian first-derivative filters with sigma 1.4, scipy's ``gaussian_gradient_magnitude``; / 1000) and
connectivity error (per pixel, the threshold up to which it stays in the largest 4-connected component of the
region where both mattes pass it, in steps of 0.1; d = alpha - that level; phi = 1 - d [d >= 0.15]; sum of
|phi_pred - phi_true|, / 1000). They run over the whole image: there is no trimap.

The loss is the model's: MODNet's three sub-objectives (``{"matte", "semantic", "detail"}`` outputs; the trimap its
detail loss needs is derived from the true matte's transition region), or an L1 loss for a model that outputs a
matte tensor.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .base import SumEvaluator, Task, register_task


def sad(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    """Per image (B, H, W) -> (B,): sum |pred - true| / 1000."""
    return np.abs(pred - true).sum((1, 2)) / 1000


def mse(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    return ((pred - true) ** 2).mean((1, 2))


def gradient_error(pred: np.ndarray, true: np.ndarray, sigma: float = 1.4) -> np.ndarray:
    """Per image: sum (|grad pred| - |grad true|)^2 / 1000 with Gaussian-derivative gradients (no filtering across
    images: sigma 0 along the batch)."""
    from scipy.ndimage import gaussian_gradient_magnitude

    gp = gaussian_gradient_magnitude(pred.astype(np.float64), sigma=(0, sigma, sigma))
    gt = gaussian_gradient_magnitude(true.astype(np.float64), sigma=(0, sigma, sigma))
    return ((gp - gt) ** 2).sum((1, 2)) / 1000


def connectivity_error(pred: np.ndarray, true: np.ndarray, step: float = 0.1, theta: float = 0.15) -> np.ndarray:
    """Per image: the connectivity error of the module docstring / 1000, for a batch in one labelling per threshold
    (a structuring element that connects pixels within an image only)."""
    from scipy.ndimage import label

    structure = np.zeros((3, 3, 3), bool)
    structure[1] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    b = pred.shape[0]
    level = np.full(pred.shape, -1.0)
    steps = np.arange(0, 1 + step / 2, step)
    for i in range(1, len(steps)):
        both = (pred >= steps[i]) & (true >= steps[i])
        comps, n = label(both, structure=structure)
        omega = np.zeros(pred.shape, bool)
        if n:
            sizes = np.bincount(comps.ravel(), minlength=n + 1)
            owner = np.zeros(n + 1, np.int64)  # the image each component lies in
            owner[comps.ravel()] = np.repeat(np.arange(b), comps[0].size)
            sizes[0] = 0
            best = np.zeros(b, np.int64)  # per image, its largest component (0: none)
            order = np.lexsort((-sizes[1:], owner[1:]))  # by image, largest first
            first = np.unique(owner[1:][order], return_index=True)
            best[first[0]] = order[first[1]] + 1
            omega = comps == best[:, None, None]
            omega &= comps > 0
        fresh = (level == -1) & ~omega
        level[fresh] = steps[i - 1]
    level[level == -1] = 1.0

    def phi(a: np.ndarray) -> np.ndarray:
        d = a - level
        return 1 - d * (d >= theta)

    return np.abs(phi(pred) - phi(true)).sum((1, 2)) / 1000


class MattingEvaluator(SumEvaluator):
    def update(self, predictions: torch.Tensor, batch: Any) -> None:
        pred = predictions.detach().float().cpu().numpy()[:, 0]
        true = batch[1].detach().float().cpu().numpy()[:, 0]
        for name, fn in (("sad", sad), ("mse", mse), ("grad", gradient_error), ("conn", connectivity_error)):
            self.add(name, float(fn(pred, true).sum()))
        self.count += len(pred)


@register_task("matting")
class MattingTask(Task):
    """Trimap-free alpha mattes; SAD, MSE, gradient and connectivity errors."""

    data = "matting"
    data_defaults: dict[str, Any] = {"image_size": 64, "min_objects": 1, "max_objects": 2}

    def __init__(self, band: int = 5) -> None:
        self.band = band  # window of the trimap's transition region for MODNet's detail loss

    def collate(self, samples: Sequence[tuple[torch.Tensor, dict[str, Any]]]) -> tuple[torch.Tensor, torch.Tensor]:
        images = torch.stack([s[0].as_subclass(torch.Tensor) for s in samples])
        alphas = torch.stack([s[1]["alpha"].as_subclass(torch.Tensor).float().reshape(1, *images.shape[-2:])
                              for s in samples])
        return images, alphas

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, dict[str, Any]]:
        images, alpha = batch
        out = model(images)
        if isinstance(out, dict) and "semantic" in out:
            from ..models.segmentation.modnet import supervised_losses, trimap_from_alpha

            losses = supervised_losses({k: v.float() for k, v in out.items()}, images, trimap_from_alpha(alpha, self.band),
                                       alpha)
            return sum(losses.values()), {k: v.detach() for k, v in losses.items()}
        matte = out["matte"] if isinstance(out, dict) else out
        loss = F.l1_loss(matte.float(), alpha)
        return loss, {"loss_matte": loss.detach()}

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        out = model(batch[0])
        return (out["matte"] if isinstance(out, dict) else out).float().clamp(0, 1)

    def evaluator(self) -> MattingEvaluator:
        return MattingEvaluator()
