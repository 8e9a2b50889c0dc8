"""What the self-supervised tasks (BYOL, RAFT, SimCLR with false-negative cancellation) share: augmented views,
the backbone's features, MLP heads trained beside the backbone, and THE evaluator of frozen features.

* ``Views``: a per-sample transform (run in the data loader, seeded per sample by the Trainer, so resume is
  exact) that turns ``(image, label)`` into ``((view_1, ..., view_k), label)``, each view through its own
  torchvision v2 pipeline on the un-normalised [0, 1] image (then normalised again);
* ``features(model, x)``: the backbone's pooled pre-logit features (``forward_head(forward_features(x),
  pre_logits=True)``, timm's convention, which every registered classifier follows);
* ``MLP``: Linear -> BatchNorm -> ReLU -> Linear, the projector/predictor shape of BYOL and SimCLR v2;
* ``SSLTask``: collate (views in training, plain images in evaluation), a task-owned step that trains the
  backbone with the Trainer's optimizer and the heads with an optimizer of the same kind at the same learning
  rate, and ``after_step`` for what follows each update (BYOL's EMA target); heads and target networks are
  checkpointed in ``state_dict``;
* ``FrozenFeatureEvaluator``: linear probe and k-NN accuracy on the frozen features of an evaluation split
  (fitted on its even-indexed samples, scored on the odd ones); ``linear_probe`` and ``knn_accuracy`` are the
  same two measures for a separate train and test split (the reproductions use them).
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ._heads import HeadsTraining
from .base import GatherEvaluator, Task


# ------------------------------------------------------------------------------------------- views
class Views:
    """``(image, label) -> ((p_1(image), ..., p_k(image)), label)`` for normalised image tensors: each pipeline
    sees the image mapped back to [0, 1] with ``mean``/``std`` and its output is normalised again."""

    def __init__(self, pipelines: Sequence[Callable[[torch.Tensor], torch.Tensor]], mean: Sequence[float],
                 std: Sequence[float]) -> None:
        if not pipelines:
            raise ConfigError("Views needs at least one augmentation pipeline")
        self.pipelines = list(pipelines)
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __call__(self, sample: tuple[torch.Tensor, Any]) -> tuple[tuple[torch.Tensor, ...], Any]:
        image, label = sample
        raw = (image * self.std + self.mean).clamp(0, 1)
        return tuple((p(raw).clamp(0, 1) - self.mean) / self.std for p in self.pipelines), label


def _odd(n: int) -> int:
    return max(3, n // 2 * 2 + 1)


def byol_pipelines(image_size: int, channels: int = 3, crop_scale: tuple[float, float] = (0.08, 1.0)
                   ) -> tuple[Callable, Callable]:
    """The paper's augmentation pair (BYOL, appendix B, Table 6) as torchvision v2 pipelines: random resized crop
    (area ``crop_scale``, aspect 3/4-4/3), horizontal flip, colour jitter (brightness 0.4, contrast 0.4, saturation
    0.2, hue 0.1) with probability 0.8, grayscale 0.2, Gaussian blur (kernel 10% of the side, sigma 0.1-2) with
    probability 1.0 / 0.1, solarisation 0.0 / 0.2. One-channel images skip the colour-only operations."""
    from torchvision.transforms import v2

    def pipeline(blur: float, solarize: float) -> v2.Compose:
        jitter = v2.ColorJitter(0.4, 0.4, 0.2, 0.1) if channels == 3 else v2.ColorJitter(0.4, 0.4)
        ops: list[Any] = [v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True), v2.RandomHorizontalFlip(),
                          v2.RandomApply([jitter], p=0.8)]
        if channels == 3:
            ops.append(v2.RandomGrayscale(p=0.2))
        ops.append(v2.RandomApply([v2.GaussianBlur(_odd(image_size // 10), sigma=(0.1, 2.0))], p=blur))
        if solarize > 0:
            ops.append(v2.RandomSolarize(threshold=0.5, p=solarize))
        return v2.Compose(ops)

    return pipeline(1.0, 0.0), pipeline(0.1, 0.2)


def data_stats(data: Any) -> tuple[int, int, Sequence[float], Sequence[float]]:
    """(image side, channels, mean, std) of a built-in or image-folder dataset."""
    size = getattr(data, "image_size", 32)
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    channels = getattr(data, "in_chans", 3)
    return size, channels, getattr(data, "mean", (0.5,) * channels), getattr(data, "std", (0.5,) * channels)


# ------------------------------------------------------------------------------------------- networks
def backbone(model: nn.Module) -> nn.Module:
    """The registered network inside wrappers (DDP, torch.compile)."""
    from ..weights import _inner

    return _inner(model)[0]


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Pooled pre-logit features y = f(x) of a registered classifier (its classifier is not used)."""
    net = backbone(model)
    if not hasattr(net, "forward_head"):
        raise ConfigError(f"{type(net).__name__} has no forward_features/forward_head: it cannot serve as an SSL backbone")
    return net.forward_head(net.forward_features(x), pre_logits=True)


def feature_dim(model: nn.Module) -> int:
    return int(backbone(model).num_features)


