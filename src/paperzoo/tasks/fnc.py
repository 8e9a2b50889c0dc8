"""SimCLR and False Negative Cancellation (Huynh et al., 2020), as tasks over any registered backbone.

**SimCLR** (Chen et al., 2020, the base of FNC): N images, two augmented views each, projections z (a
Linear -> BN -> ReLU -> Linear head), l2-normalised; for anchor i of the 2N views with positive p(i) (the other
view of its image) the NT-Xent loss is

    l_i = -log exp(s_ip / t) / sum_{k != i} exp(s_ik / t),   s = cosine similarity, t the temperature,

averaged over the 2N anchors (``nt_xent``).

**FNC**: among an anchor's 2(N-1) negatives some show the same semantic content (false negatives). They are
found with *support views* (section 3.3): further augmentations of the anchor's image, whose embeddings are
compared with every negative; each negative's scores over the support views are aggregated (max or mean) and the
top-k negatives (or those above a threshold) are flagged as false negatives F_i (``false_negatives``). Two ways to
cancel them (section 3.2, ``fnc_loss``):

* elimination: F_i is removed from the denominator, l_i = -log exp(s_ip/t) / sum_{k != i, k not in F_i} exp(s_ik/t);
* attraction: F_i joins the positives, l_i = -1/(1 + |F_i|) sum_{q in {p} + F_i} log exp(s_iq/t) / sum_{k != i} exp(s_ik/t).

The support views are embedded without gradient. ``paperzoo train --model resnet20_cifar --task fnc --data shapes``
(attraction, 2 support views, top-1; ``--task simclr`` is the baseline). Evaluation: frozen features by linear
probe and k-NN (``ssl.FrozenFeatureEvaluator``).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, unknown
from .base import register_task
from .ssl import MLP, SSLTask, Views, data_stats, feature_dim, features

STRATEGIES = ("none", "elimination", "attraction")
AGGREGATIONS = ("max", "mean")


def _similarities(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(s / t for the 2N x 2N views with -inf on the diagonal, the positive index p(i) of each anchor)."""
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = (z @ z.T / temperature).masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    positive = (torch.arange(2 * n, device=z.device) + n) % (2 * n)
    return logits, positive


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """SimCLR's NT-Xent loss of the paired projections ``z1[i]``, ``z2[i]`` (see the module doc)."""
    return fnc_loss(z1, z2, None, temperature, "none")


def false_negatives(z1: torch.Tensor, z2: torch.Tensor, support: torch.Tensor, top_k: int = 1,
                    threshold: float | None = None, aggregate: str = "max") -> torch.Tensor:
    """The (2N, 2N) mask of flagged false negatives: row i (anchor view i of image i mod N) flags the negatives k
    (views of the other images) whose similarity to the anchor image's ``support`` views (N, S, d), aggregated over
    the S views by ``aggregate``, is among the ``top_k`` largest (or, with ``threshold`` and ``top_k=0``, at least
    ``threshold``). Cosine similarities; no gradient."""
    if aggregate not in AGGREGATIONS:
        raise unknown("support-view aggregation", aggregate, AGGREGATIONS)
    n = len(z1)
    with torch.no_grad():
        z = F.normalize(torch.cat([z1, z2]).float(), dim=1)  # (2N, d)
        s = F.normalize(support.float(), dim=-1)  # (N, S, d)
        per_view = torch.einsum("nsd,kd->nsk", s, z)  # image n's support views against every view k
        score = per_view.amax(1) if aggregate == "max" else per_view.mean(1)  # (N, 2N)
        image = torch.arange(2 * n, device=z.device) % n
        score = score[image]  # (2N, 2N): row i is anchor i's image
        negative = image[:, None] != image[None, :]
        score = score.masked_fill(~negative, float("-inf"))
        if top_k > 0:
            k = min(top_k, 2 * (n - 1))
            flagged = torch.zeros_like(negative)
            flagged.scatter_(1, score.topk(k, dim=1).indices, True)
        elif threshold is not None:
            flagged = score >= threshold
        else:
            raise ConfigError("false_negatives needs top_k > 0 or a threshold")
        return flagged & negative


def fnc_loss(z1: torch.Tensor, z2: torch.Tensor, flagged: torch.Tensor | None, temperature: float = 0.5,
             strategy: str = "attraction") -> torch.Tensor:
    """NT-Xent with the flagged false negatives (a (2N, 2N) mask) eliminated from the denominators or attracted as
    positives (module doc); ``strategy="none"`` or no mask is plain NT-Xent. Mean over the 2N anchors."""
    if strategy not in STRATEGIES:
        raise unknown("false-negative strategy", strategy, STRATEGIES)
    if temperature <= 0:
        raise ConfigError(f"the contrastive temperature must be > 0, got {temperature}")
    logits, positive = _similarities(z1, z2, temperature)
    rows = torch.arange(len(logits), device=logits.device)
    pos = logits[rows, positive]
    if flagged is None or strategy == "none":
        return (torch.logsumexp(logits, 1) - pos).mean()
    flagged = flagged.to(logits.device)
    if strategy == "elimination":
        return (torch.logsumexp(logits.masked_fill(flagged, float("-inf")), 1) - pos).mean()
    log_prob = logits - torch.logsumexp(logits, 1, keepdim=True)
    positives = flagged.clone()
    positives[rows, positive] = True
    return -(log_prob.masked_fill(~positives, 0.0).sum(1) / positives.sum(1)).mean()


