"""Generative metrics without downloads: MMD^2 by hand, FID/KID through torchmetrics with a passed-in classifier."""
from __future__ import annotations

import math

import torch
from torch import nn

from paperzoo.metrics.generative import ClassifierFeatures, fid_kid, mmd2


def test_mmd2_by_hand() -> None:
    """Two points each, one kernel width s: unbiased MMD^2 = k(x1, x2) + k(y1, y2) - (1/2) sum_ij k(x_i, y_j)."""
    x, y = torch.tensor([[0.0], [1.0]]), torch.tensor([[0.0], [3.0]])
    k = lambda d: math.exp(-d * d / 2)  # noqa: E731  (s = 1)
    expected = k(1) + k(3) - 0.5 * (k(0) + k(3) + k(1) + k(2))
    assert abs(mmd2(x, y, bandwidths=(1.0,)) - expected) < 1e-12
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)
    assert abs(mmd2(a, b)) < 0.02 < mmd2(a, b + 1.0)


def test_fid_kid_with_a_classifier_as_feature_extractor() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    feats = ClassifierFeatures(net, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert feats.num_features == 6
    g = torch.Generator().manual_seed(1)
    real = torch.rand(64, 3, 8, 8, generator=g)
    same = fid_kid(real, real, feats, kid_subset=32)
    shifted = fid_kid(real, (real * 0.3).clamp(0, 1), feats, kid_subset=32)
    assert abs(same["fid"]) < 1e-3 and shifted["fid"] > 10 * max(same["fid"], 1e-4) and shifted["kid"] > same["kid"]
