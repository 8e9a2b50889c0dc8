"""The box parameterisation of Faster R-CNN (eq. 2, from R-CNN's appendix C).

A box (x, y, w, h: centre, width, height) is coded relative to a reference box (an anchor or a proposal,
x_a, y_a, w_a, h_a) as

    t_x = (x - x_a) / w_a,   t_y = (y - y_a) / h_a,   t_w = log(w / w_a),   t_h = log(h / h_a),

each scaled by a weight: 1 for the RPN, (10, 10, 5, 5) for the RoI head, the inverse of the target standard
deviations (0.1, 0.1, 0.2, 0.2) that Fast R-CNN normalises its regression targets by. Decoding clamps t_w and
t_h at log(1000 / 16) so that a wild prediction cannot overflow ``exp``. The arithmetic runs in the same order
as torchvision's so that both give the same bits.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["BoxCoder"]


def _centre_size(boxes: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    x1, y1, x2, y2 = boxes.unbind(-1)
    w, h = x2 - x1, y2 - y1
    return x1 + 0.5 * w, y1 + 0.5 * h, w, h


class BoxCoder:
    """Encode boxes as offsets from reference boxes and decode offsets back (eq. 2). Both broadcast over
    leading dimensions: ``decode(deltas (K, C, 4), proposals (K, 1, 4))`` decodes every class's box at once."""

    def __init__(self, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), clip: float = math.log(1000.0 / 16)) -> None:
        self.weights = tuple(float(w) for w in weights)
        self.clip = clip

    def encode(self, boxes: Tensor, reference: Tensor) -> Tensor:
        """Regression targets (t_x, t_y, t_w, t_h) of ``boxes`` relative to ``reference`` (both XYXY)."""
        wx, wy, ww, wh = self.weights
        rx, ry, rw, rh = _centre_size(reference)
        gx, gy, gw, gh = _centre_size(boxes)
        return torch.stack((wx * (gx - rx) / rw, wy * (gy - ry) / rh,
                            ww * torch.log(gw / rw), wh * torch.log(gh / rh)), dim=-1)

    def decode(self, deltas: Tensor, reference: Tensor) -> Tensor:
        """Boxes (XYXY) that ``deltas`` (t_x, t_y, t_w, t_h) describe relative to ``reference``."""
        wx, wy, ww, wh = self.weights
        rx, ry, rw, rh = _centre_size(reference.to(deltas.dtype))
        dx, dy = deltas[..., 0] / wx, deltas[..., 1] / wy
        dw = torch.clamp(deltas[..., 2] / ww, max=self.clip)
        dh = torch.clamp(deltas[..., 3] / wh, max=self.clip)
        cx, cy = dx * rw + rx, dy * rh + ry
        half_w, half_h = 0.5 * (torch.exp(dw) * rw), 0.5 * (torch.exp(dh) * rh)
        return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)