def simclr_pipeline(image_size: int, channels: int = 3, crop_scale: tuple[float, float] = (0.08, 1.0),
                    strength: float = 1.0, blur: float = 0.0) -> Callable:
    """SimCLR's augmentation (appendix A): random resized crop, flip, colour jitter (0.8s, 0.8s, 0.8s, 0.2s) with
    probability 0.8, grayscale 0.2, Gaussian blur with probability ``blur`` (0.5 on ImageNet, off for CIFAR)."""
    from torchvision.transforms import v2

    s = strength
    jitter = v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, 0.2 * s) if channels == 3 else v2.ColorJitter(0.8 * s, 0.8 * s)
    ops: list[Any] = [v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True), v2.RandomHorizontalFlip(),
                      v2.RandomApply([jitter], p=0.8)]
    if channels == 3:
        ops.append(v2.RandomGrayscale(p=0.2))
    if blur > 0:
        ops.append(v2.RandomApply([v2.GaussianBlur(max(3, image_size // 10 // 2 * 2 + 1), sigma=(0.1, 2.0))], p=blur))
    return v2.Compose(ops)


def contrastive_views(data: Any, support: int) -> Views:
    size, channels, mean, std = data_stats(data)
    return Views([simclr_pipeline(size, channels)] * (2 + support), mean, std)


@register_task("fnc")
class FNCTask(SSLTask):
    """SimCLR with false negatives found through support views and cancelled by elimination or attraction."""

    def __init__(self, views: Views | None = None, strategy: str = "attraction", support: int = 2, top_k: int = 1,
                 threshold: float | None = None, aggregate: str = "max", temperature: float = 0.5,
                 hidden_dim: int = 2048, out_dim: int = 128) -> None:  # noqa: D107
        super().__init__(views)
        if strategy not in STRATEGIES:
            raise unknown("false-negative strategy", strategy, STRATEGIES)
        if aggregate not in AGGREGATIONS:
            raise unknown("support-view aggregation", aggregate, AGGREGATIONS)
        if strategy != "none" and support < 1:
            raise ConfigError(f"false-negative {strategy} needs at least one support view, got {support}")
        if temperature <= 0:
            raise ConfigError(f"the contrastive temperature must be > 0, got {temperature}")
        if views is not None and len(views.pipelines) != 2 + (support if strategy != "none" else 0):
            raise ConfigError(f"the {strategy} strategy with {support} support views needs "
                              f"{2 + support} view pipelines, got {len(views.pipelines)}")
        self.strategy, self.support, self.top_k, self.threshold = strategy, support, top_k, threshold
        self.aggregate, self.temperature, self.hidden_dim, self.out_dim = aggregate, temperature, hidden_dim, out_dim
        self.flag_precision: list[float] = []  # per training step: share of flagged negatives of the anchor's class

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> FNCTask:
        return cls(contrastive_views(data, 2))

    def build(self, trainer: Any) -> None:
        self.heads["projector"] = MLP(feature_dim(trainer.model), self.hidden_dim, self.out_dim)

    def project(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return self.heads["projector"](features(model, x))

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
        views = batch[:-1]
        z1, z2 = self.project(model, views[0]), self.project(model, views[1])
        if self.strategy == "none":
            return fnc_loss(z1, z2, None, self.temperature, "none"), {}
        with torch.no_grad():
            support = torch.stack([self.project(model, v) for v in views[2:]], 1)  # (N, S, d)
        flagged = false_negatives(z1.detach(), z2.detach(), support, self.top_k, self.threshold, self.aggregate)
        labels = batch[-1].repeat(2)
        same = labels[:, None] == labels[None, :]
        precision = (flagged & same).sum() / flagged.sum().clamp_min(1)  # a diagnostic: labels never enter the loss
        if torch.is_grad_enabled():
            self.flag_precision.append(float(precision))
        return fnc_loss(z1, z2, flagged, self.temperature, self.strategy), {"fn_precision": precision.detach()}


@register_task("simclr")
class SimCLRTask(FNCTask):
    """SimCLR (Chen et al., 2020): NT-Xent over two views, the baseline of FNC."""

    def __init__(self, views: Views | None = None, temperature: float = 0.5, hidden_dim: int = 2048,
                 out_dim: int = 128) -> None:  # noqa: D107
        super().__init__(views, "none", 0, temperature=temperature, hidden_dim=hidden_dim, out_dim=out_dim)

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> SimCLRTask:
        return cls(contrastive_views(data, 0))
