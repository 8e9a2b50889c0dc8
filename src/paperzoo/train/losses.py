"""Label smoothing (Szegedy et al., 2015, arXiv:1512.00567, section 7), as an annotated reference.

Label-smoothing regularisation replaces the one-hot target q(k) = delta_{k,y} by
q'(k) = (1 - epsilon) delta_{k,y} + epsilon u(k) with u uniform over the K classes, so the loss
H(q', p) = (1 - epsilon) H(q, p) + epsilon H(u, p) also penalises confident logits. The engine uses
``F.cross_entropy(label_smoothing=epsilon)``; this function restates the paper's loss and is checked
against it in tests (for class indices and for soft targets such as mixup's).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def label_smoothing_reference(logits: torch.Tensor, targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Mean over the batch of -sum_k q'(k) log p(k), q' = (1 - epsilon) q + epsilon / K."""
    k = logits.shape[1]
    q = targets.float() if targets.ndim == 2 else F.one_hot(targets, k).float()
    q_smooth = (1 - epsilon) * q + epsilon / k
    log_p = torch.log_softmax(logits.float(), dim=1)
    return -(q_smooth * log_p).sum(1).mean()
