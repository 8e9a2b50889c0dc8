"""Optimizers by name, with the usual parameter groups (no weight decay on biases and norm weights)."""
from __future__ import annotations

import torch
from torch import nn

from ..errors import unknown
from .config import TrainConfig

OPTIMIZERS = ("sgd", "adamw", "adam")


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


def build_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer not in OPTIMIZERS:
        raise unknown("optimizer", cfg.optimizer, OPTIMIZERS)
    groups = param_groups(model, cfg.weight_decay, cfg.decay_bias_and_norm)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    return torch.optim.Adam(groups, lr=cfg.lr, betas=cfg.betas)
