"""BYOL (Grill et al., 2020): Bootstrap Your Own Latent, as a task over any registered backbone.

An online network (encoder f_theta, projector g_theta, predictor q_theta) predicts the target network's
projection of another view of the same image; the target (f_xi, g_xi) is an exponential moving average of the
online weights and gets no gradient (section 3.1):

* views v = t(x), v' = t'(x) from the paper's augmentation pair (``ssl.byol_pipelines``, appendix B);
* y = f(v), z = g(y) (projector: Linear 4096 -> BN -> ReLU -> Linear 256), prediction q(z) (same MLP shape);
* loss (eq. 2): L = || q(z)/|q(z)| - z'/|z'| ||^2 = 2 - 2 cos(q(z), z'), with z' = g_xi(f_xi(v')) under
  stop-gradient; symmetrised (eq. 3) as L + L~ with the views swapped, averaged over the batch;
* after each online step, xi <- tau xi + (1 - tau) theta with tau = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2
  rising from tau_base = 0.996 to 1 over the K training steps (section 3.2).

``predictor=False`` drops q (the ablation in which BYOL collapses, Table 5). Evaluation: the online encoder's
frozen features, by linear probe and k-NN (``ssl.FrozenFeatureEvaluator``). The target networks, the heads and
their optimizer are in the task's state, and tau is a function of the Trainer's step, so a resumed run continues
the target and the momentum schedule exactly. ``paperzoo train --model resnet20_cifar --task byol --data shapes``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import register_task
from .ssl import MLP, SSLTask, Views, backbone, byol_pipelines, data_stats, ema_update, feature_dim, features, frozen_copy


def regression_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 2 per sample: the squared distance of the l2-normalised vectors, 2 - 2 cos(prediction, target)."""
    return 2 - 2 * F.cosine_similarity(prediction, target, dim=-1)


def byol_loss(q1: torch.Tensor, q2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Eq. 3: L + L~, the online predictions of each view regressing the target projection of the other view
    (``z1``, ``z2`` are the target's; gradients are stopped through them), averaged over the batch."""
    return (regression_loss(q1, z2.detach()) + regression_loss(q2, z1.detach())).mean()


def target_momentum(step: int, total_steps: int, base: float = 0.996) -> float:
    """tau at step k of K: 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 (tau_base at k = 0, 1 at k = K)."""
    if total_steps <= 0:
        return 1.0
    return 1 - (1 - base) * (math.cos(math.pi * min(step, total_steps) / total_steps) + 1) / 2


@register_task("byol")
class BYOLTask(SSLTask):
    """BYOL: online network with projector and predictor regresses an EMA target's projection of the other view."""

    def __init__(self, views: Views | None = None, hidden_dim: int = 4096, out_dim: int = 256, tau_base: float = 0.996,
                 predictor: bool = True) -> None:  # noqa: D107
        super().__init__(views)
        if not 0.0 <= tau_base <= 1.0:
            raise ConfigError(f"BYOL needs 0 <= tau_base <= 1, got {tau_base}")
        self.hidden_dim, self.out_dim, self.tau_base, self.use_predictor = hidden_dim, out_dim, tau_base, predictor
        self.tau = tau_base
        self.target_encoder: nn.Module | None = None
        self.target_projector: nn.Module | None = None

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> BYOLTask:
        size, channels, mean, std = data_stats(data)
        return cls(Views(byol_pipelines(size, channels), mean, std))

    def build(self, trainer: Any) -> None:
        self.heads["projector"] = MLP(feature_dim(trainer.model), self.hidden_dim, self.out_dim)
        self.heads["predictor"] = MLP(self.out_dim, self.hidden_dim, self.out_dim) if self.use_predictor else nn.Identity()
        self.target_encoder = frozen_copy(backbone(trainer.model)).to(trainer.device)
        self.target_projector = frozen_copy(self.heads["projector"]).to(trainer.device)

    def online(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """q_theta(g_theta(f_theta(x)))."""
        return self.heads["predictor"](self.heads["projector"](features(model, x)))

    @torch.no_grad()
    def target(self, x: torch.Tensor) -> torch.Tensor:
        """g_xi(f_xi(x)), the target in train mode (batch statistics), as the online network."""
        self.target_encoder.train()
        self.target_projector.train()
        return self.target_projector(features(self.target_encoder, x))

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
        v1, v2 = batch[0], batch[1]
        q1, q2 = self.online(model, v1), self.online(model, v2)
        z1, z2 = self.target(v1), self.target(v2)
        loss = byol_loss(q1.float(), q2.float(), z1.float(), z2.float())
        return loss, {"tau": torch.tensor(self.tau), "z_std": F.normalize(z1.float(), dim=1).std(0).mean().detach()}

    def after_step(self, trainer: Any) -> None:
        """xi <- tau_k xi + (1 - tau_k) theta, k the index of the step just taken; tau_{k+1} for the next."""
        tau = target_momentum(trainer.step, trainer.total_steps, self.tau_base)
        ema_update(self.target_encoder, backbone(trainer.model), tau)
        ema_update(self.target_projector, self.heads["projector"], tau)
        self.tau = target_momentum(trainer.step + 1, trainer.total_steps, self.tau_base)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "target_encoder": self.target_encoder.state_dict(),
                "target_projector": self.target_projector.state_dict(), "tau": self.tau}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if "target_encoder" in state:
            self.target_encoder.load_state_dict(state["target_encoder"])
            self.target_projector.load_state_dict(state["target_projector"])
            self.tau = float(state["tau"])
