"""ResNet-50 on DCT inputs (Xu et al., 2020, "Learning in the Frequency Domain", arXiv:2002.12416).

The block-DCT input (``paperzoo.data.dct``) of a 2x upsampled image already has the resolution of
ResNet-50's first stage (56x56 for 224x224 images), so the paper removes the stem (7x7 conv and max pool)
and feeds the selected frequency channels straight into the first bottleneck, whose input convs (the 1x1
conv and the projection shortcut) take C instead of 64 channels (Sec. 3.1, Fig. 3). Everything after is
the unchanged ResNet-50.

Channel selection (Sec. 3.2): ``DynamicChannelGate`` learns which of the 192 channels to keep, per image.
Each channel is average-pooled to one number; a 1x1 conv, BN and ReLU mix them; a per-channel 1x1 conv
gives two logits (off, on) per channel; a hard Gumbel-softmax turns them into a 0/1 gate, with the soft
sample's gradient passed straight through. Training adds lambda x (number of active channels) to the loss,
which is how the paper finds the channels that matter; ``static`` selections (``data.dct.STATIC_SELECTIONS``)
then keep the channels chosen most often, lowest frequencies first.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...registry import register_model
from .resnet import Bottleneck, ResNet


class DynamicChannelGate(nn.Module):
    """Per-image 0/1 gates for the input channels (hard Gumbel-softmax in training, arg max at eval)."""

    def __init__(self, channels: int, tau: float = 1.0) -> None:
        super().__init__()
        self.tau = tau
        self.fc = nn.Conv2d(channels, channels, 1, bias=True)
        self.bn = nn.BatchNorm2d(channels)
        self.logits = nn.Conv2d(channels, 2 * channels, 1, groups=channels, bias=True)
        # The authors start every channel clearly "on": logit 2 for on, 0.1 for off, tiny weights.
        nn.init.normal_(self.logits.weight, std=0.001)
        with torch.no_grad():
            self.logits.bias.view(channels, 2).copy_(torch.tensor([0.1, 2.0]))
        self.last_gate: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.bn(self.fc(x.mean((2, 3), keepdim=True))))
        logits = self.logits(s).view(x.shape[0], x.shape[1], 2)
        if self.training:
            gate = F.gumbel_softmax(logits, tau=self.tau, hard=True, dim=-1)[..., 1]
        else:
            gate = (logits[..., 1] > logits[..., 0]).to(x.dtype)
        self.last_gate = gate
        return x * gate[:, :, None, None]


class ResNetDCT(ResNet):
    """A ResNet without stem on DCT channels; ``gate=True`` adds dynamic channel selection in front."""

    def __init__(self, block: type[nn.Module], layers: Sequence[int], in_chans: int = 24, gate: bool = False,
                 **kwargs) -> None:
        super().__init__(block, layers, in_chans=in_chans, stem_type="none", **kwargs)
        self.gate = DynamicChannelGate(in_chans) if gate else None

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            x = self.gate(x)
        return super().forward_features(x)

    def forward_intermediates(self, x: torch.Tensor, indices: Sequence[int]) -> list[torch.Tensor]:
        if self.gate is not None:
            x = self.gate(x)
        return super().forward_intermediates(x, indices)


@register_model(paper="frequency-domain", input_size=(24, 56, 56), mean=(0.0,), std=(1.0,),
                notes="inputs: normalised block-DCT channels from paperzoo.data.dct.images_to_dct (in_chans = "
                      "24, 32, 48, 64 or 192 channels); 56x56 DCT maps come from 224x224 images upsampled to 448")
def resnet50_dct(**kwargs) -> ResNetDCT:
    """ResNet-50 on the paper's DCT-24 input (in_chans selects another static subset; gate=True, in_chans=192
    learns a dynamic one)."""
    return ResNetDCT(Bottleneck, [3, 4, 6, 3], **kwargs)
