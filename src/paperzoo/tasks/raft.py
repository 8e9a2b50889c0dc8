"""RAFT (Shi et al., 2020): Run Away From your Teacher, as a task over any registered backbone.

The networks are BYOL's (online encoder, projector and predictor; a mean teacher -- the EMA target -- with tau
rising from 0.996 to 1, ``byol.BYOLTask``); the objective differs (section 4). With l2-normalised online outputs
p = q(g(f(v))) and mean-teacher projections t = g_xi(f_xi(v)) of the *same* view v:

* alignment of the two views: L_align = E || p(v1) - p(v2) ||^2;
* cross-model loss against the mean teacher: L_cross = E_v || p(v) - t(v) ||^2, averaged over both views;
* RAFT minimises L_RAFT = alpha L_align - beta L_cross: it aligns the views and *runs away* from the mean teacher,
  where BYOL regresses towards it. The second term explicitly opposes collapse, so RAFT also trains without a
  predictor (``predictor=False``).

The paper relates the two by bounding BYOL's loss with the same terms (``byol_upper_bound``): for each sample,
|| p(v1) - t(v2) ||^2 <= 2 || p(v1) - p(v2) ||^2 + 2 || p(v2) - t(v2) ||^2, i.e. L_BYOL <= 2 (L_align + L_cross),
so BYOL minimises an upper bound in which the cross-model term appears with the opposite sign to RAFT's.
The loss equals the authors' ``gen_loss`` (WOWNICE/RAFT, ``models/main/raft.py``) on a committed fixture.
``paperzoo train --model resnet20_cifar --task raft --data shapes``.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import register_task
from .byol import BYOLTask
from .ssl import Views, byol_pipelines, data_stats


def _sq(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-sample squared distance of the l2-normalised vectors."""
    return (F.normalize(a, dim=-1) - F.normalize(b, dim=-1)).pow(2).sum(-1)


def alignment_loss(p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """L_align = E || p(v1) - p(v2) ||^2 on normalised online outputs (gradients through both views)."""
    return _sq(p1, p2).mean()


def cross_model_loss(p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor) -> torch.Tensor:
    """L_cross = E_v || p(v) - t(v) ||^2, the online output against the mean teacher's on the same view, averaged over
    both views; the teacher gets no gradient."""
    return (_sq(p1, t1.detach()).mean() + _sq(p2, t2.detach()).mean()) / 2


def raft_loss(p1: torch.Tensor, p2: torch.Tensor, t1: torch.Tensor, t2: torch.Tensor, alpha: float = 1.0,
              beta: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(L_RAFT = alpha L_align - beta L_cross, L_align, L_cross)."""
    align, cross = alignment_loss(p1, p2), cross_model_loss(p1, p2, t1, t2)
    return alpha * align - beta * cross, align, cross


def byol_upper_bound(p1: torch.Tensor, p2: torch.Tensor, t2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sample BYOL loss || p(v1) - t(v2) ||^2, its bound 2 || p(v1) - p(v2) ||^2 + 2 || p(v2) - t(v2) ||^2)."""
    return _sq(p1, t2), 2 * _sq(p1, p2) + 2 * _sq(p2, t2)


@register_task("raft")
class RAFTTask(BYOLTask):
    """RAFT: align two views and run away from the mean teacher (BYOL's networks, the objective alpha L_align -
    beta L_cross)."""

    def __init__(self, views: Views | None = None, hidden_dim: int = 4096, out_dim: int = 256, tau_base: float = 0.996,
                 predictor: bool = True, alpha: float = 1.0, beta: float = 1.0) -> None:  # noqa: D107
        super().__init__(views, hidden_dim, out_dim, tau_base, predictor)
        if alpha < 0 or beta < 0:
            raise ConfigError(f"RAFT needs alpha >= 0 and beta >= 0, got {alpha}, {beta}")
        self.alpha, self.beta = alpha, beta

    @classmethod
    def from_config(cls, cfg: Any, data: Any = None) -> RAFTTask:
        size, channels, mean, std = data_stats(data)
        return cls(Views(byol_pipelines(size, channels), mean, std))

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, dict[str, Any]]:
        v1, v2 = batch[0], batch[1]
        p1, p2 = self.online(model, v1), self.online(model, v2)
        t1, t2 = self.target(v1), self.target(v2)
        loss, align, cross = raft_loss(p1.float(), p2.float(), t1.float(), t2.float(), self.alpha, self.beta)
        return loss, {"align": align.detach(), "cross": cross.detach(), "tau": torch.tensor(self.tau)}
