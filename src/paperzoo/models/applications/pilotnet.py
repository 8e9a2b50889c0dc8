"""PilotNet: end-to-end learning of steering from camera frames (Bojarski et al., 2016, arXiv 1604.07316).

The paper's network (Fig. 4): a fixed normalisation layer on the 66 x 200 YUV frame, five convolutions — 24, 36, 48
filters of 5 x 5 with stride 2, then 64 and 64 of 3 x 3 without stride, all 'valid' — and fully connected layers
of 100, 50 and 10 units to one output, the inverse turning radius 1/r (chosen over r so that straight driving is 0,
not infinity). 252,219 weights ("about 250 thousand parameters") and 27 million connections. The paper does not
name the non-linearity; ReLU here. The frames, their augmentation (shifted and rotated views with the steering
correction) and the closed-loop autonomy metric are in ``paperzoo.data.roads``; the task is ``steering``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ...errors import PaperzooError
from ...registry import register_model

CONVS = ((24, 5, 2), (36, 5, 2), (48, 5, 2), (64, 3, 1), (64, 3, 1))  # filters, kernel, stride
FCS = (100, 50, 10)


class PilotNet(nn.Module):
    """``forward(yuv)``: (B, 3, 66, 200) YUV in [0, 1] -> (B, outputs) inverse turning radius (1/m)."""

    def __init__(self, outputs: int = 1, in_chans: int = 3, scale: float = 100.0) -> None:
        super().__init__()
        layers, cin = [], in_chans
        for cout, k, stride in CONVS:
            layers += [nn.Conv2d(cin, cout, k, stride), nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        fcs, fin = [], 64 * 1 * 18
        for width in FCS:
            fcs += [nn.Linear(fin, width), nn.ReLU(inplace=True)]
            fin = width
        self.fc = nn.Sequential(*fcs)
        self.head = nn.Linear(fin, outputs)
        self.scale = scale  # the head predicts 1/r in units of 1/(scale m): radii of 50-1000 m give O(1) targets

    @staticmethod
    def normalize(x: torch.Tensor) -> torch.Tensor:
        """The hard-coded normalisation layer: [0, 1] -> [-1, 1] (not learned, so it can run on the GPU)."""
        return x * 2.0 - 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-2:] != (66, 200):
            raise PaperzooError(f"PilotNet takes (B, 3, 66, 200) YUV frames, got {tuple(x.shape)}")
        y = self.features(self.normalize(x)).flatten(1)
        return self.head(self.fc(y)) / self.scale


@register_model(paper="pilotnet", task="steering", input_size=(3, 66, 200), num_classes=1, mean=(0.0,) * 3,
                std=(1.0,) * 3, paper_params_m=0.25, notes="inverse turning radius (1/m) from a 66x200 YUV frame")
def pilotnet(num_classes: int | None = None, in_chans: int = 3, outputs: int = 1, **kwargs: Any) -> PilotNet:
    """PilotNet as in the paper. ``num_classes`` is not used (a dataset's class count is not the number of
    regression outputs); ``outputs`` is (1: the inverse turning radius)."""
    return PilotNet(outputs=outputs, in_chans=in_chans, **kwargs)