class MLP(nn.Module):
    """Linear (no bias: BatchNorm follows) -> BatchNorm1d -> ReLU -> Linear, keys ``layers.{0,1,3}`` (lightly's
    ``ProjectionHead`` layout, so its heads load strictly)."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                                    nn.Linear(hidden_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """xi <- tau xi + (1 - tau) theta for every parameter (buffers are the target's own: it runs in train mode)."""
    t, o = list(target.parameters()), list(online.parameters())
    torch._foreach_mul_(t, tau)
    torch._foreach_add_(t, o, alpha=1.0 - tau)


# ------------------------------------------------------------------------------------------- evaluation
def _standardise(train: torch.Tensor, test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, sd = train.mean(0), train.std(0).clamp_min(1e-6)
    return (train - mu) / sd, (test - mu) / sd


def linear_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 weight_decay: float = 1e-3, steps: int = 100, num_classes: int | None = None) -> float:
    """Accuracy (fraction) of a multinomial logistic regression fitted with L-BFGS on standardised frozen
    features (L2 penalty ``weight_decay``), deterministic."""
    train_x, test_x = _standardise(train_x.double(), test_x.double())
    k = num_classes or int(max(train_y.max(), test_y.max())) + 1
    w = torch.zeros(train_x.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(train_x @ w + b, train_y) + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float(((test_x @ w + b).argmax(1) == test_y).double().mean())


def knn_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                 k: int = 20, temperature: float = 0.07, num_classes: int | None = None) -> float:
    """Accuracy (fraction) of a k-nearest-neighbour classifier on cosine similarity, each of the k neighbours
    voting exp(s / temperature) for its class (Wu et al., 2018, the usual SSL monitor)."""
    k = min(k, len(train_x))
    c = num_classes or int(max(train_y.max(), test_y.max())) + 1
    sim = F.normalize(test_x.float(), dim=1) @ F.normalize(train_x.float(), dim=1).T
    top, idx = sim.topk(k, dim=1)
    votes = torch.zeros(len(test_x), c).scatter_add_(1, train_y[idx], (top / temperature).exp())
    return float((votes.argmax(1) == test_y).float().mean())


class FrozenFeatureEvaluator(GatherEvaluator):
    """Linear-probe and k-NN accuracy (``probe_acc``, ``knn_acc``) of the frozen features of one split: both fitted
    on its even-indexed samples and scored on its odd-indexed ones."""

    def __init__(self, k: int = 20) -> None:
        super().__init__()
        self.k = k

    def update(self, predictions: torch.Tensor, batch: Any) -> None:
        self.records.append((predictions.detach().float().cpu(), batch[-1].detach().cpu()))

    def compute(self) -> dict[str, float]:
        if not self.records:
            return {}
        x = torch.cat([r[0] for r in self.records])
        y = torch.cat([r[1] for r in self.records])
        if len(x) < 4:
            raise ConfigError(f"the frozen-feature evaluation needs at least 4 samples, got {len(x)}")
        fit, score = slice(0, None, 2), slice(1, None, 2)
        c = int(y.max()) + 1
        return {"probe_acc": linear_probe(x[fit], y[fit], x[score], y[score], num_classes=c),
                "knn_acc": knn_accuracy(x[fit], y[fit], x[score], y[score], self.k, num_classes=c),
                "feature_std": float(F.normalize(x, dim=1).std(0).mean())}


@torch.no_grad()
def dataset_features(model: nn.Module, dataset: Any, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Frozen features (eval mode) and labels of every sample of a classification dataset."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    xs, ys = [], []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        xs.append(features(model, torch.stack([s[0] for s in items]).to(device)).float().cpu())
        ys.append(torch.tensor([int(s[1]) for s in items]))
    model.train(was)
    return torch.cat(xs), torch.cat(ys)


def frozen_scores(model: nn.Module, train: Any, test: Any, k: int = 20) -> dict[str, float]:
    """Linear probe and k-NN accuracy (percent) of ``model``'s frozen features: fitted on ``train``, scored on ``test``."""
    a, ay = dataset_features(model, train)
    b, by = dataset_features(model, test)
    c = int(max(ay.max(), by.max())) + 1
    return {"probe_acc": 100 * linear_probe(a, ay, b, by, num_classes=c),
            "knn_acc": 100 * knn_accuracy(a, ay, b, by, k, num_classes=c)}


# ------------------------------------------------------------------------------------------- the task base
class SSLTask(HeadsTraining, Task):
    """A self-supervised task over any registered backbone: training batches are ``(view_1, ..., view_k,
    labels)`` (labels unused by the loss), evaluation batches ``(images, labels)`` scored by
    ``FrozenFeatureEvaluator``. Subclasses build ``self.heads`` (an ``nn.ModuleDict`` trained with the
    backbone) in ``build(trainer)``, define ``loss`` and optionally ``after_step``."""

    data = "classification"
    recipe = {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 1e-6}

    def __init__(self, views: Views | None = None) -> None:  # noqa: D107
        self.sample_transform = views
        self.heads = nn.ModuleDict()
        self.heads_opt: torch.optim.Optimizer | None = None

    # -- data
    def collate(self, samples: Sequence[tuple[Any, Any]]) -> tuple[torch.Tensor, ...]:
        labels = torch.tensor([int(s[1]) for s in samples])
        if isinstance(samples[0][0], tuple):  # training: the views of each sample
            k = len(samples[0][0])
            return (*(torch.stack([s[0][i] for s in samples]) for i in range(k)), labels)
        return torch.stack([s[0] for s in samples]), labels

    @torch.no_grad()
    def predict(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return features(model, batch[0])

    def evaluator(self) -> FrozenFeatureEvaluator:
        return FrozenFeatureEvaluator()

    # -- training: ``_heads.HeadsTraining`` (build, setup, train_step, after_step, state_dict)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy without gradients (a target network)."""
    return copy.deepcopy(module).requires_grad_(False)
