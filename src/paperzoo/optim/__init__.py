"""Optimizers of section C that PyTorch does not have (Lookahead, SAM, stable weight decay), and annotated
references of those it does (AdamW, RAdam), each checked against the paper in tests/optim."""
from .lookahead import Lookahead
from .reference import adamw_reference, normalized_weight_decay, radam_reference
from .sam import SAM
from .swd import SGDS, AdamS

__all__ = ["SAM", "SGDS", "AdamS", "Lookahead", "adamw_reference", "normalized_weight_decay", "radam_reference"]
