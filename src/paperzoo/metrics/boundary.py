"""Boundary F-score of label maps (the contour measure of Csurka et al., 2013, and of the DAVIS benchmark's F):
how well predicted region boundaries fall on the true ones, within a tolerance of ``tol`` pixels.

A pixel is on a boundary when one of its 4-neighbours (inside the image) has another label. Precision is the
share of predicted boundary pixels within ``tol`` (Chebyshev distance) of a true boundary pixel, recall the
share of true boundary pixels within ``tol`` of a predicted one; F = 2PR / (P + R). Counts are summed over all
images of a batch (and over ``update`` calls) before the ratio is taken."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def boundaries(labels: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: pixels with a 4-neighbour of a different label."""
    x = labels
    edge = torch.zeros_like(x, dtype=torch.bool)
    dy = x[:, 1:, :] != x[:, :-1, :]
    dx = x[:, :, 1:] != x[:, :, :-1]
    edge[:, 1:, :] |= dy
    edge[:, :-1, :] |= dy
    edge[:, :, 1:] |= dx
    edge[:, :, :-1] |= dx
    return edge


def _near(mask: torch.Tensor, tol: int) -> torch.Tensor:
    if tol == 0:
        return mask
    return F.max_pool2d(mask[:, None].float(), 2 * tol + 1, stride=1, padding=tol)[:, 0] > 0


def boundary_counts(pred: torch.Tensor, target: torch.Tensor, tol: int = 1) -> torch.Tensor:
    """(matched predicted, predicted, matched true, true) boundary pixel counts of (B, H, W) label maps."""
    bp, bt = boundaries(pred), boundaries(target)
    return torch.stack([(bp & _near(bt, tol)).sum(), bp.sum(), (bt & _near(bp, tol)).sum(), bt.sum()]).double()


def boundary_f1(pred: torch.Tensor, target: torch.Tensor, tol: int = 1) -> dict[str, float]:
    """Boundary precision, recall and F-score of ``pred`` against ``target`` (B, H, W); an image set with no
    boundary on either side scores 1, one with boundaries on one side only scores 0."""
    return f1_from_counts(boundary_counts(pred, target, tol))


def f1_from_counts(c: torch.Tensor) -> dict[str, float]:
    mp, p, mt, t = (float(v) for v in c)
    if p == 0 and t == 0:
        return {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    precision = mp / p if p else 0.0
    recall = mt / t if t else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}
