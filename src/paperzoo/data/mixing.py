"""Batch mixing: mixup (Zhang et al., 2017, arXiv:1710.09412) and CutMix (Yun et al., 2019, arXiv:1905.04899).

Both train on pairs of examples (x_i, y_i), (x_j, y_j) taken from the same batch (j a random permutation
of i) and a mixing ratio lambda ~ Beta(alpha, alpha):

* mixup blends whole images and labels: x = lambda x_i + (1 - lambda) x_j, y = lambda y_i + (1 - lambda) y_j.
* CutMix pastes a box of x_j into x_i. The box has sides W sqrt(1 - lambda) by H sqrt(1 - lambda) around a
  centre drawn uniformly over the image and is clipped to it; the label weight is then set to the exact
  area kept, lambda = 1 - box area / (W H) (eq. 1-2 and the official code's box sampling).

One lambda and one permutation per batch, as in both papers' code. All randomness comes from the
``generator`` passed in (the Trainer passes its checkpointed generator, so resumed runs mix identically).
"""
from __future__ import annotations

import math

import numpy as np
import torch


def _beta(alpha: float, generator: torch.Generator | None) -> float:
    """lambda ~ Beta(alpha, alpha), drawn reproducibly from a torch generator."""
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _soft(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    if labels.ndim == 2:
        return labels.float()
    return torch.nn.functional.one_hot(labels, num_classes).float()


class MixUp:
    """mixup with ratio lambda ~ Beta(alpha, alpha): ``mix(images, labels) -> (images, soft labels)``."""

    def __init__(self, alpha: float = 0.2, num_classes: int = 10) -> None:
        if alpha <= 0:
            raise ValueError(f"mixup alpha must be > 0, got {alpha}")
        self.alpha, self.num_classes = alpha, num_classes

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        lam = _beta(self.alpha, generator)
        perm = torch.randperm(len(images), generator=generator).to(images.device)
        y = _soft(labels, self.num_classes)
        mixed = images.mul(lam).add_(images[perm], alpha=1 - lam)
        return mixed, y.mul(lam).add_(y[perm], alpha=1 - lam)


class CutMix:
    """CutMix with lambda ~ Beta(alpha, alpha); the label weight equals the area of the image kept."""

    def __init__(self, alpha: float = 1.0, num_classes: int = 10) -> None:
        if alpha <= 0:
            raise ValueError(f"cutmix alpha must be > 0, got {alpha}")
        self.alpha, self.num_classes = alpha, num_classes

    def box(self, height: int, width: int, generator: torch.Generator | None = None) -> tuple[int, int, int, int, float]:
        """A box (y1, y2, x1, x2) to paste and the kept-area ratio lambda it implies."""
        lam = _beta(self.alpha, generator)
        cut = math.sqrt(1.0 - lam)
        cut_h, cut_w = int(height * cut), int(width * cut)
        cy = int(torch.randint(height, (), generator=generator))  # box centre, uniform over the image
        cx = int(torch.randint(width, (), generator=generator))
        y1, y2 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
        x1, x2 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
        return y1, y2, x1, x2, 1.0 - (y2 - y1) * (x2 - x1) / (height * width)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y1, y2, x1, x2, lam = self.box(images.shape[-2], images.shape[-1], generator)
        perm = torch.randperm(len(images), generator=generator).to(images.device)
        y = _soft(labels, self.num_classes)
        mixed = images.clone()
        mixed[..., y1:y2, x1:x2] = images[perm][..., y1:y2, x1:x2]
        return mixed, y.mul(lam).add_(y[perm], alpha=1 - lam)


class MixUpOrCutMix:
    """Per batch, CutMix with probability ``switch_prob`` and mixup otherwise (either alone if one alpha is 0)."""

    def __init__(self, mixup_alpha: float, cutmix_alpha: float, num_classes: int, switch_prob: float = 0.5) -> None:
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            raise ValueError("MixUpOrCutMix needs mixup_alpha > 0 or cutmix_alpha > 0")
        self.mixup = MixUp(mixup_alpha, num_classes) if mixup_alpha > 0 else None
        self.cutmix = CutMix(cutmix_alpha, num_classes) if cutmix_alpha > 0 else None
        self.switch_prob = switch_prob

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mixup is None or self.cutmix is None:
            return (self.mixup or self.cutmix)(images, labels, generator)
        use_cutmix = float(torch.rand((), generator=generator)) < self.switch_prob
        return (self.cutmix if use_cutmix else self.mixup)(images, labels, generator)
