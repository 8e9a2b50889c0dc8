"""Energy-based models for continual learning (Li, Du, van de Ven & Mordatch, 2020, arXiv 2011.12216).

A classifier as an energy function E(x, y): the image's features h(x) are gated by a learned embedding of the
label, g(y), and a small MLP maps h(x) * sigmoid(g(y)) to one scalar (Sec. 3.1: the label enters the network
instead of indexing an output unit). Prediction is the label of minimum energy, argmin_y E(x, y), over the classes
seen so far. Training (``paperzoo.tasks.energy``) contrasts the true label's energy only with those of the classes
present in the current batch (Eq. 5-6) — the paper's key change: a softmax over all outputs pushes the energies of
old classes up on every new batch, which is what makes softmax classifiers forget in class-incremental learning.

``forward(x)`` returns -E(x, y) for every class y (B, K), so that accuracy, ``argmax`` and the CLI treat it like
logits; ``energy(x, y)`` evaluates given labels.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...registry import register_model


class ConvFeatures(nn.Module):
    """Two strided conv-ReLU layers and a linear layer: h(x) of dimension ``dim``."""

    def __init__(self, in_chans: int, dim: int, width: int = 32, image_size: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, 2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
            nn.Linear(2 * width * 16, dim), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class EBMClassifier(nn.Module):
    """E(x, y) = MLP(h(x) * sigmoid(g(y))), one scalar per (image, label) pair."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, dim: int = 256, width: int = 32) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = ConvFeatures(in_chans, dim, width)
        self.label_embedding = nn.Embedding(num_classes, dim)
        self.energy_head = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, 1))

    def energies(self, x: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """E(x, y) for every image and every label in ``classes`` (default all): (B, len(classes))."""
        h = self.features(x)
        gate = torch.sigmoid(self.label_embedding.weight if classes is None else self.label_embedding(classes))
        return self.energy_head(h[:, None, :] * gate[None, :, :]).squeeze(-1)

    def energy(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """E(x_i, y_i) for given labels: (B,)."""
        h = self.features(x)
        return self.energy_head(h * torch.sigmoid(self.label_embedding(y))).squeeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -self.energies(x)


@register_model(paper="ebm-cl", task="energy", input_size=(3, 32, 32), num_classes=10, mean=(0.5,) * 3, std=(0.25,) * 3,
                notes="returns -E(x, y) for every class; trained with the in-batch contrastive energy")
def ebm_classifier(num_classes: int = 10, in_chans: int = 3, **kwargs: Any) -> EBMClassifier:
    """The EBM classifier (``in_chans=1`` for the digits: `paperzoo train ... model_args.in_chans=1`)."""
    return EBMClassifier(num_classes=num_classes, in_chans=in_chans, **kwargs)
