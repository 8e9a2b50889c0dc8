"""Grad-CAM and Guided Grad-CAM (Selvaraju et al., 2016, arXiv:1610.02391).

Grad-CAM explains a class score y^c through the feature maps A^k of a chosen layer (usually the last
convolutional stage): each map gets the weight

    alpha_k^c = 1/Z sum_ij dy^c / dA^k_ij                      (eq. 1: global-average-pooled gradients)

and the class-discriminative localisation map is the positive part of their weighted sum,

    L^c = ReLU(sum_k alpha_k^c A^k)                            (eq. 2),

upsampled to the input resolution. Guided Grad-CAM multiplies it elementwise with Guided
Backpropagation (gradients through ReLUs where both the input and the incoming gradient are positive),
for pixel-space detail. For transformers the layer's token outputs (N, T, C) are reshaped into a map
(prefix tokens such as [CLS] dropped), and Swin-style NHWC outputs are permuted, so the same code
explains ViT and Swin. ``pointing_game`` scores whether a map's maximum falls on the object.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError, unknown

Layout = str | Callable[[torch.Tensor], torch.Tensor] | None


def tokens_to_map(x: torch.Tensor, grid: tuple[int, int] | None = None) -> torch.Tensor:
    """(N, T, C) tokens -> (N, C, h, w): the last h*w tokens are the patch grid (square unless ``grid``)."""
    n, t, c = x.shape
    h, w = grid if grid is not None else (math.isqrt(t),) * 2
    if h * w > t:
        raise ConfigError(f"cannot lay {t} tokens out on a {h}x{w} grid")
    return x[:, t - h * w:].transpose(1, 2).reshape(n, c, h, w)


def to_feature_map(x: torch.Tensor, layout: Layout = None) -> torch.Tensor:
    """A layer output as (N, C, h, w). ``layout``: "nchw", "nhwc", "tokens", a callable, or None to guess
    (3-d = tokens; 4-d = NHWC when dims 1 and 2 are equal and differ from dim 3, else NCHW)."""
    if callable(layout):
        return layout(x)
    if layout is None:
        if x.ndim == 3:
            layout = "tokens"
        elif x.ndim == 4:
            layout = "nhwc" if x.shape[1] == x.shape[2] != x.shape[3] else "nchw"
        else:
            raise ConfigError(f"cannot explain a layer with output shape {tuple(x.shape)}")
    if layout == "nchw":
        return x
    if layout == "nhwc":
        return x.permute(0, 3, 1, 2)
    if layout == "tokens":
        return tokens_to_map(x)
    raise unknown("feature layout", layout, ("nchw", "nhwc", "tokens"))


def default_target_layer(model: nn.Module) -> str:
    """The module of the model's last feature stage (``feature_info``), else its last Conv2d."""
    info = getattr(model, "feature_info", None)
    if info:
        return info[-1]["module"]
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ConfigError(f"{type(model).__name__} has no feature_info and no Conv2d; name a layer to explain")
    return convs[-1]


def _resolve(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    if isinstance(layer, nn.Module):
        return layer
    name = layer or default_target_layer(model)
    modules = dict(model.named_modules())
    if name not in modules:
        raise unknown("layer", name, [n for n in modules if n])
    return modules[name]


class GradCAM:
    """``cam(images, targets=None) -> (N, H, W)`` maps in [0, 1] at input resolution; ``targets`` are class
    indices (default: the predicted classes). ``target_layer`` is a module or its name (default: the last
    feature stage)."""

    def __init__(self, model: nn.Module, target_layer: nn.Module | str | None = None, layout: Layout = None) -> None:
        self.model = model
        self.layer = _resolve(model, target_layer)
        self.layout = layout

    def compute(self, images: torch.Tensor, targets: torch.Tensor | int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The raw maps L^c at the layer's resolution (eq. 1-2, not normalised) and the logits."""
        captured: list[torch.Tensor] = []
        handle = self.layer.register_forward_hook(lambda m, i, out: captured.append(out))
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.enable_grad():
                logits = self.model(images.detach().requires_grad_(True))
                if targets is None:
                    targets = logits.argmax(1)
                targets = torch.as_tensor(targets, device=logits.device).expand(len(logits))
                bad = targets[(targets < 0) | (targets >= logits.shape[1])]
                if len(bad):
                    raise ConfigError(f"class {int(bad[0])} is out of range: the model has {logits.shape[1]} classes")
                score = logits.gather(1, targets[:, None]).sum()  # samples are independent in eval mode
                activation = captured[-1]
                grad, = torch.autograd.grad(score, activation)
        finally:
            handle.remove()
            self.model.train(was_training)
        a = to_feature_map(activation.detach(), self.layout).float()
        g = to_feature_map(grad, self.layout).float()
        alpha = g.mean(dim=(2, 3), keepdim=True)      # eq. 1
        cam = F.relu((alpha * a).sum(1))              # eq. 2
        return cam, logits.detach()

    def __call__(self, images: torch.Tensor, targets: torch.Tensor | int | None = None) -> torch.Tensor:
        cam, _ = self.compute(images, targets)
        cam = F.interpolate(cam[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return normalize_maps(cam)


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Scale each (H, W) map of a batch to [0, 1] (min-max; a constant map becomes 0)."""
    flat = maps.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return (maps - lo) / (hi - lo).clamp_min(1e-12)


class _PositiveGradient(torch.autograd.Function):
    """Identity forward; backward keeps only positive gradients (guided backpropagation's rule, applied
    after a ReLU whose own backward keeps only positive inputs)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return grad.clamp(min=0)


def guided_backprop(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Gradient of the class scores w.r.t. the input with ReLU (module) backward passes guided: a
    gradient passes only where the ReLU's input and the incoming gradient are both positive."""
    relus = [m for m in model.modules() if isinstance(m, (nn.ReLU, nn.ReLU6))]
    handles = [m.register_forward_hook(lambda m, i, out: _PositiveGradient.apply(out)) for m in relus]
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = images.detach().requires_grad_(True)
            logits = model(x)
            grad, = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return grad


class GuidedGradCAM:
    """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM map, ``(N, C, H, W)``."""

    def __init__(self, model: nn.Module, target_layer: nn.Module | str | None = None, layout: Layout = None) -> None:
        self.gradcam = GradCAM(model, target_layer, layout)

    def __call__(self, images: torch.Tensor, targets: torch.Tensor | int | None = None) -> torch.Tensor:
        cam, logits = self.gradcam.compute(images, targets)
        if targets is None:
            targets = logits.argmax(1)
        targets = torch.as_tensor(targets, device=logits.device).expand(len(logits))
        cam = F.interpolate(cam[:, None], size=images.shape[-2:], mode="bilinear", align_corners=False)
        return guided_backprop(self.gradcam.model, images, targets) * normalize_maps(cam[:, 0])[:, None]


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Per map, whether its maximum falls inside the object mask (grown by ``tolerance`` pixels, as the
    pointing game of Zhang et al. allows; the Grad-CAM paper uses 15 px at 224 px)."""
    if tolerance > 0:
        masks = F.max_pool2d(masks[:, None].float(), 2 * tolerance + 1, stride=1, padding=tolerance)[:, 0]
    flat = maps.flatten(1).argmax(1)
    return masks.flatten(1).gather(1, flat[:, None])[:, 0] > 0
