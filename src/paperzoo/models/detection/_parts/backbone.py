"""Backbones for the R-CNN detectors: a registered classification network cut into a feature extractor
(``body``), usually followed by an FPN neck (``fpn``).

Fine-tuning follows torchvision's detectors: with pretrained backbone weights, BatchNorm is frozen
(``FrozenBatchNorm2d``: the ImageNet statistics and affine parameters become constants, as detection batches are
too small to estimate them) and only the last ``trainable_layers`` stages are trained (default 3: ResNet's
layer2-4); without weights every BatchNorm stays live and every layer trains. ``frozen_bn`` and an explicit number
of trainable layers override both defaults.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import FrozenBatchNorm2d

from ....errors import ConfigError
from ....registry import create_model
from .fpn import FeaturePyramid

__all__ = ["BackboneWithFPN", "MobileNetTaps", "freeze_batchnorm", "mobilenet_fpn_backbone", "resnet_fpn_backbone",
           "stage_boundaries", "trainable_layers"]


class BackboneWithFPN(nn.Module):
    """``fpn(body(x))``: a feature extractor returning an ordered dict of maps, and the neck over them."""

    def __init__(self, body: nn.Module, fpn: FeaturePyramid) -> None:
        super().__init__()
        self.body = body
        self.fpn = fpn
        self.out_channels = fpn.out_channels

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(x))


def freeze_batchnorm(module: nn.Module, eps: float | None = None) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by a ``FrozenBatchNorm2d`` holding the same statistics and affine
    parameters (and the same eps, unless ``eps`` is given). Returns ``module``."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps if eps is None else eps)
            frozen = frozen.to(device=child.running_mean.device)
            with torch.no_grad():
                for key in ("weight", "bias", "running_mean", "running_var"):
                    getattr(frozen, key).copy_(getattr(child, key))
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child, eps)
    return module


def trainable_layers(pretrained: bool, requested: int | None, max_value: int, default: int = 3) -> int:
    """How many backbone stages train: ``requested`` if given, else ``default`` (3) with pretrained backbone weights and
    all without. (torchvision ignores a request when no weights are loaded; here it holds, so that a detector about to
    receive whole-detector weights can be frozen as torchvision freezes it.)"""
    value = requested if requested is not None else default if pretrained else max_value
    if not 0 <= value <= max_value:
        raise ConfigError(f"trainable_backbone_layers must be in [0, {max_value}], got {value}")
    return value


def _frozen_bn(pretrained: bool, frozen_bn: bool | None) -> bool:
    return pretrained if frozen_bn is None else frozen_bn


def resnet_fpn_backbone(
    name: str = "resnet50",
    pretrained: str | bool | None = None,
    trainable: int | None = None,
    returned_layers: Sequence[int] = (1, 2, 3, 4),
    frozen_bn: bool | None = None,
    frozen_bn_eps: float | None = None,
    fpn_norm: Callable[[int], nn.Module] | None = None,
    trained: bool | None = None,
) -> BackboneWithFPN:
    """A registered ResNet's stages ``returned_layers`` (``features_only``, keys "0", "1", ...) under an FPN with 256
    channels and the extra "pool" level. Stages are frozen from the stem up, leaving the last ``trainable`` of
    (layer4, layer3, layer2, layer1, stem) trainable. ``trained`` says whether trained weights will be loaded (into
    the backbone here, or into the whole detector afterwards); it decides the defaults (default: ``pretrained``)."""
    is_pretrained = bool(pretrained) if trained is None else trained
    n_train = trainable_layers(is_pretrained, trainable, 5)
    body = create_model(name, pretrained=pretrained or None, features_only=True, out_indices=tuple(returned_layers),
                        as_dict=True)
    if _frozen_bn(is_pretrained, frozen_bn):
        freeze_batchnorm(body, frozen_bn_eps)
    train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:n_train] + (["bn1"] if n_train == 5 else [])
    for pname, p in body.model.named_parameters():
        if not any(pname.startswith(t) for t in train):
            p.requires_grad_(False)
    return BackboneWithFPN(body, FeaturePyramid(body.out_channels, 256, norm_layer=fpn_norm))


def stage_boundaries(blocks: Sequence[nn.Module]) -> list[int]:
    """torchvision's MobileNet stage boundaries, numbering the stem 0 and the blocks 1..n: 0, every block that
    subsamples, and the last block."""
    down = [i for i, b in enumerate(blocks, start=1)
            if any(m.stride[0] > 1 for m in b.modules() if isinstance(m, nn.Conv2d))]
    return [0, *down, len(blocks)]


def _flat_blocks(model: nn.Module) -> list[nn.Module]:
    return [block for stage in model.blocks for block in stage]


class MobileNetTaps(nn.Module):
    """The maps after chosen blocks of a registered MobileNet (``model``, its head removed), as an ordered dict.

    Blocks are numbered as torchvision's ``features``: 0 is the stem, 1.. the blocks in order. torchvision's
    MobileNetV3 detectors tap the first (strided) block of the last stage and the final 1x1 conv, both at stride
    32, which are not ends of feature levels; hence this extractor rather than ``features_only``.
    """

    def __init__(self, model: nn.Module, taps: Sequence[int]) -> None:
        super().__init__()
        model.prune_for_features(len(model.feature_info) - 1)  # drop conv_head and classifier
        self.model = model
        self.meta = getattr(model, "meta", None)
        n = len(self.blocks)
        self.taps = tuple(taps)
        if not self.taps or min(self.taps) < 1 or max(self.taps) > n:
            raise ConfigError(f"MobileNet taps must be block numbers in [1, {n}], got {self.taps}")
        self.out_channels = [_out_channels(self.blocks[t - 1]) for t in self.taps]

    @property
    def blocks(self) -> list[nn.Module]:
        return _flat_blocks(self.model)

    def freeze(self, trainable: int) -> None:
        """Freeze the stem and the blocks before boundary ``len(boundaries) - trainable`` (all for 0)."""
        blocks = self.blocks
        bounds = stage_boundaries(blocks)
        first = len(blocks) + 1 if trainable == 0 else bounds[len(bounds) - trainable]
        for unit in [nn.ModuleList([self.model.conv_stem, self.model.bn1]), *blocks][:first]:
            unit.requires_grad_(False)

    def forward(self, x: Tensor) -> OrderedDict[str, Tensor]:
        m = self.model
        x = m.act1(m.bn1(m.conv_stem(x)))
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i, block in enumerate(self.blocks[: max(self.taps)], start=1):
            x = block(x)
            if i in self.taps:
                out[str(len(out))] = x
        return out


def _out_channels(block: nn.Module) -> int:
    return [m for m in block.modules() if isinstance(m, nn.Conv2d)][-1].out_channels


def mobilenet_fpn_backbone(
    name: str = "mobilenetv3_large_100",
    pretrained: str | bool | None = None,
    trainable: int | None = None,
    frozen_bn: bool | None = None,
    trained: bool | None = None,
) -> BackboneWithFPN:
    """torchvision's MobileNetV3-FPN: taps on the last two stage boundaries (the last stage's strided block and the
    final 1x1 conv), an FPN with 256 channels and the extra "pool" level; the last ``trainable`` of the 6 stages
    train when pretrained (default 3). ``trained`` as for ``resnet_fpn_backbone``."""
    is_pretrained = bool(pretrained) if trained is None else trained
    model = create_model(name, pretrained=pretrained or None)
    if _frozen_bn(is_pretrained, frozen_bn):
        freeze_batchnorm(model)
    bounds = stage_boundaries(_flat_blocks(model))
    n_train = trainable_layers(is_pretrained, trainable, len(bounds))
    body = MobileNetTaps(model, taps=bounds[-2:])
    body.freeze(n_train)
    return BackboneWithFPN(body, FeaturePyramid(body.out_channels, 256))
