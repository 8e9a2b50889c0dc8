"""Metrics of generative models, none of which downloads anything.

* ``mmd2``: the unbiased squared maximum mean discrepancy with a sum of RBF kernels (a two-sample statistic: does
  a set of codes look like draws of a prior?);
* ``hellinger``: the Hellinger distance between histograms (HistoGAN's colour-histogram distance);
* ``fid_kid``: FID and KID through torchmetrics with a **feature extractor passed in** — a paperzoo classifier
  trained on the same built-in data (``ClassifierFeatures``; report it as e.g. "FID-shapes", not as FID), or the
  standard Inception network when the user has its weights file. torchmetrics is never allowed to fetch weights.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] = (0.2, 0.5, 1.0, 2.0, 5.0)) -> float:
    """Unbiased MMD^2 between samples ``x`` (n, d) and ``y`` (m, d) with k(a, b) = sum_s exp(-|a - b|^2 / (2 s^2))."""
    x, y = x.double().flatten(1), y.double().flatten(1)
    n, m = len(x), len(y)

    def k(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        d2 = torch.cdist(a, b).pow(2)
        return sum(torch.exp(-d2 / (2 * s * s)) for s in bandwidths)

    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (n * (n - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (m * (m - 1))
    return float(sxx + syy - 2 * kxy.mean())


def hellinger(p: torch.Tensor, q: torch.Tensor, dims: int | Sequence[int] | None = None, eps: float = 0.0) -> torch.Tensor:
    """H(p, q) = (1 / sqrt 2) || sqrt p - sqrt q ||_2 over ``dims`` (default: all but the first, batch, dimension) of
    histograms that each sum to one; HistoGAN's histogram loss (its Eq. 5 without the 1 / sqrt 2 factor is
    ``sqrt(2) * hellinger``)."""
    if dims is None:
        dims = tuple(range(1, p.ndim)) if p.ndim > 1 else (0,)
    diff = (p.clamp_min(0) + eps).sqrt() - (q.clamp_min(0) + eps).sqrt()
    return diff.pow(2).sum(dim=dims).sqrt() / 2 ** 0.5


class ClassifierFeatures(nn.Module):
    """The penultimate features of a classifier, as the feature extractor of FID/KID: images in [0, 1] are
    normalised with the classifier's ``mean``/``std`` and resized to ``size``; the output is the pooled features
    (``forward_features``/``forward_head(pre_logits=True)`` where the model has them, else the input of its last
    linear layer)."""

    def __init__(self, classifier: nn.Module, mean: Sequence[float], std: Sequence[float], size: int | None = None) -> None:
        super().__init__()
        self.net = classifier.eval()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))
        self.size = size
        last = [m for m in classifier.modules() if isinstance(m, nn.Linear)][-1]
        self._last = last
        self.num_features = last.in_features

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if x.dtype == torch.uint8 or x.max() > 1.5:
            x = x / 255
        if self.size is not None and x.shape[-1] != self.size:
            x = nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False,
                                          antialias=True)
        if x.shape[1] != self.mean.shape[1]:
            x = x.expand(-1, self.mean.shape[1], -1, -1) if x.shape[1] == 1 else x.mean(1, keepdim=True)
        captured: list[torch.Tensor] = []
        hook = self._last.register_forward_hook(lambda m, inp, out: captured.append(inp[0]))
        try:
            self.net((x - self.mean) / self.std)
        finally:
            hook.remove()
        return captured[-1].flatten(1).double()


def fid_kid(real: torch.Tensor, fake: torch.Tensor, feature: nn.Module, kid_subset: int = 50,
            batch_size: int = 128) -> dict[str, float]:
    """FID and KID (mean over subsets) of ``fake`` against ``real`` images in [0, 1] with the given feature
    extractor (a module with ``num_features``). torchmetrics computes both."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    if not hasattr(feature, "num_features"):
        raise TypeError("the feature extractor needs a num_features attribute (no Inception download is made)")
    subset = max(2, min(kid_subset, len(real), len(fake)))
    fid = FrechetInceptionDistance(feature=feature, normalize=True)
    kid = KernelInceptionDistance(feature=feature, normalize=True, subset_size=subset, subsets=20)
    for images, real_flag in ((real, True), (fake, False)):
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size].float().clamp(0, 1)
            fid.update(chunk, real=real_flag)
            kid.update(chunk, real=real_flag)
    kid_mean, kid_std = kid.compute()
    return {"fid": float(fid.compute()), "kid": float(kid_mean), "kid_std": float(kid_std)}
