"""Optimizers by name, with the usual parameter groups (no weight decay on biases and norm weights), and
the wrappers of section C composed around them: ``SAM(Lookahead(base))`` when both are on."""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim import Optimizer

from ..errors import ConfigError, unknown
from ..optim import SAM, SGDS, AdamS, Lookahead, normalized_weight_decay
from .config import TrainConfig

OPTIMIZERS = ("sgd", "adamw", "adam", "radam", "adams", "sgds")


def param_groups(model: nn.Module, weight_decay: float, decay_all: bool = False) -> list[dict]:
    """Decay weights of convs and linears; leave biases, norm parameters and 1-d tensors undecayed
    (unless ``decay_all``)."""
    if decay_all:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def base_optimizer(cfg: TrainConfig) -> Callable[[list[dict]], Optimizer]:
    """``groups -> optimizer`` for ``cfg.optimizer`` (torch's where torch has it), Lookahead-wrapped if asked."""
    if cfg.optimizer not in OPTIMIZERS:
        raise unknown("optimizer", cfg.optimizer, OPTIMIZERS)

    def make(groups: list[dict]) -> Optimizer:
        name = cfg.optimizer
        if name == "sgd":
            opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
        elif name == "sgds":
            opt = SGDS(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
        elif name == "adamw":
            opt = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
        elif name == "adam":  # weight decay as an L2 term in the gradient
            opt = torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)
        elif name == "radam":  # decoupled decay, as the RAdam authors' code
            opt = torch.optim.RAdam(groups, lr=cfg.lr, betas=cfg.betas, decoupled_weight_decay=True)
        else:
            opt = AdamS(groups, lr=cfg.lr, betas=cfg.betas)
        return Lookahead(opt, cfg.lookahead.k, cfg.lookahead.alpha) if cfg.lookahead.enabled else opt

    return make


def build_optimizer(cfg: TrainConfig, model: nn.Module, dataset_size: int | None = None) -> Optimizer:
    """The configured optimizer; with ``weight_decay_norm`` the decay is the AdamW paper's normalised one,
    computed for ``dataset_size`` training samples over the run (or the first SGDR cycle)."""
    weight_decay = cfg.weight_decay
    if cfg.weight_decay_norm > 0:
        if dataset_size is None:
            raise ConfigError("weight_decay_norm needs the training-set size")
        weight_decay = normalized_weight_decay(cfg.weight_decay_norm, cfg.batch_size, dataset_size,
                                               cfg.sgdr.t0 if cfg.schedule == "sgdr" else cfg.epochs)
    groups = param_groups(model, weight_decay, cfg.decay_bias_and_norm)
    make = base_optimizer(cfg)
    if cfg.sam.rho > 0:
        return SAM(groups, make, rho=cfg.sam.rho, adaptive=cfg.sam.adaptive)
    return make(groups)
