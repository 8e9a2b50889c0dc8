"""Network builders and initialisation the CNN reproductions share (the networks themselves live in
``paperzoo.models``; this only configures them for small inputs)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ...models.classification.resnet import Bottleneck, ResNet


def narrow_resnet50(num_classes: int, widths: Sequence[int] = (16, 32, 64, 128), layers: Sequence[int] = (1, 1, 1, 1),
                    **kwargs: Any) -> ResNet:
    """ResNet-50's design (ImageNet stem and strides, bottleneck blocks) with ``layers`` blocks per stage and
    stage widths ``widths`` (bottleneck outputs are 4x), the testbed of the ResNet-tweak reproductions; ``kwargs``
    are the ResNet options a paper toggles (``attn_layer``, ``stem_type``, ``avg_down``, ``aa_layer``, ...)."""
    kwargs.setdefault("stem_width", widths[0] // 2 if kwargs.get("stem_type") == "deep" else widths[0])
    return ResNet(Bottleneck, list(layers), num_classes=num_classes, channels=tuple(widths), **kwargs)


def small_input_init(model: nn.Module, std: float = 0.01) -> nn.Module:
    """Initialisation that lets ImageNet-style mobile networks train on 16-48 px inputs, applied to every
    network of a comparison alike: the last BatchNorm of each block with an identity shortcut (``has_skip``)
    starts at zero, so residual blocks begin as identities (deep stacks of BN over 1x1-4x4 feature maps
    otherwise amplify batch noise into exploding gradients at these sizes), and the classifier is drawn from
    N(0, std) (the TF initialisation U(+-1/sqrt(classes)) gives logits of several units with 8 classes)."""
    for block in model.modules():
        if getattr(block, "has_skip", False):
            norms = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
            nn.init.zeros_(norms[-1].weight)
    classifier = getattr(model, "classifier", None)
    if isinstance(classifier, nn.Linear):
        nn.init.normal_(classifier.weight, 0.0, std)
        nn.init.zeros_(classifier.bias)
    return model
