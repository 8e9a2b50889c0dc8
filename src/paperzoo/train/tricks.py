"""The training half of "Bag of Tricks for Image Classification" (He et al., 2018, arXiv:1812.01187).

Section 3 (efficient training) and section 5 (training refinements) of the paper add, on top of a
step-decay baseline:

* linear learning-rate warmup (5 of 120 epochs in the paper),
* zero-gamma: the last BatchNorm of every residual block starts with gamma = 0, so each block starts as
  the identity (``zero_gamma_init``),
* no weight decay on biases (and BN's gamma and beta),
* cosine learning-rate decay,
* label smoothing (epsilon = 0.1),
* mixup (alpha = 0.2).

``apply_bag_of_tricks`` turns them all on in a ``TrainConfig`` (what ``bag_of_tricks=true`` does);
each is also a config key of its own, so they can be toggled one at a time. (Knowledge distillation,
the paper's other refinement, belongs to the distillation papers; the ResNet-B/C/D tweaks are models.)
"""
from __future__ import annotations

from torch import nn

from .config import TrainConfig

PAPER_WARMUP_FRACTION = 5 / 120  # 5 warmup epochs of a 120-epoch schedule
PAPER_LABEL_SMOOTHING = 0.1
PAPER_MIXUP_ALPHA = 0.2


def apply_bag_of_tricks(cfg: TrainConfig) -> TrainConfig:
    """Turn on the paper's training tricks in ``cfg`` (in place; values already set are kept, so it is
    idempotent). Warmup lasts the paper's 5/120 of training, at most 5 epochs."""
    if cfg.warmup_epochs == 0:
        cfg.warmup_epochs = min(5.0, PAPER_WARMUP_FRACTION * cfg.epochs)
    if cfg.schedule != "sgdr":
        cfg.schedule = "cosine"
    cfg.zero_gamma = True
    cfg.decay_bias_and_norm = False
    cfg.label_smoothing = cfg.label_smoothing or PAPER_LABEL_SMOOTHING
    cfg.mixup.alpha = cfg.mixup.alpha or PAPER_MIXUP_ALPHA
    return cfg


def zero_gamma_init(model: nn.Module) -> int:
    """Set gamma = 0 in the last normalisation layer of every residual block; returns how many.

    Blocks that define ``zero_init_last()`` (the timm convention) are asked to do it; otherwise a module
    with a residual ``shortcut`` or ``downsample`` has the last norm layer among its direct children zeroed.
    """
    norms = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
    count = 0
    for module in model.modules():
        if hasattr(module, "zero_init_last"):
            module.zero_init_last()
            count += 1
        elif getattr(module, "shortcut", None) is not None or getattr(module, "downsample", None) is not None:
            last = [m for m in module.children() if isinstance(m, norms) and m.weight is not None]
            if last:
                nn.init.zeros_(last[-1].weight)
                count += 1
    return count
